//! Test harness: `TestEnv` gives each test its own `$CREEL_HOME`, config file and user home,
//! runs the built `creel` with every `CREEL_*` variable cleared, and on failure prints the
//! command, its output and the state directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The test image, built by `scripts/build-test-image.sh`.
pub const TEST_IMAGE: &str = "localhost/creel-test:latest";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

static IMAGE: Once = Once::new();

/// Builds the test image for root podman if it is missing or stale (idempotent and quick).
pub fn ensure_image() {
    IMAGE.call_once(|| {
        let status = Command::new(repo_root().join("scripts/build-test-image.sh"))
            .args(["--runtime", "podman"])
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build-test-image.sh");
        assert!(status.success(), "scripts/build-test-image.sh failed");
    });
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub config: PathBuf,
    pub user_home: PathBuf,
    pub env: Vec<(String, String)>,
}

impl TestEnv {
    /// A fresh environment with the test image, creel's default network (`allowlist`: each
    /// job behind its own proxy, the path users are on) and an API key.
    pub fn new() -> TestEnv {
        Self::with_config("")
    }

    /// Like `new`, with extra TOML lines in the config file.
    pub fn with_config(extra: &str) -> TestEnv {
        ensure_image();
        Self::without_image(extra)
    }

    /// For tests that never start a container (the fast tier: help, messages): no test image
    /// is built, and no container engine is needed.
    pub fn without_image(extra: &str) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("creel-test-")
            .tempdir()
            .expect("tempdir");
        let home = dir.path().join("home");
        let user_home = dir.path().join("user");
        std::fs::create_dir_all(&user_home).unwrap();
        let config = dir.path().join("config.toml");
        let mut text = format!(
            "image = \"{TEST_IMAGE}\"\nmax_output_size = 0\nstartup_timeout = 60\nidle_timeout = 60\nsession_idle_timeout = 0\n"
        );
        text.push_str(extra);
        // Later keys override earlier ones in our tests: rebuild with the extra ones last.
        let mut seen = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some((k, _)) = line.split_once('=') {
                seen.insert(k.trim().to_string(), line.to_string());
            }
        }
        std::fs::write(
            &config,
            seen.values().cloned().collect::<Vec<_>>().join("\n") + "\n",
        )
        .unwrap();
        TestEnv {
            home,
            config,
            user_home,
            env: vec![("ANTHROPIC_API_KEY".into(), "sk-test-key-0123456789".into())],
            dir,
        }
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.into(), v.into()));
    }

    pub fn unset_env(&mut self, k: &str) {
        self.env.retain(|(n, _)| n != k);
    }

    /// The `creel` command with this environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_creel"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CREEL_")
                || k.starts_with("ANTHROPIC_")
                || k == "XDG_CONFIG_HOME"
                || k == "XDG_DATA_HOME"
            {
                c.env_remove(k);
            }
        }
        c.env("CREEL_HOME", &self.home)
            .env("CREEL_CONFIG", &self.config)
            .env("HOME", &self.user_home)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(args).stdin(Stdio::null());
        c
    }

    /// Runs creel and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run creel")
    }

    /// Runs creel with standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs creel, asserts exit code 0, parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        self.expect_code(&out, 0, args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}\nnot JSON: {e}", self.describe(args, &out)))
    }

    pub fn expect_code(&self, out: &Output, code: i32, args: &[&str]) {
        if out.status.code() != Some(code) {
            panic!("expected exit code {code}\n{}", self.describe(args, out));
        }
    }

    pub fn describe(&self, args: &[&str], out: &Output) -> String {
        let listing = Command::new("find")
            .arg(&self.home)
            .arg("-maxdepth")
            .arg("3")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        format!(
            "command: creel {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- home\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            listing
        )
    }

    /// Starts a job and returns its id.
    pub fn start(&self, prompt: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["start", "--json", prompt];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        (
            v["jobId"].as_str().unwrap().to_string(),
            v["sessionId"].as_str().unwrap().to_string(),
        )
    }

    /// Waits for a job (up to 120 s) and returns its final status.
    pub fn wait(&self, job: &str) -> Value {
        let out = self.run(&["wait", job, "--timeout", "120", "--json"]);
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{}",
            self.describe(&["wait", job], &out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The whole raw output of a job.
    pub fn raw_output(&self, job: &str) -> Vec<u8> {
        std::fs::read(self.home.join("jobs").join(job).join("output.jsonl")).unwrap_or_default()
    }

    /// Reads all output pages through `creel output --json`.
    pub fn paged_output(&self, job: &str, limit: u64, format: &str) -> String {
        let mut offset = 0u64;
        let mut all = String::new();
        loop {
            let v = self.json(&[
                "output",
                job,
                "--json",
                "--offset",
                &offset.to_string(),
                "--limit",
                &limit.to_string(),
                "--format",
                format,
            ]);
            all.push_str(v["content"].as_str().unwrap());
            let next = v["nextOffset"].as_u64().unwrap();
            if !v["hasMore"].as_bool().unwrap() {
                return all;
            }
            assert!(next > offset, "no progress at {offset}");
            offset = next;
        }
    }
}

impl Drop for TestEnv {
    /// On a failing test, show what the monitors logged: it is usually the answer.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(jobs) = std::fs::read_dir(self.home.join("jobs")) else {
            return;
        };
        for job in jobs.flatten() {
            for f in ["monitor.log", "stderr.log"] {
                if let Ok(text) = std::fs::read_to_string(job.path().join(f))
                    && !text.trim().is_empty()
                {
                    eprintln!("--- {}/{f}\n{}", job.path().display(), text.trim_end());
                }
            }
        }
    }
}

