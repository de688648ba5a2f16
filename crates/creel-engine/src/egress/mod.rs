//! The egress policy of `network = "allowlist"`: the container has no route out, and its only
//! way out is creel's HTTP/HTTPS forward proxy (`proxy.rs`), listening inside the job's network
//! namespace (see `netns.rs`) and connecting from the host. This file decides what it admits.
//!
//! - `CONNECT host:port` (TLS) and absolute-form `GET http://host/…` are admitted only for
//!   hosts matching the allowlist, on ports 80 and 443 unless an entry names another port
//!   (`host:8443`), and only to addresses that are not private, loopback, link-local (cloud
//!   metadata), CGNAT, multicast or unspecified, whatever the name resolves to. The vetted
//!   address is the one connected to, so a name cannot rebind between check and use. Raw IP
//!   targets are refused unless listed verbatim.
//! - Origin-form requests (`POST /v1/messages`) are Claude's API traffic (its
//!   `ANTHROPIC_BASE_URL` points at the proxy): they go to creel's configured upstream
//!   (`api_base_url`, which may be a gateway or `creel fake-model` on loopback; the
//!   private-range rule is for what the container asks for, not for creel's own upstream).
//!   Only normalised paths under `/v1/` are forwarded, and only those carry the real API key,
//!   added on the way. The key never enters the container.
//! - Every refusal is reported to the caller (counted per host, shown in `status`).
//! - Shared by a cluster's jobs (`creel egress-proxy`, `tokens.rs`), the proxy admits only
//!   requests carrying a valid job token: `Proxy-Authorization: Basic job:TOKEN` for tunnels
//!   and plain-HTTP fetches, `x-api-key: TOKEN` (or `Authorization: Bearer TOKEN`) for API
//!   calls, whose token it replaces with the real key.

pub(crate) mod proxy;
pub mod tokens;

pub use proxy::{DenialSink, serve};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// The API host that is always admitted.
pub const ANTHROPIC_API_HOST: &str = "api.anthropic.com";
/// The port the proxy listens on inside each job's own network namespace.
pub const PROXY_PORT: u16 = 3128;
/// The ports an allowlist entry without an explicit port admits.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

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

/// One allowlist entry, parsed: a host (`*.suffix` as a suffix) and the ports it admits.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// The lower-case host name or IP (without brackets), or `.suffix` for `*.suffix`.
    host: String,
    suffix: bool,
    /// `None`: the default ports, 80 and 443.
    port: Option<u16>,
}

