//! `claude_code_output`: a page of a job's output, raw stream-json or a rendered transcript.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::params::OutputParams;
use super::{CreelServer, check_session, finish, input_schema, output_schema, success};
use crate::wire::OutputWire;

const DESCRIPTION: &str = "\
Read a page of a Claude Code job's output (works while it runs and after it ends). \
format \"text\" gives a readable transcript (Claude's messages, tool calls summarised, results \
shortened, the final result): use it to learn what Claude did. format \"raw\" (the default) gives \
Claude's stream-json events, one JSON object per line. Offsets are byte offsets into the chosen \
format. Page through with offset = the previous nextOffset while hasMore is true; a running job \
may add more later (hasMore false only means nothing more yet). To see just the end, use \
claude_code_status's tailOutput, or an offset near totalSize.";

#[tool_router(router = output_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_output",
        description = DESCRIPTION,
        input_schema = input_schema::<OutputParams>(),
        output_schema = output_schema::<OutputWire>(),
        annotations(
            title = "Read a Claude Code job's output",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn claude_code_output(&self, Parameters(p): Parameters<OutputParams>) -> CallToolResult {
        let req = p.request();
        let job_id = p.job_id;
        let session_id = p.session_id;
        finish(
            self.blocking(move |e| {
                if session_id.is_some() {
                    let status = e.status(&job_id)?;
                    if let Err(mismatch) = check_session(&status, session_id.as_deref()) {
                        return Ok(Err(mismatch));
                    }
                }
                Ok(Ok(e.output(&job_id, req)?))
            })
            .await
            .and_then(|r| r)
            .map(|chunk| {
                let w = OutputWire::from(&chunk);
                let mut summary = format!(
                    "Job {} ({}): bytes {}..{} of {}.",
                    w.job_id, w.status, w.offset, w.next_offset, w.total_size
                );
                if w.has_more {
                    summary.push_str(&format!(" More: call again with offset {}.", w.next_offset));
                } else if matches!(w.status.as_str(), "pending" | "running") {
                    summary.push_str(" That is all so far; the job is still running.");
                } else {
                    summary.push_str(" That is the end.");
                }
                let body = w.content.clone();
                success(&w, summary, Some(body))
            }),
        )
    }
}
