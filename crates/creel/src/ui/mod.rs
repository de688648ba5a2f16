//! `creel ui`: a live web dashboard over the engine API, served by hyper.
//!
//! The page (`assets/`: one HTML shell, one script, one stylesheet, compiled into the binary)
//! asks this server for JSON and server-sent events; the server asks the [`Engine`] and keeps
//! no state of its own besides the login token, so a restart loses nothing.
//!
//! Protection: the token printed in the URL (then a `SameSite=Strict`, `HttpOnly` cookie) is
//! needed for every request; on loopback only the owner's processes may connect at all (as
//! `creel mcp --http`); the `Host` header must name this server (DNS rebinding); a request that
//! changes something must come from this origin (`Origin`) as JSON; every answer forbids
//! framing and inline scripts (CSP). What jobs print reaches the page only as text.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use creel_engine::{Engine, OutputFormat, OutputRequest};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Serialize;

use crate::changes::JobChanges;
use crate::wire::{StatusWire, rfc3339};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The cookie that carries the token after the first visit.
const COOKIE: &str = "creel_ui";
/// The largest request body (a prompt).
const MAX_BODY: usize = creel_engine::MAX_PROMPT_BYTES + 4096;
/// Jobs shown in the overview (newest first).
const OVERVIEW_JOBS: u64 = 200;
/// Sessions shown in the overview (most recently active first).
const OVERVIEW_SESSIONS: usize = 500;
/// How often the overview looks for changes.
const OVERVIEW_EVERY: Duration = Duration::from_secs(1);
/// How much of a transcript a job page starts with (its tail); earlier text on request.
const FIRST_TAIL: u64 = 256 << 10;
/// The most text one event carries.
const EVENT_TEXT: u64 = 64 << 10;
/// A comment every this often keeps idle event streams open through proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);

type Body = UnsyncBoxBody<Bytes, Infallible>;
type HttpResponse = Response<Body>;

/// Options of `creel ui`.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Where to listen [default: 127.0.0.1 on a free port]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Allow a non-loopback address over plain HTTP (anyone who can see the traffic can read
    /// the token); otherwise such an address is refused. Prefer an ssh tunnel to loopback.
    #[arg(long)]
    pub allow_remote: bool,
    #[command(flatten)]
    pub engine: crate::choice::EngineChoice,
}

struct State {
    engine: Arc<Engine>,
    token: String,
    /// The address served (for the `Host` and `Origin` checks).
    local: SocketAddr,
    /// The overview's one producer, while any page follows it (see [`subscribe_overview`]).
    feed: std::sync::Mutex<Option<Arc<OverviewFeed>>>,
    /// How many overviews were computed (for the tests: tabs share one computation).
    computed: std::sync::atomic::AtomicU64,
}

/// The latest overview, computed once for every open page.
type OverviewFeed = tokio::sync::watch::Sender<Option<Arc<Overview>>>;

