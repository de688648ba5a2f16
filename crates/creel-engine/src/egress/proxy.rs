//! The allowlist proxy's server: one thread running a single-threaded tokio runtime serves
//! every connection of a job as a task, so a job that opens many connections costs the host
//! memory for their buffers (bounded) and no threads.
//!
//! What a job can make the host pay for is bounded:
//! - at most [`Limits::max_connections`] connections at once (more are answered `503` and
//!   closed at once);
//! - the request head: at most [`MAX_HEAD`] bytes, read within [`Limits::head_timeout`] in
//!   total (a slow drip does not keep a connection alive);
//! - one request per connection (`Connection: close`): a second, pipelined request is never
//!   read, so it cannot ride on the first one's checks;
//! - bodies are streamed through hyper in both directions with back-pressure, never collected,
//!   whatever length or chunk size the client announces;
//! - every request has a total deadline ([`Limits::request_deadline`]); a CONNECT tunnel ends
//!   after [`Limits::tunnel_idle`] without a byte either way, and after
//!   [`Limits::tunnel_deadline`] in any case.
//!
//! The request head is checked strictly before hyper parses it: every line ends in CRLF (no
//! bare LF or CR), no obs-fold continuation lines, no control characters, at most one
//! `Content-Length` value and never together with `Transfer-Encoding`, which may only be
//! `chunked`. What is forwarded is re-serialised by hyper, never copied through.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use super::{ApiUpstream, Denial, PROXY_PORT, ProxyConfig, api_target};

/// The largest request head the proxy reads.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 100;
/// Threads resolving names at once (the system resolver blocks).
const MAX_LOOKUP_THREADS: usize = 4;
/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Called with the host of every refused request.
pub type DenialSink = Arc<dyn Fn(&Denial) + Send + Sync>;

/// The proxy's bounds (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to receive a whole request head.
    pub head_timeout: Duration,
    /// Time for a whole request, response included (Claude's own API timeout is 10 minutes).
    pub request_deadline: Duration,
    /// A tunnel with no byte either way for this long is closed.
    pub tunnel_idle: Duration,
    /// A tunnel's whole life.
    pub tunnel_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            head_timeout: Duration::from_secs(30),
            request_deadline: Duration::from_secs(15 * 60),
            tunnel_idle: Duration::from_secs(5 * 60),
            tunnel_deadline: Duration::from_secs(60 * 60),
        }
    }
}

/// Serves the proxy on `listener` with the default [`Limits`] until the process ends.
pub fn serve(listener: std::net::TcpListener, config: Arc<ProxyConfig>, on_deny: DenialSink) {
    serve_with(listener, config, on_deny, Limits::default())
}

