//! `creel acp`: the engine as an Agent Client Protocol agent over stdio, built on the official
//! Rust SDK (`agent-client-protocol`, protocol v1).
//!
//! An ACP session is a creel session (same id); each `session/prompt` is a creel job in it, so
//! the conversation resumes across prompts and `creel status`/`output` see every turn.
//! `prompt.rs` runs one turn: it starts (or answers) the job, follows its output into
//! `session/update`s (`translate.rs`), turns permission requests into
//! `session/request_permission`, and maps how the job ended to a stop reason.
//!
//! Jobs outlive the connection: a client that goes away leaves its job running under its
//! monitor, findable with `creel jobs` and reopened with `session/load`.

mod prompt;
mod translate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_client_protocol::v1::schema::{
    AgentCapabilities, AuthMethod, AuthMethodAgent, AuthenticateRequest, AuthenticateResponse,
    CancelNotification, ContentBlock, EmbeddedResourceResource, Implementation, InitializeRequest,
    InitializeResponse, ListSessionsRequest, ListSessionsResponse, LoadSessionRequest,
    LoadSessionResponse, NewSessionRequest, NewSessionResponse, PromptCapabilities, PromptRequest,
    SessionCapabilities, SessionConfigOption, SessionConfigOptionCategory,
    SessionConfigSelectOption, SessionInfo, SessionListCapabilities, SessionMode, SessionModeState,
    SessionNotification, SessionUpdate, SetSessionConfigOptionRequest,
    SetSessionConfigOptionResponse, SetSessionModeRequest, SetSessionModeResponse,
};
use agent_client_protocol::v1::{ConnectionTo, Responder};
use agent_client_protocol::{Agent, Client, Stdio};
use anyhow::Context as _;
use creel_engine::Engine;
use creel_engine::config::Permissions;

/// Options of `creel acp`.
#[derive(Debug, clap::Args)]
pub struct AcpArgs {
    #[command(flatten)]
    pub engine: crate::choice::EngineChoice,
}

/// The models offered in the session's model option (Claude Code's aliases), besides the
/// config's own and "default".
const MODELS: &[(&str, &str)] = &[("sonnet", "Sonnet"), ("opus", "Opus"), ("haiku", "Haiku")];
/// The config option that chooses the model.
const MODEL_OPTION: &str = "model";

/// Serves ACP on stdin/stdout until the client closes it.
pub fn run(engine: anyhow::Result<Engine>, _args: AcpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("creel-acp")
        .build()
        .context("cannot start the async runtime")?;
    let engine = crate::printer::serve_anyway(
        engine,
        "creel acp",
        "every session reports this until it is fixed and the agent restarted",
    );
    let acp = Arc::new(Acp {
        engine,
        sessions: Mutex::new(HashMap::new()),
    });
    let result = runtime.block_on(serve(acp));
    // An engine call may still be in flight on the blocking pool: don't wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result.map_err(|e| anyhow::anyhow!("ACP connection failed: {e}"))
}

/// What this process knows about a session it serves.
struct Session {
    /// The client's working directory (the workspace of a session not yet in the store).
    cwd: PathBuf,
    mode: Permissions,
    /// `None`: the config's model (or Claude Code's default).
    model: Option<String>,
    /// The job of the prompt in progress (`Some("")` while it is being started or while
    /// `session/load` replays the session).
    turn: Option<String>,
    /// `session/cancel` came while the turn had no job yet: the turn cancels it once it has.
    cancel_requested: bool,
    /// A job whose turn ended on Claude's question: the next prompt answers it.
    asked: Option<prompt::Asked>,
    /// A job `session/load` found running (left by a client that went away): what
    /// `session/cancel` stops when no turn runs.
    detached: Option<String>,
}

impl Session {
    fn new(cwd: PathBuf, mode: Permissions) -> Session {
        Session {
            cwd,
            mode,
            model: None,
            turn: None,
            cancel_requested: false,
            asked: None,
            detached: None,
        }
    }
}

/// The most sessions one connection keeps; beyond, idle ones (no turn, no waiting question)
/// are forgotten (they stay in creel's store; `session/load` brings one back).
const SESSIONS_KEPT: usize = 256;

pub(crate) struct Acp {
    engine: Result<Arc<Engine>, Arc<String>>,
    sessions: Mutex<HashMap<String, Session>>,
}

type AcpError = agent_client_protocol::Error;

