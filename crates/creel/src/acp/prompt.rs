//! One ACP prompt turn as a creel job: start it (or answer the question the last turn ended
//! on), follow its output as `session/update`s, pass its permission requests to the client,
//! and end with the stop reason its final state means. Also `session/cancel` and
//! `session/load` (which replays a stored session's jobs the same way).

use std::collections::HashSet;
use std::sync::Arc;

use agent_client_protocol::Client;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    LoadSessionRequest, LoadSessionResponse, PermissionOption, PermissionOptionKind, PromptRequest,
    PromptResponse, RequestPermissionOutcome, RequestPermissionRequest, SessionUpdate, StopReason,
};
use creel_engine::steer::Ask;
use creel_engine::stream::{Line, LineSplitter};
use creel_engine::{ErrorKind, JobState, JobStatus, JobWatch, OutputFormat, OutputRequest};

use super::translate::{Translator, text_chunk};
use super::{
    Acp, AcpError, INTERNAL_ERROR, INVALID_REQUEST, Session, acp_error, modes, notify, prompt_text,
    unknown_session,
};
use crate::changes::JobChanges;

/// The page size read from a job's output at a time.
const PAGE: u64 = 1 << 20;
/// The longest stream-json line translated (longer ones are skipped, as the renderer does).
const MAX_LINE: usize = 16 << 20;
/// The most of a stored prompt replayed by `session/load`.
const REPLAYED_PROMPT_MAX: usize = 1 << 20;

/// Where a job's output has been read to, and what was seen in it.
pub(crate) struct Follow {
    job: String,
    offset: u64,
    lines: LineSplitter,
    translator: Translator,
    /// Permission requests already passed to the client.
    asked_client: HashSet<u32>,
}

impl Follow {
    fn new(job: String, workspace: &std::path::Path) -> Follow {
        Follow {
            job,
            offset: 0,
            lines: LineSplitter::new(MAX_LINE),
            translator: Translator::new(workspace),
            asked_client: HashSet::new(),
        }
    }
}

/// A job that asked a question and waits: its turn ended showing the question, and the
/// session's next prompt is the answer.
pub(crate) struct Asked {
    seq: u32,
    follow: Follow,
}

/// How following a job ended.
enum End {
    Final(Box<JobStatus>),
    Asked(u32),
}

pub(crate) async fn prompt(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    req: PromptRequest,
) -> Result<PromptResponse, AcpError> {
    let sid = req.session_id.0.to_string();
    let (text, mode, model, asked, cwd) = {
        let mut sessions = acp.sessions();
        let Some(s) = sessions.get_mut(&sid) else {
            return Err(unknown_session(&sid));
        };
        if let Some(job) = &s.turn {
            return Err(acp_error(
                INVALID_REQUEST,
                format!(
                    "session `{sid}` is already running a prompt{}: wait for it to end, or send session/cancel",
                    if job.is_empty() {
                        String::new()
                    } else {
                        format!(" (creel job {job})")
                    }
                ),
            ));
        }
        // Checked before anything is taken from the session.
        let text = prompt_text(&req.prompt, &s.cwd)?;
        s.turn = Some(String::new());
        s.cancel_requested = false;
        (text, s.mode, s.model.clone(), s.asked.take(), s.cwd.clone())
    };
    let (result, asked) = turn(acp, cx, &sid, text, cwd, mode, model, asked).await;
    if let Some(s) = acp.sessions().get_mut(&sid) {
        s.turn = None;
        s.cancel_requested = false;
        s.asked = asked;
    }
    result
}