/// Serves the proxy on `listener` until the process ends (blocks the calling thread).
pub fn serve_with(
    listener: std::net::TcpListener,
    config: Arc<ProxyConfig>,
    on_deny: DenialSink,
    limits: Limits,
) {
    // Name lookups run on the blocking pool: a few threads, whatever the job asks for.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_LOOKUP_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("the egress proxy cannot start its runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("the egress proxy cannot use its socket: {e}");
                return;
            }
        };
        let ctx = Arc::new(Ctx {
            config,
            on_deny,
            limits,
            tls: tls_config(),
        });
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        loop {
            let (sock, _) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tracing::debug!("proxy accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(connection(sock, ctx.clone(), Arc::new(permit)));
                }
                Err(_) => {
                    // Never waits: a fresh socket's send buffer takes this whole answer.
                    let _ = sock.try_write(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
}

struct Ctx {
    config: Arc<ProxyConfig>,
    on_deny: DenialSink,
    limits: Limits,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Ctx {
    fn deny(&self, host: &str, reason: String) -> Response<ProxyBody> {
        let d = Denial {
            host: host.to_string(),
            reason,
        };
        (self.on_deny)(&d);
        text(
            StatusCode::FORBIDDEN,
            format!("creel: egress to {} refused: {}", d.host, d.reason),
        )
    }
}

/// TLS toward an https API upstream (the web's public roots). `None` if rustls refuses the
/// provider, which then fails each https API request with a 502 instead of the proxy.
fn tls_config() -> Option<Arc<rustls::ClientConfig>> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => Some(Arc::new(
            b.with_root_certificates(roots).with_no_client_auth(),
        )),
        Err(e) => {
            tracing::error!("the egress proxy cannot set up TLS: {e}");
            None
        }
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, msg: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// One client connection: its head read and checked under a deadline, then one request.
async fn connection(mut sock: TcpStream, ctx: Arc<Ctx>, permit: Arc<OwnedSemaphorePermit>) {
    let head = match timeout(ctx.limits.head_timeout, read_head(&mut sock)).await {
        Ok(Ok(h)) => h,
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::Io(e))) => {
            tracing::debug!("proxy: reading a request head: {e}");
            return;
        }
        Ok(Err(HeadError::Bad(why))) => {
            return answer_raw(&mut sock, 400, "Bad Request", &why).await;
        }
        Ok(Err(HeadError::TooLarge)) => {
            return answer_raw(
                &mut sock,
                431,
                "Request Header Fields Too Large",
                "the request head is too large",
            )
            .await;
        }
        Err(_) => {
            return answer_raw(
                &mut sock,
                408,
                "Request Timeout",
                "the request head did not arrive in time",
            )
            .await;
        }
    };
    let io = Replay {
        prefix: head,
        pos: 0,
        inner: sock,
    };
    let svc = {
        let ctx = ctx.clone();
        let permit = permit.clone();
        hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            let permit = permit.clone();
            async move { Ok::<_, Infallible>(route(req, ctx, permit).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        // A client may send its request and shut its side (`nc` does): still answer it.
        .half_close(true)
        // (hyper's read buffer; the head was already read whole, within MAX_HEAD.)
        .max_buf_size(MAX_HEAD * 2)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if timeout(ctx.limits.request_deadline, conn).await.is_err() {
        tracing::debug!("proxy: a request exceeded its deadline");
    }
    drop(permit);
}

async fn answer_raw(sock: &mut TcpStream, status: u16, reason: &str, msg: &str) {
    let body = format!("creel: {msg}\n");
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = timeout(Duration::from_secs(5), sock.write_all(resp.as_bytes())).await;
    let _ = sock.shutdown().await;
}

#[derive(Debug)]
enum HeadError {
    Closed,
    TooLarge,
    Bad(String),
    Io(io::Error),
}

/// Reads a request head (through its blank line) and whatever arrived after it. The head is
/// checked as it comes in, so a bare LF is refused without waiting for more.
async fn read_head(sock: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    loop {
        let n = sock.read(&mut tmp).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Bad("the request head ended early".into())
            });
        }
        let old_len = buf.len();
        let scanned = old_len.saturating_sub(3);
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = memchr::memmem::find(&buf[scanned..], b"\r\n\r\n") {
            let end = scanned + i + 4;
            check_head(&buf[..end]).map_err(HeadError::Bad)?;
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        // Refuse early what can never become a valid head. Only the new bytes are looked at,
        // with the byte before them when it is a CR still waiting for its LF (an LF first in
        // the slice counts as bare, which is right when no CR precedes it): a client dripping
        // one byte at a time must not make every read scan the whole head again.
        let from = if old_len > 0 && buf[old_len - 1] == b'\r' {
            old_len - 1
        } else {
            old_len
        };
        check_line_endings(&buf[from..], false).map_err(HeadError::Bad)?;
    }
}

/// Every LF is preceded by CR and every CR followed by LF (the last byte may be a CR still
/// waiting for its LF unless `complete`).
fn check_line_endings(head: &[u8], complete: bool) -> Result<(), String> {
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' if i == 0 || head[i - 1] != b'\r' => {
                return Err("bare LF in the request head".into());
            }
            b'\r' if head.get(i + 1).is_some_and(|&n| n != b'\n') => {
                return Err("bare CR in the request head".into());
            }
            b'\r' if complete && i + 1 == head.len() => {
                return Err("bare CR in the request head".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The strict checks on a whole request head (ending in CRLF CRLF).
pub(crate) fn check_head(head: &[u8]) -> Result<(), String> {
    check_line_endings(head, true)?;
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .ok_or("the request head does not end with a blank line")?;
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if n > 0 && line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err("obsolete line folding in the request head".into());
        }
        if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("a control character in the request head".into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(httparse::Status::Complete(_)) => {
            return Err("a blank line inside the request head".into());
        }
        Ok(httparse::Status::Partial) => return Err("an incomplete request head".into()),
        Err(httparse::Error::TooManyHeaders) => return Err("too many header lines".into()),
        Err(e) => return Err(format!("a malformed request head ({e})")),
    }
    let mut length: Option<&[u8]> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err("a malformed Content-Length".into());
            }
            if length.is_some_and(|l| l != v) {
                return Err("conflicting Content-Length values".into());
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err("only `Transfer-Encoding: chunked` is accepted".into());
            }
            chunked = true;
        }
    }
    if chunked && length.is_some() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    Ok(())
}

