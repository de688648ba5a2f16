//! `network = "allowlist"`: no route out, only creel's proxy, which admits allowlisted hosts and
//! refuses the rest; the API key stays on the host. The "internet" is a test host in a network
//! namespace made here (198.51.100.10 in TEST-NET-2, on a /30 so that nothing else on the host is
//! routed there: the package registries here live in TEST-NET-3) serving HTTP on 80 and TLS on 443.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::util::{Receiver, TestEnv, eventually};

const NS: &str = "creel-test-inet";
const HOST_IP: &str = "198.51.100.10";
const HOST_SIDE: &str = "198.51.100.9/30";
const NS_SIDE: &str = "198.51.100.10/30";

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The test internet: made once per test run (idempotent: a leftover one is replaced).
fn internet() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        // Replace a leftover from an earlier run.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", NS]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                sh(&["kill", "-9", pid]);
            }
        }
        sh(&["ip", "netns", "del", NS]);
        // Never shadow anything this host really talks to (its package registries, say).
        for host in ["deb.debian.org", "index.crates.io", "registry.npmjs.org", "pypi.org"] {
            if let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(host, 80)) {
                for a in addrs {
                    assert!(
                        !a.ip().to_string().starts_with("198.51.100."),
                        "{host} resolves into the test internet's range ({a}): pick another range"
                    );
                }
            }
        }
        sh(&["ip", "link", "del", "creel-inet-h"]);
        for cmd in [
            vec!["ip", "netns", "add", NS],
            vec!["ip", "link", "add", "creel-inet-h", "type", "veth", "peer", "name", "creel-inet-n"],
            vec!["ip", "link", "set", "creel-inet-n", "netns", NS],
            vec!["ip", "addr", "add", HOST_SIDE, "dev", "creel-inet-h"],
            vec!["ip", "link", "set", "creel-inet-h", "up"],
            vec!["ip", "netns", "exec", NS, "ip", "addr", "add", NS_SIDE, "dev", "creel-inet-n"],
            vec!["ip", "netns", "exec", NS, "ip", "link", "set", "creel-inet-n", "up"],
            vec!["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"],
        ] {
            assert!(sh(&cmd), "test internet setup failed at {cmd:?} (needs root and iproute2)");
        }
        let dir = std::env::temp_dir().join("creel-test-inet");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "hello from the test internet\n").unwrap();
        assert!(sh(&["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=allowed.test",
            "-keyout", dir.join("key.pem").to_str().unwrap(), "-out", dir.join("cert.pem").to_str().unwrap()]));
        let server = format!(
            "import http.server, ssl, threading, functools\n\
             H = functools.partial(http.server.SimpleHTTPRequestHandler, directory={dir:?})\n\
             plain = http.server.ThreadingHTTPServer(('{HOST_IP}', 80), H)\n\
             tls = http.server.ThreadingHTTPServer(('{HOST_IP}', 443), H)\n\
             ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain({cert:?}, {key:?})\n\
             tls.socket = ctx.wrap_socket(tls.socket, server_side=True)\n\
             threading.Thread(target=tls.serve_forever, daemon=True).start()\n\
             plain.serve_forever()\n",
            dir = dir.to_str().unwrap(),
            cert = dir.join("cert.pem").to_str().unwrap(),
            key = dir.join("key.pem").to_str().unwrap(),
        );
        let mut server = Command::new("ip")
            .args(["netns", "exec", NS, "python3", "-c", &server])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        // It serves until the test run ends; reap it if it exits earlier.
        std::thread::spawn(move || server.wait());
        eventually(Duration::from_secs(20), "test internet up", || {
            std::net::TcpStream::connect_timeout(&format!("{HOST_IP}:80").parse().unwrap(), Duration::from_millis(500)).ok()
        });
    });
}

fn allowlist_env(extra: &str) -> TestEnv {
    internet();
    TestEnv::with_config(&format!(
        "network = \"allowlist\"\negress_allow = [\"allowed.test\", \"rebind.test\", \"meta.test\"]\n\
         egress_resolve = {{ \"allowed.test\" = \"{HOST_IP}\", \"denied.test\" = \"{HOST_IP}\", \"rebind.test\" = \"10.66.0.1\", \"meta.test\" = \"169.254.169.254\" }}\n{extra}"
    ))
}

