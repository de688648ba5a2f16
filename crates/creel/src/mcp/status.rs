//! `claude_code_status`: a job's state, error, activity and the tail of its output.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{CreelServer, finish, input_schema, output_schema, success};
use crate::wire::StatusWire;

const DESCRIPTION: &str = "\
Get a Claude Code job's status: pending or running (keep polling, every 10-30 seconds), or \
completed, failed (see error.kind and error.message) or cancelled (final: stop polling). Also \
reports activityState (active: writing output; processing: thinking or running a tool; idle), \
elapsedSeconds, outputSize, tailOutput (the last few hundred characters of the transcript), \
resource metrics, and when finished Claude's final `result` text, numTurns and costUsd. Cheap: it \
only reads stored state. For the full transcript use claude_code_output.";

/// `claude_code_status` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusParams {
    /// The job id claude_code_start returned.
    pub job_id: String,
    /// If given, the job must belong to this session (a safety check).
    pub session_id: Option<String>,
}

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
    async fn claude_code_status(&self, Parameters(p): Parameters<StatusParams>) -> CallToolResult {
        finish(self.job_in_session(p.job_id, p.session_id).await.map(|s| {
            let w = StatusWire::from(&s);
            success(&w, summary(&w, s.record.state.is_final()), None)
        }))
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
    } else {
        out.push_str(&format!(
            ", {}. Still working: poll again in 10-30 s.",
            w.activity_state
        ));
    }
    out
}