/// JSON-RPC's codes for the errors creel answers with.
const INVALID_REQUEST: i32 = -32600;
const INVALID_PARAMS: i32 = -32602;
const INTERNAL_ERROR: i32 = -32603;

/// An error whose message says what happened (clients show the message; `data` is often
/// hidden).
pub(crate) fn acp_error(code: i32, message: impl Into<String>) -> AcpError {
    AcpError::new(code, message)
}

impl Acp {
    fn engine(&self) -> Result<Arc<Engine>, AcpError> {
        match &self.engine {
            Ok(e) => Ok(e.clone()),
            Err(why) => Err(acp_error(
                INTERNAL_ERROR,
                format!(
                    "creel cannot run jobs: {why} (fix creel's configuration, then restart the agent)"
                ),
            )),
        }
    }

    /// Runs an engine call on tokio's blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, AcpError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> creel_engine::Result<T> + Send + 'static,
    {
        let engine = self.engine()?;
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(r) => r.map_err(engine_error),
            Err(e) => Err(acp_error(
                INTERNAL_ERROR,
                format!("the engine call failed: {e}"),
            )),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a session, forgetting idle ones past [`SESSIONS_KEPT`].
    fn remember(&self, id: String, session: Session) {
        let mut sessions = self.sessions();
        if sessions.len() >= SESSIONS_KEPT {
            let idle: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.turn.is_none() && s.asked.is_none())
                .map(|(k, _)| k.clone())
                .take(sessions.len() + 1 - SESSIONS_KEPT)
                .collect();
            for k in idle {
                sessions.remove(&k);
            }
        }
        sessions.insert(id, session);
    }

    fn default_mode(&self) -> Permissions {
        self.engine
            .as_ref()
            .map(|e| e.config().permissions)
            .unwrap_or_default()
    }

    fn config_model(&self) -> Option<String> {
        self.engine
            .as_ref()
            .ok()
            .and_then(|e| e.config().model.clone())
    }

    /// The session's model option, with `current` selected.
    fn config_options(&self, current: Option<&str>) -> Vec<SessionConfigOption> {
        let mut options = vec![SessionConfigSelectOption::new(
            "default",
            match self.config_model() {
                Some(m) => format!("Default ({m})"),
                None => "Default".to_string(),
            },
        )];
        for (id, name) in MODELS {
            options.push(SessionConfigSelectOption::new(*id, *name));
        }
        if let Some(c) = current.filter(|c| !MODELS.iter().any(|(id, _)| id == c)) {
            options.push(SessionConfigSelectOption::new(c.to_string(), c.to_string()));
        }
        vec![
            SessionConfigOption::select(
                MODEL_OPTION,
                "Model",
                current.unwrap_or("default").to_string(),
                options,
            )
            .category(SessionConfigOptionCategory::Model)
            .description("The model Claude Code uses for this session's next prompts".to_string()),
        ]
    }
}

/// The two permission modes: creel's `permissions` setting, per session.
fn modes(current: Permissions) -> SessionModeState {
    SessionModeState::new(
        current.as_str(),
        vec![
            SessionMode::new(Permissions::Ask.as_str(), "Ask before tools").description(
                "Claude asks you before each tool that needs permission (creel's permissions = \"ask\")"
                    .to_string(),
            ),
            SessionMode::new(Permissions::Skip.as_str(), "Sandboxed, no prompts").description(
                "Claude uses every tool without asking; the container is the wall (creel's permissions = \"skip\")"
                    .to_string(),
            ),
        ],
    )
}

/// An engine error as an ACP error: the message, with the remedy in words.
fn engine_error(e: creel_engine::Error) -> AcpError {
    let hint = e.remedy().map(|r| crate::cli::remedy::phrase(&r));
    let mut message = crate::printer::one_line(&e);
    if let Some(h) = hint {
        message.push_str(&format!(" (hint: {h})"));
    }
    let code = match e.category() {
        creel_engine::ErrorCategory::Invalid => INVALID_PARAMS,
        creel_engine::ErrorCategory::Environment => INTERNAL_ERROR,
    };
    acp_error(code, message)
}

fn invalid(message: impl Into<String>) -> AcpError {
    acp_error(INVALID_PARAMS, message)
}