/// Polls `f` until it returns Some, or panics after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Containers (any state) carrying a label, via podman.
pub fn podman_containers(label: &str) -> Vec<String> {
    let out = Command::new("podman")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.ID}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: Value,
}

/// A tiny HTTP receiver on 127.0.0.1 that records every request and answers with the given
/// statuses in turn (the last one repeats).
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(statuses: Vec<u16>) -> Receiver {
        Self::listen(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            statuses,
        )
    }

    /// A receiver on a fixed address (answering 200), e.g. OpenClaw's default.
    pub fn start_on(addr: &str) -> Receiver {
        let listener = std::net::TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("cannot listen on {addr} for the test: {e}"));
        Self::listen(listener, vec![200])
    }

    fn listen(listener: std::net::TcpListener, statuses: Vec<u16>) -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let url = format!("http://{}/hooks/agent", listener.local_addr().unwrap());
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let got2 = got.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut len = 0usize;
                let mut auth = None;
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = Some(h["authorization:".len()..].trim().to_string());
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let status = *statuses.get(n).or(statuses.last()).unwrap_or(&200);
                n += 1;
                got2.lock().unwrap().push(Received {
                    path,
                    headers,
                    authorization: auth,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                );
            }
        });
        Receiver { url, got }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// The pid of a job's monitor process, if one is running.
pub fn monitor_pid(job: &str) -> Option<String> {
    let out = Command::new("pgrep")
        .args(["-f", &format!("__monitor {job}")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(String::from)
}

/// Parses stream-json (one JSON object per non-empty line), failing on a bad line.
pub fn lines_of(raw: &[u8]) -> Vec<Value> {
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("bad line {e}: {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

/// The command lines of the live child processes of `pid`.
pub fn children_of(pid: i32) -> Vec<String> {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
        if ppid == Some(pid) && state != Some("Z") {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            kids.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    kids
}

/// The file named by `var`, or `None` (skip) outside CI.
pub fn external_tool(var: &str, what: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = std::path::PathBuf::from(p);
            assert!(p.exists(), "{var}={} does not exist", p.display());
            Some(p)
        }
        None => {
            skip_unless_ci(&format!(
                "the {what} test needs {var} \
                 (run scripts/mcp-clients.sh install, then scripts/test)"
            ));
            None
        }
    }
}

/// Waits until no process holds a job's monitor lock (its monitor, webhook included, is done).
pub fn wait_monitor_exit(env: &TestEnv, job: &str) {
    let lock = env.home.join("jobs").join(job).join("monitor.lock");
    eventually(Duration::from_secs(60), "the job's monitor to exit", || {
        let f = std::fs::OpenOptions::new().write(true).open(&lock).ok()?;
        f.try_lock().ok()
    });
}

/// Whether this run is CI's, where every test must really run (`CI=true`, as `.ci/run` sets
/// it). Elsewhere a test whose setup is missing says so and skips; in CI that is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips a test whose `what` is missing outside CI (with a line saying so), and fails it in CI.
pub fn skip_unless_ci(what: &str) {
    assert!(!in_ci(), "CI must run this test, but {what}");
    eprintln!("skipping: {what}");
}

/// SIGKILLs a job's monitor (asserting the kill worked) and waits until it is really gone (its
/// lock free: a killed monitor holds it until its last thread is torn down). Returns its pid.
pub fn kill_monitor(env: &TestEnv, job: &str) -> String {
    let pid = eventually(Duration::from_secs(20), "the job's monitor", || {
        monitor_pid(job)
    });
    let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(killed.success(), "kill -9 {pid} failed");
    wait_monitor_exit(env, job);
    pid
}

/// Plain git in `dir`, as the user runs it (with an identity for commits); its stdout.
pub fn user_git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=U", "-c", "user.email=u@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new repository at `dir` on branch `main` with `files` committed as `init`.
pub fn user_repo(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    user_git(dir, &["init", "-q", "-b", "main"]);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    user_git(dir, &["add", "."]);
    user_git(dir, &["commit", "-qm", "init", "--allow-empty"]);
}

/// Spawns `cmd` (stdin closed, stderr inherited) and reads the first line it prints: the
/// address a server of creel's (`fake-model`, `fake-kube`, `kube proxy`) says it listens on.
pub fn spawn_reading_line(cmd: &mut Command) -> (std::process::Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    (child, line.trim().to_string())
}
