//! `creel mcp --http`: streamable HTTP at `/mcp`, served by hyper, with an optional bearer token
//! checked before rmcp sees the request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, header};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use super::CreelServer;

type Service = StreamableHttpService<CreelServer, LocalSessionManager>;
type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

/// The MCP endpoint's path.
pub(crate) const PATH: &str = "/mcp";
/// MCP sessions open at once over HTTP.
const MAX_SESSIONS: usize = 512;
/// An MCP session without a request for this long is closed (its client must initialise anew).
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Refuses a non-loopback address without a token.
pub(super) fn check_bind(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(anyhow::Error::new(creel_engine::Error::InvalidRequest(
            format!(
                "refusing to serve MCP on non-loopback address {addr} without a token: anyone who can \
             reach it could run jobs\n\nhint: set CREEL_MCP_TOKEN or --token-file, or bind 127.0.0.1"
            ),
        )));
    }
    Ok(())
}

/// Who may use a server without a token: on loopback, only processes of the user running
/// creel (and root, who could read creel's files anyway). Another local user's connection is
/// refused before any request is read: loopback is shared by every user of the machine.
pub(crate) fn owner_only(peer: SocketAddr, local: SocketAddr) -> bool {
    let me = rustix::process::geteuid().as_raw();
    match loopback_peer_uid(peer, local) {
        Some(uid) => uid == me || uid == 0,
        None => false,
    }
}

/// The uid owning the other end of a loopback TCP connection, from the kernel's socket table
/// (`/proc/net/tcp`, `/proc/net/tcp6`): the row whose local address is our peer's and whose
/// remote address is ours.
pub(crate) fn loopback_peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let table = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let (want_local, want_remote) = (proc_net_addr(peer), proc_net_addr(local));
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.len() > 7
            && cols[1].eq_ignore_ascii_case(&want_local)
            && cols[2].eq_ignore_ascii_case(&want_remote))
        .then(|| cols[7].parse().ok())
        .flatten()
    })
}

/// An address as the kernel prints it in `/proc/net/tcp*`: each 32-bit word of the address
/// in host byte order, then the port, in hex.
fn proc_net_addr(addr: SocketAddr) -> String {
    let words = |bytes: &[u8]| {
        bytes
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<String>()
    };
    let ip = match addr {
        SocketAddr::V4(a) => words(&a.ip().octets()),
        SocketAddr::V6(a) => words(&a.ip().octets()),
    };
    format!("{ip}:{:04X}", addr.port())
}

/// Serves until Ctrl-C or SIGTERM.
pub(super) async fn serve(
    server: CreelServer,
    addr: SocketAddr,
    token: Option<String>,
) -> anyhow::Result<()> {
    let mut config = StreamableHttpServerConfig::default();
    if !addr.ip().is_loopback() {
        // rmcp accepts only loopback Host headers by default (DNS-rebinding protection); bound
        // elsewhere, clients use other names, and the token (which a browser page cannot
        // send) is the protection.
        config = config.disable_allowed_hosts();
    }
    let stop = config.cancellation_token.clone();
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(SESSION_IDLE);
    let sessions = Arc::new(manager);
    let service: Service = StreamableHttpService::new(
        move || Ok(server.for_new_connection()),
        sessions.clone(),
        config,
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!("creel mcp: serving streamable HTTP on http://{local}{PATH}");
    if token.is_none() {
        eprintln!(
            "creel mcp: no token: only processes of uid {} (this user) may connect",
            rustix::process::geteuid().as_raw()
        );
    }
    let admit: crate::http_serve::Admit = if token.is_none() {
        Some(Arc::new(owner_only))
    } else {
        None
    };
    let token: Option<Arc<str>> = token.map(Into::into);
    crate::http_serve::serve_until_shutdown(listener, admit, || {
        let service = service.clone();
        let token = token.clone();
        let sessions = sessions.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let service = service.clone();
            let token = token.clone();
            let sessions = sessions.clone();
            async move {
                Ok::<_, Infallible>(handle(&service, &sessions, token.as_deref(), req).await)
            }
        })
    })
    .await;
    stop.cancel();
    Ok(())
}

async fn handle(
    service: &Service,
    sessions: &LocalSessionManager,
    token: Option<&str>,
    req: Request<Incoming>,
) -> HttpResponse {
    if req.uri().path().trim_end_matches('/') != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the MCP endpoint is /mcp\n",
        );
    }
    if let Some(token) = token
        && !authorized(req.headers().get(header::AUTHORIZATION), token)
    {
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send Authorization: Bearer <token>\n",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"creel\""),
        );
        return r;
    }
    // A request without a session id may open a session: at most MAX_SESSIONS live at once
    // (each idle one goes after SESSION_IDLE), so clients that never close theirs cannot grow
    // the server without bound.
    if !req.headers().contains_key("mcp-session-id")
        && sessions.sessions.read().await.len() >= MAX_SESSIONS
    {
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open MCP sessions: close unused ones (DELETE /mcp) or retry later\n",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        return r;
    }
    service.handle(req).await
}

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `Authorization: Bearer <token>` (scheme case-insensitive), compared in constant time.
fn authorized(value: Option<&header::HeaderValue>, token: &str) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert!(authorized(Some(&v("Bearer s3cret")), "s3cret"));
        assert!(authorized(Some(&v("bearer s3cret")), "s3cret"));
        assert!(!authorized(Some(&v("Bearer s3cre")), "s3cret"));
        assert!(!authorized(Some(&v("Basic s3cret")), "s3cret"));
        assert!(!authorized(Some(&v("s3cret")), "s3cret"));
        assert!(!authorized(None, "s3cret"));
    }

    #[test]
    fn the_kernel_names_the_owner_of_a_loopback_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        let local = server_side.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(
            loopback_peer_uid(peer, local),
            Some(rustix::process::geteuid().as_raw())
        );
        assert!(owner_only(peer, local));
        // A connection that does not exist has no owner, and is not admitted.
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(loopback_peer_uid(gone, local), None);
        assert!(!owner_only(gone, local));
        assert_eq!(
            proc_net_addr("127.0.0.1:8080".parse().unwrap()),
            if cfg!(target_endian = "little") {
                "0100007F:1F90"
            } else {
                "7F000001:1F90"
            }
        );
    }

    #[test]
    fn non_loopback_needs_a_token() {
        assert!(check_bind("127.0.0.1:1".parse().unwrap(), None).is_ok());
        assert!(check_bind("[::1]:1".parse().unwrap(), None).is_ok());
        assert!(check_bind("0.0.0.0:1".parse().unwrap(), None).is_err());
        assert!(check_bind("0.0.0.0:1".parse().unwrap(), Some("t")).is_ok());
    }
}