fn unknown_session(id: &str) -> AcpError {
    // ACP's "resource not found", with the session id as its data.
    AcpError::new(
        -32002,
        format!("unknown session `{id}` (session/list shows the sessions creel has)"),
    )
    .data(serde_json::json!({ "sessionId": id }))
}

/// A prompt's content as the text of a job. Files under `cwd` are named by their path inside
/// the container; embedded text resources are included whole.
fn prompt_text(blocks: &[ContentBlock], cwd: &std::path::Path) -> Result<String, AcpError> {
    let container_path = |uri: &str| -> String {
        let Some(path) = url::Url::parse(uri)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
        else {
            return uri.to_string();
        };
        match path.strip_prefix(cwd) {
            Ok(rest) if rest.as_os_str().is_empty() => "/workspace".to_string(),
            Ok(rest) => format!("/workspace/{}", rest.display()),
            Err(_) => path.display().to_string(),
        }
    };
    let mut parts = Vec::new();
    for b in blocks {
        match b {
            ContentBlock::Text(t) => parts.push(t.text.clone()),
            ContentBlock::ResourceLink(l) => parts.push(format!("@{}", container_path(&l.uri))),
            ContentBlock::Resource(r) => match &r.resource {
                EmbeddedResourceResource::TextResourceContents(t) => parts.push(format!(
                    "<context ref=\"{}\">\n{}\n</context>",
                    container_path(&t.uri),
                    t.text
                )),
                _ => {
                    return Err(invalid(
                        "creel takes text: binary resources are not supported",
                    ));
                }
            },
            _ => {
                return Err(invalid(
                    "creel takes text and text resources: images and audio are not supported",
                ));
            }
        }
    }
    let text = parts.join("\n");
    if text.trim().is_empty() {
        return Err(invalid("the prompt is empty"));
    }
    Ok(text)
}

/// A new ACP session's id: a creel session id that says where it came from.
fn new_session_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("acp-{}", &id[..12])
}

fn notify(cx: &ConnectionTo<Client>, session: &str, update: SessionUpdate) -> Result<(), AcpError> {
    cx.send_notification(SessionNotification::new(session.to_string(), update))
}

