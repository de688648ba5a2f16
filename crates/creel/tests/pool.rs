//! The warm pool (`pool = N`): sandboxes started before their prompt, each used at most once,
//! replaced behind every start, discarded when the config changes or their monitor is gone,
//! and taken down by `pool drain` and `cleanup`. Real Podman containers from the test image.

use std::time::Duration;

use serde_json::Value;

use crate::util::{TestEnv, eventually, kill_monitor, podman_containers};

/// The pool's ready sandboxes: (job id, session id).
fn ready(env: &TestEnv) -> Vec<(String, String)> {
    let v = env.json(&["pool", "--json"]);
    v["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ready"] == true)
        .map(|s| {
            (
                s["jobId"].as_str().unwrap().to_string(),
                s["sessionId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fill(env: &TestEnv) -> Vec<(String, String)> {
    let v = env.json(&["pool", "fill", "--json"]);
    assert_eq!(v["size"], 1, "{v}");
    let r = ready(env);
    assert_eq!(r.len(), 1, "fill waits until the pool is ready: {v}");
    r
}

/// Drains the pool however the test ends: its containers must not outlive it.
struct Drain<'a>(&'a TestEnv);

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["pool", "drain"]);
    }
}

#[test]
fn a_start_takes_a_ready_sandbox_once_and_the_pool_refills_behind_it() {
    let env = TestEnv::with_config("pool = 1\n");
    let _drain = Drain(&env);
    let pooled = fill(&env);
    let (pool_job, pool_session) = pooled[0].clone();
    let doctor = env.run(&["doctor", "--json"]);
    let findings: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let pool = findings
        .as_array()
        .or_else(|| findings["findings"].as_array())
        .unwrap()
        .iter()
        .find(|f| f["check"] == "pool")
        .cloned()
        .unwrap_or_default();
    assert_eq!(pool["message"], "1 of 1 sandboxes ready", "{findings}");
    let before = podman_containers(&format!("io.creel.job={pool_job}"));
    assert_eq!(before.len(), 1, "the sandbox's container waits: {before:?}");

    // The start is handed the sandbox: its ids, running at once.
    let v = env.json(&["start", "--json", "write f.txt made by agent\nsay done"]);
    assert_eq!(v["jobId"], pool_job.as_str(), "{v}");
    assert_eq!(v["sessionId"], pool_session.as_str(), "{v}");
    assert_eq!(v["status"], "running", "{v}");
    let done = env.wait(&pool_job);
    assert_eq!(done["status"], "completed", "{done}");
    let ws = env.home.join("workspaces").join(&pool_session);
    assert_eq!(
        std::fs::read_to_string(ws.join("f.txt")).unwrap(),
        "made by agent\n"
    );
    let shown = env.json(&["jobs", "--json"]);
    assert!(shown.to_string().contains("write f.txt"), "{shown}");

    // A new sandbox replaces it (never the same one again).
    let next = eventually(Duration::from_secs(60), "the pool to refill", || {
        let r = ready(&env);
        (r.len() == 1).then(|| r[0].clone())
    });
    assert_ne!(next.0, pool_job);
    assert_ne!(next.1, pool_session);

    // A start that names its session does not use the pool, and leaves it be.
    let (own, _) = env.start("say mine", &["--session", "named"]);
    assert_ne!(own, next.0);
    env.wait(&own);
    assert_eq!(ready(&env)[0], next);

    // Nor does one with options of its own: the sandbox stays for the default starts.
    let (modeled, _) = env.start("say other model", &["--model", "claude-other-model"]);
    assert_ne!(modeled, next.0);
    env.wait(&modeled);
    assert_eq!(ready(&env), vec![next.clone()]);
    // A sandbox's session id cannot be taken by a start that names it.
    let out = env.run(&["start", "say mine", "--session", &next.1]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        env.describe(&["start"], &out)
    );

    // The next default start takes the new sandbox, in its own new session.
    let (job2, session2) = env.start("say second", &[]);
    assert_eq!((job2.clone(), session2.clone()), next);
    let done = env.wait(&job2);
    assert_eq!(done["status"], "completed", "{done}");
    let out = String::from_utf8_lossy(&env.raw_output(&job2)).to_string();
    assert!(out.contains("second"), "{out}");
    assert!(
        !out.contains("made by agent"),
        "nothing of the first session reaches the second: {out}"
    );

    // cleanup drains the pool: containers and files.
    let refilled = eventually(Duration::from_secs(60), "the pool to refill", || {
        let r = ready(&env);
        (r.len() == 1).then(|| r[0].clone())
    });
    let r = env.json(&["cleanup", "--idle-seconds", "999999", "--json"]);
    assert_eq!(r["drainedPool"], serde_json::json!([refilled.0]), "{r}");
    assert!(ready(&env).is_empty());
    assert!(podman_containers(&format!("io.creel.job={}", refilled.0)).is_empty());
    assert!(!env.home.join("jobs").join(&refilled.0).exists());
    assert!(!env.home.join("workspaces").join(&refilled.1).exists());
    assert!(!env.home.join("sessions").join(&refilled.1).exists());
}

