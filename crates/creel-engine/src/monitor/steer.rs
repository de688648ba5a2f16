//! The monitor's part in steering (see [`crate::steer`]): it reads each new request the
//! container writes into the store, decides what a rule or the `input_timeout` decides, and
//! sends one webhook per request. Answers from people and agents do not pass through here:
//! whoever answers writes the answer file. A new monitor picks up where a dead one stopped,
//! since everything it knows is in the store and the job's directory.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Monitor;
use crate::error::Result;
use crate::job::{JobRecord, now_ms};
use crate::steer::{
    Answer, Ask, DecidedBy, Decision, MAX_REQUESTS, Read, Request, SteerSpec, read_request,
};

/// How often open requests are looked at again (for the input timeout, and for answers whose
/// file a dead process did not write).
const RECHECK: Duration = Duration::from_secs(1);

/// What the monitor keeps between looks.
pub(super) struct Steering {
    /// The next request number to read.
    next: u32,
    /// Whether a request is open (the idle timeout does not run meanwhile).
    pub(super) open: bool,
    /// The requests open at the last look: the ones whose answer may have been recorded since
    /// by a process that then died before writing its file.
    open_seqs: Vec<u32>,
    last_look: Option<Instant>,
    /// Webhooks go out from one thread, in order, so that a slow receiver holds up nothing.
    notifier: Option<mpsc::SyncSender<(JobRecord, Request)>>,
}

impl Steering {
    /// Whether it is time for a look without news from the directory.
    pub(super) fn due(&self) -> bool {
        self.last_look
            .is_none_or(|t| self.open && t.elapsed() >= RECHECK)
    }

    /// How long until [`Steering::due`] (a long time when nothing is open: news of a request
    /// wakes the monitor by itself).
    pub(super) fn next_look(&self) -> Duration {
        match self.last_look {
            None => Duration::ZERO,
            Some(t) if self.open => RECHECK.saturating_sub(t.elapsed()),
            Some(_) => Duration::MAX,
        }
    }
}

impl Monitor {
    /// The steering state for this job, if it has steering.
    pub(super) fn steering(&self) -> Result<Option<Steering>> {
        if self.job.spec.steer.is_none() {
            return Ok(None);
        }
        Ok(Some(Steering {
            next: self.store.last_request(&self.job.id)? + 1,
            open: false,
            open_seqs: Vec::new(),
            last_look: None,
            notifier: None,
        }))
    }

    /// One look: new requests in, rules and timeouts applied, notifications out.
    pub(super) fn steer(&mut self, st: &mut Steering) -> Result<()> {
        let Some(spec) = self.job.spec.steer.clone() else {
            return Ok(());
        };
        let first_look = st.last_look.is_none();
        st.last_look = Some(Instant::now());
        let id = self.job.id.clone();
        let mut changed = false;
        while st.next <= MAX_REQUESTS {
            let seq = st.next;
            let (ask, decided) = match read_request(&self.dir, seq) {
                Read::Missing => break,
                Read::Found(ask) => {
                    tracing::info!(job = %id, seq, kind = ask.kind(), "request");
                    let decided = rule(&spec, &ask);
                    (ask, decided)
                }
                Read::Bad(why) => {
                    // Not from creel's server: recorded, and answered at once so that nothing
                    // waits on it.
                    tracing::warn!(job = %id, seq, "unreadable request: {why}");
                    let ask = Ask::Question {
                        question: format!("(creel could not read request {seq}: {why})"),
                        options: vec![],
                    };
                    let answer = Decision::Answer {
                        text: "creel could not read this request.".into(),
                    };
                    (ask, Some((answer, DecidedBy::Creel)))
                }
            };
            // What a rule decides is recorded with the request itself: nobody ever sees it
            // waiting.
            let answer = decided.map(|(decision, decided_by)| Answer {
                decision,
                decided_by,
                at_ms: now_ms(),
            });
            self.store
                .insert_request(&id, seq, &ask, now_ms(), answer.as_ref())?;
            if let Some(a) = &answer {
                crate::steer::write_answer(
                    &self.dir,
                    seq,
                    &ask,
                    &a.decision,
                    self.job.spec.user.owner_if_root(),
                )?;
            }
            st.next += 1;
            changed = true;
        }
        let open = self.store.requests(&id, true)?;
        let now = now_ms();
        for request in &open {
            // (A request a dead monitor recorded without applying the rules.)
            let decided = rule(&spec, &request.ask);
            let timed_out = spec.input_timeout > 0
                && now - request.asked_at_ms >= (spec.input_timeout as i64).saturating_mul(1000);
            let decided = decided.or_else(|| {
                timed_out.then(|| {
                    let decision = match &request.ask {
                        Ask::Question { .. } => Decision::Answer {
                            text: format!(
                                "No answer came within {} seconds. Go on with your best judgement, and say in your final result what you assumed.",
                                spec.input_timeout
                            ),
                        },
                        Ask::Approval { .. } => Decision::Deny {
                            message: format!(
                                "Nobody approved this within {} seconds, so it is denied. Find another way, or finish and say what you needed.",
                                spec.input_timeout
                            ),
                        },
                    };
                    (decision, DecidedBy::Timeout)
                })
            });
            if let Some((decision, by)) = decided {
                crate::job::reply::deliver(
                    &self.store,
                    &self.home,
                    &self.job,
                    request,
                    decision,
                    by,
                )?;
                changed = true;
                continue;
            }
            if self.store.mark_notified(&id, request.seq, now)? {
                changed = true;
                self.announce(st, request);
            }
        }
        // An answer recorded by a process that died before writing its file: at the first look
        // (a new monitor) any, later only those open at the last look.
        let was_open = std::mem::take(&mut st.open_seqs);
        let recheck = if first_look || !was_open.is_empty() {
            self.store.requests(&id, false)?
        } else {
            Vec::new()
        };
        for request in recheck {
            if let Some(answer) = &request.answer
                && (first_look || was_open.contains(&request.seq))
                && !crate::steer::answer_written(&self.dir, request.seq)
            {
                crate::steer::write_answer(
                    &self.dir,
                    request.seq,
                    &request.ask,
                    &answer.decision,
                    self.job.spec.user.owner_if_root(),
                )?;
            }
        }
        st.open_seqs = self
            .store
            .requests(&id, true)?
            .iter()
            .map(|r| r.seq)
            .collect();
        st.open = !st.open_seqs.is_empty();
        if changed {
            crate::engine::ring_job_dir(&self.dir);
        }
        Ok(())
    }

