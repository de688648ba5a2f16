//! Jobs on Docker: a burst, a failure, an OOM and a cancel (the allowlist on Docker is in
//! egress.rs). Debian's docker.io engine runs on its own socket, started by
//! `scripts/dockerd.sh`; `scripts/test` exports `CREEL_TEST_DOCKER_HOST`). In CI the engine
//! must be there; a developer without it skips these.

use crate::util::{TestEnv, user_git, user_repo};

fn docker_env(extra: &str) -> Option<TestEnv> {
    let host = match std::env::var("CREEL_TEST_DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h,
        _ => {
            crate::util::skip_unless_ci(
                "the Docker tests need CREEL_TEST_DOCKER_HOST (scripts/dockerd.sh start)",
            );
            return None;
        }
    };
    let mut env = TestEnv::with_config(&format!("runtime = \"docker\"\n{extra}"));
    env.set_env("DOCKER_HOST", &host);
    Some(env)
}

#[test]
fn docker_job_completes_with_byte_exact_burst() {
    let Some(env) = docker_env("") else { return };
    let (job, _) = env.start(
        "say on docker\nlines 50000\nwrite d.txt from docker\nnoeol no newline at the end",
        &[],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["exitCode"], 0);
    let raw = env.raw_output(&job);
    assert!(raw.ends_with(b"no newline at the end"));
    let text = String::from_utf8_lossy(&raw);
    // Every line of the burst, each once, in order: nothing lost, doubled or reordered.
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["message"]["content"][0]["text"]
                .as_str()?
                .strip_prefix("line ")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(numbers.len(), 50000);
    assert!(
        numbers.iter().copied().eq(1..=50000),
        "the burst is not 1..=50000 in order"
    );
    // init, say, 50000 lines, Write tool_use and tool_result, the final partial line.
    assert_eq!(text.lines().count(), 50005);
}

#[test]
fn docker_failures_cancel_and_oom() {
    let Some(env) = docker_env("memory = \"64m\"\n") else {
        return;
    };
    let (fail, _) = env.start("exit 5", &[]);
    let (oom, _) = env.start("oom", &[]);
    let (long, _) = env.start("say wait\nsleep 60", &[]);
    let s = env.wait(&fail);
    assert_eq!(
        (s["status"].as_str(), s["exitCode"].as_i64()),
        (Some("failed"), Some(5)),
        "{s}"
    );
    let s = env.wait(&oom);
    assert_eq!(s["error"]["kind"], "oom", "{s}");
    crate::util::eventually(std::time::Duration::from_secs(30), "running", || {
        (env.json(&["status", &long, "--json"])["status"] == "running").then_some(())
    });
    assert_eq!(
        env.json(&["cancel", &long, "--json"])["status"],
        "cancelled"
    );
    let s = env.wait(&long);
    assert_eq!(s["status"], "cancelled");
}

#[test]
fn a_missing_image_on_docker_gets_a_command_that_works_with_docker() {
    // creel's own image, at a version nobody built: creel can make it, Docker must load it.
    let Some(env) = docker_env("image = \"localhost/creel-claude:0.0.0-none\"\n") else {
        return;
    };
    let out = env.run(&["start", "say hi"]);
    env.expect_code(&out, 3, &["start", "say hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("podman save localhost/creel-claude:0.0.0-none | docker load"),
        "{err}"
    );
    let out = env.run(&["doctor"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("docker load"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn docker_repo_sessions_record_what_the_container_user_wrote() {
    use std::os::unix::fs::MetadataExt;
    let Some(env) = docker_env("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    user_repo(&repo, &[("a.txt", "a\n")]);
    let (job, session) = env.start(
        "write b.txt written on docker\nbash mkdir -p sub && echo nested > sub/c.txt",
        &["--repo", repo.to_str().unwrap()],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["changes"]["files"], 2, "{s}");
    // In the checkout the files are the container user's (not root's); landed, the user's.
    let ws = env.home.join("workspaces").join(&session);
    let agent_uid = std::fs::metadata(ws.join("b.txt")).unwrap().uid();
    assert_ne!(agent_uid, 0);
    let m = env.json(&["merge", &session, "--json"]);
    assert_eq!(m["fastForward"], true, "{m}");
    let owner = std::fs::metadata(&repo).unwrap().uid();
    for f in ["b.txt", "sub/c.txt"] {
        assert_eq!(std::fs::metadata(repo.join(f)).unwrap().uid(), owner, "{f}");
    }
    assert_eq!(user_git(&repo, &["status", "--porcelain"]), "");
    // A cleanup that keeps workspaces keeps the session (its branch), and says so; one that
    // deletes them removes the checkout and creel's repository, not the user's.
    let c = env.json(&["cleanup", "--idle-seconds", "0", "--json"]);
    assert_eq!(c["keptBranches"], serde_json::json!([session]), "{c}");
    assert!(ws.join("b.txt").exists());
    let c = env.json(&[
        "cleanup",
        "--idle-seconds",
        "0",
        "--delete-workspaces",
        "--json",
    ]);
    assert_eq!(c["removedSessions"], serde_json::json!([session]), "{c}");
    assert!(!ws.exists() && !env.home.join("git").join(&session).exists());
    assert!(repo.join("b.txt").exists());
}

/// Steering on Docker: the request directory is writable and the answers readable for the
/// job's user, and an approval and a question go through.
#[test]
fn docker_job_asks_and_waits_for_approval() {
    let Some(env) = docker_env("permissions = \"ask\"\n") else {
        return;
    };
    let (job, _) = env.start(
        "ask Docker question?\napprove echo approved-on-docker\nsay end",
        &[],
    );
    let wait = || {
        let out = env.run(&["wait", &job, "--timeout", "60", "--json"]);
        env.expect_code(&out, 5, &["wait", &job]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(wait()["needsInput"]["question"], "Docker question?");
    env.json(&["reply", &job, "docker answer", "--json"]);
    assert_eq!(wait()["needsApproval"]["toolName"], "Bash");
    env.json(&["approve", &job, "--json"]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(raw.contains(r#""content":"docker answer""#), "{raw}");
    assert!(raw.contains("approved-on-docker"), "{raw}");
}
