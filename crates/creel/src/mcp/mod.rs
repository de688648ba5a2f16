//! `creel mcp`: the engine's verbs as Model Context Protocol tools, over stdio or streamable
//! HTTP, with the official Rust SDK (`rmcp`).
//!
//! One file per tool (`start.rs` … `sessions.rs`), each with its own `#[tool_router]`; they are
//! added together into the one router [`CreelServer`] serves. Every tool calls the blocking
//! [`Engine`] on tokio's blocking pool and answers with structured content (the
//! [`crate::wire`] types, the same JSON `--json` prints) plus a short text. Engine errors become
//! tool errors (`isError: true`) carrying the message and hint, never protocol errors.
//!
//! Jobs outlive the server: stopping it leaves them running under their monitors, and the next
//! server (or CLI) sees them.

mod cancel;
mod cleanup;
mod http;
mod land;
mod output;
mod params;
mod reply;
mod resources;
mod sessions;
mod start;
mod status;

pub(crate) use http::owner_only;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use creel_engine::Engine;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool_handler};
use serde::Serialize;

/// How often the server runs the automatic cleanup of idle sessions.
const AUTO_CLEANUP_EVERY: Duration = Duration::from_secs(10 * 60);

/// What a connecting client is told about this server.
const INSTRUCTIONS: &str = "\
creel runs Claude Code as background jobs, each in its own hardened container with a persistent \
workspace. Start a job with claude_code_start (it returns at once with a jobId and a sessionId), \
then poll claude_code_status every 10-30 seconds until status is completed, failed or cancelled; \
read what Claude did with claude_code_output (format \"text\" for a readable transcript), paging \
with offset = nextOffset while hasMore is true. Pass the same session_id to claude_code_start to \
continue the conversation in the same workspace; one job runs per session at a time. Jobs keep \
running if this server stops.";

/// Options of `creel mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Serve streamable HTTP on this address instead of stdio (e.g. 127.0.0.1:8931)
    ///
    /// The MCP endpoint is `http://ADDR/mcp`. Without a token only a loopback address is
    /// accepted, and only processes of the user running creel may connect (other users of the
    /// machine share loopback). With a token every client must send it.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// A file holding the bearer token HTTP clients must send (or set CREEL_MCP_TOKEN)
    ///
    /// Required when --http is not loopback. Clients send it as `Authorization: Bearer TOKEN`;
    /// requests without it get 401. It is never taken as an argument: every user of the
    /// machine can read a process's arguments.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
    /// No longer accepted: use CREEL_MCP_TOKEN or --token-file
    #[arg(long, hide = true, value_name = "TOKEN")]
    pub token: Option<String>,
    #[command(flatten)]
    pub engine: crate::choice::EngineChoice,
}

impl McpArgs {
    /// The token: from --token-file, else `CREEL_MCP_TOKEN`; never from argv.
    fn token(&self) -> anyhow::Result<Option<String>> {
        if self.token.is_some() {
            return Err(anyhow::Error::new(creel_engine::Error::InvalidRequest(
                "--token is not accepted: every user of the machine can read a process's arguments; \
                 pass the token in CREEL_MCP_TOKEN or in a file named by --token-file"
                    .into(),
            )));
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(anyhow::Error::new(creel_engine::Error::InvalidRequest(
                    format!("the token file {} is empty", path.display()),
                )));
            }
            return Ok(Some(token));
        }
        Ok(std::env::var("CREEL_MCP_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }
}

/// Serves MCP until standard input closes (stdio) or Ctrl-C / SIGTERM.
///
/// `engine` is the engine, or why it could not be opened (a bad config, an unusable home): the
/// server then still starts, says why on stderr, and answers every tool call with that error
/// and its hint, so that the MCP host shows the reason instead of "connection closed".
pub fn run(engine: Result<Engine, anyhow::Error>, args: McpArgs) -> anyhow::Result<()> {
    let token = args.token()?;
    if let Some(addr) = args.http {
        http::check_bind(addr, token.as_deref())?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("creel-mcp")
        .build()
        .context("cannot start the async runtime")?;
    let engine = crate::printer::serve_anyway(
        engine,
        "creel mcp",
        "every tool call reports this until it is fixed and the server restarted",
    );
    let result = runtime.block_on(async {
        let housekeeping = match &engine {
            Ok(engine) => tokio::spawn(housekeeping(engine.clone())),
            Err(_) => tokio::spawn(async {}),
        };
        let served = match args.http {
            Some(addr) => http::serve(CreelServer::new(engine.clone()), addr, token).await,
            None => serve_stdio(CreelServer::new(engine.clone())).await,
        };
        housekeeping.abort();
        served
    });
    // A blocking stdin read or an engine call may still be in flight: don't wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn serve_stdio(server: CreelServer) -> anyhow::Result<()> {
    let running = server
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("MCP initialisation over stdio failed")?;
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            quit.context("the MCP service task failed")?;
        }
        _ = crate::http_serve::shutdown_signal() => {
            tracing::info!("shutting down on signal");
            cancel.cancel();
        }
    }
    Ok(())
}

/// Automatic cleanup at start and every [`AUTO_CLEANUP_EVERY`], plus crash
/// reconciliation of unfinished jobs.
async fn housekeeping(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(AUTO_CLEANUP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let engine = engine.clone();
        let done = tokio::task::spawn_blocking(move || {
            engine.auto_cleanup();
            // Crash recovery: unfinished jobs whose monitor died get a new one.
            if let Err(e) = engine.reconcile_all() {
                tracing::warn!("reconciliation failed: {e}");
            }
        })
        .await;
        if let Err(e) = done {
            tracing::warn!("automatic cleanup panicked: {e}");
        }
    }
}

/// The MCP server: the engine (or why there is none) plus the tool router.
#[derive(Clone)]
pub struct CreelServer {
    engine: Result<Arc<Engine>, Arc<String>>,
    tool_router: ToolRouter<CreelServer>,
    /// This connection's `resources/subscribe` watchers, by URI.
    subscriptions: Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>,
}

impl CreelServer {
    /// A server over `engine` with all ten tools.
    pub fn new(engine: Result<Arc<Engine>, Arc<String>>) -> CreelServer {
        CreelServer {
            engine,
            tool_router: Self::start_router()
                + Self::status_router()
                + Self::output_router()
                + Self::cancel_router()
                + Self::cleanup_router()
                + Self::sessions_router()
                + Self::land_router()
                + Self::reply_router(),
            subscriptions: Default::default(),
        }
    }