impl State {
    fn new(engine: Arc<Engine>, token: String, local: SocketAddr) -> State {
        State {
            engine,
            token,
            local,
            feed: std::sync::Mutex::new(None),
            computed: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Serves the dashboard until Ctrl-C or SIGTERM. The first line on stdout is its URL.
pub fn run(engine: Engine, args: UiArgs) -> anyhow::Result<()> {
    let addr = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    if !addr.ip().is_loopback() && !args.allow_remote {
        return Err(anyhow::Error::new(creel_engine::Error::InvalidRequest(
            format!(
                "refusing to serve the dashboard on non-loopback address {addr} over plain HTTP: the token would cross the network in the clear\n\nhint: keep 127.0.0.1 and tunnel to it (`ssh -N -L 8932:127.0.0.1:8932 host`), or pass --allow-remote on a network you trust"
            ),
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("creel-ui")
        .build()
        .context("cannot start the async runtime")?;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let engine = Arc::new(engine);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().unwrap_or(addr);
        let state = Arc::new(State::new(engine, token, local));
        crate::printer::out(format!("http://{local}/?token={}\n", state.token).as_bytes())?;
        eprintln!(
            "creel ui: serving the dashboard on http://{local}/ (open the URL above: it carries the login token); Ctrl-C stops it"
        );
        let admit: crate::http_serve::Admit = if local.ip().is_loopback() {
            Some(Arc::new(crate::mcp::owner_only))
        } else {
            None
        };
        crate::http_serve::serve_until_shutdown(listener, admit, || {
            let state = state.clone();
            hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            })
        })
        .await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(())
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type)
            .unwrap_or(header::HeaderValue::from_static("text/plain")),
    );
    r
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> HttpResponse {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    full(status, "application/json", body)
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// An engine error as an HTTP answer: bad input 400 (unknown things 404), the rest 500.
fn engine_error(e: creel_engine::Error) -> HttpResponse {
    let status = match &e {
        creel_engine::Error::UnknownJob(_) | creel_engine::Error::UnknownSession(_) => {
            StatusCode::NOT_FOUND
        }
        _ if e.category() == creel_engine::ErrorCategory::Invalid => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut message = e.to_string();
    if let Some(r) = e.remedy() {
        message.push_str(&format!(" (hint: {})", crate::cli::remedy::phrase(&r)));
    }
    error(status, message)
}

/// The headers every answer carries.
fn harden(mut r: HttpResponse) -> HttpResponse {
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        r.headers_mut()
            .insert(name, header::HeaderValue::from_static(value));
    }
    r
}

/// Constant-time comparison of the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn cookie_token(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `/job/<12 hex digits>`.
fn is_job_page(path: &str) -> bool {
    path.strip_prefix("/job/")
        .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The cookie's name: per port, since browsers share cookies between the ports of a host (two
/// dashboards on one machine would otherwise log each other out).
fn cookie_name(state: &State) -> String {
    format!("{COOKIE}_{}", state.local.port())
}

/// Whether the `Host` header names this server (a page on another name reaching a loopback
/// server through DNS rebinding is refused).
fn host_ok(state: &State, req: &Request<Incoming>) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    if state.local.ip().is_unspecified() {
        return true;
    }
    let port = state.local.port();
    let mut names = vec![state.local.to_string()];
    if state.local.ip().is_loopback() {
        names.push(format!("localhost:{port}"));
        names.push(format!("127.0.0.1:{port}"));
        names.push(format!("[::1]:{port}"));
    }
    names.iter().any(|n| n.eq_ignore_ascii_case(host))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> HttpResponse {
    harden(route(state, req).await)
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> HttpResponse {
    if !host_ok(&state, &req) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "creel ui: this server answers only to its own address",
        );
    }
    // The token: from the URL once (then a cookie, and the URL without it), or the cookie.
    let q = query(&req);
    if req.method() == Method::GET
        && let Some(t) = q.get("token")
    {
        if !same(t, &state.token) {
            return error(StatusCode::UNAUTHORIZED, "creel ui: wrong token");
        }
        let mut r = full(StatusCode::SEE_OTHER, "text/plain", "");
        let h = r.headers_mut();
        // Back to the page asked for, if it is one of ours (never elsewhere: `//host/...`).
        let path = req.uri().path();
        let page = if is_job_page(path) { path } else { "/" };
        h.insert(
            header::LOCATION,
            header::HeaderValue::from_str(page).unwrap_or(header::HeaderValue::from_static("/")),
        );
        if let Ok(v) = header::HeaderValue::from_str(&format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            cookie_name(&state),
            state.token
        )) {
            h.insert(header::SET_COOKIE, v);
        }
        return r;
    }
    if !cookie_token(&req, &cookie_name(&state)).is_some_and(|t| same(&t, &state.token)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "creel ui: open the URL `creel ui` printed (it carries the login token)",
        );
    }
    if req.method() == Method::POST {
        // Only this page may change anything: its own origin, as JSON.
        let origin_ok = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .zip(
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok()),
            )
            .is_some_and(|(o, h)| o.eq_ignore_ascii_case(&format!("http://{h}")));
        let json_body = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        if !origin_ok || !json_body {
            return error(
                StatusCode::FORBIDDEN,
                "creel ui: a change must come from the dashboard itself",
            );
        }
    }
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().as_str().to_string();
    match (method.as_str(), parts.as_slice()) {
        ("GET", [""]) | ("GET", ["job", _]) => {
            full(StatusCode::OK, "text/html; charset=utf-8", INDEX)
        }
        ("GET", ["assets", "app.js"]) => {
            full(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
        }
        ("GET", ["assets", "style.css"]) => full(StatusCode::OK, "text/css; charset=utf-8", STYLE),
        ("GET", ["api", "overview"]) => match overview(&state).await {
            Ok(o) => json(StatusCode::OK, &o),
            Err(r) => r,
        },
        ("GET", ["api", "events"]) => overview_events(state),
        ("GET", ["api", "jobs", id]) => {
            let id = id.to_string();
            match blocking(&state, move |e| e.status(&id)).await {
                Ok(s) => json(StatusCode::OK, &StatusWire::from(&s)),
                Err(r) => r,
            }
        }
        ("GET", ["api", "jobs", id, "output"]) => output(&state, id, &q).await,
        ("GET", ["api", "jobs", id, "stream"]) => {
            // A reconnecting page says where it got to (the `id` of the last text event).
            let resume = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            job_events(state.clone(), id.to_string(), resume)
        }
        ("GET", ["api", "sessions", id, "diff"]) => {
            let req = creel_engine::git::DiffRequest {
                session_id: id.to_string(),
                job_id: None,
                stat: false,
            };
            match blocking(&state, move |e| e.diff(&req)).await {
                Ok(d) => full(StatusCode::OK, "text/plain; charset=utf-8", d.text),
                Err(r) => r,
            }
        }
        ("POST", ["api", "jobs", id, verb]) => {
            let (id, verb) = (id.to_string(), verb.to_string());
            let body = match body_json(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            act(&state, id, &verb, body).await
        }
        ("POST", ["api", "sessions", id, "jobs"]) => {
            let session = id.to_string();
            let body = match body_json(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let prompt = body["prompt"].as_str().unwrap_or_default().to_string();
            let start = creel_engine::StartRequest {
                prompt,
                session_id: Some(session),
                ..Default::default()
            };
            match blocking(&state, move |e| e.start(start)).await {
                Ok(r) => json(
                    StatusCode::OK,
                    &serde_json::json!({ "jobId": r.job_id, "sessionId": r.session_id }),
                ),
                Err(r) => r,
            }
        }
        (_, _) => error(StatusCode::NOT_FOUND, "creel ui: no such page"),
    }
}

async fn body_json(req: Request<Incoming>) -> Result<serde_json::Value, HttpResponse> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "creel ui: the request is too large",
            ));
        }
    };
    if bytes.is_empty() {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("creel ui: bad JSON: {e}")))
}