#[test]
fn sandboxes_for_an_old_config_or_without_a_monitor_are_discarded_never_used() {
    let env = TestEnv::with_config("pool = 1\n");
    let _drain = Drain(&env);
    let (old_job, _) = fill(&env).remove(0);

    // Another memory limit: the sandbox's container was made for the old one.
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str("memory = \"300m\"\n");
    std::fs::write(&env.config, &config).unwrap();
    let (job, _) = env.start("say new config", &[]);
    assert_ne!(job, old_job, "a stale sandbox is never used");
    assert_eq!(env.wait(&job)["status"], "completed");
    eventually(Duration::from_secs(30), "the stale sandbox to go", || {
        podman_containers(&format!("io.creel.job={old_job}"))
            .is_empty()
            .then_some(())
    });
    // The pool refills for the new config, and that sandbox is used.
    let (fresh, _) = eventually(Duration::from_secs(60), "the pool to refill", || {
        ready(&env).pop()
    });
    let (job, _) = env.start("say fits", &[]);
    assert_eq!(job, fresh);
    assert_eq!(env.wait(&job)["status"], "completed");

    // A sandbox whose monitor died is discarded (and taken down), not used.
    let (orphan, _) = eventually(Duration::from_secs(60), "the pool to refill", || {
        ready(&env).pop()
    });
    kill_monitor(&env, &orphan);
    let (job, _) = env.start("say after a crash", &[]);
    assert_ne!(job, orphan);
    assert_eq!(env.wait(&job)["status"], "completed");
    assert!(podman_containers(&format!("io.creel.job={orphan}")).is_empty());
    assert!(!env.home.join("jobs").join(&orphan).exists());

    // Turning the pool off: the next start takes down what is left in it.
    let (left, _) = eventually(Duration::from_secs(60), "the pool to refill", || {
        ready(&env).pop()
    });
    let config = std::fs::read_to_string(&env.config).unwrap();
    assert!(config.contains("pool = 1\n"), "{config}");
    std::fs::write(&env.config, config.replace("pool = 1\n", "pool = 0\n")).unwrap();
    let (job, _) = env.start("say pool off", &[]);
    assert_ne!(job, left);
    assert_eq!(env.wait(&job)["status"], "completed");
    eventually(Duration::from_secs(30), "the sandbox to go", || {
        podman_containers(&format!("io.creel.job={left}"))
            .is_empty()
            .then_some(())
    });
    let v = env.json(&["pool", "--json"]);
    assert_eq!(v["sandboxes"], serde_json::json!([]), "{v}");
}

#[test]
fn two_starts_racing_for_one_sandbox_get_it_once() {
    let env = TestEnv::with_config("pool = 1\n");
    let _drain = Drain(&env);
    let (pooled, _) = fill(&env).remove(0);
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            env.cmd(&["start", "--json", &format!("say racer {i}")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let jobs: Vec<Value> = children
        .iter_mut()
        .map(|c| {
            let mut s = String::new();
            std::io::Read::read_to_string(c.stdout.as_mut().unwrap(), &mut s).unwrap();
            assert!(c.wait().unwrap().success(), "{s}");
            serde_json::from_str(&s).unwrap()
        })
        .collect();
    let ids: Vec<&str> = jobs.iter().map(|j| j["jobId"].as_str().unwrap()).collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(
        ids.iter().filter(|i| **i == pooled).count(),
        1,
        "exactly one start got the sandbox: {jobs:?}"
    );
    for (i, id) in ids.iter().enumerate() {
        let done = env.wait(id);
        assert_eq!(done["status"], "completed", "{done}");
        let out = String::from_utf8_lossy(&env.raw_output(id)).to_string();
        let other = 1 - i;
        assert!(!out.contains(&format!("racer {other}")), "{out}");
    }
}