async fn serve(acp: Arc<Acp>) -> Result<(), AcpError> {
    let a = (
        acp.clone(),
        acp.clone(),
        acp.clone(),
        acp.clone(),
        acp.clone(),
        acp.clone(),
        acp.clone(),
        acp.clone(),
    );
    Agent
        .v1()
        .name("creel")
        .on_receive_request(
            {
                let acp = a.0;
                async move |req: InitializeRequest,
                            responder: Responder<InitializeResponse>,
                            _cx: ConnectionTo<Client>| {
                    responder.respond(initialize(&acp, req))
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let acp = a.1;
                async move |req: AuthenticateRequest,
                            responder: Responder<AuthenticateResponse>,
                            _cx: ConnectionTo<Client>| {
                    match authenticate(&acp, &req) {
                        Ok(()) => responder.respond(AuthenticateResponse::new()),
                        Err(e) => responder.respond_with_error(e),
                    }
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let acp = a.2;
                async move |req: NewSessionRequest,
                            responder: Responder<NewSessionResponse>,
                            _cx: ConnectionTo<Client>| {
                    match new_session(&acp, req) {
                        Ok(r) => responder.respond(r),
                        Err(e) => responder.respond_with_error(e),
                    }
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let acp = a.3;
                async move |req: LoadSessionRequest,
                            responder: Responder<LoadSessionResponse>,
                            cx: ConnectionTo<Client>| {
                    let acp = acp.clone();
                    // Replaying the history reads the store: off the dispatch loop.
                    cx.clone().spawn(async move {
                        match prompt::load_session(&acp, &cx, req).await {
                            Ok(r) => responder.respond(r),
                            Err(e) => responder.respond_with_error(e),
                        }
                    })
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let acp = a.4;
                async move |req: ListSessionsRequest,
                            responder: Responder<ListSessionsResponse>,
                            cx: ConnectionTo<Client>| {
                    let acp = acp.clone();
                    cx.spawn(async move {
                        match list_sessions(&acp, req).await {
                            Ok(r) => responder.respond(r),
                            Err(e) => responder.respond_with_error(e),
                        }
                    })
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let acp = a.5;
                async move |req: SetSessionModeRequest,
                            responder: Responder<SetSessionModeResponse>,
                            _cx: ConnectionTo<Client>| {
                    let mode = match req.mode_id.0.parse::<Permissions>() {
                        Ok(m) => m,
                        Err(e) => return responder.respond_with_error(invalid(e)),
                    };
                    match acp.sessions().get_mut(&*req.session_id.0) {
                        Some(s) => {
                            s.mode = mode;
                            responder.respond(SetSessionModeResponse::new())
                        }
                        None => responder.respond_with_error(unknown_session(&req.session_id.0)),
                    }
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let acp = a.6;
                async move |req: SetSessionConfigOptionRequest,
                            responder: Responder<SetSessionConfigOptionResponse>,
                            _cx: ConnectionTo<Client>| {
                    match set_config_option(&acp, &req) {
                        Ok(options) => {
                            responder.respond(SetSessionConfigOptionResponse::new(options))
                        }
                        Err(e) => responder.respond_with_error(e),
                    }
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let acp = a.7;
                async move |req: PromptRequest,
                            responder: Responder<
                    agent_client_protocol::v1::schema::PromptResponse,
                >,
                            cx: ConnectionTo<Client>| {
                    let acp = acp.clone();
                    cx.clone().spawn(async move {
                        match prompt::prompt(&acp, &cx, req).await {
                            Ok(r) => responder.respond(r),
                            Err(e) => responder.respond_with_error(e),
                        }
                    })
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            {
                let acp = acp.clone();
                async move |n: CancelNotification, cx: ConnectionTo<Client>| {
                    let acp = acp.clone();
                    cx.spawn(async move {
                        prompt::cancel(&acp, &n.session_id.0).await;
                        Ok(())
                    })
                }
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .connect_to(Stdio::new())
        .await
}

fn initialize(acp: &Acp, _req: InitializeRequest) -> InitializeResponse {
    // The one version creel speaks; a client that wants another decides what to do.
    InitializeResponse::new(agent_client_protocol::schema::ProtocolVersion::V1)
        .agent_capabilities(
            AgentCapabilities::new()
                .load_session(true)
                .prompt_capabilities(PromptCapabilities::new().embedded_context(true))
                .session_capabilities(
                    SessionCapabilities::new().list(SessionListCapabilities::new()),
                ),
        )
        .auth_methods(auth_methods(acp))
        .agent_info(Implementation::new("creel", env!("CARGO_PKG_VERSION")))
}

/// The logins creel can use, as found on this host: an API key, or a Claude login. Neither
/// needs anything from the client; `authenticate` only checks that it is still there.
fn auth_methods(acp: &Acp) -> Vec<AuthMethod> {
    let Ok(engine) = &acp.engine else {
        return Vec::new();
    };
    match engine.login() {
        Some(creel_engine::Login::ApiKey) => vec![AuthMethod::Agent(
            AuthMethodAgent::new("api-key", "Anthropic API key").description(
                "The API key creel found on this host (ANTHROPIC_API_KEY or api_key_file)"
                    .to_string(),
            ),
        )],
        Some(creel_engine::Login::OAuth(path)) => vec![AuthMethod::Agent(
            AuthMethodAgent::new("claude-login", "Claude login").description(format!(
                "The Claude Pro/Max login found on this host ({})",
                path.display()
            )),
        )],
        None => Vec::new(),
    }
}

fn authenticate(acp: &Acp, req: &AuthenticateRequest) -> Result<(), AcpError> {
    let found = auth_methods(acp);
    if found.iter().any(|m| m.id() == &req.method_id) {
        return Ok(());
    }
    Err(acp_error(
        -32000,
        format!(
            "creel has no login `{}` on this host: export ANTHROPIC_API_KEY for the agent, or log in with `claude` on the host, then restart it ({})",
            req.method_id.0,
            if found.is_empty() {
                "none is there now".to_string()
            } else {
                format!("it has `{}`", found[0].id().0)
            }
        ),
    ))
}

fn new_session(acp: &Acp, req: NewSessionRequest) -> Result<NewSessionResponse, AcpError> {
    acp.engine()?;
    let cwd = req.cwd;
    if !cwd.is_absolute() {
        return Err(invalid(format!(
            "cwd `{}` is not an absolute path",
            cwd.display()
        )));
    }
    match std::fs::metadata(&cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(invalid(format!(
                "cwd `{}` is not a directory",
                cwd.display()
            )));
        }
        Err(e) => return Err(invalid(format!("cwd `{}`: {e}", cwd.display()))),
    }
    if !req.mcp_servers.is_empty() {
        tracing::warn!(
            count = req.mcp_servers.len(),
            "the client offered MCP servers; creel does not pass them into the sandbox (a stdio server would run on the host)"
        );
    }
    let id = new_session_id();
    let mode = acp.default_mode();
    acp.remember(id.clone(), Session::new(cwd, mode));
    Ok(NewSessionResponse::new(id)
        .modes(modes(mode))
        .config_options(acp.config_options(None)))
}

fn set_config_option(
    acp: &Acp,
    req: &SetSessionConfigOptionRequest,
) -> Result<Vec<SessionConfigOption>, AcpError> {
    if &*req.config_id.0 != MODEL_OPTION {
        return Err(invalid(format!(
            "unknown config option `{}` (creel has `{MODEL_OPTION}`)",
            req.config_id.0
        )));
    }
    let Some(value) = req.value.as_value_id() else {
        return Err(invalid("the model option takes a value id"));
    };
    let model = match &*value.0 {
        "default" => None,
        m => {
            // The rule `start` applies, checked now rather than at the next prompt.
            creel_engine::config::validate_model(m)
                .map_err(|why| invalid(format!("`{m}` is not a model name: {why}")))?;
            Some(m.to_string())
        }
    };
    let mut sessions = acp.sessions();
    let Some(s) = sessions.get_mut(&*req.session_id.0) else {
        return Err(unknown_session(&req.session_id.0));
    };
    s.model = model;
    Ok(acp.config_options(s.model.as_deref()))
}

async fn list_sessions(
    acp: &Acp,
    req: ListSessionsRequest,
) -> Result<ListSessionsResponse, AcpError> {
    let want = req.cwd.clone();
    let listed = acp
        .blocking(move |e| {
            let mut out = Vec::new();
            for s in e.sessions()? {
                // A repository session's cwd is the repository, as the client gave it.
                let cwd = match &s.record.git {
                    Some(g) => g.repo.clone(),
                    None => s.record.workspace.clone(),
                };
                // (Filtered first: a title costs a query, only for the sessions listed.)
                if want.as_ref().is_some_and(|w| *w != cwd) {
                    continue;
                }
                let head = match &s.last_job {
                    Some(_) => e
                        .jobs(&creel_engine::JobsRequest {
                            session: Some(s.record.id.clone()),
                            limit: 1,
                            ..Default::default()
                        })?
                        .pop()
                        .map(|j| j.prompt_head),
                    None => None,
                };
                out.push((s, head, cwd));
            }
            Ok(out)
        })
        .await?;
    let mut sessions: Vec<SessionInfo> = listed
        .into_iter()
        .map(|(s, head, cwd)| {
            SessionInfo::new(s.record.id.clone(), cwd)
                .title(head.filter(|h| !h.is_empty()))
                .updated_at(crate::wire::rfc3339(s.record.last_activity_ms))
        })
        .collect();
    sessions.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
    Ok(ListSessionsResponse::new(sessions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_client_protocol::v1::schema::{ResourceLink, TextContent};

    #[test]
    fn prompts_name_files_by_their_path_in_the_container() {
        let cwd = std::path::Path::new("/home/u/p");
        let text = prompt_text(
            &[
                ContentBlock::Text(TextContent::new("look at")),
                ContentBlock::ResourceLink(ResourceLink::new("x.rs", "file:///home/u/p/src/x.rs")),
                ContentBlock::ResourceLink(ResourceLink::new("y", "file:///etc/hosts")),
                ContentBlock::ResourceLink(ResourceLink::new("z", "file:///home/u/p/a%20b.txt")),
                ContentBlock::ResourceLink(ResourceLink::new("w", "https://example.com/x")),
            ],
            cwd,
        )
        .unwrap();
        assert_eq!(
            text,
            "look at\n@/workspace/src/x.rs\n@/etc/hosts\n@/workspace/a b.txt\n@https://example.com/x"
        );
        assert!(prompt_text(&[ContentBlock::Text(TextContent::new("  "))], cwd).is_err());
    }

    #[test]
    fn session_times_are_rfc3339() {
        assert_eq!(crate::wire::rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn session_ids_are_creel_session_ids() {
        let id = new_session_id();
        assert_eq!(id.len(), 16, "{id}");
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
        assert!(id.starts_with("acp-"));
    }
}
