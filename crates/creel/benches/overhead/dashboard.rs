//! The dashboard under load: one job prints as fast as it can (about 100 MB/s of stream-json
//! here) while a page follows its transcript live; meanwhile other pages ask `creel ui` for
//! the overview, another job's status and a page of its transcript. Each is timed first with
//! the loud job absent, then while it prints, in the same run: "does not stall" is their p95
//! under load.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use creel_engine::JobState;

use crate::util::{Env, Samples, UiServer, fmt_ms, wall_ms};
use crate::{Opts, Report, Verdict};

/// Bytes of one `lines` line of the stand-in (its stream-json assistant event).
const LINE_BYTES: u64 = 262;
/// What the other pages ask, in the order [`round`] times them.
const NAMES: [&str; 3] = [
    "overview, `GET /api/overview`",
    "another job's status, `GET /api/jobs/ID`",
    "another job's transcript page, `GET /api/jobs/ID/output?format=text`",
];
/// The long lines of the second loud job.
const BIG_LINE: u64 = 8_000_000;
/// The goal for a page's answer while the loud job prints (the overview's own goal).
const GOAL_MS: f64 = 200.0;

/// What other pages ask, one round: (overview, status, transcript page) in ms.
fn round(ui: &UiServer, quiet: &str) -> (f64, f64, f64) {
    let t = Instant::now();
    ui.get("/api/overview");
    let overview = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    ui.get(&format!("/api/jobs/{quiet}"));
    let status = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    ui.get(&format!("/api/jobs/{quiet}/output?format=text&limit=65536"));
    let page = t.elapsed().as_secs_f64() * 1000.0;
    (overview, status, page)
}

pub fn run(o: &Opts, r: &mut Report) {
    let env = Env::new(&o.base, "dashboard", "", o.keep);
    let (quiet, _) = env.start("lines 200\nsay QUIET\nsleep 900", &[]);
    let store = env.store();
    let until = Instant::now() + Duration::from_secs(120);
    while store.job(&quiet).expect("store").map(|j| j.state) != Some(JobState::Running) {
        assert!(Instant::now() < until, "the quiet job never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ui = UiServer::start(&env);

    let mut idle = [Samples::default(), Samples::default(), Samples::default()];
    for i in 0..42 {
        let (a, b, c) = round(&ui, &quiet);
        if i >= 2 {
            idle[0].push(a);
            idle[1].push(b);
            idle[2].push(c);
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let n = (o.big_bytes / LINE_BYTES).max(1000);
    let c = Ctx {
        env: &env,
        ui: &ui,
        quiet: &quiet,
        idle: &idle,
    };
    loud(&c, &format!("lines {n}"), &format!("`lines {n}`"), true, r);
    // Long lines (8 MB each, under the 16 MiB the transcript renders): the fastest a job
    // prints here.
    let k = (o.big_bytes / BIG_LINE).max(1);
    let prompt = vec![format!("bigline {BIG_LINE}"); k as usize].join("\n");
    loud(&c, &prompt, &format!("`bigline {BIG_LINE}` × {k}"), true, r);
    // The same without a page following it: the job prints faster (2 cores).
    let label = format!("`lines {n}`, no page following it");
    loud(&c, &format!("lines {n}"), &label, false, r);
    let _ = env.cmd(&["cancel", &quiet]).output();
}

/// What every loud job shares: the environment, the server, the quiet job and the figures
/// without a loud job.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    env: &'a Env,
    ui: &'a UiServer,
    quiet: &'a str,
    idle: &'a [Samples; 3],
}

/// One loud job: `prompt` runs while a page follows it and the other pages are timed.
fn loud(c: &Ctx<'_>, prompt: &str, label: &str, followed: bool, r: &mut Report) {
    let Ctx {
        env,
        ui,
        quiet,
        idle,
    } = *c;
    let store = env.store();
    let (loud, _) = env.start(prompt, &[]);
    // A page follows the loud job live, reading everything its stream sends.
    let follow = followed.then(|| {
        let mut s = ui.open(&format!("/api/jobs/{loud}/stream"));
        std::thread::spawn(move || {
            let mut got = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            let mut tail: Vec<u8> = Vec::new();
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return (got, None),
                    Ok(k) => {
                        got += k as u64;
                        tail.extend_from_slice(&buf[..k]);
                        if tail.windows(10).any(|w| w == b"event: end") {
                            return (got, Some(wall_ms()));
                        }
                        let keep = tail.len().saturating_sub(16);
                        tail.drain(..keep);
                    }
                }
            }
        })
    });
    while store.job(&loud).expect("store").map(|j| j.state) == Some(JobState::Pending) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = Arc::new(AtomicBool::new(false));
    let (rec, busy) = {
        let stop = done.clone();
        let env_ui = &ui;
        let quiet = quiet.to_string();
        std::thread::scope(|scope| {
            let h = scope.spawn(move || {
                let mut busy = [Samples::default(), Samples::default(), Samples::default()];
                while !stop.load(Ordering::Relaxed) {
                    let (a, b, c) = round(env_ui, &quiet);
                    busy[0].push(a);
                    busy[1].push(b);
                    busy[2].push(c);
                    std::thread::sleep(Duration::from_millis(100));
                }
                busy
            });
            let rec = env.wait_final(&loud, Duration::from_secs(600));
            done.store(true, Ordering::Relaxed);
            (rec, h.join().expect("sampler"))
        })
    };
    assert_eq!(rec.state, JobState::Completed, "the loud job");
    let bytes = std::fs::metadata(env.job_dir(&loud).join("output.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0);
    let secs = match (rec.started_at_ms, rec.finished_at_ms) {
        (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
        _ => f64::NAN,
    };
    let rate = bytes as f64 / secs / 1e6;
    r.note(format!(
        "the loud job: {label}, {:.2} GB in {secs:.1} s from running to completed ({rate:.0} MB/s); {} rounds of the other pages while it printed, {} before",
        bytes as f64 / 1e9,
        busy[0].len(),
        idle[0].len()
    ));
    let while_ = if follow.is_some() {
        format!("while a job prints {rate:.0} MB/s ({label}) and a page follows it")
    } else {
        format!("while a job prints {rate:.0} MB/s ({label})")
    };
    for (i, name) in NAMES.into_iter().enumerate() {
        let (b, q) = (&busy[i], &idle[i]);
        let p95 = b.q(0.95);
        r.row(
            format!("{name}, {while_}"),
            format!("p50 {} (p95 {})", fmt_ms(b.p50()), fmt_ms(p95)),
            format!(
                "no loud job: p50 {} (p95 {})",
                fmt_ms(q.p50()),
                fmt_ms(q.q(0.95))
            ),
            format!("{:.2}×", b.p50() / q.p50()),
            format!("p95 ≤ {GOAL_MS:.0} ms"),
            if p95 <= GOAL_MS {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        );
    }
    let Some(follow) = follow else {
        return;
    };
    let (followed, end_at) = follow.join().expect("follower");
    let lag = match (end_at, rec.finished_at_ms) {
        (Some(e), Some(f)) => fmt_ms(e - f as f64),
        _ => "never".into(),
    };
    r.row(
        "the following page: its stream's `end` after the job completed",
        lag,
        "",
        "",
        "",
        Verdict::Info,
    );
    r.note(format!(
        "the following page received {:.1} MB of events (the transcript's tail as it grew)",
        followed as f64 / 1e6
    ));
}
