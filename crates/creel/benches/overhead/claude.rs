//! The real Claude Code: prompt → Claude's first stream-json line, creel against bare `podman
//! run -d` of the same container (the real image, `creel image build`), both talking to the
//! same stand-in model (`creel fake-model` on the host's loopback).
//!
//! creel runs its default path (`network = "allowlist"`: the proxy in the job's namespace,
//! the key on the host); the bare twin gets creel's own argument vector from that job's spec
//! (`run_args`), the same steering files and the prompt as its first message, so its Claude
//! starts exactly as creel's does. creel is timed from just before `creel start` is spawned
//! to the monitor's `first_output_at` (the first stdout byte captured); bare from just before
//! `podman run -d` is spawned to the first stdout record in the container's k8s-file log
//! (polled every 1 ms). The same creel with `pool = 1` is timed the same way from its `creel
//! start`, which takes a sandbox whose Claude is already waiting: the goal is ≤ 0.5× of bare.

use std::process::Stdio;
use std::time::{Duration, Instant};

use creel_engine::JobState;

use crate::util::{Bare, Env, Samples, Server, fmt_ms, wall_ms};
use crate::{Opts, Report, Verdict};

/// The image `creel image build` makes (the tests use the same one).
const REAL_IMAGE: &str = "localhost/creel-claude:2.1.328";
const PROMPT: &str = "Write hello.txt in the workspace, then show it.";
const TIMEOUT: Duration = Duration::from_secs(180);
/// How long a pooled sandbox waits before it is taken, in the second pooled figure.
const SETTLE: Duration = Duration::from_secs(2);

/// Whether the k8s-file log has a stdout record yet.
fn has_stdout(log: &std::path::Path) -> bool {
    std::fs::read(log).is_ok_and(|b| {
        b.split(|&c| c == b'\n')
            .any(|l| l.splitn(3, |&c| c == b' ').nth(1) == Some(b"stdout"))
    })
}

pub fn run(o: &Opts, r: &mut Report) {
    if !crate::util::podman(&["image", "exists", REAL_IMAGE]) {
        r.note(format!(
            "{REAL_IMAGE} missing (`creel image build --offline`): not measured"
        ));
        return;
    }
    // The model's URL goes into the config, so the environment is made in two steps.
    let probe = Env::new(&o.base, "claude-model", "", o.keep);
    // (`creel fake-model` with its built-in script; its first line is its URL.)
    let m = Server::start(
        &probe,
        &["fake-model", "--quiet", "--listen", "127.0.0.1:0"],
    );
    let env = Env::new(
        &o.base,
        "claude",
        &format!(
            "image = \"{REAL_IMAGE}\"\nnetwork = \"allowlist\"\napi_base_url = \"{}\"\n",
            m.line
        ),
        o.keep,
    );
    let creel_once = |c: &mut Samples| {
        let t0 = wall_ms();
        let (job, _) = env.start(PROMPT, &[]);
        let rec = env.wait_final(&job, TIMEOUT);
        assert_eq!(rec.state, JobState::Completed, "job {job}: {rec:?}");
        c.push(rec.first_output_at_ms.expect("first output") as f64 - t0);
        rec
    };
    let mut warm = Samples::default();
    let rec = creel_once(&mut warm);
    let spec = rec.spec.clone();
    let conv = spec.conversation.id().to_string();
    // The same with a warm pool of one: before every timed run (of any side) `creel pool
    // fill` waits, untimed, until the pool is full, so no sandbox is made while one is timed.
    let pool_env = Env::new(
        &o.base,
        "claude-pool",
        &format!(
            "image = \"{REAL_IMAGE}\"\nnetwork = \"allowlist\"\napi_base_url = \"{}\"\npool = 1\n",
            m.line
        ),
        o.keep,
    );
    let fill = || {
        pool_env.run_ok(&["pool", "fill"]);
    };
    // Taken as soon as `pool fill` says the sandbox is ready (its container and proxy are up;
    // Claude Code may still be loading), or after it has waited `SETTLE` (as a sandbox that
    // a start topped up has, by the next start).
    let pooled_once = |c: &mut Samples, settle: Duration| {
        fill();
        std::thread::sleep(settle);
        let t0 = wall_ms();
        let (job, _) = pool_env.start(PROMPT, &[]);
        let rec = pool_env.wait_final(&job, TIMEOUT);
        assert_eq!(rec.state, JobState::Completed, "job {job}: {rec:?}");
        c.push(rec.first_output_at_ms.expect("first output") as f64 - t0);
    };
    pooled_once(&mut Samples::default(), Duration::ZERO);
    let mut creel = Samples::default();
    let mut pooled = Samples::default();
    let mut settled = Samples::default();
    let mut bare = Samples::default();
    let iters = o.iters.div_ceil(3).max(3);
    for i in 0..iters {
        let order: [u8; 4] = if i % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for k in order {
            if k == 0 {
                fill();
                creel_once(&mut creel);
                continue;
            }
            if k == 2 {
                pooled_once(&mut pooled, Duration::ZERO);
                continue;
            }
            if k == 3 {
                pooled_once(&mut settled, SETTLE);
                continue;
            }
            fill();
            let b = Bare::prepare(
                &spec,
                &env.root.join(format!("bare-{i}")),
                &format!("c{i}"),
                PROMPT,
                &conv,
            );
            let t0 = wall_ms();
            let started = Instant::now();
            let mut child = b
                .detached()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("podman run -d");
            let mut first = None;
            while first.is_none() && started.elapsed() < TIMEOUT {
                if has_stdout(&b.log) {
                    first = Some(wall_ms() - t0);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = child.wait();
            bare.push(first.expect("the bare twin's Claude never printed"));
            b.remove();
            let _ = std::fs::remove_dir_all(&b.dir);
        }
    }
    r.row(
        "real Claude Code: prompt → first stream-json line (creel's default allowlist path vs bare `run -d`)",
        creel.fmt_ms(),
        bare.fmt_ms(),
        format!("{:.2}×", creel.p50() / bare.p50()),
        "(informative)",
        Verdict::Info,
    );
    for (fig, samples) in [
        (
            "real Claude Code, `pool = 1`: prompt → first stream-json line (a pooled sandbox taken as soon as ready, vs bare `run -d`)",
            &pooled,
        ),
        ("… the pooled sandbox taken after it waited 2 s", &settled),
    ] {
        let ratio = samples.p50() / bare.p50();
        r.row(
            fig,
            samples.fmt_ms(),
            bare.fmt_ms(),
            format!("{ratio:.2}×"),
            "≤ 0.5×",
            if ratio <= 0.5 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        );
    }
    pool_env.run_ok(&["pool", "drain"]);
    r.note(format!(
        "{iters} alternating iterations after one warm-up job ({}); every creel job ran to completed (the built-in script: Write, Bash, an answer); the bare twin is removed after its first line",
        fmt_ms(warm.p50())
    ));
}
