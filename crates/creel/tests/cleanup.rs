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

    // `start` cleans up too: another idle session goes when a new job starts.
    let (job, _) = env.start("say soon idle too", &["--session", "idle-two"]);
    env.wait(&job);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(env.home.join("jobs").join(&job).is_dir());
    let (fresh, _) = env.start("say new", &[]);
    assert!(
        !env.home.join("jobs").join(&job).exists(),
        "idle session not cleaned by `start`"
    );
    env.wait(&fresh);
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

#[test]
fn cleanup_of_one_home_never_touches_another_homes_containers() {
    // Two homes, each with a session named alike; B's job is still running.
    let a = TestEnv::new();
    let b = TestEnv::new();
    let (done, _) = a.start("say finished", &["--session", "shared-name"]);
    a.wait(&done);
    let (running, _) = b.start("say working\nsleep 60", &["--session", "shared-name"]);
    crate::util::eventually(Duration::from_secs(30), "B's job running", || {
        (b.json(&["status", &running, "--json"])["status"] == "running").then_some(())
    });
    let out = a.run(&["cleanup", "--idle-seconds", "0"]);
    a.expect_code(&out, 0, &["cleanup"]);
    // A's session went; B's job runs on, its container untouched.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("shared-name"),
        "{}",
        a.describe(&["cleanup"], &out)
    );
    std::thread::sleep(Duration::from_secs(2));
    let s = b.json(&["status", &running, "--json"]);
    assert_eq!(
        s["status"], "running",
        "another home's cleanup stopped it: {s}"
    );
    assert_eq!(
        crate::util::podman_containers(&format!("io.creel.job={running}")).len(),
        1
    );
    b.run(&["cancel", &running]);
}

#[test]
fn creel_never_changes_the_mode_of_a_directory_it_did_not_create() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = env.run(&["--home", shared.to_str().unwrap(), "sessions"]);
    env.expect_code(&out, 0, &["sessions"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode(&shared),
        0o1777,
        "a read-only command changed the mode"
    );
    // What creel made in it is private.
    assert_eq!(mode(&shared.join("creel.db")), 0o600);
    // A home creel makes itself is private from the start.
    let fresh = env.dir.path().join("fresh/home");
    let out = env.run(&["--home", fresh.to_str().unwrap(), "sessions"]);
    env.expect_code(&out, 0, &["sessions"]);
    assert_eq!(mode(&fresh), 0o700);
}

#[test]
fn workspaces_under_a_custom_workspaces_dir_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let wsdir = root.path().join("ws");
    let env = TestEnv::with_config(&format!("workspaces_dir = \"{}\"\n", wsdir.display()));
    let (job, session) = env.start("write notes.txt secret plans", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&wsdir), 0o700, "the workspaces dir creel made");
    let ws = wsdir.join(&session);
    assert!(ws.join("notes.txt").is_file());
    assert_eq!(mode(&ws), 0o700, "the session's workspace");
}

#[test]
fn cleanup_removes_job_directories_a_killed_start_left_behind() {
    let env = TestEnv::new();
    let (job, _) = env.start("say hi", &[]);
    env.wait(&job);
    let jobs = env.home.join("jobs");
    // What a `creel start` killed between writing files and recording the job leaves.
    let orphan = jobs.join("0123456789ab");
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(orphan.join("prompt"), "p").unwrap();
    std::fs::write(orphan.join("api-key"), "sk-left-behind").unwrap();
    let young = jobs.join("ba9876543210");
    std::fs::create_dir(&young).unwrap();
    let old = std::process::Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(&orphan)
        .status()
        .unwrap();
    assert!(old.success());
    let args = ["cleanup", "--idle-seconds", "3600"];
    let out = env.run(&args);
    env.expect_code(&out, 0, &args);
    assert!(!orphan.exists(), "an old orphan is removed");
    assert!(young.exists(), "a start may still be writing a young one");
    assert!(jobs.join(&job).exists(), "a recorded job's directory stays");
}

#[test]
fn workspaces_an_earlier_cleanup_left_are_reclaimed_with_delete_workspaces() {
    let env = TestEnv::new();
    let (done, session) = env.start("write kept.txt still here", &[]);
    env.wait(&done);
    let ws = env.home.join("workspaces").join(&session);
    assert!(ws.join("kept.txt").exists());
    // Removed without --delete-workspaces: the workspace stays, without a session.
    let r = env.json(&["cleanup", "--idle-seconds", "0", "--json"]);
    assert!(
        r["removedSessions"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(session))
    );
    assert!(ws.join("kept.txt").exists());
    // A directory that cannot be a session's, and an orphan too fresh to be sure of.
    let other = env.home.join("workspaces").join("not a session");
    std::fs::create_dir(&other).unwrap();
    let fresh = env.home.join("workspaces").join("fresh-orphan");
    std::fs::create_dir(&fresh).unwrap();
    for d in [&ws, &other] {
        let touched = std::process::Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(d)
            .status()
            .unwrap();
        assert!(touched.success());
    }
    let r = env.json(&[
        "cleanup",
        "--idle-seconds",
        "0",
        "--delete-workspaces",
        "--json",
    ]);
    let deleted: Vec<&str> = r["deletedWorkspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(deleted, [ws.to_str().unwrap()], "{r}");
    assert!(!ws.exists());
    assert!(other.exists() && fresh.exists());
}