/// cancel, reply, approve.
async fn act(state: &State, id: String, verb: &str, body: serde_json::Value) -> HttpResponse {
    let done = match verb {
        "cancel" => blocking(state, move |e| e.cancel(&id)).await,
        "reply" => {
            let text = body["text"].as_str().unwrap_or_default().to_string();
            blocking(state, move |e| e.reply(&id, &text, None)).await
        }
        "approve" => {
            let deny = body["deny"].as_bool().unwrap_or(false);
            let message = body["message"].as_str().map(str::to_string);
            blocking(state, move |e| {
                e.approve(&id, deny, message.as_deref(), None)
            })
            .await
        }
        _ => return error(StatusCode::NOT_FOUND, "creel ui: no such action"),
    };
    match done {
        Ok(s) => json(StatusCode::OK, &StatusWire::from(&s)),
        Err(r) => r,
    }
}

/// A page of a job's output as plain text (never HTML: `nosniff` keeps browsers from guessing).
async fn output(state: &State, id: &str, q: &HashMap<String, String>) -> HttpResponse {
    let format = match q.get("format").map(String::as_str) {
        Some("text") => OutputFormat::Text,
        _ => OutputFormat::Raw,
    };
    let offset = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l| l > 0)
        .unwrap_or(creel_engine::MAX_OUTPUT_PAGE);
    let id = id.to_string();
    match blocking(state, move |e| {
        e.output(
            &id,
            OutputRequest {
                offset,
                limit,
                format,
            },
        )
    })
    .await
    {
        Ok(page) => {
            let mut r = full(StatusCode::OK, "text/plain; charset=utf-8", page.content);
            // Where the page really starts and ends (moved to character boundaries).
            for (name, v) in [
                ("x-creel-offset", page.offset),
                ("x-creel-next-offset", page.next_offset),
                ("x-creel-total-size", page.total_size),
            ] {
                if let Ok(v) = header::HeaderValue::from_str(&v.to_string()) {
                    r.headers_mut().insert(name, v);
                }
            }
            r
        }
        Err(r) => r,
    }
}

