//! `chaos`: jobs printing bursts while their monitors and the front ends around them (`creel
//! start`, `status`, `wait`, `output`) are killed with SIGKILL at random moments. Afterwards
//! every job must be final, its output byte-exact against the runtime's own log (nothing lost,
//! nothing doubled), and its completion webhook delivered once (RELIABILITY.md).
//!
//! Options: `--chaos-jobs N` (default 100), `--kills N` (default 1000), `--seed N`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Env, k8s_stdout, processes};
use crate::{Opts, Report, Verdict};

/// Jobs running at once.
const CONCURRENT: usize = 20;

/// xorshift64*: a reproducible stream of choices from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Webhook receiver: counts POSTs per job, and distinct `Idempotency-Key`s per job (what a
/// receiver that honours the key, like OpenClaw, acts on).
#[derive(Default)]
struct Hooks {
    posts: BTreeMap<String, u64>,
    keys: BTreeMap<String, BTreeSet<String>>,
}

fn receiver(hooks: Arc<Mutex<Hooks>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let url = format!(
        "http://{}/hooks/agent",
        listener.local_addr().expect("addr")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let hooks = hooks.clone();
            std::thread::spawn(move || {
                let Ok(clone) = stream.try_clone() else {
                    return;
                };
                let mut r = BufReader::new(clone);
                let (mut len, mut key) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("idempotency-key:") {
                        key = v.trim().to_string();
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let text = String::from_utf8_lossy(&body);
                // "creel job <id> <state> …"
                let job = text
                    .split("creel job ")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().next())
                    .unwrap_or("?")
                    .to_string();
                {
                    let mut h = hooks.lock().unwrap_or_else(|p| p.into_inner());
                    *h.posts.entry(job.clone()).or_default() += 1;
                    h.keys.entry(job).or_default().insert(key);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            });
        }
    });
    url
}

/// Front ends started by the bench, killable while they run.
type Children = Arc<Mutex<Vec<Child>>>;

fn reap(children: &Children) {
    let mut c = children.lock().unwrap_or_else(|p| p.into_inner());
    c.retain_mut(|ch| matches!(ch.try_wait(), Ok(None)));
}

/// SIGKILLs `pid` if it is still the kind of process it was chosen as (`__monitor`, `start`, or
/// `front`: status, wait, output). Pids are reused quickly here (pid_max 32768, and podman's
/// threads take pids too): a pidfd pins the process, and what it is is checked after that,
/// before the signal, so the bench never kills a stranger.
fn kill_if_still(pid: i32, what: &str) -> bool {
    use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    let Ok(fd) = pidfd_open(p, PidfdFlags::empty()) else {
        return false;
    };
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let is_creel = argv
        .first()
        .is_some_and(|a| a.ends_with("/creel") || a == "creel");
    let sub = argv.get(1).map(String::as_str).unwrap_or("");
    // A process just forked by a creel process (to exec podman, say) still shows its parent's
    // command line: only the real one counts. A monitor leads its own session (setsid); a
    // start or a front end is this bench's own child.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let (ppid, sid) = (
        fields.get(1).and_then(|f| f.parse::<i32>().ok()),
        fields.get(3).and_then(|f| f.parse::<i32>().ok()),
    );
    let same = is_creel
        && match what {
            "front" => matches!(sub, "status" | "wait" | "output"),
            other => sub == other,
        }
        && match what {
            "__monitor" => sid == Some(pid),
            _ => ppid == Some(std::process::id() as i32),
        };
    same && pidfd_send_signal(&fd, Signal::KILL).is_ok()
}

