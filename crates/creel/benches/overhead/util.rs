//! Shared pieces: the bench environment, timing statistics, bare-podman argument vectors built
//! by creel's own `argv::run_args`, /proc sampling and byte-exact output comparison.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use creel_engine::config::Config;
use creel_engine::internals::Store;
use creel_engine::internals::{ContainerArgs, run_args};
use creel_engine::internals::{ConversationMode, JobSpec, UserMode};
use creel_engine::{Engine, EngineOptions, JobRecord, MonitorLauncher};

/// The stand-in image (scripts/build-test-image.sh).
pub const TEST_IMAGE: &str = "localhost/creel-test:latest";
/// The API key the bench passes (the stand-in ignores it; creel mounts it as a file).
pub const API_KEY: &str = "sk-bench-0123456789";

/// Wall-clock milliseconds since the epoch, with microsecond precision (the store records
/// integer milliseconds, so creel figures are ±1 ms).
pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// One benchmark environment: its own `$CREEL_HOME`, config file and user home.
pub struct Env {
    pub root: PathBuf,
    pub home: PathBuf,
    pub config: PathBuf,
    pub user_home: PathBuf,
    pub creel: PathBuf,
    keep: bool,
}

impl Env {
    /// A fresh environment under `base` with the bench config plus `extra` TOML lines.
    pub fn new(base: &Path, name: &str, extra: &str, keep: bool) -> Env {
        let root = base.join(name);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create bench dir");
        let home = root.join("home");
        let user_home = root.join("user");
        std::fs::create_dir_all(&user_home).unwrap();
        let config = root.join("config.toml");
        // `extra` keys override the bench's (TOML refuses duplicate keys).
        let mut lines: Vec<String> = Vec::new();
        for line in bench_config().lines().chain(extra.lines()) {
            let key = line.split('=').next().unwrap_or("").trim().to_string();
            lines.retain(|l| l.split('=').next().unwrap_or("").trim() != key);
            lines.push(line.to_string());
        }
        std::fs::write(&config, lines.join("\n") + "\n").unwrap();
        Env {
            root,
            home,
            config,
            user_home,
            creel: PathBuf::from(env!("CARGO_BIN_EXE_creel")),
            keep,
        }
    }

