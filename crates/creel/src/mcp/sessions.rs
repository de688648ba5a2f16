//! `claude_code_sessions`: list sessions.

use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::{CreelServer, finish, output_schema, success};
use crate::wire::{SessionWire, SessionsWire};

const DESCRIPTION: &str = "\
List Claude Code sessions, most recently active first: sessionId, createdAt, lastActivity, \
jobCount, activeJobId (a pending or running job, if any: poll it with claude_code_status), \
lastJobId and lastJobStatus (the newest job, finished or not) and the host path of its workspace. Use it to find a session to continue with claude_code_start's \
session_id, or a job whose id was lost.";

#[tool_router(router = sessions_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_sessions",
        description = DESCRIPTION,
        output_schema = output_schema::<SessionsWire>(),
        annotations(
            title = "List Claude Code sessions",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn claude_code_sessions(&self) -> CallToolResult {
        finish(self.blocking(|e| e.sessions()).await.map(|list| {
            let w = SessionsWire {
                sessions: list.iter().map(SessionWire::from).collect(),
            };
            let active = w
                .sessions
                .iter()
                .filter(|s| s.active_job_id.is_some())
                .count();
            let summary = format!(
                "{} session(s), {active} with an active job.",
                w.sessions.len()
            );
            success(&w, summary, None)
        }))
    }
}
