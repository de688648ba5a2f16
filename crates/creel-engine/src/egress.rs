//! The egress proxy of `network = "allowlist"`: the container has no route out, and its only
//! way out is this HTTP/HTTPS forward proxy, listening inside the job's network namespace (see
//! `netns.rs`) and connecting from the host.
//!
//! - `CONNECT host:port` (TLS) and absolute-form `GET http://host/…` are admitted only for
//!   hosts matching the allowlist, and only to addresses that are not private, loopback,
//!   link-local (cloud metadata), CGNAT, multicast or unspecified, whatever the name resolves
//!   to. The vetted address is the one connected to, so a name cannot rebind between check and
//!   use. Raw IP targets are refused unless listed verbatim.
//! - Origin-form requests (`POST /v1/messages`) are Claude's API traffic (its
//!   `ANTHROPIC_BASE_URL` points here): they go to creel's configured upstream (`api_base_url`,
//!   which may be a gateway or `creel fake-model` on loopback; the private-range rule is for
//!   what the container asks for, not for creel's own upstream), over TLS when it is https,
//!   with the real API key added on the way. The key never enters the container.
//! - Every refusal is reported to the caller (counted per host, shown in `status`).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::sync::Arc;
use std::time::Duration;

/// The API host that is always admitted.
pub const ANTHROPIC_API_HOST: &str = "api.anthropic.com";
/// The port the proxy listens on inside each job's own network namespace.
pub const PROXY_PORT: u16 = 3128;
/// The largest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Hosts an OAuth login needs besides the API (token refresh), admitted automatically when a
/// job logs in with `.credentials.json` instead of an API key.
pub const OAUTH_HOSTS: &[&str] = &["console.anthropic.com", "platform.claude.com", "claude.ai"];

/// What a job's proxy admits, fixed when the job is accepted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EgressSpec {
    /// Allowlist patterns (the API host is always admitted).
    pub allow: Vec<String>,
    /// Static name → IP answers.
    pub resolve: BTreeMap<String, String>,
    /// Where Claude's API requests go (`None`: Claude reaches the API with CONNECT itself).
    pub api_upstream: Option<String>,
}

