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

/// The test internet: made once per test run (idempotent: a leftover one is replaced). Returns
/// its plain-HTTP address, which the host reaches.
pub(crate) fn internet() -> std::net::SocketAddr {
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
    format!("{HOST_IP}:80").parse().unwrap()
}

fn allowlist_env(extra: &str) -> TestEnv {
    internet();
    TestEnv::with_config(&format!(
        "network = \"allowlist\"\negress_allow = [\"allowed.test\", \"rebind.test\", \"meta.test\"]\n\
         egress_resolve = {{ \"allowed.test\" = \"{HOST_IP}\", \"denied.test\" = \"{HOST_IP}\", \"plain-denied.test\" = \"{HOST_IP}\", \"rebind.test\" = \"10.66.0.1\", \"meta.test\" = \"169.254.169.254\" }}\n{extra}"
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
        "wget -q -O- http://plain-denied.test/ 2>&1 | sed 's/^/[http-denied] /'".to_string(),
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
    // The plain-HTTP refusal itself (other probes print 403s too), and under its own name.
    assert!(
        out.lines()
            .any(|l| l.starts_with("[http-denied]") && l.contains("HTTP/1.1 403")),
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
    // The namespace ends with the job's container; nothing else was started for it.
    eventually(
        Duration::from_secs(20),
        "the job's container removed",
        || {
            crate::util::podman_containers(&format!(
                "io.creel.session={}",
                s["sessionId"].as_str().unwrap()
            ))
            .is_empty()
            .then_some(())
        },
    );
    let denied: Vec<String> = s["egressDenied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["host"].as_str().unwrap().to_string())
        .collect();
    for host in [
        "plain-denied.test",
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
                 wget -q -O- --header 'x-api-key: stolen-attempt' --header 'Authorization: Bearer stolen-attempt' --post-data '{\"model\":\"m\"}' $ANTHROPIC_BASE_URL/v1/messages?beta=true && echo API-REACHED\nsleep 2"
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
    assert!(
        !r.headers.iter().any(|(k, _)| k == "authorization"),
        "the container's own Authorization is dropped: {:?}",
        r.headers
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
    // Kill only once the job really runs behind its proxy (its first line is out), and well
    // before its first fetch 3 s later: a kill before the container starts would let the
    // next monitor start it with a working proxy, and prove nothing.
    eventually(Duration::from_secs(30), "the job's first output", || {
        let s = env.json(&["status", &job, "--json"]);
        (s["outputSize"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    // The monitor (and its proxy) dies; nothing reconciles for a while: no way out.
    crate::util::kill_monitor(&env, &job);
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
            crate::util::skip_unless_ci(
                "the Docker tests need CREEL_TEST_DOCKER_HOST (scripts/dockerd.sh start)",
            );
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

/// An API upstream on 127.0.0.1 that records request heads and throws bodies away (it never
/// keeps them, so a flood through the proxy costs this test nothing), then answers 200.
struct Sink {
    addr: std::net::SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    body_bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Sink {
    fn start() -> Sink {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let body_bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (h2, b2) = (heads.clone(), body_bytes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (h2, b2) = (h2.clone(), b2.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let length = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    });
                    h2.lock().unwrap().push(head);
                    let mut buf = vec![0u8; 1 << 16];
                    let mut left = length.unwrap_or(u64::MAX);
                    while left > 0 {
                        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        match reader.read(&mut buf[..want]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                b2.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                                left -= n as u64;
                            }
                        }
                    }
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    );
                });
            }
        });
        Sink {
            addr,
            heads,
            body_bytes,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A field of `/proc/PID/status` (`Threads`, `VmHWM`, …) as a number.
fn proc_status(pid: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The pid of a job's container (its network namespace is the job's own).
fn job_pid(job: &str) -> String {
    eventually(Duration::from_secs(30), "the job container's pid", || {
        let id = crate::util::podman_containers(&format!("io.creel.job={job}"))
            .into_iter()
            .next()?;
        let out = Command::new("podman")
            .args(["inspect", "--format", "{{.State.Pid}}", &id])
            .output()
            .ok()?;
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (pid != "0" && !pid.is_empty()).then_some(pid)
    })
}

/// The attacks a job's processes can make on its proxy, run from inside the job's network
/// namespace (python3 on the host, entered with nsenter, speaks for the job: busybox cannot
/// hold hundreds of sockets in one process). Each step prints one `name value` line and the
/// `hold` step waits for a line on stdin, so the test can look at the monitor meanwhile.
const ATTACKS: &str = r#"
import socket, sys, time
P = ('127.0.0.1', 3128)
def status_of(payload, timeout=10):
    s = socket.create_connection(P, timeout=timeout)
    s.sendall(payload)
    data = b''
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            data += d
    except socket.timeout:
        pass
    s.close()
    return data
def say(k, v):
    print(k, v, flush=True)
# 1. Hundreds of slow connections, each with a head that never ends.
held = []
for i in range(300):
    s = socket.create_connection(P, timeout=10)
    s.sendall(b'GET http://allowed.test/ HTTP/1.1\r\nX-Slow: ')
    held.append(s)
time.sleep(1)
busy = 0
for s in held:
    s.setblocking(False)
    try:
        if s.recv(64).startswith(b'HTTP/1.1 503'): busy += 1
    except BlockingIOError:
        pass
say('busy', busy)
say('hold', len(held))
sys.stdin.readline()
for s in held: s.close()
time.sleep(0.5)
# 2. A chunked body announcing a huge chunk, then 256 MiB of zeros.
s = socket.create_connection(P, timeout=30)
s.sendall(b'POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffff\r\n')
zeros = b'\0' * (1 << 20)
sent = 0
try:
    for i in range(256):
        s.sendall(zeros); sent += 1
except OSError:
    pass
s.close()
say('flooded_mib', sent)
# 3. Smuggling and escaping attempts toward the API upstream.
r = status_of(b'POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-A: b\nGET /admin HTTP/1.1\r\n\r\n{}')
say('bare_lf', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
r = status_of(b'GET /../admin HTTP/1.1\r\nHost: x\r\n\r\n')
say('dotdot', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
r = status_of(b'GET /v1/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n')
say('encoded_dotdot', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
r = status_of(b'DELETE /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n')
say('delete', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
r = status_of(b'POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}')
say('two_lengths', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
r = status_of(b'POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n Folded: yes\r\n\r\n{}')
say('obs_fold', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
r = status_of(b'POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nx-api-key: stolen\r\n\r\n{}')
say('api', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
# 4. A second, pipelined request naming another host is never read.
r = status_of(b'GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n')
say('pipelined_responses', r.count(b'HTTP/1.'))
# 5. An allowed host on a port nobody allowed.
r = status_of(b'CONNECT allowed.test:22 HTTP/1.1\r\nHost: allowed.test:22\r\n\r\n')
say('other_port', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
# 6. An allowed name the system resolver answers with loopback.
r = status_of(b'CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n')
say('resolves_to_loopback', r.split(b'\r\n')[0].decode(errors='replace').replace(' ', '_'))
say('resolves_to_loopback_why', b'127.0.0.1' in r or b'::1' in r)
say('done', 1)
"#;

#[test]
fn a_job_cannot_make_the_host_pay_through_its_proxy() {
    let sink = Sink::start();
    // `localhost` is allowed but not in egress_resolve: the system resolver answers it.
    let env = allowlist_env(&format!(
        "api_base_url = \"http://{}\"\negress_allow = [\"allowed.test\", \"localhost\"]\n",
        sink.addr
    ));
    let (job, _) = env.start("say up\nsleep 120", &[]);
    let monitor = eventually(Duration::from_secs(30), "monitor", || {
        crate::util::monitor_pid(&job)
    });
    let netns = job_pid(&job);
    eventually(Duration::from_secs(30), "the proxy listening", || {
        Command::new("nsenter")
            .args(["-t", &netns, "-n", "python3", "-c"])
            .arg("import socket; socket.create_connection(('127.0.0.1', 3128), timeout=2).close()")
            .status()
            .ok()?
            .success()
            .then_some(())
    });
    let threads_before = proc_status(&monitor, "Threads");
    let mut attacker = Command::new("nsenter")
        .args(["-t", &netns, "-n", "python3", "-c", ATTACKS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nsenter python3");
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(attacker.stdout.take().unwrap()));
    let mut results = std::collections::BTreeMap::new();
    let mut threads_held = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let (k, v) = line.split_once(' ').unwrap();
        results.insert(k.to_string(), v.to_string());
        if k == "hold" {
            threads_held = proc_status(&monitor, "Threads");
            use std::io::Write;
            writeln!(attacker.stdin.as_mut().unwrap()).unwrap();
        }
        if k == "done" {
            break;
        }
    }
    let _ = attacker.wait();
    let peak_kib = proc_status(&monitor, "VmHWM");
    let heads = sink.heads();
    let context = format!("{results:?}\nupstream saw: {heads:#?}");

    // Connections: bounded, refused at once beyond the bound, and no thread each.
    let busy: u64 = results["busy"].parse().unwrap();
    assert!(
        busy >= 300 - 64,
        "connections beyond the bound must be refused (503): {context}"
    );
    assert!(
        threads_held <= threads_before + 4,
        "300 connections made the monitor go from {threads_before} to {threads_held} threads: {context}"
    );
    // Memory: the flood streamed through, never collected.
    assert_eq!(results["flooded_mib"], "256", "{context}");
    assert!(
        sink.body_bytes.load(std::sync::atomic::Ordering::SeqCst) > 64 << 20,
        "the flood did not reach the upstream: {context}"
    );
    assert!(
        peak_kib < 96 * 1024,
        "the monitor's peak memory grew to {peak_kib} KiB during a 256 MiB flood: {context}"
    );
    // The API upstream saw only the API's own paths, never a smuggled or escaped request.
    for (probe, want) in [
        ("bare_lf", "400"),
        ("dotdot", "403"),
        ("encoded_dotdot", "403"),
        ("delete", "403"),
        ("two_lengths", "400"),
        ("obs_fold", "400"),
        ("api", "200"),
        ("other_port", "403"),
        ("resolves_to_loopback", "403"),
    ] {
        assert!(
            results[probe].starts_with(&format!("HTTP/1.1_{want}")),
            "{probe}: {context}"
        );
    }
    assert_eq!(results["pipelined_responses"], "1", "{context}");
    assert_eq!(
        results["resolves_to_loopback_why"], "True",
        "refused for what it resolves to: {context}"
    );
    assert!(
        heads
            .iter()
            .all(|h| h.starts_with("POST /v1/messages") && !h.contains("admin")),
        "{context}"
    );
    let api = heads
        .iter()
        .find(|h| h.starts_with("POST /v1/messages?beta=true"))
        .unwrap_or_else(|| panic!("{context}"));
    assert!(
        api.contains("x-api-key: sk-") && !api.contains("stolen"),
        "the real key, and only it: {context}"
    );
    env.run(&["cancel", &job]);
    let s = env.wait(&job);
    let denied = s["egressDenied"].to_string();
    assert!(denied.contains("allowed.test"), "{s}");
}

#[test]
fn a_proxy_that_cannot_start_fails_the_job_closed() {
    // The monitor dies; the API key file its successor needs to run the proxy is gone. The
    // job must end, not run on without a proxy.
    let env = allowlist_env("");
    let (job, _) = env.start("say up\nsleep 30\nsay should never print", &[]);
    eventually(Duration::from_secs(30), "the job's first output", || {
        let s = env.json(&["status", &job, "--json"]);
        (s["outputSize"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    crate::util::kill_monitor(&env, &job);
    std::fs::remove_file(env.home.join("jobs").join(&job).join("api-key")).unwrap();
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["error"]["message"]
            .as_str()
            .unwrap()
            .contains("egress proxy could not start"),
        "{s}"
    );
    assert!(
        !env.paged_output(&job, 65536, "text")
            .contains("should never print")
    );
    eventually(
        Duration::from_secs(30),
        "the job's containers removed",
        || {
            crate::util::podman_containers(&format!("io.creel.job={job}"))
                .is_empty()
                .then_some(())
        },
    );
}

#[test]
fn network_bridge_reaches_the_internet_directly() {
    // `bridge` is the open mode: the job reaches hosts without creel's proxy.
    let target = internet();
    let env = TestEnv::with_config("network = \"bridge\"\n");
    let (job, _) = env.start(
        &format!(
            "bash timeout 5 wget -q -Y off -O- http://{target}/ 2>&1 | sed 's/^/[direct] /'; echo proxy=${{HTTPS_PROXY:-none}}"
        ),
        &[],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let out = tool_output(&env, &job);
    assert!(
        out.contains("[direct] hello from the test internet"),
        "{out}"
    );
    assert!(out.contains("proxy=none"), "no proxy in bridge mode: {out}");
}