/// Runs one turn. Returns its answer, and the job whose question the session's next prompt
/// answers (this turn's, or the one it was given back when this turn could not answer it).
#[allow(clippy::too_many_arguments)]
async fn turn(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    sid: &str,
    text: String,
    cwd: std::path::PathBuf,
    mode: creel_engine::config::Permissions,
    model: Option<String>,
    asked: Option<Asked>,
) -> (Result<PromptResponse, AcpError>, Option<Asked>) {
    // The last turn ended on a question: this prompt answers it. If that job has ended
    // meanwhile (answered by someone else and finished, timed out, cancelled), the prompt
    // starts a new job instead; if the answer cannot be given, the question stays open.
    let mut follow = None;
    if let Some(a) = asked {
        let job = a.follow.job.clone();
        let answer = text.clone();
        let seq = a.seq;
        let replied = acp
            .blocking(move |e| match e.reply(&job, &answer, Some(seq)) {
                Ok(_) => Ok(None),
                Err(err) => {
                    let ended = e.status(&job).is_ok_and(|s| s.record.state.is_final());
                    Ok(Some((err, ended)))
                }
            })
            .await;
        match replied {
            Ok(None) => follow = Some(a.follow),
            Ok(Some((_, true))) => {}
            Ok(Some((err, false))) => return (Err(super::engine_error(err)), Some(a)),
            Err(err) => return (Err(err), Some(a)),
        }
    }
    let mut follow = match follow {
        Some(f) => f,
        None => {
            if cancel_requested(acp, sid) {
                return (Ok(PromptResponse::new(StopReason::Cancelled)), None);
            }
            let acp_repo = acp.engine.as_ref().is_ok_and(|e| e.config().acp_repo);
            let session = sid.to_string();
            // Whether the session is in the store is decided here, not remembered: a cleanup
            // may have removed it since the last prompt.
            let started = acp
                .blocking(move |e| {
                    let new = e.session(&session)?.is_none();
                    let repo = new && acp_repo && cwd.join(".git").exists();
                    e.start(creel_engine::StartRequest {
                        prompt: text,
                        session_id: Some(session),
                        workspace: (new && !repo).then(|| cwd.clone()),
                        repo: repo.then(|| cwd.clone()),
                        model,
                        permissions: Some(mode),
                        ..Default::default()
                    })
                })
                .await;
            let started = match started {
                Ok(s) => s,
                Err(e) => return (Err(e), None),
            };
            for w in &started.warnings {
                let note = text_chunk(&format!("(creel: {w})\n"));
                if let Err(e) = notify(cx, sid, SessionUpdate::AgentMessageChunk(note)) {
                    return (Err(e), None);
                }
            }
            Follow::new(started.job_id, &started.workspace)
        }
    };
    let cancel_now = {
        let mut sessions = acp.sessions();
        match sessions.get_mut(sid) {
            Some(s) => {
                s.turn = Some(follow.job.clone());
                s.detached = None;
                s.cancel_requested
            }
            None => false,
        }
    };
    if cancel_now {
        // session/cancel came while the job was being started.
        let job = follow.job.clone();
        let _ = acp.blocking(move |e| e.cancel(&job)).await;
    }
    match follow_job(acp, cx, sid, &mut follow).await {
        Err(e) => (Err(e), None),
        Ok(End::Asked(seq)) => (
            Ok(PromptResponse::new(StopReason::EndTurn)),
            Some(Asked { seq, follow }),
        ),
        Ok(End::Final(status)) => {
            let r = &status.record;
            let reason = stop_reason(
                &r.id,
                r.state,
                r.error.as_ref().map(|e| (e.kind, e.message.as_str())),
                follow.translator.last_stop_reason.as_deref(),
            );
            (reason.map(PromptResponse::new), None)
        }
    }
}

fn cancel_requested(acp: &Acp, sid: &str) -> bool {
    acp.sessions().get(sid).is_some_and(|s| s.cancel_requested)
}

/// The stop reason a finished job's state means; a failure other than running out of turns
/// is an error, with creel's message.
fn stop_reason(
    job: &str,
    state: JobState,
    error: Option<(ErrorKind, &str)>,
    api_stop: Option<&str>,
) -> Result<StopReason, AcpError> {
    match state {
        JobState::Completed => Ok(match api_stop {
            Some("refusal") => StopReason::Refusal,
            Some("max_tokens") => StopReason::MaxTokens,
            _ => StopReason::EndTurn,
        }),
        JobState::Cancelled => Ok(StopReason::Cancelled),
        _ => match error {
            Some((ErrorKind::MaxTurns, _)) => Ok(StopReason::MaxTurnRequests),
            Some((kind, message)) => Err(acp_error(
                INTERNAL_ERROR,
                format!("creel job {job} failed ({}): {message}", kind.as_str()),
            )
            .data(serde_json::json!({ "jobId": job, "kind": kind.as_str() }))),
            None => Err(acp_error(
                INTERNAL_ERROR,
                format!("creel job {job} ended {state}"),
            )),
        },
    }
}

