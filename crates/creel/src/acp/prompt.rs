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
    let (cwd, stored, mode, model, asked) = {
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
        s.turn = Some(String::new());
        (
            s.cwd.clone(),
            s.stored,
            s.mode,
            s.model.clone(),
            s.asked.take(),
        )
    };
    let result = turn(acp, cx, &sid, &req, cwd, stored, mode, model, asked).await;
    let mut sessions = acp.sessions();
    let s = sessions.get_mut(&sid);
    match result {
        Ok((r, asked)) => {
            if let Some(s) = s {
                s.turn = None;
                s.asked = asked;
            }
            Ok(r)
        }
        Err(e) => {
            if let Some(s) = s {
                s.turn = None;
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn turn(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    sid: &str,
    req: &PromptRequest,
    cwd: std::path::PathBuf,
    stored: bool,
    mode: creel_engine::config::Permissions,
    model: Option<String>,
    asked: Option<Asked>,
) -> Result<(PromptResponse, Option<Asked>), AcpError> {
    let text = prompt_text(&req.prompt, &cwd)?;
    // The last turn ended on a question: this prompt answers it, unless that job has ended
    // or someone else answered meanwhile (then it is a new job's prompt).
    let mut follow = None;
    if let Some(a) = asked {
        let job = a.follow.job.clone();
        let answer = text.clone();
        let seq = a.seq;
        if acp
            .blocking(move |e| e.reply(&job, &answer, Some(seq)))
            .await
            .is_ok()
        {
            follow = Some(a.follow);
        }
    }
    let mut follow = match follow {
        Some(f) => f,
        None => {
            let repo = !stored
                && acp.engine.as_ref().is_ok_and(|e| e.config().acp_repo)
                && cwd.join(".git").exists();
            let start = creel_engine::StartRequest {
                prompt: text,
                session_id: Some(sid.to_string()),
                workspace: (!stored && !repo).then(|| cwd.clone()),
                repo: repo.then(|| cwd.clone()),
                model,
                permissions: Some(mode),
                ..Default::default()
            };
            let started = acp.blocking(move |e| e.start(start)).await?;
            for w in &started.warnings {
                notify(
                    cx,
                    sid,
                    SessionUpdate::AgentMessageChunk(text_chunk(&format!("(creel: {w})\n"))),
                )?;
            }
            Follow::new(started.job_id, &started.workspace)
        }
    };
    if let Some(s) = acp.sessions().get_mut(sid) {
        s.stored = true;
        s.turn = Some(follow.job.clone());
    }
    match follow_job(acp, cx, sid, &mut follow).await? {
        End::Asked(seq) => Ok((
            PromptResponse::new(StopReason::EndTurn),
            Some(Asked { seq, follow }),
        )),
        End::Final(status) => {
            let r = &status.record;
            stop_reason(
                &r.id,
                r.state,
                r.error.as_ref().map(|e| (e.kind, e.message.as_str())),
                follow.translator.last_stop_reason.as_deref(),
            )
            .map(|r| (PromptResponse::new(r), None))
        }
    }
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
        send_output(acp, cx, sid, f).await?;
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
            Some(format!("The client could not ask the user: {}", e.message)),
        ),
    };
    let job = f.job.clone();
    // Someone else (`creel approve`, a rule, the input timeout) may have answered first: then
    // theirs stands, and this one is refused by the store.
    let _ = acp
        .blocking(move |e| e.approve(&job, deny, message.as_deref(), Some(seq)))
        .await;
    Ok(())
}

/// Sends what the job wrote since the last read.
async fn send_output(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    sid: &str,
    f: &mut Follow,
) -> Result<(), AcpError> {
    loop {
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

/// `session/cancel`: cancels the session's running job (the prompt then ends `cancelled`).
/// With no prompt running, a job the session still has (one left running by a client that
/// went away, or waiting on a question) is cancelled.
pub(crate) async fn cancel(acp: &Arc<Acp>, sid: &str) {
    let job = {
        let mut sessions = acp.sessions();
        let Some(s) = sessions.get_mut(sid) else {
            return;
        };
        match (&s.turn, &s.asked) {
            (Some(j), _) if !j.is_empty() => Some(j.clone()),
            (_, Some(a)) => Some(a.follow.job.clone()),
            _ => None,
        }
    };
    let sid = sid.to_string();
    let _ = acp
        .blocking(move |e| {
            let job = match job {
                Some(j) => Some(j),
                None => e
                    .sessions()?
                    .into_iter()
                    .find(|s| s.record.id == sid)
                    .and_then(|s| s.active_job_id),
            };
            match job {
                Some(j) => e.cancel(&j).map(|_| ()),
                None => Ok(()),
            }
        })
        .await;
}

/// `session/load`: a stored creel session, its conversation replayed as updates (each job's
/// prompt, then what Claude did). A job still running is followed by the next prompt's
/// turn only once it ends; one waiting on a question takes the next prompt as its answer.
pub(crate) async fn load_session(
    acp: &Arc<Acp>,
    cx: &ConnectionTo<Client>,
    req: LoadSessionRequest,
) -> Result<LoadSessionResponse, AcpError> {
    let sid = req.session_id.0.to_string();
    let id = sid.clone();
    let found = acp
        .blocking(move |e| {
            let Some(s) = e.sessions()?.into_iter().find(|s| s.record.id == id) else {
                return Ok(None);
            };
            let mut jobs = e.jobs(&creel_engine::JobsRequest {
                session: Some(id.clone()),
                ..Default::default()
            })?;
            jobs.reverse();
            Ok(Some((s, jobs)))
        })
        .await?;
    let Some((session, jobs)) = found else {
        if acp.sessions().contains_key(&sid) {
            // Made by session/new on this connection, never prompted: nothing to replay.
            let s = &acp.sessions()[&sid];
            return Ok(LoadSessionResponse::new()
                .modes(modes(s.mode))
                .config_options(acp.config_options(s.model.as_deref())));
        }
        return Err(unknown_session(&sid));
    };
    if acp.sessions().get(&sid).is_some_and(|s| s.turn.is_some()) {
        return Err(acp_error(
            INVALID_REQUEST,
            format!("session `{sid}` is running a prompt on this connection"),
        ));
    }
    let workspace = session.record.workspace.clone();
    let mut asked = None;
    for j in jobs {
        let job = j.record.id.clone();
        let (prompt, cut) = acp
            .blocking(move |e| e.prompt(&job, REPLAYED_PROMPT_MAX))
            .await?;
        if !prompt.is_empty() {
            let shown = if cut { format!("{prompt}…") } else { prompt };
            notify(
                cx,
                &sid,
                SessionUpdate::UserMessageChunk(text_chunk(&shown)),
            )?;
        }
        let mut f = Follow::new(j.record.id.clone(), &workspace);
        send_output(acp, cx, &sid, &mut f).await?;
        if !j.record.state.is_final() {
            let job = j.record.id.clone();
            let status = acp.blocking(move |e| e.status(&job)).await?;
            if let Some(r) = status
                .waiting_on
                .filter(|r| matches!(r.ask, Ask::Question { .. }))
            {
                asked = Some(Asked {
                    seq: r.seq,
                    follow: f,
                });
            }
        } else {
            send_updates(cx, &sid, flush(&mut f))?;
        }
    }
    let mode = acp.default_mode();
    let mut sessions = acp.sessions();
    let s = sessions.entry(sid.clone()).or_insert(Session {
        cwd: workspace,
        stored: true,
        mode,
        model: None,
        turn: None,
        asked: None,
    });
    s.stored = true;
    s.asked = asked;
    Ok(LoadSessionResponse::new()
        .modes(modes(s.mode))
        .config_options(acp.config_options(s.model.as_deref())))
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