    /// The same server for another connection (its own subscriptions).
    pub fn for_new_connection(&self) -> CreelServer {
        CreelServer {
            subscriptions: Default::default(),
            ..self.clone()
        }
    }

    /// Runs a blocking engine call on tokio's blocking pool. A panic becomes a tool error.
    async fn blocking<T, F>(&self, f: F) -> Result<T, ToolError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> creel_engine::Result<T> + Send + 'static,
    {
        let engine = match &self.engine {
            Ok(e) => e.clone(),
            Err(why) => {
                return Err(ToolError {
                    message: format!("creel cannot run jobs: {why}"),
                    hint: Some(
                        "this needs the operator of the MCP server's host: fix creel's configuration (CREEL_CONFIG and the CREEL_* variables in the server's environment), then restart the server".into(),
                    ),
                });
            }
        };
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(r) => r.map_err(ToolError::from),
            Err(e) => Err(ToolError::message(format!(
                "internal error: the engine call failed: {e}"
            ))),
        }
    }

    /// The job's status, after checking that it belongs to `session_id` when one is given.
    async fn job_in_session(
        &self,
        job_id: String,
        session_id: Option<String>,
    ) -> Result<creel_engine::JobStatus, ToolError> {
        let status = self.blocking(move |e| e.status(&job_id)).await?;
        check_session(&status, session_id.as_deref())?;
        Ok(status)
    }
}

pub(crate) use crate::changes::JobChanges;

impl JobChanges {
    /// A watch on `job_ids`, taken before their first read.
    async fn of(server: &CreelServer, job_ids: Vec<String>) -> Result<JobChanges, ToolError> {
        let watch = server
            .blocking(move |e| {
                let ids: Vec<&str> = job_ids.iter().map(String::as_str).collect();
                e.watch_jobs(&ids)
            })
            .await?;
        Ok(JobChanges::from_watch(watch))
    }
}

/// Fails when `expected` is given and is not the job's session.
fn check_session(
    status: &creel_engine::JobStatus,
    expected: Option<&str>,
) -> Result<(), ToolError> {
    match expected {
        Some(s) if s != status.record.session_id => Err(ToolError {
            message: format!(
                "job `{}` does not belong to session `{s}`",
                status.record.id
            ),
            hint: Some(format!(
                "it belongs to session `{}`; omit session_id or pass that one",
                status.record.session_id
            )),
        }),
        _ => Ok(()),
    }
}

/// A tool failure: becomes an `isError` result with `error: …` and `hint: …` lines.
#[derive(Debug)]
pub(crate) struct ToolError {
    message: String,
    hint: Option<String>,
}

impl ToolError {
    fn message(message: impl Into<String>) -> ToolError {
        ToolError {
            message: message.into(),
            hint: None,
        }
    }