/// Follows the job until it is final or waits on a question, sending its output as updates
/// and its permission requests to the client.
async fn follow_job(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    sid: &str,
    f: &mut Follow,
) -> Result<End, AcpError> {
    let job = f.job.clone();
    let watch = acp.blocking(move |e| e.watch_job(&job)).await?;
    let mut changes = JobChanges::from_watch(watch);
    loop {
        let job = f.job.clone();
        let status = acp.blocking(move |e| e.status(&job)).await?;
        // Read after the status: a final state's output is all there.
        send_output(acp, cx, sid, f, None).await?;
        if status.record.state.is_final() {
            send_updates(cx, sid, flush(f))?;
            return Ok(End::Final(Box::new(status)));
        }
        if let Some(req) = &status.waiting_on {
            match &req.ask {
                Ask::Question { question, options } => {
                    let mut text = format!("\n\n**Claude asks:** {question}\n");
                    if !options.is_empty() {
                        text.push_str(&format!("Options: {}\n", options.join(" | ")));
                    }
                    text.push_str("(Your next prompt is the answer.)\n");
                    notify(cx, sid, SessionUpdate::AgentMessageChunk(text_chunk(&text)))?;
                    return Ok(End::Asked(req.seq));
                }
                Ask::Approval { tool_name, input } if f.asked_client.insert(req.seq) => {
                    ask_permission(acp, cx, sid, f, req.seq, tool_name, input).await?;
                    continue;
                }
                Ask::Approval { .. } => {}
            }
        }
        changes.wait(JobWatch::RECHECK).await;
    }
}

/// `session/request_permission` for a permission request, and its answer to the job.
async fn ask_permission(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    sid: &str,
    f: &Follow,
    seq: u32,
    tool_name: &str,
    input: &serde_json::Value,
) -> Result<(), AcpError> {
    let id = f
        .translator
        .tool_call_for(tool_name, input)
        .unwrap_or_else(|| format!("creel-{}-request-{seq}", f.job));
    let subject = f.translator.permission_subject(&id, tool_name, input);
    let options = vec![
        PermissionOption::new("allow", "Allow", PermissionOptionKind::AllowOnce),
        PermissionOption::new("deny", "Deny", PermissionOptionKind::RejectOnce),
    ];
    let answer = cx
        .send_request(RequestPermissionRequest::new(
            sid.to_string(),
            subject,
            options,
        ))
        .block_task()
        .await;
    let (deny, message) = match answer {
        Ok(r) => match r.outcome {
            RequestPermissionOutcome::Selected(o) if &*o.option_id.0 == "allow" => (false, None),
            RequestPermissionOutcome::Selected(_) => {
                (true, "The user denied it.".to_string().into())
            }
            RequestPermissionOutcome::Cancelled => (true, Some("The prompt was cancelled.".into())),
            _ => (true, Some("The client gave no answer creel knows.".into())),
        },
        Err(e) => (
            true,
            // (The client's words, kept short: an answer has a size limit.)
            Some(format!(
                "The client could not ask the user: {}",
                e.message.chars().take(200).collect::<String>()
            )),
        ),
    };
    let job = f.job.clone();
    // Someone else (`creel approve`, a rule, the input timeout) may have answered first: then
    // theirs stands, and this one is refused by the store. Should this answer fail otherwise,
    // a plain denial is tried, so that the job never waits on a request already asked.
    let _ = acp
        .blocking(move |e| {
            e.approve(&job, deny, message.as_deref(), Some(seq))
                .or_else(|_| e.approve(&job, true, None, Some(seq)))
        })
        .await;
    Ok(())
}

