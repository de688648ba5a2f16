//! `claude_code_start`: start a job in the background.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::Peer;
use rmcp::{RoleServer, tool, tool_router};

use super::params::StartParams;
use super::{CreelServer, finish, input_schema, output_schema, success};
use crate::wire::StartWire;

const DESCRIPTION: &str = "\
Start a Claude Code job: Claude works on the prompt autonomously (it can read and write files and \
run commands) inside an isolated container, with the session's workspace as its working \
directory. Returns at once with {jobId, sessionId, status: \"pending\"}; the job runs in the \
background and keeps running even if this conversation or server ends. Then poll \
claude_code_status with the jobId (every 10-30 seconds; jobs take seconds to many minutes) until \
status is completed, failed or cancelled, and read the work with claude_code_output. \
Without session_id a new session with an empty workspace is created; pass a previous sessionId to \
continue that conversation (Claude remembers it) in the same workspace. A session runs one job \
at a time: starting another while one is pending or running fails and names the active job. Claude may ask you a question while it works (status activityState needs_input; answer with claude_code_reply), and with permissions=ask it waits for claude_code_approve before tools that need permission; this server also sends a notification for each.";

#[tool_router(router = start_router, vis = "pub(super)")]
impl CreelServer {
    #[tool(
        name = "claude_code_start",
        description = DESCRIPTION,
        input_schema = input_schema::<StartParams>(),
        output_schema = output_schema::<StartWire>(),
        annotations(
            title = "Start a Claude Code job",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn claude_code_start(
        &self,
        Parameters(p): Parameters<StartParams>,
        client: Peer<RoleServer>,
    ) -> CallToolResult {
        let req = p.request();
        let req = match req {
            Ok(req) => req,
            Err(e) => return super::ToolError::from(e).into_result(),
        };
        let started = self.blocking(move |e| e.start(req)).await;
        if let Ok(r) = &started {
            super::reply::announce_requests(self, r.job_id.clone(), client);
        }
        finish(started.map(|r| {
            let w = StartWire::from(&r);
            let summary = format!(
                "Started job {} in session {} ({}), working in {} on the server's host. It runs \
                 in the background: poll claude_code_status with job_id \"{}\" until it ends, \
                 then read claude_code_output.",
                w.job_id, w.session_id, w.status, w.workspace, w.job_id
            );
            success(&w, summary, None)
        }))
    }
}