    fn into_result(self) -> CallToolResult {
        let mut text = format!("error: {}", self.message);
        if let Some(h) = &self.hint {
            text.push_str("\nhint: ");
            text.push_str(h);
        }
        CallToolResult::error(vec![ContentBlock::text(text)])
    }
}

impl From<creel_engine::Error> for ToolError {
    fn from(e: creel_engine::Error) -> ToolError {
        let hint = e.remedy().map(|r| phrase(&r));
        let message = crate::printer::one_line(&e);
        ToolError { message, hint }
    }
}

/// The engine's remedies in a model's words: the tools to call, and what only the operator of
/// the server's host can do.
fn phrase(r: &creel_engine::Remedy) -> String {
    use creel_engine::Remedy;
    let operator = |what: &str| format!("this needs the operator of the MCP server's host: {what}");
    match r {
        Remedy::SessionIdFormat => "session ids are 1-128 characters of letters, digits, `.`, `_` and `-`, starting with a letter or digit".into(),
        Remedy::FindJob => "claude_code_sessions lists sessions with their active and last job ids (activeJobId, lastJobId)".into(),
        Remedy::RaiseBudget { session } => format!(
            "ask the person who set it whether to spend more; claude_code_start with session_id `{session}` and a higher max_cost_usd (or max_turns, max_wall_seconds) raises it and resumes the conversation"
        ),
        Remedy::WaitOrCancel { job } => format!(
            "poll claude_code_status with job_id `{job}` until it ends, or stop it with claude_code_cancel"
        ),
        Remedy::BuildImage { image, docker: true } => operator(&format!(
            "build the sandbox image with `creel image build && podman save {image} | docker load`"
        )),
        Remedy::BuildImage { docker: false, .. } => {
            operator("build the sandbox image with `creel image build`")
        }
        Remedy::ProvideImage { image } => {
            operator(&format!("pull or build the configured image `{image}`"))
        }
        Remedy::Login => operator(
            "set ANTHROPIC_API_KEY (or api_key_file in creel's config) in the server's environment, or run `claude login` there",
        ),
        Remedy::InstallRuntime { .. } => {
            operator("install Podman or Docker where the server runs; `creel doctor` checks the host")
        }
        Remedy::UseRunc => operator("set `oci_runtime = \"runc\"` in creel's config (`creel doctor` explains)"),
        Remedy::RaiseRlimits | Remedy::CheckHost => {
            operator("`creel doctor` checks the container runtime on the server's host")
        }
        Remedy::InstallTool { tool } => operator(&format!("install `{tool}`")),
        Remedy::BuildOfflineAsRoot | Remedy::BuildOffline | Remedy::DebianMirror | Remedy::NpmRegistry => {
            operator("build the sandbox image with `creel image build --offline`")
        }
    }
}

/// A successful result: `value` as structured content, `summary` as the first text block and
/// `body` (by default the JSON itself, for clients that ignore structured content) after it.
fn success<T: Serialize>(value: &T, summary: String, body: Option<String>) -> CallToolResult {
    let json = match serde_json::to_value(value) {
        Ok(v) => v,
        Err(e) => {
            return ToolError::message(format!("internal error: cannot serialise the result: {e}"))
                .into_result();
        }
    };
    let body = body.unwrap_or_else(|| json.to_string());
    let mut result =
        CallToolResult::success(vec![ContentBlock::text(summary), ContentBlock::text(body)]);
    result.structured_content = Some(json);
    result
}

/// A tool's output schema: schemars' schema for `T` without schemars' own `format` values
/// (`uint64`, `double`, …), which JSON Schema validators such as Ajv in the TypeScript SDK
/// warn about on every call.
pub(crate) fn output_schema<T: schemars::JsonSchema + 'static>() -> Arc<rmcp::model::JsonObject> {
    let mut schema = rmcp::handler::server::tool::schema_for_output::<T>()
        .as_ref()
        .clone();
    strip_formats(&mut schema);
    Arc::new(schema)
}

/// A tool's input schema, likewise.
pub(crate) fn input_schema<T: schemars::JsonSchema + 'static>() -> Arc<rmcp::model::JsonObject> {
    let mut schema = rmcp::handler::server::tool::schema_for_input::<T>()
        .unwrap_or_else(|e| {
            panic!(
                "invalid input schema for {}: {e}",
                std::any::type_name::<T>()
            )
        })
        .as_ref()
        .clone();
    strip_formats(&mut schema);
    drop_null_types(&mut schema);
    Arc::new(schema)
}