async fn blocking<T, F>(state: &State, f: F) -> Result<T, HttpResponse>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> creel_engine::Result<T> + Send + 'static,
{
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || f(&engine)).await {
        Ok(r) => r.map_err(engine_error),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the engine call failed: {e}"),
        )),
    }
}

/// One job in the overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobRow {
    job_id: String,
    session_id: String,
    status: String,
    activity_state: Option<String>,
    needs_input: bool,
    needs_approval: bool,
    elapsed_seconds: Option<f64>,
    num_turns: Option<u64>,
    cost_usd: Option<f64>,
    egress_denied_total: u64,
    cpu_percent: Option<f64>,
    memory_bytes: Option<u64>,
    prompt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionRow {
    session_id: String,
    job_count: u64,
    last_job_id: Option<String>,
    last_job_status: Option<String>,
    workspace: String,
    branch: Option<String>,
    last_activity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Overview {
    jobs: Vec<JobRow>,
    sessions: Vec<SessionRow>,
}

async fn overview(state: &State) -> Result<Overview, HttpResponse> {
    state
        .computed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    blocking(state, |e| {
        let now = creel_engine::internals::now_ms();
        let mut jobs = Vec::new();
        for j in e.jobs(&creel_engine::JobsRequest {
            limit: OVERVIEW_JOBS,
            ..Default::default()
        })? {
            let r = &j.record;
            let mut row = JobRow {
                job_id: r.id.clone(),
                session_id: r.session_id.clone(),
                status: r.state.to_string(),
                activity_state: None,
                needs_input: false,
                needs_approval: false,
                elapsed_seconds: Some(
                    (r.finished_at_ms.unwrap_or(now) - r.created_at_ms).max(0) as f64 / 1000.0,
                ),
                num_turns: r.num_turns,
                cost_usd: r.cost_usd,
                egress_denied_total: r.egress_denied.total,
                cpu_percent: r.metrics.as_ref().and_then(|m| m.cpu_percent),
                memory_bytes: r.metrics.as_ref().and_then(|m| m.memory_bytes),
                prompt: j.prompt_head.clone(),
            };
            // Live facts only for jobs still going (a status is a few reads).
            if !r.state.is_final()
                && let Ok(s) = e.status(&r.id)
            {
                let w = StatusWire::from(&s);
                row.status = w.status.clone();
                row.activity_state = Some(w.activity_state.clone());
                row.needs_input = w.needs_input.is_some();
                row.needs_approval = w.needs_approval.is_some();
                row.elapsed_seconds = Some(w.elapsed_seconds);
            }
            jobs.push(row);
        }
        let mut all = e.sessions()?;
        all.sort_by_key(|s| std::cmp::Reverse(s.record.last_activity_ms));
        let sessions = all
            .into_iter()
            .take(OVERVIEW_SESSIONS)
            .map(|s| SessionRow {
                session_id: s.record.id.clone(),
                job_count: s.job_count,
                last_job_id: s.last_job.as_ref().map(|(id, _)| id.clone()),
                last_job_status: s.last_job.as_ref().map(|(_, st)| st.to_string()),
                workspace: s.record.workspace.display().to_string(),
                branch: s.record.git.as_ref().map(|g| g.branch.clone()),
                last_activity: rfc3339(s.record.last_activity_ms),
            })
            .collect();
        Ok(Overview { jobs, sessions })
    })
    .await
}

/// A server-sent events body fed by a task; the task stops when the client goes away.
fn event_stream() -> (tokio::sync::mpsc::Sender<Bytes>, HttpResponse) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    (tx, r)
}

