//! `claude_code_status`: a job's state, error, activity and the tail of its output.

use creel_engine::JobWatch;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ProgressNotificationParam, RequestMetaObject};
use rmcp::service::Peer;
use rmcp::{RoleServer, tool, tool_router};

use super::params::StatusParams;
use super::{CreelServer, finish, input_schema, output_schema, success};
use crate::wire::StatusWire;

const DESCRIPTION: &str = "\
Get a Claude Code job's status: pending or running (keep polling, every 10-30 seconds), or \
completed, failed (see error.kind and error.message) or cancelled (final: stop polling). Also \
reports activityState (active: writing output; processing: thinking or running a tool; idle), \
elapsedSeconds, outputSize, tailOutput (the last few hundred characters of the transcript), \
resource metrics, and when finished Claude's final `result` text, numTurns and costUsd. Cheap: it \
only reads stored state. For the full transcript use claude_code_output. Instead of polling, pass \
wait_seconds to wait (up to 600 s) for the job to end; progress notifications report it meanwhile \
when the request carries a progress token. The wait also ends when Claude asks something \
(activityState needs_input: answer with claude_code_reply; needs_approval: decide with \
claude_code_approve).";

#[tool_router(router = status_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_status",
        description = DESCRIPTION,
        input_schema = input_schema::<StatusParams>(),
        output_schema = output_schema::<StatusWire>(),
        annotations(
            title = "Claude Code job status",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn claude_code_status(
        &self,
        Parameters(p): Parameters<StatusParams>,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> CallToolResult {
        let wait = p.wait();
        let token = meta.get_progress_token();
        let started = std::time::Instant::now();
        let mut last_size = None;
        // Taken before the first read, so that no change between a read and the wait is missed.
        let mut changes = match wait {
            Some(_) => super::JobChanges::of(self, vec![p.job_id.clone()])
                .await
                .ok(),
            None => None,
        };
        loop {
            let status = self
                .job_in_session(p.job_id.clone(), p.session_id.clone())
                .await;
            let done = match (&status, wait) {
                (Err(_), _) | (_, None) => true,
                (Ok(s), Some(w)) => {
                    s.record.state.is_final()
                        || s.waiting_on.is_some()
                        || started.elapsed().as_secs_f64() >= w
                }
            };
            if done {
                return finish(status.map(|s| {
                    let w = StatusWire::from(&s);
                    success(&w, summary(&w, s.record.state.is_final()), None)
                }));
            }
            if let (Some(token), Ok(s)) = (&token, &status)
                && last_size != Some(s.record.output_size)
            {
                last_size = Some(s.record.output_size);
                let message = format!(
                    "{} · {} bytes of output · {}",
                    s.record.state,
                    s.record.output_size,
                    s.activity.as_str()
                );
                let _ = client
                    .notify_progress(
                        ProgressNotificationParam::new(
                            token.clone(),
                            started.elapsed().as_secs_f64(),
                        )
                        .with_message(message),
                    )
                    .await;
            }
            let left = std::time::Duration::from_secs_f64(
                (wait.unwrap_or(0.0) - started.elapsed().as_secs_f64()).max(0.0),
            );
            match &mut changes {
                Some(c) => c.wait(left).await,
                None => tokio::time::sleep(left.min(JobWatch::RECHECK)).await,
            }
        }
    }
}

/// One or two lines a model can act on.
fn summary(w: &StatusWire, is_final: bool) -> String {
    let mut out = format!(
        "Job {} (session {}) is {}",
        w.job_id, w.session_id, w.status
    );
    if let Some(e) = &w.error {
        out.push_str(&format!(": {} ({})", e.kind, e.message));
    }
    out.push_str(&format!(
        " after {:.1} s, {} bytes of output",
        w.elapsed_seconds, w.output_size
    ));
    if is_final {
        out.push_str(". Final: read it with claude_code_output.");
        if let Some(r) = &w.result {
            let short: String = r.chars().take(300).collect();
            let more = if short.len() < r.len() { "…" } else { "" };
            out.push_str(&format!("\nResult: {short}{more}"));
        }
    } else if let Some(q) = &w.needs_input {
        out.push_str(&format!(
            ". It waits for your answer (request {}): {}",
            q.request,
            q.question.as_deref().unwrap_or_default()
        ));
        if !q.options.is_empty() {
            out.push_str(&format!("\nOptions: {}", q.options.join(" | ")));
        }
        out.push_str("\nAnswer with claude_code_reply.");
    } else if let Some(a) = &w.needs_approval {
        out.push_str(&format!(
            ". It waits for approval (request {}) to use {} with {}\nDecide with claude_code_approve.",
            a.request,
            a.tool_name.as_deref().unwrap_or_default(),
            a.input.as_ref().map(|i| i.to_string()).unwrap_or_default()
        ));
    } else {
        out.push_str(&format!(
            ", {}. Still working: poll again in 10-30 s.",
            w.activity_state
        ));
    }
    out
}
