//! `claude_code_cleanup`: remove idle sessions.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::params::CleanupParams;
use super::{CreelServer, finish, input_schema, output_schema, success};
use crate::wire::CleanupWire;

const DESCRIPTION: &str = "\
Remove sessions idle for longer than idle_seconds (default: the server's session_idle_timeout): their containers, job \
records, outputs and Claude conversation state (they cannot be continued afterwards). Sessions \
with a pending or running job are never removed (listed in skippedActive). Workspaces are kept \
unless delete_workspaces is true, and even then only workspaces creel created itself are \
deleted. The server also runs this cleanup (without deleting workspaces) on its own every 10 \
minutes; call it only to free space now.";

#[tool_router(router = cleanup_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_cleanup",
        description = DESCRIPTION,
        input_schema = input_schema::<CleanupParams>(),
        output_schema = output_schema::<CleanupWire>(),
        annotations(
            title = "Remove idle Claude Code sessions",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn claude_code_cleanup(
        &self,
        Parameters(p): Parameters<CleanupParams>,
    ) -> CallToolResult {
        let delete = p.delete_workspaces.unwrap_or(false);
        let idle = p.idle_seconds;
        finish(self.blocking(move |e| {
                    let idle = match idle {
                        Some(i) => i,
                        None => e.default_idle_threshold()?,
                    };
                    e.cleanup(idle, delete)
                }).await.map(|r| {
            let w = CleanupWire::from(&r);
            let summary = format!(
                "Removed {} idle session(s), deleted {} workspace(s), kept {} session(s) with a live job.",
                w.removed_sessions.len(),
                w.deleted_workspaces.len(),
                w.skipped_active.len()
            );
            success(&w, summary, None)
        }))
    }
}