fn event(name: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Follows the overview. However many pages are open, one task computes it (once every
/// [`OVERVIEW_EVERY`]) and every page gets the same result; the task runs while anyone follows
/// and stops when the last page has gone, so an unwatched dashboard costs nothing.
fn subscribe_overview(state: &Arc<State>) -> tokio::sync::watch::Receiver<Option<Arc<Overview>>> {
    let mut slot = state.feed.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(feed) = slot.as_ref() {
        return feed.subscribe();
    }
    let (tx, rx) = tokio::sync::watch::channel(None);
    let feed = Arc::new(tx);
    *slot = Some(feed.clone());
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(o) = overview(&state).await {
                feed.send_if_modified(|last| {
                    if last.as_deref() == Some(&o) {
                        return false;
                    }
                    *last = Some(Arc::new(o));
                    true
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(OVERVIEW_EVERY) => {}
                _ = feed.closed() => {}
            }
            // Stop once nobody follows; decided under the lock a new follower takes, so that
            // none subscribes to a feed that is about to stop.
            let mut slot = state.feed.lock().unwrap_or_else(|p| p.into_inner());
            if feed.receiver_count() == 0 {
                *slot = None;
                return;
            }
        }
    });
    rx
}

/// `/api/events`: the overview, again whenever it changes.
fn overview_events(state: Arc<State>) -> HttpResponse {
    let (tx, r) = event_stream();
    let mut feed = subscribe_overview(&state);
    tokio::spawn(async move {
        let mut quiet = std::time::Instant::now();
        // The current overview first (if there is one yet), then each change.
        feed.mark_changed();
        loop {
            tokio::select! {
                changed = feed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let o = feed.borrow_and_update().clone();
                    if let Some(o) = o {
                        if tx.send(event("overview", &*o)).await.is_err() {
                            return;
                        }
                        quiet = std::time::Instant::now();
                    }
                }
                _ = tokio::time::sleep(KEEPALIVE) => {}
                _ = tx.closed() => return,
            }
            if !keepalive(&tx, &mut quiet).await {
                return;
            }
        }
    });
    r
}

/// A comment on a stream quiet for [`KEEPALIVE`]; false once the client has gone.
async fn keepalive(tx: &tokio::sync::mpsc::Sender<Bytes>, quiet: &mut std::time::Instant) -> bool {
    if quiet.elapsed() < KEEPALIVE {
        return true;
    }
    *quiet = std::time::Instant::now();
    tx.send(Bytes::from_static(b": keepalive\n\n"))
        .await
        .is_ok()
}

#[derive(Serialize)]
struct TextEvent<'a> {
    offset: u64,
    content: &'a str,
}