pub fn run(opts: &Opts, report: &mut Report) {
    let seed = opts.seed;
    let hooks = Arc::new(Mutex::new(Hooks::default()));
    let url = receiver(hooks.clone());
    let env = Arc::new(Env::new(
        &opts.base,
        "chaos",
        &format!("notify_webhook_url = \"{url}\"\n"),
        opts.keep,
    ));
    // Make the home (and its store) before anything reads it.
    env.run_ok(&["sessions"]);
    let jobs: Arc<Mutex<Vec<String>>> = Arc::default();
    let children: Children = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killed_monitors = Arc::new(AtomicU64::new(0));
    let killed_front = Arc::new(AtomicU64::new(0));
    let killed_starts = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();

    // Front ends: status, wait and output on random jobs, all the time (they also reconcile
    // jobs whose monitor was killed, as a user's next command would).
    let front = {
        let (env, jobs, children, done) =
            (env.clone(), jobs.clone(), children.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x5eed);
            while !done.load(Ordering::SeqCst) {
                let job = {
                    let j = jobs.lock().unwrap_or_else(|p| p.into_inner());
                    if j.is_empty() {
                        None
                    } else {
                        Some(j[rng.below(j.len() as u64) as usize].clone())
                    }
                };
                if let Some(job) = job {
                    let args: Vec<&str> = match rng.below(3) {
                        0 => vec!["status", &job, "--json"],
                        1 => vec!["wait", &job, "--timeout", "1", "--json"],
                        _ => vec!["output", &job, "--limit", "4096", "--json"],
                    };
                    if let Ok(child) = env
                        .cmd(&args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                    {
                        children
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(child);
                    }
                }
                reap(&children);
                std::thread::sleep(Duration::from_millis(20 + rng.below(60)));
            }
        })
    };

    // The killer: a monitor of one of our jobs, a front end, or a `creel start`, at random.
    let killer = {
        let (jobs, children, done, kills) =
            (jobs.clone(), children.clone(), done.clone(), kills.clone());
        let (km, kf, ks) = (
            killed_monitors.clone(),
            killed_front.clone(),
            killed_starts.clone(),
        );
        let target = opts.kills;
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0xdead);
            while kills.load(Ordering::SeqCst) < target && !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5 + rng.below(50)));
                let ours: BTreeSet<String> = jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                let roll = rng.below(10);
                let victim: Option<(i32, &AtomicU64, &str)> = if roll < 6 {
                    let monitors: Vec<i32> = processes()
                        .into_iter()
                        .filter(|(_, argv)| {
                            argv.len() >= 3 && argv[1] == "__monitor" && ours.contains(&argv[2])
                        })
                        .map(|(pid, _)| pid)
                        .collect();
                    (!monitors.is_empty()).then(|| {
                        (
                            monitors[rng.below(monitors.len() as u64) as usize],
                            &*km,
                            "__monitor",
                        )
                    })
                } else {
                    let starts: Vec<i32> = processes()
                        .into_iter()
                        .filter(|(_, argv)| {
                            argv.len() >= 2
                                && argv[1] == "start"
                                && argv.iter().any(|a| a.contains("chaos-"))
                        })
                        .map(|(pid, _)| pid)
                        .collect();
                    if roll == 9 && !starts.is_empty() {
                        Some((
                            starts[rng.below(starts.len() as u64) as usize],
                            &*ks,
                            "start",
                        ))
                    } else {
                        let c = children.lock().unwrap_or_else(|p| p.into_inner());
                        (!c.is_empty()).then(|| {
                            (
                                c[rng.below(c.len() as u64) as usize].id() as i32,
                                &*kf,
                                "front",
                            )
                        })
                    }
                };
                if let Some((pid, counter, what)) = victim
                    && kill_if_still(pid, what)
                {
                    kills.fetch_add(1, Ordering::SeqCst);
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };

    // The jobs: at most CONCURRENT unfinished at once, each printing three bursts.
    let mut rng = Rng(seed);
    let mut started = 0usize;
    let mut start_attempts = 0usize;
    while started < opts.chaos_jobs {
        let unfinished = {
            let store = env.store();
            jobs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|j| {
                    store
                        .job(j)
                        .ok()
                        .flatten()
                        .is_some_and(|r| !r.state.is_final())
                })
                .count()
        };
        if unfinished >= CONCURRENT {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let prompt = format!(
            "lines {}\nsleep 1\nlines {}\nsleep 1\nlines {}\nsay end chaos-{started}",
            500 + rng.below(8000),
            500 + rng.below(8000),
            500 + rng.below(8000),
        );
        start_attempts += 1;
        let out = env
            .cmd(&[
                "start",
                "--json",
                &prompt,
                "--session",
                &format!("chaos-{started}"),
            ])
            .stderr(Stdio::null())
            .output();
        let id = out
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["jobId"].as_str().map(String::from));
        match id {
            Some(id) => {
                jobs.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                started += 1;
            }
            None => {
                // Killed before it answered: the job may or may not exist. Find it by session.
                let store = env.store();
                if let Ok(list) = store.jobs_of_session(&format!("chaos-{started}"))
                    && let Some(j) = list.into_iter().next()
                {
                    jobs.lock().unwrap_or_else(|p| p.into_inner()).push(j.id);
                    started += 1;
                }
            }
        }
    }
    let _ = killer.join();
    let kill_phase = t0.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = front.join();
    for mut c in std::mem::take(&mut *children.lock().unwrap_or_else(|p| p.into_inner())) {
        let _ = c.wait();
    }

    // Then: a user's `creel wait` on each job, which re-attaches whatever was left.
    let ids = jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut stuck = Vec::new();
    for id in &ids {
        let out = env
            .cmd(&["wait", id, "--timeout", "300", "--json"])
            .output();
        if !out.is_ok_and(|o| o.status.code() != Some(4)) {
            stuck.push(id.clone());
        }
    }
    let store = env.store();
    let (mut exact, mut lost, mut doubled, mut differ, mut failed) = (0, 0u64, 0u64, 0, Vec::new());
    for id in &ids {
        let Ok(Some(rec)) = store.job(id) else {
            continue;
        };
        if rec.state != creel_engine::JobState::Completed {
            failed.push(format!(
                "{id}: {} {}",
                rec.state,
                rec.error.as_ref().map(|e| e.message.as_str()).unwrap_or("")
            ));
        }
        let dir = env.job_dir(id);
        let decoded = dir.join("decoded.bench");
        let from_log = k8s_stdout(&dir.join("container.log"), &decoded).unwrap_or(0);
        let out = std::fs::read(dir.join("output.jsonl")).unwrap_or_default();
        let log = std::fs::read(&decoded).unwrap_or_default();
        let _ = std::fs::remove_file(&decoded);
        if out == log {
            exact += 1;
        } else {
            differ += 1;
            if (out.len() as u64) < from_log {
                lost += from_log - out.len() as u64;
            } else {
                doubled += out.len() as u64 - from_log;
            }
        }
    }
    // Webhooks settle: wait until every job's has come, or 60 s.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let h = hooks.lock().unwrap_or_else(|p| p.into_inner());
        if ids.iter().all(|id| h.posts.contains_key(id)) {
            break;
        }
        drop(h);
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let h = hooks.lock().unwrap_or_else(|p| p.into_inner());
    let missing = ids.iter().filter(|id| !h.posts.contains_key(*id)).count();
    let posted_twice = ids
        .iter()
        .filter(|id| h.posts.get(*id).is_some_and(|n| *n > 1))
        .count();
    let keys_twice = ids
        .iter()
        .filter(|id| h.keys.get(*id).is_some_and(|k| k.len() > 1))
        .count();
    drop(h);

    let zero = |n: usize| {
        if n == 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    };
    report.row(
        "jobs, and SIGKILLs (monitors / front ends / starts)",
        format!(
            "{} jobs, {} kills ({} / {} / {}) in {:.0} s",
            ids.len(),
            kills.load(Ordering::SeqCst),
            killed_monitors.load(Ordering::SeqCst),
            killed_front.load(Ordering::SeqCst),
            killed_starts.load(Ordering::SeqCst),
            kill_phase.as_secs_f64()
        ),
        "",
        format!("seed {seed}, {start_attempts} starts tried"),
        format!("{} jobs, {} kills", opts.chaos_jobs, opts.kills),
        Verdict::Info,
    );
    report.row(
        "jobs stuck (not final after `wait`)",
        stuck.len().to_string(),
        "",
        "",
        "0",
        zero(stuck.len()),
    );
    report.row(
        "outputs byte-exact against the runtime's log",
        format!("{exact} of {}", ids.len()),
        "",
        format!("{lost} bytes lost, {doubled} doubled"),
        "all",
        zero(differ),
    );
    report.row(
        "jobs not completed",
        failed.len().to_string(),
        "",
        "",
        "0",
        zero(failed.len()),
    );
    report.row(
        "webhooks missing",
        missing.to_string(),
        "",
        "",
        "0",
        zero(missing),
    );
    report.row(
        "webhooks posted twice (distinct Idempotency-Keys)",
        posted_twice.to_string(),
        "",
        keys_twice.to_string(),
        "0 distinct",
        zero(keys_twice),
    );
    for f in failed.iter().take(5) {
        report.note(format!("not completed: {f}"));
    }
    for s in stuck.iter().take(5) {
        report.note(format!("stuck: {s}"));
    }
}