    /// `creel ARGS` with this environment and nothing inherited that could change it.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.creel);
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
            .env("ANTHROPIC_API_KEY", API_KEY)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs creel and returns its output, panicking on a non-zero exit.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("run creel");
        if !out.status.success() {
            panic!(
                "creel {} failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    /// `creel start --json PROMPT [EXTRA]`: (job, session).
    pub fn start(&self, prompt: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["start", "--json", prompt];
        args.extend_from_slice(extra);
        let out = self.run_ok(&args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("start JSON");
        (
            v["jobId"].as_str().expect("jobId").to_string(),
            v["sessionId"].as_str().expect("sessionId").to_string(),
        )
    }

    /// The engine, in this process, exactly as the CLI builds it.
    pub fn engine(&self) -> Engine {
        let config = Config::load(Some(&self.config), true, &|_| None).expect("bench config");
        let mut opts = EngineOptions::from_env(self.home.clone(), config);
        opts.api_key = Some(API_KEY.into());
        opts.api_base_url = None;
        opts.user_home = Some(self.user_home.clone());
        opts.monitor = Some(MonitorLauncher {
            program: self.creel.clone(),
            args: vec!["__monitor".into()],
        });
        Engine::open(opts).expect("open engine")
    }

    /// The real store, opened as any creel process opens it.
    pub fn store(&self) -> Store {
        Store::open(&self.home.join("creel.db")).expect("open store")
    }

    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.home.join("jobs").join(job)
    }

    /// Polls the store (every 2 ms) until the job is final, then waits until its monitor has
    /// exited (its lock is free), so that nothing of this job runs during the next measurement.
    pub fn wait_final(&self, job: &str, timeout: Duration) -> JobRecord {
        let store = self.store();
        let t = Instant::now();
        let rec = loop {
            let rec = store.job(job).expect("store").expect("job exists");
            if rec.state.is_final() {
                break rec;
            }
            assert!(
                t.elapsed() < timeout,
                "job {job} not final after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        self.wait_monitor_exit(job, timeout);
        rec
    }

    /// Waits until no process holds the job's monitor lock.
    pub fn wait_monitor_exit(&self, job: &str, timeout: Duration) {
        let path = self.job_dir(job).join("monitor.lock");
        let t = Instant::now();
        loop {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path)
                && f.try_lock().is_ok()
            {
                return;
            }
            assert!(t.elapsed() < timeout, "monitor of {job} still alive");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The bench's config: the stand-in image, creel's own defaults otherwise, except that output is
/// unlimited (1 GB jobs) and the start/idle timeouts leave room for 50 jobs on 2 cores.
pub fn bench_config() -> String {
    format!(
        "image = \"{TEST_IMAGE}\"\nnetwork = \"none\"\nmax_output_size = 0\nstartup_timeout = 600\nidle_timeout = 600\n"
    )
}

/// A container run by bare podman with exactly the flags creel gives a job's container: the
/// argument vector comes from `creel_engine::internals::run_args` on a real job's spec,
/// with its own directory for the prompt, key, workspace, Claude dir and log.
pub struct Bare {
    pub dir: PathBuf,
    pub name: String,
    pub log: PathBuf,
    pub args: Vec<OsString>,
    pub podman: PathBuf,
}

impl Bare {
    /// Prepares `dir` for a run of `prompt`, as Claude conversation `conversation` (pass the
    /// twin creel job's id to get byte-identical output).
    pub fn prepare(
        spec: &JobSpec,
        dir: &Path,
        tag: &str,
        prompt: &str,
        conversation: &str,
    ) -> Bare {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let (uid, gid) = match spec.user {
            UserMode::KeepId { uid, gid } | UserMode::Plain { uid, gid } => (uid, gid),
        };
        let owner = (unsafe { libc::geteuid() } == 0).then_some((uid, gid));
        let chown = |p: &Path| {
            if let Some((u, g)) = owner {
                std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
            }
        };
        let write = |name: &str, data: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
            chown(&p);
            p
        };
        let prompt_path = write("prompt", prompt.as_bytes());
        let key_path = write("api-key", API_KEY.as_bytes());
        let ws = dir.join("workspace");
        let claude = dir.join("claude");
        for d in [&ws, &claude] {
            std::fs::create_dir_all(d).unwrap();
            chown(d);
        }
        std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut s = spec.clone();
        s.workspace = ws;
        s.claude_config_dir = claude;
        s.conversation = ConversationMode::New(conversation.to_string());
        // The same steering mounts as creel's job (its MCP server starts with Claude).
        // and its prompt as the first message of Claude's input, which here ends after it
        // (creel's monitor ends it once Claude has answered).
        if let Some(steer) = &s.steer {
            creel_engine::internals::prepare_steer(dir, steer, owner).unwrap();
            if steer.messages {
                creel_engine::internals::write_steer_message(dir, 1, prompt, owner).unwrap();
                creel_engine::internals::close_steer_input(dir, 1, owner).unwrap();
            }
        }
        let log = dir.join("container.log");
        let job_id = format!("bare{tag}");
        let args = run_args(&ContainerArgs {
            job_id: &job_id,
            session_id: "bench-bare",
            home: dir,
            spec: &s,
            job_dir: dir,
            log_path: &log,
            prompt_path: &prompt_path,
            api_key_path: s.api_key.then_some(key_path.as_path()),
        });
        Bare {
            dir: dir.to_path_buf(),
            name: format!("creel-{job_id}"),
            log,
            args,
            podman: spec.runtime_bin.clone(),
        }
    }

    /// `podman run ARGS` as creel runs it (detached).
    pub fn detached(&self) -> Command {
        let mut c = Command::new(&self.podman);
        c.arg("run").args(&self.args).stdin(Stdio::null());
        c
    }

    /// `podman run ARGS` attached (without `-d`), stdout to `out`.
    pub fn attached(&self, out: &Path) -> Command {
        let mut c = Command::new(&self.podman);
        let args: Vec<&OsString> = self.args.iter().filter(|a| *a != "-d").collect();
        c.arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::piped());
        c
    }

    /// Force-removes the container (never timed).
    pub fn remove(&self) {
        let _ = Command::new(&self.podman)
            .args(["rm", "-f", "-t", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `podman ARGS` quietly; true on success.
pub fn podman(args: &[&str]) -> bool {
    Command::new("podman")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sorted samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    /// The `q` quantile (nearest rank).
    pub fn q(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    }

    pub fn p50(&self) -> f64 {
        self.q(0.5)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `p50 (p95, n=N)`.
    pub fn fmt_ms(&self) -> String {
        format!(
            "{} (p95 {}, n={})",
            fmt_ms(self.p50()),
            fmt_ms(self.q(0.95)),
            self.len()
        )
    }
}

/// Milliseconds with sensible precision.
pub fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v < 1.0 {
        format!("{:.0} µs", v * 1000.0)
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 1000.0 {
        format!("{v:.0} ms")
    } else {
        format!("{:.2} s", v / 1000.0)
    }
}

/// Times `n` calls of `f` in milliseconds (after `warm` untimed calls).
pub fn time_n(n: usize, warm: usize, mut f: impl FnMut()) -> Samples {
    for _ in 0..warm {
        f();
    }
    let mut s = Samples::default();
    for _ in 0..n {
        let t = Instant::now();
        f();
        s.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    s
}

/// Times `n` runs of a command (stdout and stderr captured and discarded), asserting success.
pub fn time_cmd(n: usize, warm: usize, mut make: impl FnMut() -> Command) -> Samples {
    time_n(n, warm, || {
        let out = make().output().expect("spawn");
        assert!(
            out.status.success(),
            "command failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
}

/// The 1-minute load average and the number of runnable tasks, from /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            let f: Vec<&str> = s.split_whitespace().collect();
            format!("{} {} {}", f[0], f[1], f[2])
        })
        .unwrap_or_default()
}

// ---- /proc ---------------------------------------------------------------------------------

/// What /proc/PID/stat says about CPU time (in clock ticks) and the parent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStat {
    pub ppid: i32,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    Some(ProcStat {
        ppid: f.get(1)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
        cutime: f.get(13)?.parse().ok()?,
        cstime: f.get(14)?.parse().ok()?,
    })
}

/// VmRSS in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A `KEY: N kB` line of /proc/PID/status.
pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// All pids with their argv.
pub fn processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let argv = buf
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, argv));
    }
    out
}

/// (pid, ppid) of every process.
pub fn parent_map() -> Vec<(i32, i32)> {
    processes()
        .into_iter()
        .filter_map(|(p, _)| proc_stat(p).map(|s| (p, s.ppid)))
        .collect()
}

/// Pids of the descendants of `pid` (children, grandchildren, …).
pub fn descendants(parents: &[(i32, i32)], pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in parents {
            if pp == p {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

// ---- output comparison ---------------------------------------------------------------------

/// Compares two stream-json outputs byte for byte, except for the value of `duration_ms` in
/// the final `result` line (the stand-in's wall time, different in every run). Returns the
/// first difference, if any.
pub fn compare_outputs(a: &Path, b: &Path) -> Result<u64, String> {
    let la = std::fs::metadata(a)
        .map_err(|e| format!("{}: {e}", a.display()))?
        .len();
    let lb = std::fs::metadata(b)
        .map_err(|e| format!("{}: {e}", b.display()))?
        .len();
    let (ta, tail_a) = last_line(a, la)?;
    let (tb, tail_b) = last_line(b, lb)?;
    if ta != tb {
        return Err(format!(
            "body sizes differ: {} has {ta} bytes before its last line, {} has {tb}",
            a.display(),
            b.display()
        ));
    }
    // The body, streamed.
    let mut fa = std::fs::File::open(a).map_err(|e| e.to_string())?;
    let mut fb = std::fs::File::open(b).map_err(|e| e.to_string())?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < ta {
        let want = ((ta - done) as usize).min(ba.len());
        fa.read_exact(&mut ba[..want]).map_err(|e| e.to_string())?;
        fb.read_exact(&mut bb[..want]).map_err(|e| e.to_string())?;
        if ba[..want] != bb[..want] {
            let i = ba[..want]
                .iter()
                .zip(&bb[..want])
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            return Err(format!("bytes differ at offset {}", done + i as u64));
        }
        done += want as u64;
    }
    let norm = |s: &[u8]| {
        let s = String::from_utf8_lossy(s).into_owned();
        match s.find("\"duration_ms\":") {
            Some(i) => {
                let j = i + "\"duration_ms\":".len();
                let end = s[j..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(s.len(), |k| j + k);
                format!("{}0{}", &s[..j], &s[end..])
            }
            None => s,
        }
    };
    if norm(&tail_a) != norm(&tail_b) {
        return Err(format!(
            "last lines differ:\n  {}\n  {}",
            String::from_utf8_lossy(&tail_a).trim_end(),
            String::from_utf8_lossy(&tail_b).trim_end()
        ));
    }
    Ok(la)
}

/// (offset where the last line starts, the last line's bytes).
fn last_line(p: &Path, len: u64) -> Result<(u64, Vec<u8>), String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(p).map_err(|e| e.to_string())?;
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let i = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if i == 0 && start > 0 {
        return Err(format!("{}: last line longer than 64 KiB", p.display()));
    }
    Ok((start + i as u64, buf[i..].to_vec()))
}

/// Decodes a k8s-file log (conmon's `TIMESTAMP STREAM P|F PAYLOAD` records) into its stdout
/// bytes: an independent check of what creel copied, written here rather than borrowed from
/// the engine.
pub fn k8s_stdout(log: &Path, out: &Path) -> std::io::Result<u64> {
    use std::io::{BufRead, BufReader, BufWriter, Write};
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(log)?);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut rec = Vec::new();
    let mut n = 0u64;
    loop {
        rec.clear();
        if r.read_until(b'\n', &mut rec)? == 0 {
            break;
        }
        let line = rec.strip_suffix(b"\n").unwrap_or(&rec);
        let mut parts = line.splitn(4, |&b| b == b' ');
        let (_, stream, tag, payload) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next().unwrap_or(b""),
        );
        if stream != Some(b"stdout") {
            continue;
        }
        w.write_all(payload)?;
        n += payload.len() as u64;
        if tag == Some(b"F") {
            w.write_all(b"\n")?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// `podman version` and the machine, for the report.
pub fn machine() -> Vec<String> {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    vec![
        format!("nproc: {}", sh("nproc")),
        format!(
            "cpu: {}",
            sh("sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1")
        ),
        format!("memory: {}", sh("free -g | awk '/Mem:/{print $2\" GiB\"}'")),
        format!("kernel: {}", sh("uname -r")),
        format!(
            "podman: {}",
            sh("podman version --format '{{.Client.Version}}'")
        ),
        format!(
            "oci runtime: {}",
            sh("runc --version 2>/dev/null | head -n1")
        ),
        format!("cgroups: {}", sh("stat -fc %T /sys/fs/cgroup")),
        format!("user: {}", sh("id -un")),
        format!("load at start: {}", loadavg()),
    ]
}

/// A `creel` server (`creel ui`, `creel fake-model`) whose first line on stdout says where it
/// listens; killed on drop.
pub struct Server {
    child: std::process::Child,
    /// Its first line, trimmed.
    pub line: String,
}

impl Server {
    /// `creel ARGS` of `env`, once it has printed its first line.
    pub fn start(env: &Env, args: &[&str]) -> Server {
        use std::io::BufRead as _;
        let mut child = env
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start creel {args:?}: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("creel {args:?}'s first line: {e}"));
        Server {
            child,
            line: line.trim().to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `creel ui` of an environment, spoken to over raw HTTP with its login cookie;
/// stopped on drop.
pub struct UiServer {
    _server: Server,
    /// `127.0.0.1:PORT`.
    pub host: String,
    cookie: String,
}

impl UiServer {
    pub fn start(env: &Env) -> UiServer {
        let server = Server::start(env, &["ui"]);
        let (base, token) = server
            .line
            .trim()
            .split_once("/?token=")
            .expect("a URL with a token");
        let host = base.trim_start_matches("http://").to_string();
        let port = host.rsplit(':').next().unwrap_or_default().to_string();
        let cookie = format!("creel_ui_{port}={token}");
        UiServer {
            _server: server,
            host,
            cookie,
        }
    }

    /// A connection with `GET path` sent.
    pub fn open(&self, path: &str) -> std::net::TcpStream {
        use std::io::Write as _;
        let mut c = std::net::TcpStream::connect(&self.host).expect("connect");
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            self.host, self.cookie
        )
        .expect("request");
        c
    }

    /// `GET path`, asserting a 200; the whole answer.
    pub fn get(&self, path: &str) -> Vec<u8> {
        use std::io::Read as _;
        let mut answer = Vec::new();
        self.open(path).read_to_end(&mut answer).expect("answer");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "GET {path} failed");
        answer
    }
}
