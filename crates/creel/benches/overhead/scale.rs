//! Scale: job lookup (`status`), `sessions`, `start` and the dashboard's overview, with 1 session and
//! with 10,000 sessions in the store. The 10,000 sessions are inserted through the engine's real store API
//! (`Store::insert_job` + `Store::finish`, the calls `start` and the monitor make), each with
//! one completed job whose spec is a real job's; no containers are started for them.

use std::process::Command;
use std::time::{Duration, Instant};

use creel_engine::internals::SessionRecord;
use creel_engine::internals::new_job_id;
use creel_engine::{JobRecord, JobState};

use crate::util::{Env, Samples, UiServer, fmt_ms, time_cmd, time_n, wall_ms};
use crate::{Opts, Report, Verdict};

const TIMEOUT: Duration = Duration::from_secs(120);

struct Figures {
    status: Samples,
    status_cli: Samples,
    sessions: Samples,
    sessions_cli: Samples,
    start_new: Samples,
    start_existing: Samples,
    overview: Samples,
    sessions_count: usize,
}

pub fn run(o: &Opts, r: &mut Report) {
    let env = Env::new(&o.base, "scale", "", o.keep);
    let engine = env.engine();
    let (job, session) = env.start("lines 100", &[]);
    let rec = env.wait_final(&job, TIMEOUT);
    assert_eq!(rec.state, JobState::Completed);

    let small = measure(&env, &engine, &job, &session);

    let t = Instant::now();
    populate(&env, &rec, o.sessions);
    let populate_s = t.elapsed().as_secs_f64();

    let big = measure(&env, &engine, &job, &session);
    let ps = time_cmd(10, 1, || {
        let mut c = Command::new("podman");
        c.args(["ps", "-a", "--format", "{{.ID}}"]);
        c
    });

    let n_small = small.sessions_count;
    let n_big = big.sessions_count;
    let rows: [(&str, &Samples, &Samples, &str); 7] = [
        (
            "job lookup, in-process `Engine::status`",
            &small.status,
            &big.status,
            "flat (O(log n))",
        ),
        (
            "job lookup, CLI `creel status --json`",
            &small.status_cli,
            &big.status_cli,
            "p50 ≤ 5 ms",
        ),
        (
            "`sessions`, in-process `Engine::sessions`",
            &small.sessions,
            &big.sessions,
            "",
        ),
        (
            "`creel sessions --json`",
            &small.sessions_cli,
            &big.sessions_cli,
            "",
        ),
        (
            "`creel start` returns, new session",
            &small.start_new,
            &big.start_new,
            "",
        ),
        (
            "`creel start --session S` returns, existing session",
            &small.start_existing,
            &big.start_existing,
            "",
        ),
        (
            "dashboard overview, `GET /api/overview` from `creel ui` (200 newest jobs, every session)",
            &small.overview,
            &big.overview,
            "p50 < 200 ms",
        ),
    ];
    for (name, a, b, goal) in rows {
        let ratio = b.p50() / a.p50();
        let verdict = match goal {
            "flat (O(log n))" => {
                if ratio <= 1.5 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                }
            }
            "p50 ≤ 5 ms" => {
                if b.p50() <= 5.0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                }
            }
            "p50 < 200 ms" => {
                if b.p50() < 200.0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                }
            }
            _ => Verdict::Info,
        };
        r.row(
            format!("{name}: {n_big} sessions vs {n_small}"),
            format!("{n_big}: {}", b.fmt_ms()),
            format!("{n_small}: {}", fmt_ms(a.p50())),
            format!("{ratio:.2}× ({n_big} / {n_small})"),
            goal,
            verdict,
        );
    }
    r.row(
        "reference: `podman ps -a` (the runtime's own listing)",
        "",
        ps.fmt_ms(),
        "",
        "",
        Verdict::Info,
    );
    r.note(format!(
        "{} sessions inserted with `Store::insert_job` + `Store::finish` in {populate_s:.1} s; config `session_idle_timeout` left at its default (3600 s), so `sessions` and `start` run the automatic cleanup scan as users get it",
        o.sessions
    ));
}

fn measure(env: &Env, engine: &creel_engine::Engine, job: &str, session: &str) -> Figures {
    let status = time_n(2000, 100, || {
        engine.status(job).unwrap();
    });
    let status_cli = time_cmd(200, 10, || env.cmd(&["status", job, "--json"]));
    let sessions_count = engine.sessions().unwrap().len();
    let sessions = time_n(20, 2, || {
        engine.sessions().unwrap();
    });
    let sessions_cli = time_cmd(20, 2, || env.cmd(&["sessions", "--json"]));
    let mut start_new = Samples::default();
    let mut start_existing = Samples::default();
    for _ in 0..5 {
        let t0 = wall_ms();
        let (j, _) = env.start("say hi", &[]);
        start_new.push(wall_ms() - t0);
        env.wait_final(&j, TIMEOUT);
        let t0 = wall_ms();
        let (j, _) = env.start("say again", &["--session", session]);
        start_existing.push(wall_ms() - t0);
        env.wait_final(&j, TIMEOUT);
    }
    let overview = ui_overview(env);
    Figures {
        status,
        status_cli,
        sessions,
        sessions_cli,
        start_new,
        start_existing,
        overview,
        sessions_count,
    }
}

/// The dashboard's overview over HTTP, as the page asks for it (with its login cookie).
fn ui_overview(env: &Env) -> Samples {
    let ui = UiServer::start(env);
    time_n(20, 2, || {
        ui.get("/api/overview");
    })
}

/// Inserts `n` sessions, each with one completed job, through the real store API.
fn populate(env: &Env, template: &JobRecord, n: usize) {
    let mut store = env.store();
    let now = creel_engine::internals::now_ms();
    for i in 0..n {
        let id = new_job_id();
        let session = format!("bench-{i:05}");
        let mut rec = template.clone();
        rec.id = id.clone();
        rec.session_id = session.clone();
        rec.state = JobState::Pending;
        rec.error = None;
        rec.exit_code = None;
        rec.created_at_ms = now - 1000;
        rec.started_at_ms = None;
        rec.finished_at_ms = None;
        rec.container_id = None;
        let s = SessionRecord {
            id: session.clone(),
            created_at_ms: now - 1000,
            last_activity_ms: now - 1000,
            workspace: env.home.join("workspaces").join(&session),
            workspace_created: true,
            claude_session_id: rec.spec.conversation.id().to_string(),
            git: None,
        };
        store
            .insert_job(&rec, Some(&s))
            .expect("insert")
            .expect("session free");
        assert!(
            store
                .finish(&id, JobState::Completed, None, Some(0), now)
                .expect("finish")
        );
    }
}
