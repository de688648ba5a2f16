//! `claude_code_output`: a page of a job's output, raw stream-json or a rendered transcript.

use creel_engine::{OutputFormat, OutputRequest};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{CreelServer, check_session, finish, input_schema, output_schema, success};
use crate::wire::OutputWire;

/// Bytes per page unless `limit` says otherwise.
pub(super) const DEFAULT_LIMIT: u64 = 64 * 1024;

const DESCRIPTION: &str = "\
Read a page of a Claude Code job's output (works while it runs and after it ends). \
format \"text\" gives a readable transcript (Claude's messages, tool calls summarised, results \
shortened, the final result): use it to learn what Claude did. format \"raw\" (the default) gives \
Claude's stream-json events, one JSON object per line. Offsets are byte offsets into the chosen \
format. Page through with offset = the previous nextOffset while hasMore is true; a running job \
may add more later (hasMore false only means nothing more yet). To see just the end, use \
claude_code_status's tailOutput, or an offset near totalSize.";

/// Output formats.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Claude's stream-json, byte for byte.
    #[default]
    Raw,
    /// A rendered transcript for reading.
    Text,
}

/// `claude_code_output` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OutputParams {
    /// The job id claude_code_start returned.
    pub job_id: String,
    /// If given, the job must belong to this session (a safety check).
    pub session_id: Option<String>,
    /// Byte offset to start at: 0 (default) or a previous page's nextOffset.
    pub offset: Option<u64>,
    /// Maximum bytes in this page (default 65536).
    pub limit: Option<u64>,
    /// "raw" (default): Claude's stream-json; "text": a readable transcript.
    pub format: Option<Format>,
}

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
        let req = OutputRequest {
            offset: p.offset.unwrap_or(0),
            limit: p.limit.unwrap_or(DEFAULT_LIMIT),
            format: match p.format.unwrap_or_default() {
                Format::Raw => OutputFormat::Raw,
                Format::Text => OutputFormat::Text,
            },
        };
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