/// `/api/jobs/:id/stream`: the job's status, then its rendered transcript from the last
/// [`FIRST_TAIL`] bytes on, as it grows, and the status whenever it changes; `end` once final.
fn job_events(state: Arc<State>, id: String, resume: Option<u64>) -> HttpResponse {
    let (tx, r) = event_stream();
    tokio::spawn(async move {
        let watch_id = id.clone();
        let Ok(watch) = blocking(&state, move |e| e.watch_job(&watch_id)).await else {
            // Not `error`: EventSource takes that for a broken connection and reconnects.
            let _ = tx
                .send(event("gone", &serde_json::json!({"error": "unknown job"})))
                .await;
            return;
        };
        let mut changes = JobChanges::from_watch(watch);
        let mut last_status: Option<String> = None;
        let mut offset: Option<u64> = resume;
        let mut quiet = std::time::Instant::now();
        loop {
            let sid = id.clone();
            let Ok(status) = blocking(&state, move |e| e.status(&sid)).await else {
                return;
            };
            // Sent when something besides the clocks changed.
            let wire = serde_json::to_value(StatusWire::from(&status)).unwrap_or_default();
            let mut facts = wire.clone();
            if let Some(o) = facts.as_object_mut() {
                o.remove("elapsedSeconds");
                o.remove("lastOutputSecondsAgo");
            }
            let facts = facts.to_string();
            if last_status.as_ref() != Some(&facts) {
                if tx.send(event("status", &wire)).await.is_err() {
                    return;
                }
                last_status = Some(facts);
                quiet = std::time::Instant::now();
            }
            // The transcript since the last read (its tail, the first time).
            loop {
                let (oid, from) = (id.clone(), offset);
                let page = blocking(&state, move |e| {
                    let start = match from {
                        Some(o) => o,
                        None => {
                            let total = e
                                .output(
                                    &oid,
                                    OutputRequest {
                                        offset: 0,
                                        limit: 1,
                                        format: OutputFormat::Text,
                                    },
                                )?
                                .total_size;
                            total.saturating_sub(FIRST_TAIL)
                        }
                    };
                    e.output(
                        &oid,
                        OutputRequest {
                            offset: start,
                            limit: EVENT_TEXT,
                            format: OutputFormat::Text,
                        },
                    )
                })
                .await;
                let Ok(page) = page else { return };
                if offset.is_none() || !page.content.is_empty() {
                    // Its `id` is where the next text starts: a reconnecting page resumes there.
                    let data = serde_json::to_string(&TextEvent {
                        offset: page.offset,
                        content: &page.content,
                    })
                    .unwrap_or_default();
                    let e = Bytes::from(format!(
                        "id: {}\nevent: text\ndata: {data}\n\n",
                        page.next_offset
                    ));
                    if tx.send(e).await.is_err() {
                        return;
                    }
                    quiet = std::time::Instant::now();
                }
                let moved = offset != Some(page.next_offset);
                offset = Some(page.next_offset);
                if !page.has_more || !moved {
                    break;
                }
            }
            if status.record.state.is_final() {
                let _ = tx.send(event("end", &serde_json::json!({}))).await;
                return;
            }
            if !keepalive(&tx, &mut quiet).await {
                return;
            }
            tokio::select! {
                _ = changes.wait(creel_engine::JobWatch::RECHECK) => {}
                _ = tx.closed() => return,
            }
        }
    });
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_pages_share_one_overview_and_it_stops_when_they_have_gone() {
        let home = tempfile::tempdir().unwrap();
        let engine = Engine::open(creel_engine::EngineOptions::from_env(
            home.path().to_path_buf(),
            creel_engine::config::Config::default(),
        ))
        .unwrap();
        let state = Arc::new(State::new(
            Arc::new(engine),
            "t".into(),
            SocketAddr::from(([127, 0, 0, 1], 1)),
        ));
        let computed = || state.computed.load(std::sync::atomic::Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Three pages: each sees the overview, from one computation a second.
            let mut pages: Vec<_> = (0..3).map(|_| subscribe_overview(&state)).collect();
            for p in &mut pages {
                tokio::time::timeout(Duration::from_secs(10), p.wait_for(Option::is_some))
                    .await
                    .expect("an overview within 10 s")
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let n = computed();
            assert!(
                (2..=5).contains(&n),
                "{n} computations in about 2.5 s for three pages"
            );
            drop(pages);
            // The producer notices within a tick and stops.
            tokio::time::sleep(OVERVIEW_EVERY + Duration::from_millis(500)).await;
            assert!(state.feed.lock().unwrap().is_none(), "the producer stopped");
            let n = computed();
            tokio::time::sleep(OVERVIEW_EVERY * 2).await;
            assert_eq!(computed(), n, "nothing computed with no page open");
            // A new page starts it again.
            let mut again = subscribe_overview(&state);
            tokio::time::timeout(Duration::from_secs(10), again.wait_for(Option::is_some))
                .await
                .expect("an overview again")
                .unwrap();
        });
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn the_page_never_puts_job_text_into_html() {
        // Every way the script builds the page from data goes through text nodes.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(banned), "app.js uses {banned}");
        }
        assert!(
            !INDEX.contains("<script>"),
            "no inline script (the CSP forbids it)"
        );
    }
}
