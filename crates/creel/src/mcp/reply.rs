//! `claude_code_reply` and `claude_code_approve`: answering what a running job asked; and the
//! notification a client gets when a job it started asks something.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::Peer;
use rmcp::{RoleServer, tool, tool_router};

use super::params::{ApproveParams, ReplyParams, SendParams};
use super::{CreelServer, JobChanges, finish, input_schema, output_schema, success};
use crate::wire::{RequestWire, StatusWire};

const REPLY: &str = "\
Answer the question a running Claude Code job asked (its claude_code_status shows activityState \
needs_input and needsInput.question, with needsInput.options when it is a choice). Claude \
receives the answer as the result of its question and goes on. Answer as the person who gave \
the task would; if you cannot, say so in the answer. Returns the job's status.";

const SEND: &str = "\
Send a running Claude Code job another message, e.g. \"also update the docs\" or a correction: \
Claude reads it as the next user message once it has finished with the ones before, and the job \
ends after it has answered them all. Fails for a job that has ended or is finishing: then start a \
new job in its session (claude_code_start with session_id), which continues the conversation.";

const APPROVE: &str = "\
Decide a running Claude Code job's permission request (a job started with permissions=ask; its \
claude_code_status shows activityState needs_approval and needsApproval.toolName and .input). \
allow=true lets the tool run; allow=false refuses it, and message tells Claude why or what to \
do instead. Check the input before allowing: the tool runs inside the job's container, with the \
job's workspace. Returns the job's status.";

#[tool_router(router = reply_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_reply",
        description = REPLY,
        input_schema = input_schema::<ReplyParams>(),
        output_schema = output_schema::<StatusWire>(),
        annotations(
            title = "Answer a Claude Code job's question",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn claude_code_reply(&self, Parameters(p): Parameters<ReplyParams>) -> CallToolResult {
        finish(
            self.blocking(move |e| e.reply(&p.job_id, &p.answer, p.request))
                .await
                .map(|s| {
                    let w = StatusWire::from(&s);
                    let summary = after(&w, "Answered");
                    success(&w, summary, None)
                }),
        )
    }

    #[tool(
        name = "claude_code_send",
        description = SEND,
        input_schema = input_schema::<SendParams>(),
        output_schema = output_schema::<SentWire>(),
        annotations(
            title = "Send a running Claude Code job a message",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn claude_code_send(&self, Parameters(p): Parameters<SendParams>) -> CallToolResult {
        let job = p.job_id.clone();
        finish(
            self.blocking(move |e| e.send(&p.job_id, &p.message))
                .await
                .map(|n| {
                    let w = SentWire {
                        job_id: job,
                        message: n,
                    };
                    let summary = format!(
                        "Sent message {} to job {}; Claude reads it after the ones before. Poll claude_code_status until the job ends.",
                        w.message, w.job_id
                    );
                    success(&w, summary, None)
                }),
        )
    }

    #[tool(
        name = "claude_code_approve",
        description = APPROVE,
        input_schema = input_schema::<ApproveParams>(),
        output_schema = output_schema::<StatusWire>(),
        annotations(
            title = "Allow or refuse a Claude Code job's tool use",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn claude_code_approve(
        &self,
        Parameters(p): Parameters<ApproveParams>,
    ) -> CallToolResult {
        let deny = p.allow == Some(false);
        finish(
            self.blocking(move |e| e.approve(&p.job_id, deny, p.message.as_deref(), p.request))
                .await
                .map(|s| {
                    let w = StatusWire::from(&s);
                    let summary = after(&w, if deny { "Refused" } else { "Allowed" });
                    success(&w, summary, None)
                }),
        )
    }
}

/// `claude_code_send`'s result.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentWire {
    /// The job.
    pub job_id: String,
    /// The message's number (the prompt is 1).
    pub message: u32,
}

fn after(w: &StatusWire, verb: &str) -> String {
    let mut s = format!("{verb}. Job {} is {}", w.job_id, w.status);
    match (&w.needs_input, &w.needs_approval) {
        (Some(q), _) => s.push_str(&format!(
            " and asks another question (request {}): {}",
            q.request,
            q.question.as_deref().unwrap_or_default()
        )),
        (_, Some(a)) => s.push_str(&format!(
            " and waits on another permission request (request {}, {})",
            a.request,
            a.tool_name.as_deref().unwrap_or_default()
        )),
        _ => s.push_str(": poll claude_code_status until it ends."),
    }
    s
}

/// Tells `client` (a `notifications/message`, logger `creel`, level `warning`) about each
/// question or permission request job `job_id` makes, once each, until the job ends or the
/// client goes away. The notification's data is the request (as in `needsInput` /
/// `needsApproval`) with the job and session ids.
// MCP's logging notification is being retired (SEP-2577) but is still what clients show;
// subscribers of the job's resources also get `notifications/resources/updated`, and a status
// wait ends at once.
#[allow(deprecated)]
pub(super) fn announce_requests(server: &CreelServer, job_id: String, client: Peer<RoleServer>) {
    let server = server.clone();
    tokio::spawn(async move {
        let Ok(mut changes) = JobChanges::of(&server, vec![job_id.clone()]).await else {
            return;
        };
        let mut announced = 0u32;
        loop {
            let id = job_id.clone();
            let Ok(status) = server.blocking(move |e| e.status(&id)).await else {
                return;
            };
            let last = announced;
            for r in status.requests.iter().filter(|r| r.seq > last) {
                announced = r.seq;
                if r.answer.is_some() {
                    continue;
                }
                let w = RequestWire::from(r);
                let what = match r.ask.kind() {
                    "question" => "needs input: answer with claude_code_reply",
                    _ => "needs approval: decide with claude_code_approve",
                };
                let data = serde_json::json!({
                    "message": format!("creel job {} {what}", status.record.id),
                    "jobId": status.record.id,
                    "sessionId": status.record.session_id,
                    "request": w,
                });
                use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
                let sent = client
                    .notify_logging_message(
                        LoggingMessageNotificationParam::new(LoggingLevel::Warning, data)
                            .with_logger("creel"),
                    )
                    .await;
                if sent.is_err() {
                    return;
                }
            }
            if status.record.state.is_final() {
                return;
            }
            changes.wait(creel_engine::JobWatch::RECHECK).await;
        }
    });
}