/// Sends what the job wrote since the last read.
async fn send_output(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    sid: &str,
    f: &mut Follow,
    up_to: Option<u64>,
) -> Result<(), AcpError> {
    loop {
        if up_to.is_some_and(|max| f.offset >= max) {
            return Ok(());
        }
        let (job, offset) = (f.job.clone(), f.offset);
        let chunk = acp
            .blocking(move |e| {
                e.output(
                    &job,
                    OutputRequest {
                        offset,
                        limit: PAGE,
                        format: OutputFormat::Raw,
                    },
                )
            })
            .await?;
        let mut updates = Vec::new();
        let (lines, translator) = (&mut f.lines, &mut f.translator);
        lines.push(chunk.content.as_bytes(), |l| {
            if let Line::Complete(l) = l {
                updates.extend(translator.line(l));
            }
        });
        send_updates(cx, sid, updates)?;
        let moved = chunk.next_offset > f.offset;
        f.offset = chunk.next_offset;
        if !chunk.has_more || !moved {
            return Ok(());
        }
    }
}

/// The updates of an unfinished last line.
fn flush(f: &mut Follow) -> Vec<SessionUpdate> {
    let mut updates = Vec::new();
    let (lines, translator) = (&mut f.lines, &mut f.translator);
    lines.finish(|l| {
        if let Line::Complete(l) = l {
            updates.extend(translator.line(l));
        }
    });
    updates
}

fn send_updates(
    cx: &ConnectionTo<Client>,
    sid: &str,
    updates: Vec<SessionUpdate>,
) -> Result<(), AcpError> {
    for u in updates {
        notify(cx, sid, u)?;
    }
    Ok(())
}

/// `session/cancel`: cancels the session's running job (the prompt then ends `cancelled`);
/// during a turn's start, the turn cancels its job as soon as it has one. With no prompt
/// running, it cancels the job this session still has: one waiting on a question, or one
/// `session/load` found running. Never a job this connection does not know of.
pub(crate) async fn cancel(acp: &Arc<Acp>, sid: &str) {
    let job = {
        let mut sessions = acp.sessions();
        let Some(s) = sessions.get_mut(sid) else {
            return;
        };
        match (&s.turn, &s.asked, &s.detached) {
            (Some(j), _, _) if j.is_empty() => {
                s.cancel_requested = true;
                None
            }
            (Some(j), _, _) => Some(j.clone()),
            (None, Some(a), _) => Some(a.follow.job.clone()),
            (None, None, Some(j)) => Some(j.clone()),
            (None, None, None) => None,
        }
    };
    if let Some(job) = job {
        let _ = acp.blocking(move |e| e.cancel(&job)).await;
    }
}

/// The most jobs `session/load` replays (the latest), and the most of each one's output.
const REPLAYED_JOBS: u64 = 50;
const REPLAYED_OUTPUT: u64 = 8 << 20;

/// `session/load`: a stored creel session, its conversation replayed as updates (each job's
/// prompt, then what Claude did; the latest [`REPLAYED_JOBS`], each up to
/// [`REPLAYED_OUTPUT`]). A job waiting on a question takes the next prompt as its answer; a
/// job still running otherwise makes the next prompt wait (it is refused until the job ends)
/// and is what `session/cancel` stops.
pub(crate) async fn load_session(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    req: LoadSessionRequest,
) -> Result<LoadSessionResponse, AcpError> {
    let sid = req.session_id.0.to_string();
    let id = sid.clone();
    let found = acp
        .blocking(move |e| {
            let Some(s) = e.session(&id)? else {
                return Ok(None);
            };
            let mut jobs = e.jobs(&creel_engine::JobsRequest {
                session: Some(id.clone()),
                limit: REPLAYED_JOBS,
                ..Default::default()
            })?;
            jobs.reverse();
            Ok(Some((s, jobs)))
        })
        .await?;
    // Hold the session as if a turn ran, so that no prompt interleaves with the replay.
    {
        let mut sessions = acp.sessions();
        match (sessions.get_mut(&sid), &found) {
            (Some(s), _) if s.turn.is_some() => {
                return Err(acp_error(
                    INVALID_REQUEST,
                    format!("session `{sid}` is running a prompt on this connection"),
                ));
            }
            (Some(s), _) => {
                s.turn = Some(String::new());
                s.cwd = req.cwd.clone();
            }
            (None, Some(_)) => {
                drop(sessions);
                let mut s = Session::new(req.cwd.clone(), acp.default_mode());
                s.turn = Some(String::new());
                acp.remember(sid.clone(), s);
            }
            // Not in the store and not made here.
            (None, None) => return Err(unknown_session(&sid)),
        }
    }
    let replayed = match found {
        Some((session, jobs)) => replay(acp, cx, &sid, &session.workspace, jobs).await,
        // Made by session/new on this connection, never prompted: nothing to replay.
        None => Ok((None, None)),
    };
    let mut sessions = acp.sessions();
    let Some(s) = sessions.get_mut(&sid) else {
        return Err(unknown_session(&sid));
    };
    s.turn = None;
    let (asked, detached) = replayed?;
    if asked.is_some() {
        s.asked = asked;
    }
    s.detached = detached;
    Ok(LoadSessionResponse::new()
        .modes(modes(s.mode))
        .config_options(acp.config_options(s.model.as_deref())))
}

