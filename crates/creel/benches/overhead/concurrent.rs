//! 50 concurrent jobs on this machine: all complete and byte-exact (vs a bare `podman run` twin
//! of each), wall time vs 50 concurrent bare `podman run`s, each monitor's RSS, and the CPU the
//! monitors use while their containers are idle, next to conmon (the runtime's own per-container
//! monitor, the floor) measured in the same window.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use creel_engine::JobState;

use crate::util::{
    Bare, Env, ProcStat, Samples, clock_ticks, compare_outputs, descendants, parent_map, proc_stat,
    processes, rss_kib, wall_ms,
};
use crate::{Opts, Report, Verdict};

const TIMEOUT: Duration = Duration::from_secs(900);
const BURST: &str = "lines 20000";
const GATED: &str = "say ready\nbash while [ ! -e go ]; do sleep 1; done\nsay done";
const WINDOW: Duration = Duration::from_secs(10);

pub fn run(o: &Opts, r: &mut Report) {
    let env = Env::new(&o.base, "concurrent", "", o.keep);
    let (job, _) = env.start("say warm-up", &[]);
    let spec = env.wait_final(&job, TIMEOUT).spec;
    let n = o.jobs;

    // ---- burst: n jobs at once, all complete, byte-exact ----
    let t0 = wall_ms();
    let jobs = start_many(&env, BURST, n);
    let mut peak_rss: BTreeMap<i32, u64> = BTreeMap::new();
    let store = env.store();
    let t = Instant::now();
    let recs = loop {
        for (pid, _) in monitors(&jobs) {
            if let Some(kib) = rss_kib(pid) {
                let e = peak_rss.entry(pid).or_default();
                *e = (*e).max(kib);
            }
        }
        let recs: Vec<_> = jobs
            .iter()
            .map(|(j, _)| store.job(j).unwrap().unwrap())
            .collect();
        if recs.iter().all(|r| r.state.is_final()) {
            break recs;
        }
        assert!(t.elapsed() < TIMEOUT, "burst jobs not final");
        std::thread::sleep(Duration::from_millis(100));
    };
    let c_wall = recs
        .iter()
        .map(|r| r.finished_at_ms.unwrap())
        .max()
        .unwrap() as f64
        - t0;
    let completed = recs
        .iter()
        .filter(|r| r.state == JobState::Completed)
        .count();
    for (j, _) in &jobs {
        env.wait_monitor_exit(j, TIMEOUT);
    }

    // bare twins, all at once
    let bares: Vec<Bare> = recs
        .iter()
        .enumerate()
        .map(|(i, rec)| {
            Bare::prepare(
                &spec,
                &env.root.join(format!("bare-{i}")),
                &format!("c{i}"),
                BURST,
                rec.spec.conversation.id(),
            )
        })
        .collect();
    let t0 = wall_ms();
    let children: Vec<Child> = bares
        .iter()
        .map(|b| {
            b.attached(&b.dir.join("stdout"))
                .stderr(Stdio::null())
                .spawn()
                .expect("podman run")
        })
        .collect();
    let mut bare_ok = 0;
    for mut c in children {
        if c.wait().is_ok_and(|s| s.success()) {
            bare_ok += 1;
        }
    }
    let b_wall = wall_ms() - t0;
    let mut exact = 0;
    let mut mismatches = Vec::new();
    for (rec, b) in recs.iter().zip(&bares) {
        match compare_outputs(
            &env.job_dir(&rec.id).join("output.jsonl"),
            &b.dir.join("stdout"),
        ) {
            Ok(_) => exact += 1,
            Err(e) => mismatches.push(format!("{}: {e}", rec.id)),
        }
        b.remove();
        let _ = std::fs::remove_dir_all(&b.dir);
    }
    let bytes: u64 = recs.iter().map(|r| r.output_size).sum();
    r.row(
        format!(
            "{n} concurrent jobs (`{BURST}`, {} MB in all): start → all completed",
            bytes / 1_000_000
        ),
        format!(
            "{:.1} s; {completed}/{n} completed, {exact}/{n} byte-exact",
            c_wall / 1000.0
        ),
        format!("{:.1} s; {bare_ok}/{n} exited 0", b_wall / 1000.0),
        format!("{:.2}×", c_wall / b_wall),
        "all complete, byte-exact",
        if completed == n && exact == n {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    for m in mismatches.iter().take(5) {
        r.note(format!("mismatch: {m}"));
    }
    let mut peak = Samples(peak_rss.values().map(|&k| k as f64 / 1024.0).collect());
    peak.0.retain(|v| *v > 0.0);
    r.row(
        "monitor peak RSS while capturing (each)",
        format!(
            "median {:.1} MiB, max {:.1} MiB (n={})",
            peak.p50(),
            peak.q(1.0),
            peak.len()
        ),
        "",
        "",
        "",
        Verdict::Info,
    );

    // ---- idle: n jobs whose containers wait for a file ----
    let jobs = start_many(&env, GATED, n);
    let t = Instant::now();
    let cids: Vec<String> = loop {
        let recs: Vec<_> = jobs
            .iter()
            .map(|(j, _)| store.job(j).unwrap().unwrap())
            .collect();
        assert!(
            recs.iter().all(|r| !r.state.is_final()),
            "a gated job ended early: {:?}",
            recs.iter().find(|r| r.state.is_final())
        );
        if recs
            .iter()
            .all(|r| r.state == JobState::Running && r.output_size > 0)
        {
            break recs
                .iter()
                .map(|r| r.container_id.clone().unwrap())
                .collect();
        }
        assert!(t.elapsed() < TIMEOUT, "gated jobs never all ran");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(5)); // let the last starts settle
    let mons = monitors(&jobs);
    assert_eq!(mons.len(), n, "monitor processes found");
    let conmons = conmons(&cids);
    let load_before = crate::util::loadavg();
    let ta = Instant::now();
    let a = snapshot(&mons, &conmons);
    std::thread::sleep(WINDOW);
    let secs = ta.elapsed().as_secs_f64();
    let b = snapshot(&mons, &conmons);
    let tick = clock_ticks();
    let pct = |ticks: u64| ticks as f64 / tick / secs * 100.0;
    let (mut own, mut kids, mut con) = (0u64, 0u64, 0u64);
    let mut rss_mon = Samples::default();
    let mut rss_kids = Samples::default();
    for (pid, sa) in &a.monitors {
        let Some(sb) = b.monitors.get(pid) else {
            continue;
        };
        own += (sb.stat.utime + sb.stat.stime).saturating_sub(sa.stat.utime + sa.stat.stime);
        kids += (sb.stat.cutime + sb.stat.cstime).saturating_sub(sa.stat.cutime + sa.stat.cstime);
        for (d, ds) in &sb.kids {
            let before = sa.kids.get(d).map_or(0, |s| s.utime + s.stime);
            kids += (ds.utime + ds.stime).saturating_sub(before);
        }
        rss_mon.push(sb.rss as f64 / 1024.0);
        rss_kids.push(sb.kids_rss as f64 / 1024.0);
    }
    let mut rss_con = Samples::default();
    for (pid, sa) in &a.conmons {
        if let Some(sb) = b.conmons.get(pid) {
            con += (sb.stat.utime + sb.stat.stime).saturating_sub(sa.stat.utime + sa.stat.stime);
            rss_con.push(sb.rss as f64 / 1024.0);
        }
    }
    r.row(
        format!("monitor RSS each, {n} idle jobs (monitor process / its runtime children)"),
        format!(
            "median {:.1} MiB, max {:.1} MiB / median {:.1} MiB",
            rss_mon.p50(),
            rss_mon.q(1.0),
            rss_kids.p50()
        ),
        format!(
            "conmon median {:.1} MiB, max {:.1} MiB",
            rss_con.p50(),
            rss_con.q(1.0)
        ),
        format!(
            "{:.1}× conmon (monitor alone)",
            rss_mon.p50() / rss_con.p50()
        ),
        "",
        Verdict::Info,
    );
    r.row(
        format!("CPU of the {n} monitors while their containers are idle ({}-s window)", WINDOW.as_secs()),
        format!(
            "{:.1}% of one core in all (monitors {:.1}%, their podman children {:.1}%); {:.2}% per job",
            pct(own + kids),
            pct(own),
            pct(kids),
            pct(own + kids) / n as f64
        ),
        format!("conmon: {:.2}% in all", pct(con)),
        "",
        "",
        Verdict::Info,
    );
    r.note(format!(
        "idle window: all {n} gated containers running, waiting for a file; load before {load_before}, after {}",
        crate::util::loadavg()
    ));
    // release and check they all complete
    let sessions: Vec<String> = jobs.iter().map(|(_, s)| s.clone()).collect();
    for s in &sessions {
        let go = env.home.join("workspaces").join(s).join("go");
        std::fs::write(go, b"").unwrap();
    }
    let mut ok = 0;
    for (j, _) in &jobs {
        let rec = env.wait_final(j, TIMEOUT);
        let out = std::fs::read_to_string(env.job_dir(j).join("output.jsonl")).unwrap_or_default();
        if rec.state == JobState::Completed
            && out.contains("\"text\":\"ready\"")
            && out.contains("\"text\":\"done\"")
        {
            ok += 1;
        }
    }
    r.row(
        format!("{n} idle jobs released: all complete"),
        format!("{ok}/{n}"),
        "",
        "",
        "all complete",
        if ok == n {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
}

/// Starts `n` jobs of `prompt` at once (one `creel start` process each).
fn start_many(env: &Env, prompt: &str, n: usize) -> Vec<(String, String)> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n).map(|_| s.spawn(|| env.start(prompt, &[]))).collect();
        hs.into_iter().map(|h| h.join().expect("start")).collect()
    })
}