/// The checked head (and whatever followed it) replayed to hyper, then the socket.
struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A shared proxy's check of a request's job token: `Err` is the answer to send instead.
fn authorize(
    req: &Request<Incoming>,
    tokens: &super::tokens::JobTokens,
) -> Result<(), Box<Response<ProxyBody>>> {
    let proxy_form = req.method() == Method::CONNECT || req.uri().scheme().is_some();
    let headers = req.headers();
    let token = if proxy_form {
        headers
            .get(header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(basic_password)
    } else {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_string)
            })
    };
    let why = match token.map(|t| tokens.check(&t, super::tokens::now_secs())) {
        Some(Ok(_)) => return Ok(()),
        Some(Err(why)) => why,
        None => "no job token".to_string(),
    };
    tracing::info!("egress refused: {why}");
    if proxy_form {
        let mut r = text(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            format!("creel: {why}"),
        );
        r.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"creel\""),
        );
        Err(Box::new(r))
    } else {
        Err(Box::new(text(
            StatusCode::UNAUTHORIZED,
            format!("creel: {why}"),
        )))
    }
}

/// The password of a `Basic` credential.
fn basic_password(value: &str) -> Option<String> {
    use base64::Engine as _;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// One request: a tunnel, a plain-HTTP fetch of an allowed host, or an API call.
async fn route(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response<ProxyBody> {
    if let Some(tokens) = &ctx.config.tokens
        && let Err(refused) = authorize(&req, tokens)
    {
        return *refused;
    }
    if req.method() == Method::CONNECT {
        return connect(req, ctx, permit).await;
    }
    let uri = req.uri().clone();
    if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") {
            return text(
                StatusCode::BAD_REQUEST,
                "creel: use CONNECT for https".into(),
            );
        }
        let Some(authority) = uri.authority() else {
            return text(StatusCode::BAD_REQUEST, "creel: bad URL".into());
        };
        let (host, port) = match host_port(&ctx, authority, 80) {
            Ok(t) => t,
            Err(refused) => return *refused,
        };
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        // A client that ignores NO_PROXY sends its API request to the proxy in absolute form.
        if port == PROXY_PORT
            && (host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost"))
            && let Some(api) = &ctx.config.api
        {
            return api_call(req, &ctx, api, &target).await;
        }
        let up = match open_vetted(&ctx, &host, port).await {
            Ok(s) => s,
            Err(refused) => return refused,
        };
        let host_header = authority.as_str().to_string();
        return forward(req, up, &host_header, &target, None).await;
    }
    if uri.path().starts_with('/') {
        let Some(api) = &ctx.config.api else {
            return text(
                StatusCode::BAD_REQUEST,
                "creel: this proxy forwards API requests only when an API upstream is configured"
                    .into(),
            );
        };
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        return api_call(req, &ctx, api, &target).await;
    }
    text(StatusCode::BAD_REQUEST, "creel: malformed request".into())
}

/// The host and port a request names, or the refusal for one that carries credentials
/// (`user@host`).
fn host_port(
    ctx: &Ctx,
    authority: &hyper::http::uri::Authority,
    default_port: u16,
) -> Result<(String, u16), Box<Response<ProxyBody>>> {
    if authority.as_str().contains('@') {
        return Err(Box::new(ctx.deny(
            authority.as_str(),
            "credentials (user@host) are not allowed".into(),
        )));
    }
    Ok((
        authority.host().to_string(),
        authority.port_u16().unwrap_or(default_port),
    ))
}

/// A connection to an allowed host's vetted address, or the answer for the client: `403`
/// (refused, and counted) or `502` (unreachable).
async fn open_vetted(
    ctx: &Arc<Ctx>,
    host: &str,
    port: u16,
) -> Result<TcpStream, Response<ProxyBody>> {
    let addrs = vet(ctx, host, port)
        .await
        .map_err(|d| ctx.deny(&d.host, d.reason))?;
    connect_any(&addrs).await.map_err(|e| {
        text(
            StatusCode::BAD_GATEWAY,
            format!("creel: cannot reach {host}: {e}"),
        )
    })
}

/// [`super::Policy::vet`] off the runtime's thread (it may ask the system resolver).
async fn vet(ctx: &Arc<Ctx>, host: &str, port: u16) -> Result<Vec<SocketAddr>, Denial> {
    let (policy, name) = (ctx.clone(), host.to_string());
    match tokio::task::spawn_blocking(move || policy.config.policy.vet(&name, port)).await {
        Ok(r) => r,
        Err(e) => Err(Denial {
            host: host.to_string(),
            reason: format!("the lookup failed: {e}"),
        }),
    }
}

/// `CONNECT host:port`: a tunnel to a vetted address.
async fn connect(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "creel: bad CONNECT target".into());
    };
    let (host, port) = match host_port(&ctx, &authority, 443) {
        Ok(t) => t,
        Err(refused) => return *refused,
    };
    let up = match open_vetted(&ctx, &host, port).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let limits = ctx.limits;
    tokio::spawn(async move {
        // The tunnel holds the connection's slot for as long as it lives.
        let _permit = permit;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let client = TokioIo::new(upgraded);
                let _ = timeout(
                    limits.tunnel_deadline,
                    tunnel(client, up, limits.tunnel_idle),
                )
                .await;
            }
            Err(e) => tracing::debug!("proxy: CONNECT upgrade failed: {e}"),
        }
    });
    Response::new(Empty::new().map_err(|never| match never {}).boxed())
}

