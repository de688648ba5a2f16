//! `claude_code_cancel`: stop a job (idempotent).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::params::CancelParams;
use super::{CreelServer, check_session, finish, input_schema, output_schema, success};
use crate::wire::StatusWire;

const DESCRIPTION: &str = "\
Cancel a Claude Code job: stops its container (Claude's unfinished work in the workspace stays) \
and marks it cancelled. Returns the job's status afterwards. Safe to repeat: cancelling a job \
that already ended changes nothing and returns its final status. The session stays usable: \
start a new job in it with claude_code_start.";

#[tool_router(router = cancel_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_cancel",
        description = DESCRIPTION,
        input_schema = input_schema::<CancelParams>(),
        output_schema = output_schema::<StatusWire>(),
        annotations(
            title = "Cancel a Claude Code job",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn claude_code_cancel(&self, Parameters(p): Parameters<CancelParams>) -> CallToolResult {
        let job_id = p.job_id;
        let session_id = p.session_id;
        finish(
            self.blocking(move |e| {
                // Check the session before touching anything.
                let before = e.status(&job_id)?;
                Ok(match check_session(&before, session_id.as_deref()) {
                    Ok(()) => Ok((before.record.state, e.cancel(&job_id)?)),
                    Err(mismatch) => Err(mismatch),
                })
            })
            .await
            .and_then(|r| r)
            .map(|(was, s)| {
                let w = StatusWire::from(&s);
                let summary = if was.is_final() {
                    format!(
                        "Job {} had already ended ({}); nothing changed.",
                        w.job_id, w.status
                    )
                } else {
                    format!(
                        "Job {} is {}: its container is being stopped.",
                        w.job_id, w.status
                    )
                };
                success(&w, summary, None)
            }),
        )
    }
}
