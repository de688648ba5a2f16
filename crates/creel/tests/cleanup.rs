//! Idle sessions are cleaned up (explicitly, and automatically by start/sessions/cleanup, never
//! by status/output); live sessions and user workspaces are never removed.

use std::time::Duration;

use crate::util::{TestEnv, eventually, podman_containers};

#[test]
fn cleanup_removes_idle_sessions_but_never_live_ones_or_user_workspaces() {
    let env = TestEnv::new();
    let (done, s_done) = env.start("write f.txt made by agent", &["--session", "idle-one"]);
    env.wait(&done);
    let user_ws = env.dir.path().join("user-ws");
    std::fs::create_dir(&user_ws).unwrap();
    std::os::unix::fs::chown(&user_ws, Some(1000), Some(1000)).unwrap();
    let outside = env.dir.path().join("outside.txt");
    std::fs::write(&outside, "keep me").unwrap();
    let (mine, _) = env.start(
        "say mine",
        &[
            "--session",
            "user-owned",
            "--workspace",
            user_ws.to_str().unwrap(),
        ],
    );
    env.wait(&mine);
    // A symlink inside a creel workspace pointing outside must not be followed.
    let creel_ws = env.home.join("workspaces").join(&s_done);
    std::os::unix::fs::symlink(&outside, creel_ws.join("link-out")).unwrap();
    let (live, _) = env.start("say live\nsleep 60", &["--session", "live-one"]);
    eventually(Duration::from_secs(20), "running", || {
        (env.json(&["status", &live, "--json"])["status"] == "running").then_some(())
    });

    let r = env.json(&[
        "cleanup",
        "--idle-seconds",
        "0",
        "--delete-workspaces",
        "--json",
    ]);
    let removed: Vec<&str> = r["removedSessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        removed.contains(&"idle-one") && removed.contains(&"user-owned"),
        "{r}"
    );
    assert_eq!(r["skippedActive"], serde_json::json!(["live-one"]));
    assert!(
        !creel_ws.exists(),
        "creel-created workspace deleted with --delete-workspaces"
    );
    assert!(
        user_ws.is_dir(),
        "a --workspace the user brought is never deleted"
    );
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "keep me",
        "symlink followed"
    );
    let sessions = env.json(&["sessions", "--json"]);
    let ids: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["live-one"]);
    assert!(env.home.join("jobs").join(&live).is_dir());
    assert!(!env.home.join("jobs").join(&done).exists());
    let out = env.run(&["status", &done]);
    env.expect_code(&out, 2, &["status"]);
    env.json(&["cancel", &live, "--json"]);
    env.wait(&live);
    eventually(Duration::from_secs(20), "container gone", || {
        podman_containers(&format!("io.creel.job={live}"))
            .is_empty()
            .then_some(())
    });
}

#[test]
fn automatic_cleanup_runs_on_sessions_and_start_but_not_on_status() {
    let env = TestEnv::with_config("session_idle_timeout = 2\n");
    let (job, session) = env.start("say soon idle", &[]);
    env.wait(&job);
    std::thread::sleep(Duration::from_millis(2500));
    // status and output never clean up.
    env.json(&["status", &job, "--json"]);
    env.json(&["output", &job, "--json"]);
    assert!(env.home.join("jobs").join(&job).is_dir());
    let sessions = env.json(&["sessions", "--json"]);
    assert!(
        sessions.as_array().unwrap().is_empty(),
        "idle session not cleaned by `sessions`: {sessions}"
    );
    let ws = env.home.join("workspaces").join(&session);
    assert!(ws.is_dir(), "automatic cleanup never deletes workspaces");
}

#[test]
fn containers_that_are_not_creels_are_never_touched() {
    let env = TestEnv::new();
    let name = format!("not-creel-{}", std::process::id());
    let out = std::process::Command::new("podman")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "io.creel.job=000000000000",
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            crate::util::TEST_IMAGE,
            "sleep",
            "60",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (job, _) = env.start("say hi", &[]);
    env.wait(&job);
    env.json(&[
        "cleanup",
        "--idle-seconds",
        "0",
        "--delete-workspaces",
        "--json",
    ]);
    let out = env.run(&["cancel", "000000000000"]);
    env.expect_code(&out, 2, &["cancel"]);
    let alive = std::process::Command::new("podman")
        .args(["inspect", "--format", "{{.State.Running}}", &name])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&alive.stdout).trim(),
        "true",
        "creel touched a container it did not start"
    );
    let _ = std::process::Command::new("podman")
        .args(["rm", "-f", &name])
        .output();
}
