//! Start latency: to "container running", to "first output byte captured", and start to
//! completed of a short job, against bare `podman run -d` / `podman run` of the same container.
//!
//! creel is timed from just before `creel start` is spawned to the instants the monitor
//! records in the store: `started_at` (right after its `podman run -d` returned),
//! `first_output_at` (when the first byte was copied into the job's output) and `finished_at`
//! (the final state). Bare podman is timed from just before `podman run -d` is spawned to its
//! return (running) and to the first byte in the container's k8s-file log (polled every 1 ms);
//! completion is an attached `podman run` of the same container returning.

use std::process::Stdio;
use std::time::{Duration, Instant};

use creel_engine::JobState;
use creel_engine::internals::JobSpec;

use crate::util::{Bare, Env, Samples, fmt_ms, wall_ms};
use crate::{Opts, Report, Verdict};

const PROMPT: &str = "say hi";
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Creel {
    cli: Samples,
    running: Samples,
    first: Samples,
    done: Samples,
}

#[derive(Default)]
struct BareS {
    running: Samples,
    first: Samples,
    done: Samples,
}

pub fn run(o: &Opts, r: &mut Report) {
    let env = Env::new(&o.base, "start", "", o.keep);
    // Warm-up (page cache, podman's storage) and the spec the bare runs copy.
    let (job, _) = env.start("say warm-up", &[]);
    let rec = env.wait_final(&job, TIMEOUT);
    assert_eq!(rec.state, JobState::Completed, "warm-up job: {rec:?}");
    let spec = rec.spec.clone();
    let conv = spec.conversation.id().to_string();
    let mut scratch = BareS::default();
    bare_detached(&env, &spec, &conv, "w", &mut scratch);
    bare_attached(&env, &spec, &conv, "w", &mut scratch);
    let (c, b) = alternate(o.iters, &env, &env, &spec, &conv, "");
    goal_rows(
        r,
        [
            "start → container running (`podman run -d` returned)",
            "start → first output byte captured",
            &format!("start → completed, short job (`{PROMPT}`) vs attached `podman run`"),
        ],
        &c,
        &b,
    );
    r.row(
        "`creel start` returns (job accepted, monitor spawned)",
        c.cli.fmt_ms(),
        "",
        "",
        "",
        Verdict::Info,
    );
    allowlist(o, r, &env, &spec, &conv);
    pooled(o, r, &env, &spec, &conv);
    r.note(format!(
        "p50 of {} alternating iterations; creel times are the monitor's store timestamps (ms) minus the instant before `creel start` was spawned; bare first byte: 1 ms polling of the k8s-file log",
        o.iters
    ));
    r.note(format!(
        "creel path to running = `creel start` ({}) + monitor start + `podman run -d`; first byte: the monitor wakes on inotify when the log grows; completed: conmon's exit file (no `podman wait`, no final `inspect`)",
        fmt_ms(c.cli.p50())
    ));
}

/// `iters` rounds of a creel job (in `creel_env`) and the bare detached and attached runs of
/// its twin (in `bare_env`), the order alternating so that drift in the machine's load hits
/// both sides alike.
fn alternate(
    iters: usize,
    creel_env: &Env,
    bare_env: &Env,
    spec: &JobSpec,
    conv: &str,
    tag: &str,
) -> (Creel, BareS) {
    let (mut c, mut b) = (Creel::default(), BareS::default());
    for i in 0..iters {
        let order: [u8; 3] = if i % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for k in order {
            let tag = format!("{tag}{i}");
            match k {
                0 => creel_once(creel_env, &mut c),
                1 => bare_detached(bare_env, spec, conv, &tag, &mut b),
                _ => bare_attached(bare_env, spec, conv, &tag, &mut b),
            }
        }
    }
    (c, b)
}

