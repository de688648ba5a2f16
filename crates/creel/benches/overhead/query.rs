//! `status` and `output` latency: in-process (the `Engine` API), through the CLI, and through
//! `creel mcp` over stdio; against asking the runtime (`podman inspect` of the same container)
//! and against spawning `/bin/true` (the floor of any CLI call). Also checks, with strace, that
//! no runtime program is executed on the status and output paths.

use std::process::Command;
use std::time::{Duration, Instant};

use creel_engine::{JobState, OutputRequest};
use serde_json::{Value, json};

use crate::util::{Env, Samples, fmt_ms, time_cmd, time_n};
use crate::{Opts, Report, Verdict};

const TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(o: &Opts, r: &mut Report) {
    let _ = o;
    let env = Env::new(&o.base, "query", "", o.keep);
    let engine = env.engine();
    let (done, _) = env.start("lines 1000", &[]);
    let rec = env.wait_final(&done, TIMEOUT);
    assert_eq!(rec.state, JobState::Completed);
    let (live, _) = env.start("say ready\nsleep 600", &[]);
    let store = env.store();
    let t = Instant::now();
    let cid = loop {
        let j = store.job(&live).unwrap().unwrap();
        if j.state == JobState::Running && j.output_size > 0 {
            break j.container_id.unwrap();
        }
        assert!(t.elapsed() < TIMEOUT, "live job never ran");
        std::thread::sleep(Duration::from_millis(10));
    };

    // In-process.
    let st_done = time_n(2000, 100, || {
        engine.status(&done).unwrap();
    });
    let st_live = time_n(2000, 100, || {
        engine.status(&live).unwrap();
    });
    let out_done = time_n(2000, 100, || {
        engine.output(&done, OutputRequest::default()).unwrap();
    });
    // Through the CLI.
    let cli_done = time_cmd(300, 10, || env.cmd(&["status", &done, "--json"]));
    let cli_live = time_cmd(300, 10, || env.cmd(&["status", &live, "--json"]));
    let cli_out = time_cmd(300, 10, || env.cmd(&["output", &done, "--json"]));
    // Floors.
    let inspect = time_cmd(40, 3, || {
        let mut c = Command::new("podman");
        c.args(["inspect", "--format", "{{.State.Status}}", &cid]);
        c
    });
    let truecmd = time_cmd(300, 10, || Command::new("/bin/true"));
    // MCP over stdio.
    let mcp = mcp_times(
        &env,
        &[
            ("claude_code_status", json!({"job_id": done})),
            ("claude_code_status", json!({"job_id": live})),
            ("claude_code_output", json!({"job_id": done})),
        ],
        1000,
    );

    let vs = |s: &Samples| format!("{:.3}×", s.p50() / inspect.p50());
    r.row(
        "status, in-process `Engine::status` (completed job)",
        st_done.fmt_ms(),
        format!("`podman inspect` {}", inspect.fmt_ms()),
        vs(&st_done),
        "",
        Verdict::Info,
    );
    r.row(
        "status, in-process (running job)",
        st_live.fmt_ms(),
        format!("`podman inspect` {}", fmt_ms(inspect.p50())),
        vs(&st_live),
        "",
        Verdict::Info,
    );
    for (name, s) in [
        (
            "status, CLI `creel status --json` (completed job)",
            &cli_done,
        ),
        ("status, CLI (running job)", &cli_live),
    ] {
        r.row(
            name,
            s.fmt_ms(),
            format!(
                "`podman inspect` {}; `/bin/true` {}",
                fmt_ms(inspect.p50()),
                fmt_ms(truecmd.p50())
            ),
            vs(s),
            "p50 ≤ 5 ms",
            if s.p50() <= 5.0 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        );
    }
    r.row(
        "status, MCP `claude_code_status` over stdio (completed / running)",
        format!("{} / {}", mcp[0].fmt_ms(), fmt_ms(mcp[1].p50())),
        format!("`podman inspect` {}", fmt_ms(inspect.p50())),
        vs(&mcp[0]),
        "",
        Verdict::Info,
    );
    r.row(
        "output page (64 KiB at offset 0): in-process / CLI / MCP",
        format!(
            "{} / {} / {}",
            fmt_ms(out_done.p50()),
            fmt_ms(cli_out.p50()),
            fmt_ms(mcp[2].p50())
        ),
        format!("`podman inspect` {}", fmt_ms(inspect.p50())),
        vs(&cli_out),
        "",
        Verdict::Info,
    );
    // No runtime call on the status path.
    match execs(&env, &[&["status", &live, "--json"], &["status", &done, "--json"], &[
        "output", &done, "--json",
    ]]) {
        Some(extra) => r.row(
            "programs executed by `creel status` (running, completed) and `creel output`, besides creel",
            if extra.is_empty() {
                "none".to_string()
            } else {
                extra.join(", ")
            },
            "",
            "",
            "no runtime call",
            if extra.is_empty() {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        ),
        None => r.note("strace not installed: the no-runtime-call check was skipped"),
    }
    r.note("in-process: 2000 calls after 100 warm-up calls; CLI: 300 runs; MCP: 1000 calls on one `creel mcp` stdio session; completed job: `lines 1000` (263 kB); running job: `say ready` then `sleep 600`");

    let _ = env.run_ok(&["cancel", &live]);
    env.wait_final(&live, TIMEOUT);
}

/// Times `n` calls of each tool on one `creel mcp` stdio session (after 20 warm-up calls each).
pub fn mcp_times(env: &Env, calls: &[(&str, Value)], n: usize) -> Vec<Samples> {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::TokioChildProcess;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut cmd = env.cmd(&["mcp"]);
        cmd.stderr(std::process::Stdio::null());
        let transport =
            TokioChildProcess::new(tokio::process::Command::from(cmd)).expect("spawn creel mcp");
        let client = ().serve(transport).await.expect("MCP handshake");
        let mut out = Vec::new();
        for (tool, args) in calls {
            let params = || {
                CallToolRequestParams::new(tool.to_string())
                    .with_arguments(args.as_object().expect("object").clone())
            };
            for _ in 0..20 {
                let res = client.call_tool(params()).await.expect("call");
                assert_ne!(res.is_error, Some(true), "{tool}: {res:?}");
            }
            let mut s = Samples::default();
            for _ in 0..n {
                let t = Instant::now();
                let res = client.call_tool(params()).await.expect("call");
                s.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_ne!(res.is_error, Some(true));
            }
            out.push(s);
        }
        let _ = client.cancel().await;
        out
    })
}

/// Runs each creel command under `strace -f -e trace=execve` and returns the programs executed
/// other than creel itself; `None` without strace.
fn execs(env: &Env, commands: &[&[&str]]) -> Option<Vec<String>> {
    let strace = creel_engine::internals::find_in_path("strace")?;
    let mut extra = Vec::new();
    for args in commands {
        let trace = env.root.join("strace.out");
        let inner = env.cmd(args);
        let mut c = Command::new(&strace);
        c.args(["-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o"])
            .arg(&trace)
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let out = c.output().expect("strace");
        assert!(out.status.success(), "strace {args:?} failed");
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("execve(\"")) {
            let prog = line
                .split("execve(\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_default();
            if prog != env.creel.to_string_lossy() && !line.contains("= -1 ENOENT") {
                extra.push(prog.to_string());
            }
        }
    }
    Some(extra)
}
