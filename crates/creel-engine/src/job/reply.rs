//! `reply` and `approve`: answering what a running job asked (see [`crate::steer`]). Any
//! creel process may answer; the store decides which answer wins, and the answer file the
//! container waits for is written after that, so a job gets exactly one answer per request.

use crate::api::JobStatus;
use crate::engine::{Engine, job_dir};
use crate::error::{Error, Result};
use crate::job::{JobRecord, now_ms};
use crate::steer::{Answer, DecidedBy, Decision, Request};
use crate::store::Store;

impl Engine {
    /// Answers job `job_id`'s question `seq` (default: its oldest open question) with `text`,
    /// which Claude receives as the result of its `mcp__creel__ask` call.
    pub fn reply(&self, job_id: &str, text: &str, seq: Option<u32>) -> Result<JobStatus> {
        crate::steer::check_answer(text)?;
        self.decide(
            job_id,
            seq,
            "question",
            Decision::Answer {
                text: text.to_string(),
            },
        )
    }

    /// Allows (or, with `deny`, refuses, telling Claude `message`) job `job_id`'s permission
    /// request `seq` (default: its oldest open one).
    pub fn approve(
        &self,
        job_id: &str,
        deny: bool,
        message: Option<&str>,
        seq: Option<u32>,
    ) -> Result<JobStatus> {
        let decision = if deny {
            let message = message.unwrap_or("The person running this job denied it.");
            crate::steer::check_answer(message)?;
            Decision::Deny {
                message: message.to_string(),
            }
        } else {
            Decision::Allow
        };
        self.decide(job_id, seq, "approval", decision)
    }

    /// Sends job `job_id` a new user message while it runs (as if the person typed it in
    /// Claude Code): Claude reads it once it has finished with the messages before it.
    /// Returns the message's number (the prompt is 1).
    pub fn send(&self, job_id: &str, text: &str) -> Result<u32> {
        if text.trim().is_empty() {
            return Err(Error::InvalidRequest("the message is empty".into()));
        }
        if text.len() > crate::job::start::MAX_PROMPT {
            return Err(Error::InvalidRequest(format!(
                "the message is {} bytes; the limit is {}",
                text.len(),
                crate::job::start::MAX_PROMPT
            )));
        }
        let record = self.load_job(job_id)?;
        let refused = |why: &str| Error::NotWaiting {
            job: job_id.to_string(),
            state: why.to_string(),
            what: "messages".into(),
        };
        if !record.spec.steer.as_ref().is_some_and(|s| s.messages) {
            return Err(refused(
                "a job from before `send` existed, which reads only its prompt",
            ));
        }
        if record.state.is_final() {
            return Err(refused(&format!(
                "{}: start a new job in session `{}` instead, which continues the conversation",
                record.state, record.session_id
            )));
        }
        let Some(n) = self.store().add_message(job_id)? else {
            return Err(refused(
                "finishing: Claude has answered every message and its input is closed; start a new job in the session instead",
            ));
        };
        crate::steer::write_message(
            &job_dir(&self.home, job_id),
            n,
            text,
            record.spec.user.owner_if_root(),
        )?;
        Ok(n)
    }

    fn decide(
        &self,
        job_id: &str,
        seq: Option<u32>,
        kind: &str,
        decision: Decision,
    ) -> Result<JobStatus> {
        let record = self.load_job(job_id)?;
        let what = match (kind, seq) {
            (_, Some(n)) => format!("an answer to request {n}"),
            ("question", None) => "an answer".to_string(),
            _ => "an approval".to_string(),
        };
        let not_waiting = |status: &JobStatus| Error::NotWaiting {
            job: job_id.to_string(),
            state: match &status.waiting_on {
                Some(r) => format!(
                    "{}, waiting on request {} (a {})",
                    status.record.state,
                    r.seq,
                    r.ask.kind()
                ),
                None if status.record.state.is_final() => status.record.state.to_string(),
                None => format!("{}, {}", status.record.state, status.activity.as_str()),
            },
            what: what.clone(),
        };
        if record.state.is_final() {
            return Err(not_waiting(&self.describe(record)));
        }
        let open = self.store().requests(job_id, true)?;
        let Some(request) = open
            .into_iter()
            .find(|r| seq.map_or(r.ask.kind() == kind, |n| r.seq == n))
        else {
            return Err(not_waiting(&self.describe(record)));
        };
        if request.ask.kind() != kind {
            return Err(Error::InvalidRequest(format!(
                "request {} of job `{job_id}` is a {}: answer it with `{}`",
                request.seq,
                request.ask.kind(),
                if request.ask.kind() == "question" {
                    "reply"
                } else {
                    "approve"
                }
            )));
        }
        let delivered = deliver(
            &self.store(),
            &self.home,
            &record,
            &request,
            decision,
            DecidedBy::User,
        )?;
        if !delivered {
            // Someone else (a rule, the timeout, another person) answered first.
            return Err(not_waiting(&self.describe(self.load_job(job_id)?)));
        }
        Ok(self.describe(self.load_job(job_id)?))
    }
}

/// Records `decision` for `request` (unless it was answered already: then false) and writes the
/// answer file the container waits for. Used by every face and by the monitor's rules and
/// timeouts.
pub(crate) fn deliver(
    store: &Store,
    home: &std::path::Path,
    job: &JobRecord,
    request: &Request,
    decision: Decision,
    by: DecidedBy,
) -> Result<bool> {
    let answer = Answer {
        decision,
        decided_by: by,
        at_ms: now_ms(),
    };
    if !store.answer_request(&job.id, request.seq, &answer)? {
        return Ok(false);
    }
    let dir = job_dir(home, &job.id);
    crate::steer::write_answer(
        &dir,
        request.seq,
        &request.ask,
        &answer.decision,
        job.spec.user.owner_if_root(),
    )?;
    crate::engine::ring_job_dir(&dir);
    tracing::info!(job = %job.id, seq = request.seq, by = ?answer.decided_by, "request answered");
    Ok(true)
}