/// The goals' rows: running and first byte within 1.1× of bare, completed within +100 ms.
fn goal_rows(r: &mut Report, figures: [&str; 3], c: &Creel, b: &BareS) {
    for (fig, cs, bs) in [
        (figures[0], &c.running, &b.running),
        (figures[1], &c.first, &b.first),
    ] {
        let ratio = cs.p50() / bs.p50();
        r.row(
            fig,
            cs.fmt_ms(),
            bs.fmt_ms(),
            format!("{ratio:.2}×"),
            "≤ 1.1×",
            if ratio <= 1.1 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        );
    }
    let delta = c.done.p50() - b.done.p50();
    r.row(
        figures[2],
        c.done.fmt_ms(),
        b.done.fmt_ms(),
        format!("{delta:+.0} ms"),
        "≤ +100 ms",
        if delta <= 100.0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
}

fn creel_once(env: &Env, c: &mut Creel) {
    let t0 = wall_ms();
    let (job, _) = env.start(PROMPT, &[]);
    let t_cli = wall_ms();
    let rec = env.wait_final(&job, TIMEOUT);
    assert_eq!(rec.state, JobState::Completed, "job {job}: {rec:?}");
    let at = |v: Option<i64>| v.expect("timestamp") as f64 - t0;
    c.cli.push(t_cli - t0);
    c.running.push(at(rec.started_at_ms));
    c.first.push(at(rec.first_output_at_ms));
    c.done.push(at(rec.finished_at_ms));
}

fn bare_detached(env: &Env, spec: &JobSpec, conv: &str, tag: &str, s: &mut BareS) {
    let bare = Bare::prepare(
        spec,
        &env.root.join(format!("bare-d{tag}")),
        &format!("d{tag}"),
        PROMPT,
        conv,
    );
    let t0 = wall_ms();
    let started = Instant::now();
    let mut child = bare
        .detached()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn podman run -d");
    let (mut running, mut first) = (None, None);
    let mut exit = None;
    while (running.is_none() || first.is_none()) && started.elapsed() < TIMEOUT {
        if first.is_none() && std::fs::metadata(&bare.log).is_ok_and(|m| m.len() > 0) {
            first = Some(wall_ms() - t0);
        }
        if running.is_none()
            && let Ok(Some(st)) = child.try_wait()
        {
            running = Some(wall_ms() - t0);
            exit = Some(st);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        exit.is_some_and(|st| st.success()) && first.is_some(),
        "bare podman run -d failed ({exit:?}) or its container never wrote"
    );
    s.running.push(running.unwrap_or_default());
    s.first.push(first.unwrap_or_default());
    let _ = std::process::Command::new(&bare.podman)
        .args(["wait", &bare.name])
        .stdout(Stdio::null())
        .status();
    bare.remove();
    let _ = std::fs::remove_dir_all(&bare.dir);
}

fn bare_attached(env: &Env, spec: &JobSpec, conv: &str, tag: &str, s: &mut BareS) {
    let bare = Bare::prepare(
        spec,
        &env.root.join(format!("bare-a{tag}")),
        &format!("a{tag}"),
        PROMPT,
        conv,
    );
    let out = bare.dir.join("stdout");
    let t0 = wall_ms();
    let o = bare.attached(&out).output().expect("podman run");
    s.done.push(wall_ms() - t0);
    assert!(
        o.status.success(),
        "bare podman run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    bare.remove();
    let _ = std::fs::remove_dir_all(&bare.dir);
}

/// The same short job with creel's default network (`allowlist`: the job's own namespace
/// with only loopback, creel's egress proxy bound inside it) against bare `podman run -d
/// --network none` of the same container, alternating in the same run: the goal is that
/// egress control costs no more than creel's own overhead.
fn allowlist(o: &Opts, r: &mut Report, bare_env: &Env, spec: &JobSpec, conv: &str) {
    let env = Env::new(
        &o.base,
        "start-allowlist",
        "network = \"allowlist\"\n",
        o.keep,
    );
    // Warm-up: the allowlist environment's first job.
    creel_once(&env, &mut Creel::default());
    let (c, b) = alternate(o.iters, &env, bare_env, spec, conv, "n");
    goal_rows(
        r,
        [
            "`network = \"allowlist\"` (creel's default): start → running, vs `run -d --network none`",
            "… allowlist: start → first output byte",
            "… allowlist: start → completed, vs attached `podman run --network none`",
        ],
        &c,
        &b,
    );
}

/// The warm pool (`pool = 1`, the default allowlist network): a start that takes a pooled
/// sandbox, against bare `podman run -d --network none` of the same container. Before every
/// timed run, creel's or bare, `creel pool fill` waits (untimed) until the pool is full again,
/// so no sandbox is being made while either side is timed. Goal: ≤ 0.5× (twice as fast).
fn pooled(o: &Opts, r: &mut Report, bare_env: &Env, spec: &JobSpec, conv: &str) {
    let env = Env::new(
        &o.base,
        "start-pool",
        "network = \"allowlist\"\npool = 1\n",
        o.keep,
    );
    let fill = || {
        env.run_ok(&["pool", "fill"]);
    };
    fill();
    creel_once(&env, &mut Creel::default());
    let (mut c, mut b) = (Creel::default(), BareS::default());
    for i in 0..o.iters {
        let order: [u8; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            fill();
            match k {
                0 => creel_once(&env, &mut c),
                _ => bare_detached(bare_env, spec, conv, &format!("p{i}"), &mut b),
            }
        }
    }
    env.run_ok(&["pool", "drain"]);
    for (fig, cs, bs) in [
        (
            "`pool = 1` (a pooled sandbox, allowlist): start → running, vs `run -d --network none`",
            &c.running,
            &b.running,
        ),
        ("… pooled: start → first output byte", &c.first, &b.first),
    ] {
        let ratio = cs.p50() / bs.p50();
        r.row(
            fig,
            cs.fmt_ms(),
            bs.fmt_ms(),
            format!("{ratio:.2}×"),
            "≤ 0.5×",
            if ratio <= 0.5 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        );
    }
}
