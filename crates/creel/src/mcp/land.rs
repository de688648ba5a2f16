//! `claude_code_diff` (read-only) and `claude_code_land`: a `repo` session's work, reviewed and
//! landed in the host's repository.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use serde::Serialize;

use super::params::{DiffParams, LandParams};
use super::{CreelServer, finish, input_schema, output_schema, success};
use crate::wire::{ChangesWire, LandWire};

const DIFF: &str = "\
Show what a session started with `repo` changed: the patch from the session's start to its \
branch (creel/<session>), or with job_id only that job's changes; stat=true gives a summary. \
Reads creel's copy of the branch; the host's repository is not touched. Every job of such a \
session ends with its changes recorded as a commit (claude_code_status shows `changes`).";

const LAND: &str = "\
Land a `repo` session's work in the host's repository. how=merge merges (or fast-forwards) the \
session branch into `into` (default: the checked-out branch); how=apply writes the changes as \
uncommitted edits in the work tree; how=branch fetches the branch as creel/<session> for a \
person to review. All or nothing: on a conflict nothing is changed and the files are listed. \
Ask the person whose repository it is before merging or applying.";

/// `claude_code_diff`'s result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiffWire {
    /// The patch, or the summary with stat=true.
    pub patch: String,
    /// Whether the patch was cut at 64 MiB.
    pub truncated: bool,
    /// What changed, counted.
    pub changes: ChangesWire,
}

#[tool_router(router = land_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_diff",
        description = DIFF,
        input_schema = input_schema::<DiffParams>(),
        output_schema = output_schema::<DiffWire>(),
        annotations(
            title = "Show a Claude Code session's changes",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn claude_code_diff(&self, Parameters(p): Parameters<DiffParams>) -> CallToolResult {
        let req = p.request();
        finish(self.blocking(move |e| e.diff(&req)).await.map(|d| {
            let w = DiffWire {
                patch: d.text,
                truncated: d.truncated,
                changes: ChangesWire::from(&d.changes),
            };
            let summary = format!(
                "{} files changed, +{} -{}{}",
                w.changes.files,
                w.changes.insertions,
                w.changes.deletions,
                if w.truncated {
                    " (patch cut at 64 MiB)"
                } else {
                    ""
                }
            );
            let body = w.patch.clone();
            success(&w, summary, Some(body))
        }))
    }

    #[tool(
        name = "claude_code_land",
        description = LAND,
        input_schema = input_schema::<LandParams>(),
        output_schema = output_schema::<LandWire>(),
        annotations(
            title = "Land a Claude Code session's work in the repository",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn claude_code_land(&self, Parameters(p): Parameters<LandParams>) -> CallToolResult {
        let req = p.request();
        finish(self.blocking(move |e| e.land(&req)).await.map(|r| {
            let w = LandWire::from(&r);
            let summary = if w.nothing_to_do {
                format!("Nothing to {}: already landed or no changes.", w.how)
            } else {
                match w.how.as_str() {
                    "apply" => format!(
                        "Applied {} files to {} as uncommitted edits.",
                        w.files.len(),
                        w.repo
                    ),
                    "merge" => format!(
                        "Merged into {} in {} ({}).",
                        w.branch.as_deref().unwrap_or("?"),
                        w.repo,
                        if w.fast_forward {
                            "fast-forward"
                        } else {
                            "merge commit"
                        }
                    ),
                    _ => format!(
                        "Fetched as branch {} in {}.",
                        w.branch.as_deref().unwrap_or("?"),
                        w.repo
                    ),
                }
            };
            success(&w, summary, None)
        }))
    }
}