/// Checks an allowlist entry: a host name, `*.suffix`, or an IP address.
pub fn validate_pattern(p: &str) -> Result<(), String> {
    let name = p.strip_prefix("*.").unwrap_or(p);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{p}` is not a host name"));
    }
    if name.parse::<IpAddr>().is_ok() && !p.starts_with("*.") {
        return Ok(());
    }
    if !name.split('.').all(|l| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        return Err(format!("`{p}` is not a host name or `*.suffix` pattern"));
    }
    Ok(())
}

/// Addresses the container may never reach through the proxy.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg0 & 0xffc0) == 0xfec0 // site-local (deprecated)
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible
                || seg0 == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 to anywhere
                || seg0 == 0x2002 // 6to4 can embed private v4
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // 169.254.0.0/16, cloud metadata
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || o[0] >= 240 // reserved
}

/// Which hosts the proxy admits and how it resolves them.
#[derive(Debug, Clone)]
pub struct Policy {
    exact: Vec<String>,
    suffixes: Vec<String>,
    resolve: BTreeMap<String, IpAddr>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The host asked for.
    pub host: String,
    /// Why.
    pub reason: String,
}

impl Policy {
    /// A policy admitting `allow` (plus the Anthropic API), resolving names in `resolve`
    /// statically and the rest through the system resolver.
    pub fn new(allow: &[String], resolve: &BTreeMap<String, String>) -> Policy {
        let mut exact = vec![ANTHROPIC_API_HOST.to_string()];
        let mut suffixes = Vec::new();
        for p in allow {
            let p = p.trim().trim_end_matches('.').to_ascii_lowercase();
            match p.strip_prefix("*.") {
                Some(s) => suffixes.push(format!(".{s}")),
                None => exact.push(p),
            }
        }
        let resolve = resolve
            .iter()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.parse().ok()?)))
            .collect();
        Policy {
            exact,
            suffixes,
            resolve,
        }
    }

    /// Whether `host` is on the allowlist.
    pub fn admits(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        if h.parse::<IpAddr>().is_ok() || h.starts_with('[') {
            return self
                .exact
                .iter()
                .any(|e| *e == h.trim_matches(|c| c == '[' || c == ']'));
        }
        self.exact.contains(&h) || self.suffixes.iter().any(|s| h.ends_with(s.as_str()))
    }

    /// Resolves an admitted host to addresses it may reach, or says why not.
    pub fn vet(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Denial> {
        let deny = |reason: String| Denial {
            host: host.to_string(),
            reason,
        };
        if !self.admits(host) {
            return Err(deny("not on the allowlist".into()));
        }
        let bare = host
            .trim_matches(|c| c == '[' || c == ']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let addrs: Vec<SocketAddr> = if let Some(ip) = self.resolve.get(&bare) {
            vec![SocketAddr::new(*ip, port)]
        } else if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            (bare.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| deny(format!("cannot resolve: {e}")))?
                .collect()
        };
        if addrs.is_empty() {
            return Err(deny("resolves to nothing".into()));
        }
        if let Some(bad) = addrs.iter().find(|a| is_forbidden_ip(a.ip())) {
            return Err(deny(format!(
                "resolves to {} (private, loopback, link-local or reserved)",
                bad.ip()
            )));
        }
        Ok(addrs)
    }
}

/// creel's own API upstream for origin-form requests.
#[derive(Clone)]
pub struct ApiUpstream {
    https: bool,
    host: String,
    port: u16,
    base_path: String,
    key: Option<String>,
}

impl std::fmt::Debug for ApiUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiUpstream")
            .field("https", &self.https)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ApiUpstream {
    /// Parses `http(s)://host[:port][/base]`; `key` is added as `x-api-key`.
    pub fn parse(url: &str, key: Option<String>) -> Result<ApiUpstream, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{url}` is not an http(s) URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority, if https { 443 } else { 80 })
            .ok_or_else(|| format!("bad host in `{url}`"))?;
        Ok(ApiUpstream {
            https,
            host,
            port,
            base_path: path.trim_end_matches('/').to_string(),
            key,
        })
    }
}

/// What the proxy serves.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The allowlist.
    pub policy: Policy,
    /// Where origin-form (API) requests go; `None`: refused.
    pub api: Option<ApiUpstream>,
}

/// Called with the host of every refused request.
pub type DenialSink = Arc<dyn Fn(&Denial) + Send + Sync>;

/// Serves the proxy on `listener` until the process ends (one thread per connection).
pub fn serve(listener: TcpListener, config: Arc<ProxyConfig>, on_deny: DenialSink) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let config = config.clone();
        let on_deny = on_deny.clone();
        std::thread::spawn(move || {
            if let Err(e) = handle(conn, &config, &on_deny) {
                tracing::debug!("proxy connection ended: {e}");
            }
        });
    }
}

fn handle(mut client: TcpStream, config: &ProxyConfig, on_deny: &DenialSink) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (head, rest) = match read_head(&mut client)? {
        Some(x) => x,
        None => return Ok(()),
    };
    client.set_read_timeout(None)?;
    let head_text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head_text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if v.starts_with("HTTP/1.") => {
            (m.to_string(), t.to_string(), v.to_string())
        }
        _ => return respond(&mut client, 400, "creel: malformed request"),
    };
    let refuse = |client: &mut TcpStream, host: &str, reason: String| -> io::Result<()> {
        let d = Denial {
            host: host.to_string(),
            reason,
        };
        on_deny(&d);
        respond(
            client,
            403,
            &format!("creel: egress to {} refused: {}", d.host, d.reason),
        )
    };

    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_host_port(&target, 443) else {
            return respond(&mut client, 400, "creel: bad CONNECT target");
        };
        let Some(mut up) = open_vetted(&mut client, config, on_deny, &host, port)? else {
            return Ok(());
        };
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        up.write_all(&rest)?;
        return splice(client, up);
    }

    if let Some(after) = target.strip_prefix("http://") {
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, "/"),
        };
        if authority.contains('@') {
            return refuse(
                &mut client,
                authority,
                "credentials in the URL are not allowed".into(),
            );
        }
        let Some((host, port)) = split_host_port(authority, 80) else {
            return respond(&mut client, 400, "creel: bad URL");
        };
        // A client that ignores NO_PROXY sends its API request to the proxy in absolute form.
        if port == PROXY_PORT
            && (host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost"))
            && let Some(api) = &config.api
        {
            return forward_api(client, api, &method, path, &version, &headers, rest);
        }
        let Some(mut up) = open_vetted(&mut client, config, on_deny, &host, port)? else {
            return Ok(());
        };
        let mut out = format!("{method} {path} {version}\r\n");
        for (k, v) in &headers {
            if is_hop_header(k) || k.eq_ignore_ascii_case("host") {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Host: {authority}\r\nConnection: close\r\n\r\n"));
        up.write_all(out.as_bytes())?;
        up.write_all(&rest)?;
        return splice(client, up);
    }

    if target.starts_with('/') {
        let Some(api) = &config.api else {
            return respond(
                &mut client,
                400,
                "creel: this proxy forwards API requests only when an API upstream is configured",
            );
        };
        return forward_api(client, api, &method, &target, &version, &headers, rest);
    }
    respond(&mut client, 400, "creel: use CONNECT for https")
}

/// Connects to an admitted host's vetted address. On refusal or failure, answers the client
/// (403 or 502) and returns `None`.
fn open_vetted(
    client: &mut TcpStream,
    config: &ProxyConfig,
    on_deny: &DenialSink,
    host: &str,
    port: u16,
) -> io::Result<Option<TcpStream>> {
    let addrs = match config.policy.vet(host, port) {
        Ok(a) => a,
        Err(d) => {
            on_deny(&d);
            respond(
                client,
                403,
                &format!("creel: egress to {} refused: {}", d.host, d.reason),
            )?;
            return Ok(None);
        }
    };
    match connect_any(&addrs) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            respond(client, 502, &format!("creel: cannot reach {host}: {e}"))?;
            Ok(None)
        }
    }
}

fn forward_api(
    mut client: TcpStream,
    api: &ApiUpstream,
    method: &str,
    target: &str,
    version: &str,
    headers: &[(String, String)],
    rest: Vec<u8>,
) -> io::Result<()> {
    let addrs: Vec<SocketAddr> = (api.host.as_str(), api.port).to_socket_addrs()?.collect();
    let tcp = match connect_any(&addrs) {
        Ok(s) => s,
        Err(e) => {
            return respond(
                &mut client,
                502,
                &format!("creel: cannot reach the API upstream {}: {e}", api.host),
            );
        }
    };
    let mut up: Box<dyn ReadWrite> = if api.https {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(api.host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let conn = rustls::ClientConnection::new(Arc::new(tls), name).map_err(io::Error::other)?;
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    let default_port = if api.https { 443 } else { 80 };
    let host_header = if api.port == default_port {
        api.host.clone()
    } else {
        format!("{}:{}", api.host, api.port)
    };
    let mut out = format!("{method} {}{target} {version}\r\n", api.base_path);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for (k, v) in headers {
        if is_hop_header(k) || k.eq_ignore_ascii_case("host") {
            continue;
        }
        if api.key.is_some()
            && (k.eq_ignore_ascii_case("x-api-key") || k.eq_ignore_ascii_case("authorization"))
        {
            continue;
        }
        if k.eq_ignore_ascii_case("content-length") {
            content_length = v.parse().ok();
        }
        if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(key) = &api.key {
        out.push_str(&format!("x-api-key: {key}\r\n"));
    }
    out.push_str(&format!("Host: {host_header}\r\nConnection: close\r\n\r\n"));
    up.write_all(out.as_bytes())?;
    // The request body: exactly what the client announced.
    if chunked {
        copy_chunked(&mut client, rest, &mut up)?;
    } else {
        let want = content_length.unwrap_or(0);
        let first = rest.len().min(want as usize);
        up.write_all(&rest[..first])?;
        io::copy(&mut (&mut client).take(want - first as u64), &mut up)?;
    }
    up.flush()?;
    // The response, streamed until the upstream closes (we asked for Connection: close).
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break, // TLS close without notify
            Err(e) => return Err(e),
        };
        client.write_all(&buf[..n])?;
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Forwards a chunked body verbatim, up to and including its terminating chunk.
fn copy_chunked(
    client: &mut TcpStream,
    rest: Vec<u8>,
    up: &mut Box<dyn ReadWrite>,
) -> io::Result<()> {
    let mut buf = rest;
    let mut pos = 0usize;
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<bool> {
        let mut tmp = [0u8; 16 * 1024];
        let n = client.read(&mut tmp)?;
        buf.extend_from_slice(&tmp[..n]);
        Ok(n > 0)
    };
    loop {
        // Size line.
        let line_end = loop {
            if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            if !fill(&mut buf)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let size_text = String::from_utf8_lossy(&buf[pos..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        let need = line_end + 2 + size + 2;
        while buf.len() < need {
            if !fill(&mut buf)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        up.write_all(&buf[pos..need])?;
        pos = need;
        if size == 0 {
            return Ok(()); // (trailers are not supported: Claude sends none)
        }
        if pos > 1 << 20 {
            buf.drain(..pos);
            pos = 0;
        }
    }
}

fn is_hop_header(k: &str) -> bool {
    [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| k.eq_ignore_ascii_case(h))
}

fn connect_any(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Copies both ways until either side closes.
fn splice(client: TcpStream, upstream: TcpStream) -> io::Result<()> {
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let t = std::thread::spawn(move || {
        let _ = io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let (mut c, mut u) = (client, upstream);
    let _ = io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = t.join();
    Ok(())
}

fn respond(client: &mut TcpStream, status: u16, text: &str) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let body = format!("{text}\n");
    write!(
        client,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// Reads up to the end of the request head. Returns the head (without the blank line) and
/// whatever followed it.
fn read_head(client: &mut TcpStream) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    loop {
        let n = client.read(&mut tmp)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf[i + 4..].to_vec();
            buf.truncate(i);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            respond(client, 400, "creel: request head too large")?;
            return Ok(None);
        }
    }
}

/// Splits `host:port` (or `[v6]:port`), with a default port.
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        host.parse::<Ipv6Addr>().ok()?;
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_string(), default_port)),
    }
    .filter(|(h, _)| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut resolve = BTreeMap::new();
        resolve.insert("allowed.test".to_string(), "203.0.113.10".to_string());
        resolve.insert("rebind.test".to_string(), "10.1.2.3".to_string());
        resolve.insert("meta.test".to_string(), "169.254.169.254".to_string());
        Policy::new(
            &[
                "allowed.test".into(),
                "*.githubusercontent.com".into(),
                "rebind.test".into(),
                "meta.test".into(),
            ],
            &resolve,
        )
    }

    #[test]
    fn allowlist_matching() {
        let p = policy();
        assert!(p.admits("api.anthropic.com"));
        assert!(p.admits("Allowed.Test."));
        assert!(p.admits("raw.githubusercontent.com"));
        assert!(!p.admits("githubusercontent.com.evil.com"));
        assert!(!p.admits("evilgithubusercontent.com"));
        assert!(!p.admits("denied.test"));
        assert!(
            !p.admits("203.0.113.10"),
            "raw IPs are refused unless listed"
        );
    }

    #[test]
    fn vetting_refuses_private_and_metadata_answers() {
        let p = policy();
        assert_eq!(
            p.vet("allowed.test", 443).unwrap(),
            vec!["203.0.113.10:443".parse().unwrap()]
        );
        assert!(
            p.vet("rebind.test", 443)
                .unwrap_err()
                .reason
                .contains("10.1.2.3")
        );
        assert!(p.vet("meta.test", 80).is_err());
        assert!(
            p.vet("denied.test", 80)
                .unwrap_err()
                .reason
                .contains("allowlist")
        );
    }

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.10", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(split_host_port("a.b:443", 1), Some(("a.b".into(), 443)));
        assert_eq!(split_host_port("a.b", 80), Some(("a.b".into(), 80)));
        assert_eq!(split_host_port("[::1]:8080", 1), Some(("::1".into(), 8080)));
        assert_eq!(split_host_port("a b:1", 1), None);
        assert_eq!(split_host_port("a:b:c", 1), None);
        assert_eq!(split_host_port("", 1), None);
    }

    #[test]
    fn patterns() {
        assert!(validate_pattern("registry.npmjs.org").is_ok());
        assert!(validate_pattern("*.githubusercontent.com").is_ok());
        assert!(validate_pattern("1.2.3.4").is_ok());
        assert!(validate_pattern("a b").is_err());
        assert!(validate_pattern("*").is_err());
    }

    #[test]
    fn api_upstream_urls() {
        let a = ApiUpstream::parse("https://api.anthropic.com", Some("k".into())).unwrap();
        assert!(a.https && a.port == 443 && a.base_path.is_empty());
        let a = ApiUpstream::parse("http://127.0.0.1:8765/gw/", None).unwrap();
        assert!(!a.https && a.port == 8765 && a.base_path == "/gw");
        assert!(ApiUpstream::parse("ftp://x", None).is_err());
        assert!(
            !format!(
                "{:?}",
                ApiUpstream::parse("https://x", Some("sekrit".into())).unwrap()
            )
            .contains("sekrit")
        );
    }
}