/// Parses an allowlist entry: a host name, `*.suffix`, an IP address or `[v6]`, each optionally
/// with `:port`.
fn parse_entry(p: &str) -> Result<Entry, String> {
    let p = p.trim();
    let (host, port) = if let Some(rest) = p.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("`{p}` is not a host name"))?;
        let port = match &rest[end + 1..] {
            "" => None,
            tail => Some(parse_port(p, tail.strip_prefix(':'))?),
        };
        (&rest[..end], port)
    } else if p.parse::<Ipv6Addr>().is_ok() {
        (p, None)
    } else {
        match p.rsplit_once(':') {
            Some((h, tail)) => (h, Some(parse_port(p, Some(tail))?)),
            None => (p, None),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let (name, suffix) = match host.strip_prefix("*.") {
        Some(s) => (s.to_string(), true),
        None => (host.clone(), false),
    };
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{p}` is not a host name"));
    }
    if name.parse::<IpAddr>().is_ok() {
        if suffix {
            return Err(format!(
                "`{p}`: a wildcard cannot stand before an IP address"
            ));
        }
        return Ok(Entry {
            host: name,
            suffix: false,
            port,
        });
    }
    if !name.split('.').all(|l| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        return Err(format!(
            "`{p}` is not a host name or `*.suffix` pattern (optionally with `:port`)"
        ));
    }
    Ok(Entry {
        host: if suffix { format!(".{name}") } else { name },
        suffix,
        port,
    })
}

fn parse_port(p: &str, tail: Option<&str>) -> Result<u16, String> {
    tail.and_then(|t| t.parse::<u16>().ok())
        .filter(|&port| port > 0)
        .ok_or_else(|| format!("`{p}`: the port must be a number from 1 to 65535"))
}

/// Checks an allowlist entry: a host name, `*.suffix`, or an IP address, each optionally with
/// `:port` (without one, ports 80 and 443 are admitted).
pub fn validate_pattern(p: &str) -> Result<(), String> {
    parse_entry(p).map(|_| ())
}

/// How many refused hosts a job keeps by name (the most recent ones).
pub const MAX_REFUSED_HOSTS: usize = 32;

/// A job's egress refusals, summarised within a fixed size whatever the job tries: the total
/// count, and the most recently refused hosts (at most [`MAX_REFUSED_HOSTS`], oldest first)
/// with their counts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Refusals {
    /// Every refusal, including those of hosts no longer listed.
    pub total: u64,
    /// `(host, count)`, the most recently refused last.
    pub hosts: Vec<(String, u64)>,
}

impl Refusals {
    /// Counts one refusal of `host`.
    pub fn record(&mut self, host: &str) {
        self.total = self.total.saturating_add(1);
        let host = crate::stream::cut_str(host, 255);
        if let Some(i) = self.hosts.iter().position(|(h, _)| h == host) {
            let (h, n) = self.hosts.remove(i);
            self.hosts.push((h, n.saturating_add(1)));
            return;
        }
        if self.hosts.len() >= MAX_REFUSED_HOSTS {
            self.hosts.remove(0);
        }
        self.hosts.push((host.to_string(), 1));
    }

    /// Refusals of hosts that are no longer listed by name.
    pub fn unlisted(&self) -> u64 {
        let listed: u64 = self.hosts.iter().map(|(_, n)| *n).sum();
        self.total.saturating_sub(listed)
    }
}

impl<'de> serde::Deserialize<'de> for Refusals {
    /// Also reads the older stored form, a bare list of `(host, count)`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Summary {
                total: u64,
                hosts: Vec<(String, u64)>,
            },
            List(Vec<(String, u64)>),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Summary { total, hosts } => Refusals { total, hosts },
            Stored::List(list) => {
                let mut r = Refusals::default();
                for (h, n) in list {
                    r.total = r.total.saturating_add(n);
                    if r.hosts.len() >= MAX_REFUSED_HOSTS {
                        r.hosts.remove(0);
                    }
                    r.hosts.push((h, n));
                }
                r
            }
        })
    }
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

/// Which hosts (and ports) the proxy admits and how it resolves them.
#[derive(Debug, Clone)]
pub struct Policy {
    entries: Vec<Entry>,
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
    /// A policy admitting `allow` (plus the Anthropic API on 443), resolving names in
    /// `resolve` statically and the rest through the system resolver. Entries that do not
    /// parse (the config check refuses them earlier) admit nothing.
    pub fn new(allow: &[String], resolve: &BTreeMap<String, String>) -> Policy {
        let mut entries = vec![Entry {
            host: ANTHROPIC_API_HOST.to_string(),
            suffix: false,
            port: Some(443),
        }];
        entries.extend(allow.iter().filter_map(|p| parse_entry(p).ok()));
        let resolve = resolve
            .iter()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.parse().ok()?)))
            .collect();
        Policy { entries, resolve }
    }

    /// Whether `host` is on the allowlist for `port`.
    pub fn admits(&self, host: &str, port: u16) -> bool {
        let h = bare_host(host);
        let is_ip = h.parse::<IpAddr>().is_ok();
        self.entries.iter().any(|e| {
            let host_ok = if e.suffix {
                !is_ip && h.ends_with(e.host.as_str())
            } else {
                e.host == h
            };
            host_ok && e.port.map_or(DEFAULT_PORTS.contains(&port), |p| p == port)
        })
    }

    /// Resolves an admitted host to addresses it may reach, or says why not.
    pub fn vet(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Denial> {
        let deny = |reason: String| Denial {
            host: host.to_string(),
            reason,
        };
        let bare = bare_host(host);
        if !self.admits(&bare, port) {
            let reason = if DEFAULT_PORTS.iter().any(|&p| self.admits(&bare, p)) {
                format!(
                    "port {port} is not allowed for this host (add `{host}:{port}` to egress_allow)"
                )
            } else {
                "not on the allowlist".into()
            };
            return Err(deny(reason));
        }
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

/// A host as the policy compares it: without IPv6 brackets or a trailing dot, lower-case.
fn bare_host(host: &str) -> String {
    host.trim_matches(|c| c == '[' || c == ']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
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
    /// For a proxy that jobs share: the key their tokens are checked with (every request
    /// needs one). `None`: a job's own proxy, reachable by that job only.
    pub tokens: Option<std::sync::Arc<tokens::JobTokens>>,
}

impl ProxyConfig {
    /// The configuration of a proxy that a cluster's jobs share (`creel egress-proxy`): every
    /// request needs a job token signed with `signing_key`; API calls go to `api_base_url`
    /// with `api_key`; tunnels and fetches only to `allow` (as `egress_allow`) and the API.
    pub fn shared(
        signing_key: &[u8],
        api_key: String,
        api_base_url: &str,
        allow: &[String],
    ) -> Result<ProxyConfig, String> {
        for a in allow {
            parse_entry(a).map_err(|e| format!("--allow {a}: {e}"))?;
        }
        let key = api_key.trim().to_string();
        if key.is_empty() {
            return Err("the API key is empty".into());
        }
        Ok(ProxyConfig {
            policy: Policy::new(allow, &BTreeMap::new()),
            api: Some(ApiUpstream::parse(api_base_url, Some(key))?),
            tokens: Some(std::sync::Arc::new(tokens::JobTokens::new(signing_key)?)),
        })
    }
}

/// Confines an API request target to the API's own paths: a normalised path under `/v1/`
/// (no `.`/`..` segments, no empty segments, no encoded dots, slashes or backslashes), with
/// its query kept. Only such requests reach the upstream, and only they carry the key.
pub fn api_target(target: &str) -> Result<&str, String> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let bad = || {
        Err(format!(
            "`{}` is not an API path",
            crate::stream::cut_str(path, 200)
        ))
    };
    if !path.starts_with("/v1/") || path.contains('\\') || path.contains('#') {
        return bad();
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return bad();
    }
    if path[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad();
    }
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return bad();
    }
    Ok(target)
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
        assert!(p.admits("api.anthropic.com", 443));
        assert!(p.admits("Allowed.Test.", 443));
        assert!(p.admits("allowed.test", 80));
        assert!(p.admits("raw.githubusercontent.com", 443));
        assert!(!p.admits("githubusercontent.com.evil.com", 443));
        assert!(!p.admits("evilgithubusercontent.com", 443));
        assert!(!p.admits("denied.test", 443));
        assert!(
            !p.admits("203.0.113.10", 443),
            "raw IPs are refused unless listed"
        );
    }

    #[test]
    fn ports_other_than_80_and_443_need_an_entry_of_their_own() {
        let p = Policy::new(
            &[
                "a.test".into(),
                "b.test:8443".into(),
                "[2001:db8::1]:22".into(),
                "2001:db8::2".into(),
            ],
            &BTreeMap::new(),
        );
        assert!(p.admits("a.test", 443) && p.admits("a.test", 80));
        assert!(
            !p.admits("a.test", 22),
            "an allowed host's other ports are refused"
        );
        assert!(p.admits("b.test", 8443) && !p.admits("b.test", 443));
        assert!(p.admits("[2001:db8::1]", 22) && !p.admits("2001:db8::1", 443));
        assert!(p.admits("2001:db8::2", 443));
        assert!(!p.admits("api.anthropic.com", 80), "the API only on 443");
        let mut resolve = BTreeMap::new();
        resolve.insert("a.test".to_string(), "203.0.113.10".to_string());
        let p = Policy::new(&["a.test".into()], &resolve);
        let e = p.vet("a.test", 22).unwrap_err();
        assert!(e.reason.contains("a.test:22"), "{e:?}");
    }

    #[test]
    fn api_targets_are_confined_to_the_api() {
        assert_eq!(
            api_target("/v1/messages?beta=true"),
            Ok("/v1/messages?beta=true")
        );
        assert!(api_target("/v1/messages/count_tokens").is_ok());
        for bad in [
            "/../admin",
            "/v1/../admin",
            "/v1/./messages",
            "/v1//messages",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E/admin",
            "/v1/..%2fadmin",
            "/v1/a\\..\\b",
            "/admin",
            "/",
            "/v1",
            "/v1/x y",
        ] {
            assert!(api_target(bad).is_err(), "{bad} must be refused");
        }
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
    fn refusals_stay_small_whatever_a_job_tries() {
        let mut r = Refusals::default();
        for i in 0..40_000 {
            r.record(&format!("host-{i}.test"));
        }
        r.record("host-39999.test");
        assert_eq!(r.total, 40_001);
        assert_eq!(r.hosts.len(), MAX_REFUSED_HOSTS);
        assert_eq!(r.hosts.last().unwrap(), &("host-39999.test".to_string(), 2));
        assert_eq!(r.unlisted(), 40_001 - (MAX_REFUSED_HOSTS as u64 + 1));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.len() < 4096, "{}", json.len());
        let back: Refusals = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let old: Refusals = serde_json::from_str(r#"[["a.test",3],["b.test",1]]"#).unwrap();
        assert_eq!((old.total, old.hosts.len()), (4, 2));
        let long = "x".repeat(10_000);
        r.record(&long);
        assert_eq!(r.hosts.last().unwrap().0.len(), 255);
    }

    #[test]
    fn patterns() {
        assert!(validate_pattern("registry.npmjs.org").is_ok());
        assert!(validate_pattern("*.githubusercontent.com").is_ok());
        assert!(validate_pattern("1.2.3.4").is_ok());
        assert!(validate_pattern("a b").is_err());
        assert!(validate_pattern("*").is_err());
        assert!(validate_pattern("a.test:8080").is_ok());
        assert!(validate_pattern("[::1]:22").is_ok());
        assert!(validate_pattern("::1").is_ok());
        assert!(validate_pattern("a.test:0").is_err());
        assert!(validate_pattern("a.test:99999").is_err());
        assert!(validate_pattern("*.1.2.3.4").is_err());
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