/// Copies both ways until both sides are done, or nothing moved for `idle`.
async fn tunnel<A, B>(mut a: A, mut b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin + Send,
    B: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        let event = timeout(idle, async {
            tokio::select! {
                r = a.read(&mut buf_a), if a_open => (true, r),
                r = b.read(&mut buf_b), if b_open => (false, r),
            }
        })
        .await;
        let Ok((from_a, read)) = event else { break };
        let (n, src, dst, open): (
            usize,
            &[u8],
            &mut (dyn AsyncWrite + Unpin + Send),
            &mut bool,
        ) = match (from_a, read) {
            (true, Ok(n)) => (n, &buf_a[..n], &mut b, &mut a_open),
            (false, Ok(n)) => (n, &buf_b[..n], &mut a, &mut b_open),
            (_, Err(_)) => break,
        };
        if n == 0 {
            *open = false;
            let _ = timeout(idle, dst.shutdown()).await;
            continue;
        }
        match timeout(idle, dst.write_all(src)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
}

/// An origin-form request: Claude's API call, confined to the API's paths, with the key.
async fn api_call(
    req: Request<Incoming>,
    ctx: &Ctx,
    api: &ApiUpstream,
    target: &str,
) -> Response<ProxyBody> {
    let target = match api_target(target) {
        Ok(t) => t.to_string(),
        Err(why) => return ctx.deny(&api.host, why),
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
        return ctx.deny(&api.host, format!("{} is not an API method", req.method()));
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((api.host.as_str(), api.port)).await
    {
        Ok(a) => a.collect(),
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("creel: cannot resolve the API upstream {}: {e}", api.host),
            );
        }
    };
    let tcp = match connect_any(&addrs).await {
        Ok(s) => s,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("creel: cannot reach the API upstream {}: {e}", api.host),
            );
        }
    };
    let default_port = if api.https { 443 } else { 80 };
    let host_header = if api.port == default_port {
        api.host.clone()
    } else {
        format!("{}:{}", api.host, api.port)
    };
    let path = format!("{}{target}", api.base_path);
    if api.https {
        let name = match rustls::pki_types::ServerName::try_from(api.host.clone()) {
            Ok(n) => n,
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("creel: bad API host name: {e}"),
                );
            }
        };
        let Some(tls) = ctx.tls.clone() else {
            return text(
                StatusCode::BAD_GATEWAY,
                "creel: TLS is not available in this proxy".into(),
            );
        };
        let tls = tokio_rustls::TlsConnector::from(tls);
        match timeout(CONNECT_TIMEOUT, tls.connect(name, tcp)).await {
            Ok(Ok(stream)) => forward(req, stream, &host_header, &path, api.key.as_deref()).await,
            Ok(Err(e)) => text(
                StatusCode::BAD_GATEWAY,
                format!("creel: TLS to the API upstream {} failed: {e}", api.host),
            ),
            Err(_) => text(
                StatusCode::BAD_GATEWAY,
                format!("creel: TLS to the API upstream {} timed out", api.host),
            ),
        }
    } else {
        forward(req, tcp, &host_header, &path, api.key.as_deref()).await
    }
}