/// The Bash tool's output in a finished job.
fn tool_output(env: &TestEnv, job: &str) -> String {
    let raw = String::from_utf8(env.raw_output(job)).unwrap();
    raw.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["message"]["content"][0]["content"]
                .as_str()
                .map(String::from)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn allowed_hosts_are_reachable_and_everything_else_is_refused() {
    let env = allowlist_env("");
    let connect = |target: &str| {
        format!(
            "printf 'CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n' | timeout 5 nc 127.0.0.1 3128 | head -n 1 | sed 's/^/[{target}] /'"
        )
    };
    let probe = [
        "wget -q -O- http://allowed.test/ | sed 's/^/[http-allowed] /'".to_string(),
        "wget -q -O- http://denied.test/ 2>&1 | sed 's/^/[http-denied] /'".to_string(),
        connect("allowed.test:443"),
        connect(&format!("{HOST_IP}:443")),
        connect("denied.test:443"),
        connect("rebind.test:443"),
        connect("meta.test:80"),
        connect("169.254.169.254:80"),
        connect("localhost:22"),
        "printf 'GET http://allowed.test@denied.test/ HTTP/1.1\\r\\n\\r\\n' | timeout 5 nc 127.0.0.1 3128 | head -n 1 | sed 's/^/[userinfo] /'".to_string(),
        // Attempts that ignore the proxy: raw sockets and a direct fetch.
        format!("timeout 5 nc -w 3 {HOST_IP} 80 </dev/null && echo '[raw] CONNECTED' || echo '[raw] BLOCKED'"),
        format!("timeout 5 wget -q -Y off -O- http://{HOST_IP}/ && echo '[direct] FETCHED' || echo '[direct] BLOCKED'"),
        // Bytes really flow through a CONNECT tunnel (busybox has no TLS client that uses one).
        "printf 'CONNECT allowed.test:80 HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\nHost: allowed.test\\r\\n\\r\\n' | timeout 5 nc 127.0.0.1 3128 | tail -n 1 | sed 's/^/[tunnel] /'".to_string(),
    ]
    .join("; ");
    let (job, _) = env.start(&format!("bash {probe}"), &[]);
    let s = env.wait(&job);
    let out = tool_output(&env, &job);
    assert!(
        out.contains("[http-allowed] hello from the test internet"),
        "{out}"
    );
    assert!(
        out.contains("[tunnel] hello from the test internet"),
        "{out}"
    );
    assert!(out.contains("[allowed.test:443] HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("[http-denied]") && out.contains("403"),
        "{out}"
    );
    for refused in [
        format!("{HOST_IP}:443"),
        "denied.test:443".into(),
        "rebind.test:443".into(),
        "meta.test:80".into(),
        "169.254.169.254:80".into(),
        "localhost:22".into(),
    ] {
        assert!(
            out.contains(&format!("[{refused}] HTTP/1.1 403")),
            "{refused} not refused: {out}"
        );
    }
    assert!(out.contains("[userinfo] HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("[raw] BLOCKED") && !out.contains("[raw] CONNECTED"),
        "{out}"
    );
    assert!(out.contains("[direct] BLOCKED"), "{out}");
    // The namespace holder ends with the job.
    eventually(Duration::from_secs(20), "pause container removed", || {
        crate::util::podman_containers(&format!("io.creel.pause={job}"))
            .is_empty()
            .then_some(())
    });
    let denied: Vec<String> = s["egressDenied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["host"].as_str().unwrap().to_string())
        .collect();
    for host in [
        "denied.test",
        HOST_IP,
        "rebind.test",
        "meta.test",
        "169.254.169.254",
        "localhost",
    ] {
        assert!(
            denied.iter().any(|d| d == host),
            "{host} not in egressDenied: {s}"
        );
    }
}

#[test]
fn the_api_key_never_enters_the_container_and_the_proxy_adds_it() {
    let rx = Receiver::start(vec![200]);
    let base = rx.url.trim_end_matches("/hooks/agent").to_string();
    let env = allowlist_env(&format!("api_base_url = \"{base}\"\n"));
    let key = "sk-test-key-0123456789";
    // The probe must not contain the key itself: it dumps what a hostile agent could read and
    // the test searches that for the key.
    let probe = "bash echo base=$ANTHROPIC_BASE_URL; env; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline | tr '\\0' '\\n'; \
                 find /creel /tmp /workspace -type f -exec cat {} +; \
                 wget -q -O- --header 'x-api-key: stolen-attempt' --post-data '{\"model\":\"m\"}' $ANTHROPIC_BASE_URL/v1/messages?beta=true && echo API-REACHED\nsleep 2"
        .to_string();
    let (job, _) = env.start(&probe, &[]);
    // While it runs: nothing in podman inspect or ps either.
    let cid = eventually(Duration::from_secs(30), "container", || {
        crate::util::podman_containers(&format!("io.creel.job={job}"))
            .into_iter()
            .next()
    });
    let inspect = Command::new("podman")
        .args(["inspect", &cid])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&inspect.stdout).contains(key),
        "key in podman inspect"
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let out = tool_output(&env, &job);
    assert!(
        out.contains("ANTHROPIC_API_KEY=creel-proxy-adds-the-real-key"),
        "the container sees only a placeholder: {out}"
    );
    assert!(
        !out.contains(key),
        "the real key is visible inside the container: {out}"
    );
    assert!(
        out.contains("base=http://127.0.0.1:3128") && out.contains("API-REACHED"),
        "{out}"
    );
    let reqs = rx.requests();
    let r = reqs
        .iter()
        .find(|r| r.path.starts_with("/v1/messages"))
        .unwrap_or_else(|| panic!("{reqs:?}"));
    let api_key: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "x-api-key")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        api_key,
        vec![key],
        "the proxy replaces whatever key the container sent"
    );
    assert_eq!(r.body["model"], "m");
}

#[test]
fn a_dead_proxy_fails_closed_and_recovery_restores_it() {
    let env = allowlist_env("");
    let (job, _) = env.start(
        "say begin\nsleep 3\nbash timeout 5 wget -q -O- http://allowed.test/ || echo NO-WAY-OUT\nsleep 5\nbash timeout 5 wget -q -O- http://allowed.test/ | sed 's/^/[after] /'",
        &[],
    );
    let pid = eventually(Duration::from_secs(20), "monitor", || {
        crate::util::monitor_pid(&job)
    });
    std::thread::sleep(Duration::from_millis(500));
    // The monitor (and its proxy) dies; nothing reconciles for a while: no way out.
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    // A front end notices; the new monitor binds the proxy again.
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let out = tool_output(&env, &job);
    assert!(
        out.contains("NO-WAY-OUT"),
        "without its proxy the job must have no network: {out}"
    );
    assert!(
        out.contains("[after] hello from the test internet"),
        "{out}"
    );
}

#[test]
fn docker_jobs_get_the_same_allowlist() {
    let host = match std::env::var("CREEL_TEST_DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h,
        _ => {
            assert!(std::env::var("CI").is_err(), "CI must run the Docker tests");
            return;
        }
    };
    let mut env = allowlist_env("runtime = \"docker\"\n");
    env.set_env("DOCKER_HOST", &host);
    let (job, _) = env.start(
        &format!(
            "bash wget -q -O- http://allowed.test/ | sed 's/^/[allowed] /'; timeout 5 nc -w 3 {HOST_IP} 80 </dev/null && echo '[raw] CONNECTED' || echo '[raw] BLOCKED'; wget -q -O- http://denied.test/ 2>&1 | sed 's/^/[denied] /'"
        ),
        &[],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let out = tool_output(&env, &job);
    assert!(
        out.contains("[allowed] hello from the test internet"),
        "{out}"
    );
    assert!(out.contains("[raw] BLOCKED"), "{out}");
    assert!(out.contains("[denied]") && out.contains("403"), "{out}");
}