/// (pid, job) of the monitor processes of `jobs` (not their children between fork and exec,
/// which still carry the monitor's argv).
fn monitors(jobs: &[(String, String)]) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for (pid, argv) in processes() {
        if let Some(i) = argv.iter().position(|a| a == "__monitor")
            && let Some(job) = argv.get(i + 1)
            && jobs.iter().any(|(j, _)| j == job)
        {
            found.push((pid, job.clone()));
        }
    }
    let pids: Vec<i32> = found.iter().map(|(p, _)| *p).collect();
    found.retain(|(p, _)| proc_stat(*p).is_some_and(|s| !pids.contains(&s.ppid)));
    found
}

/// Pids of the conmon processes of these containers.
fn conmons(cids: &[String]) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, argv)| {
            argv.first().is_some_and(|a| a.ends_with("conmon"))
                && argv.iter().any(|a| cids.contains(a))
        })
        .map(|(p, _)| p)
        .collect()
}

struct Proc {
    stat: ProcStat,
    rss: u64,
    kids: BTreeMap<i32, ProcStat>,
    kids_rss: u64,
}

struct Snapshot {
    monitors: BTreeMap<i32, Proc>,
    conmons: BTreeMap<i32, Proc>,
}

fn snapshot(mons: &[(i32, String)], conmons: &[i32]) -> Snapshot {
    let parents = parent_map();
    let one = |pid: i32, with_kids: bool| -> Option<Proc> {
        let stat = proc_stat(pid)?;
        let mut kids = BTreeMap::new();
        let mut kids_rss = 0;
        if with_kids {
            for d in descendants(&parents, pid) {
                if let Some(s) = proc_stat(d) {
                    kids.insert(d, s);
                    kids_rss += rss_kib(d).unwrap_or(0);
                }
            }
        }
        Some(Proc {
            stat,
            rss: rss_kib(pid).unwrap_or(0),
            kids,
            kids_rss,
        })
    };
    Snapshot {
        monitors: mons
            .iter()
            .filter_map(|(p, _)| one(*p, true).map(|x| (*p, x)))
            .collect(),
        conmons: conmons
            .iter()
            .filter_map(|p| one(*p, false).map(|x| (*p, x)))
            .collect(),
    }
}