/// Gives each optional argument its one real type: schemars writes `Option<T>` as
/// `"type": [T, "null"]` or as `anyOf` with `{"type": "null"}`, which some clients cannot turn
/// into a form or a tool definition (MCP Inspector warns about it). Leaving the argument out
/// already says "none"; `null` is still accepted.
fn drop_null_types(schema: &mut rmcp::model::JsonObject) {
    let Some(serde_json::Value::Object(properties)) = schema.get_mut("properties") else {
        return;
    };
    for property in properties.values_mut() {
        let serde_json::Value::Object(p) = property else {
            continue;
        };
        if p.get("default").is_some_and(|d| d.is_null()) {
            p.remove("default");
        }
        if let Some(serde_json::Value::Array(types)) = p.get("type") {
            let rest: Vec<_> = types.iter().filter(|t| *t != "null").cloned().collect();
            if let [one] = rest.as_slice() {
                p.insert("type".into(), one.clone());
            }
        }
        for key in ["anyOf", "oneOf"] {
            let Some(serde_json::Value::Array(options)) = p.get(key) else {
                continue;
            };
            let rest: Vec<_> = options
                .iter()
                .filter(|o| o.get("type").is_none_or(|t| t != "null"))
                .cloned()
                .collect();
            if let [serde_json::Value::Object(one)] = rest.as_slice() {
                p.remove(key);
                for (k, v) in one {
                    p.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
}

/// Removes `format` keywords whose value JSON Schema does not define.
fn strip_formats(object: &mut rmcp::model::JsonObject) {
    const STANDARD: &[&str] = &[
        "date-time",
        "date",
        "time",
        "duration",
        "email",
        "idn-email",
        "hostname",
        "idn-hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "iri",
        "iri-reference",
        "uuid",
        "uri-template",
        "json-pointer",
        "relative-json-pointer",
        "regex",
    ];
    if object
        .get("format")
        .and_then(|f| f.as_str())
        .is_some_and(|f| !STANDARD.contains(&f))
    {
        object.remove("format");
    }
    for value in object.values_mut() {
        strip_value(value);
    }
}

fn strip_value(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(o) => strip_formats(o),
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_value),
        _ => {}
    }
}

/// Either arm as a tool result.
fn finish(r: Result<CallToolResult, ToolError>) -> CallToolResult {
    r.unwrap_or_else(ToolError::into_result)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CreelServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(
            Implementation::new("creel", env!("CARGO_PKG_VERSION"))
                .with_title("creel: Claude Code jobs in containers"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(self, request).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        CreelServer::subscribe(self, request.uri, context.peer)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        CreelServer::unsubscribe(self, &request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        CreelServer::listen(self, context).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_carry_only_standard_formats() {
        let s =
            serde_json::Value::Object(output_schema::<crate::wire::StatusWire>().as_ref().clone());
        let text = s.to_string();
        assert!(
            !text.contains("uint64") && !text.contains("double"),
            "{text}"
        );
        assert!(text.contains("\"outputSize\""));
        let s = serde_json::Value::Object(input_schema::<params::OutputParams>().as_ref().clone());
        assert!(!s.to_string().contains("uint64"), "{s}");
        assert_eq!(s["required"], serde_json::json!(["job_id"]));
    }

    #[test]
    fn remedies_name_tools_for_what_a_model_can_do_and_the_operator_for_the_rest() {
        use creel_engine::Remedy;
        for (r, tool) in [
            (Remedy::FindJob, "claude_code_sessions"),
            (
                Remedy::WaitOrCancel { job: "j".into() },
                "claude_code_cancel",
            ),
        ] {
            let text = phrase(&r);
            assert!(text.contains(tool) && !text.contains("creel "), "{text}");
        }
        let text = phrase(&Remedy::BuildImage {
            image: "i".into(),
            docker: false,
        });
        assert!(text.starts_with("this needs the operator"), "{text}");
    }

    #[test]
    fn input_schemas_give_each_argument_one_type() {
        let all = [
            input_schema::<params::StartParams>(),
            input_schema::<params::StatusParams>(),
            input_schema::<params::OutputParams>(),
            input_schema::<params::CancelParams>(),
            input_schema::<params::CleanupParams>(),
        ];
        for schema in all {
            let s = serde_json::Value::Object(schema.as_ref().clone());
            assert!(!s.to_string().contains("null"), "{s}");
            for (name, p) in s["properties"].as_object().unwrap() {
                assert!(
                    p["type"].is_string() || p["$ref"].is_string(),
                    "{name}: {p}"
                );
            }
        }
        let s = serde_json::Value::Object(input_schema::<params::StatusParams>().as_ref().clone());
        assert_eq!(s["properties"]["wait_seconds"]["type"], "number");
    }
}