    /// Closes Claude's input after the messages sent so far (called once Claude has answered
    /// and waits for more): it reads them, answers them, and finishes; a later `send` is
    /// refused. The store decides between this and a concurrent `send`. Returns whether the
    /// input is closed.
    pub(super) fn close_input_when_answered(&mut self) -> Result<bool> {
        let id = self.job.id.clone();
        let owner = self.job.spec.user.owner_if_root();
        // A `send` between the read and the close moves the count: read it again.
        for _ in 0..8 {
            let (messages, closed) = self.store.messages(&id)?;
            if closed {
                // (Also a monitor that died between the store and the file.)
                if !crate::steer::close_written(&self.dir) {
                    crate::steer::write_close(&self.dir, messages, owner)?;
                }
                return Ok(true);
            }
            if self.store.close_input(&id, messages)? {
                crate::steer::write_close(&self.dir, messages, owner)?;
                tracing::debug!(job = %id, messages, "input closed");
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends request's webhook (when the job has one), from the notifier thread.
    fn announce(&self, st: &mut Steering, request: &Request) {
        let Some(spec) = self.job.spec.webhook.clone() else {
            return;
        };
        let tx = st.notifier.get_or_insert_with(|| {
            let (tx, rx) = mpsc::sync_channel::<(JobRecord, Request)>(16);
            std::thread::spawn(move || {
                for (job, request) in rx {
                    let body = crate::webhook::request_body(&job, &request);
                    let key = format!("{}-request-{}", job.id, request.seq);
                    match crate::webhook::post_with_retries(&spec, &body, &key, 1, |_| true) {
                        crate::webhook::Outcome::Refused(e)
                        | crate::webhook::Outcome::Exhausted(e) => {
                            tracing::warn!(job = %job.id, "request webhook not delivered: {e}");
                        }
                        _ => {}
                    }
                }
            });
            tx
        });
        // A full queue (a job asking faster than the receiver takes it) drops the webhook;
        // the request itself is in the store for everyone to see.
        if tx.try_send((self.job.clone(), request.clone())).is_err() {
            tracing::warn!(job = %self.job.id, seq = request.seq, "request webhook dropped: queue full");
        }
    }
}

/// What the job's rules decide about a permission request, if anything.
fn rule(spec: &SteerSpec, ask: &Ask) -> Option<(Decision, DecidedBy)> {
    let Ask::Approval { tool_name, input } = ask else {
        return None;
    };
    let (allowed, rule) = crate::approvals::decide(&spec.allow, &spec.deny, tool_name, input)?;
    let decision = if allowed {
        Decision::Allow
    } else {
        Decision::Deny {
            message: format!("creel's rule `{rule}` denies this."),
        }
    };
    Some((decision, DecidedBy::Rule(rule)))
}