/// Sends `req` to `path` over `stream` (a fresh connection, closed after the response),
/// re-serialised by hyper: hop-by-hop headers dropped, `Host` set, and with `key` the
/// client's own credentials replaced by `x-api-key: key`. Bodies stream both ways.
async fn forward<S>(
    req: Request<Incoming>,
    stream: S,
    host_header: &str,
    path: &str,
    key: Option<&str>,
) -> Response<ProxyBody>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let bad_gateway = |e: String| text(StatusCode::BAD_GATEWAY, format!("creel: {e}"));
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return bad_gateway(format!("upstream handshake failed: {e}")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("proxy: upstream connection: {e}");
        }
    });
    let (parts, body) = req.into_parts();
    let uri: Uri = match path.parse() {
        Ok(u) => u,
        Err(e) => return bad_gateway(format!("bad upstream path: {e}")),
    };
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    let headers = out.headers_mut();
    copy_end_to_end(&parts.headers, headers);
    if key.is_some() {
        headers.remove("x-api-key");
        headers.remove(header::AUTHORIZATION);
    }
    match HeaderValue::from_str(host_header) {
        Ok(v) => {
            headers.insert(header::HOST, v);
        }
        Err(_) => return bad_gateway("bad upstream host".into()),
    }
    if let Some(k) = key {
        match HeaderValue::from_str(k) {
            Ok(mut v) => {
                v.set_sensitive(true);
                headers.insert(HeaderName::from_static("x-api-key"), v);
            }
            Err(_) => return bad_gateway("the API key is not a valid header value".into()),
        }
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    match sender.send_request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let mut back = Response::new(body.boxed());
            *back.status_mut() = parts.status;
            copy_end_to_end(&parts.headers, back.headers_mut());
            back
        }
        Err(e) => bad_gateway(format!("the upstream failed: {e}")),
    }
}

/// Copies the end-to-end headers: not the hop-by-hop ones, nor any a `Connection` header
/// names, nor the framing (hyper frames what it sends itself).
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    const HOP: [&str; 9] = [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (k, v) in from {
        let name = k.as_str();
        if HOP.contains(&name) || named.iter().any(|n| n == name) || k == header::HOST {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<(), String> {
        check_head(s.as_bytes())
    }

    #[test]
    fn strict_heads() {
        assert!(head("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n").is_ok());
        assert!(head("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n").is_ok());
        for (bad, why) in [
            (
                "GET / HTTP/1.1\r\nX-A: b\nGET /admin HTTP/1.1\r\n\r\n",
                "bare LF",
            ),
            ("GET / HTTP/1.1\r\nX-A: b\rc\r\n\r\n", "bare CR"),
            ("GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n", "folding"),
            ("GET / HTTP/1.1\r\nX-A: b\x01\r\n\r\n", "control"),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            ("GET /\r\n\r\n", "malformed"),
            ("\r\n", "blank line"),
            (
                "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                "blank line inside",
            ),
            ("", "blank line"),
        ] {
            let e = head(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn checking_only_the_new_bytes_finds_what_checking_all_finds() {
        // read_head's incremental check, fed one byte at a time, against the whole check.
        let incremental = |head: &[u8]| -> Result<(), String> {
            for old_len in 0..head.len() {
                let from = if old_len > 0 && head[old_len - 1] == b'\r' {
                    old_len - 1
                } else {
                    old_len
                };
                check_line_endings(&head[from..=old_len], false)?;
            }
            Ok(())
        };
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r"[..],
            b"GET / HTTP/1.1\nHost: a",
            b"GET / HTTP/1.1\r\nX: a\rb",
            b"\nGET",
            b"GET /\r\r\n",
        ] {
            assert_eq!(
                incremental(head).is_ok(),
                check_line_endings(head, false).is_ok(),
                "{head:?}"
            );
        }
    }

    #[test]
    fn line_endings_are_checked_while_reading() {
        assert!(check_line_endings(b"GET / HTTP/1.1\r", false).is_ok());
        assert!(check_line_endings(b"GET / HTTP/1.1\r", true).is_err());
        assert!(check_line_endings(b"GET / HTTP/1.1\n", false).is_err());
    }

    #[test]
    fn hop_headers_are_not_forwarded() {
        let mut from = HeaderMap::new();
        from.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        from.insert("x-secret", HeaderValue::from_static("1"));
        from.insert("keep-alive", HeaderValue::from_static("1"));
        from.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        from.insert(header::HOST, HeaderValue::from_static("evil"));
        from.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to);
        assert_eq!(to.len(), 1, "{to:?}");
        assert!(to.contains_key("anthropic-version"));
    }
}