/// Replays `jobs` (oldest first); returns the job waiting on a question, or the one still
/// running, if any.
async fn replay(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    sid: &str,
    workspace: &std::path::Path,
    jobs: Vec<creel_engine::JobSummary>,
) -> Result<(Option<Asked>, Option<String>), AcpError> {
    let (mut asked, mut detached) = (None, None);
    for j in jobs {
        let job = j.record.id.clone();
        let (prompt, cut) = acp
            .blocking(move |e| e.prompt(&job, REPLAYED_PROMPT_MAX))
            .await?;
        if !prompt.is_empty() {
            let shown = if cut { format!("{prompt}…") } else { prompt };
            notify(cx, sid, SessionUpdate::UserMessageChunk(text_chunk(&shown)))?;
        }
        let mut f = Follow::new(j.record.id.clone(), workspace);
        send_output(acp, cx, sid, &mut f, Some(REPLAYED_OUTPUT)).await?;
        if f.offset < j.record.output_size && f.offset >= REPLAYED_OUTPUT {
            let note = format!(
                "\n(creel: {} more bytes of this job's output are not replayed: `creel output {}`)\n",
                j.record.output_size - f.offset,
                j.record.id
            );
            notify(cx, sid, SessionUpdate::AgentMessageChunk(text_chunk(&note)))?;
            continue;
        }
        if j.record.state.is_final() {
            send_updates(cx, sid, flush(&mut f))?;
            continue;
        }
        let job = j.record.id.clone();
        let status = acp.blocking(move |e| e.status(&job)).await?;
        match status.waiting_on {
            Some(r) if matches!(r.ask, Ask::Question { .. }) => {
                asked = Some(Asked {
                    seq: r.seq,
                    follow: f,
                })
            }
            _ if !status.record.state.is_final() => detached = Some(j.record.id.clone()),
            _ => {}
        }
    }
    Ok((asked, detached))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_map_to_stop_reasons() {
        let r = |state: JobState, kind: Option<ErrorKind>, api: Option<&str>| {
            stop_reason("000000000001", state, kind.map(|k| (k, "it broke")), api)
                .map(|r| serde_json::to_value(r).unwrap())
                .map_err(|e| e.data.unwrap_or_default())
        };
        assert_eq!(r(JobState::Completed, None, None).unwrap(), "end_turn");
        assert_eq!(
            r(JobState::Completed, None, Some("refusal")).unwrap(),
            "refusal"
        );
        assert_eq!(
            r(JobState::Completed, None, Some("max_tokens")).unwrap(),
            "max_tokens"
        );
        assert_eq!(r(JobState::Cancelled, None, None).unwrap(), "cancelled");
        assert_eq!(
            r(JobState::Failed, Some(ErrorKind::MaxTurns), None).unwrap(),
            "max_turn_requests"
        );
        let e = r(JobState::Failed, Some(ErrorKind::ApiError), None).unwrap_err();
        assert_eq!(e["kind"], "api_error");
        assert_eq!(e["jobId"], "000000000001");
    }
}
