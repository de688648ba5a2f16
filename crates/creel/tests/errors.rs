//! Bad input and broken environments: one `error:` line (and a `hint:` where one helps), the
//! documented exit codes, and nothing written to the store.

use crate::util::TestEnv;

fn assert_refused(env: &TestEnv, args: &[&str], code: i32, needle: &str) -> String {
    let out = env.run(args);
    env.expect_code(&out, code, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(out.stdout.is_empty(), "stdout must stay empty on errors");
    err
}

fn assert_nothing_stored(env: &TestEnv) {
    let jobs = env.home.join("jobs");
    let n = std::fs::read_dir(&jobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "job directories were left behind");
    let sessions = env.json(&["sessions", "--json"]);
    assert_eq!(
        sessions.as_array().unwrap().len(),
        0,
        "sessions were stored: {sessions}"
    );
}

#[test]
fn invalid_session_ids_are_refused() {
    let env = TestEnv::new();
    let long = "a".repeat(200);
    for id in ["../x", "", long.as_str(), ".hidden", "a/b", "a b", "-x"] {
        let err = assert_refused(
            &env,
            &["start", "say hi", &format!("--session={id}")],
            2,
            "invalid session id",
        );
        assert!(err.contains("hint: "), "{err}");
    }
    assert_nothing_stored(&env);
}

#[test]
fn unknown_jobs_are_refused() {
    let env = TestEnv::new();
    for verb in ["status", "output", "wait", "cancel"] {
        assert_refused(&env, &[verb, "0123456789ab"], 2, "unknown job");
        assert_refused(&env, &[verb, "../../etc/passwd"], 2, "unknown job");
    }
}

#[test]
fn a_missing_image_is_an_environment_error_with_a_hint() {
    let env = TestEnv::with_config("image = \"localhost/creel-no-such-image:1\"\n");
    let err = assert_refused(&env, &["start", "say hi"], 3, "creel-no-such-image");
    // Podman 4.3 says "image not known": that is a missing image, not a runtime failure.
    assert!(
        err.contains("is not present in podman's image store")
            && err.contains("hint: pull or build `localhost/creel-no-such-image:1`"),
        "{err}"
    );
    assert!(!err.contains("exit status"), "{err}");
    assert_nothing_stored(&env);
    // creel's own image: creel can build it.
    let env = TestEnv::with_config("image = \"localhost/creel-claude:0.0.0-none\"\n");
    let err = assert_refused(&env, &["start", "say hi"], 3, "creel-claude:0.0.0-none");
    assert!(
        err.contains("hint: build it with `creel image build`"),
        "{err}"
    );
}

#[test]
fn a_missing_runtime_binary_is_an_environment_error() {
    let env = TestEnv::with_config("runtime_path = \"/nonexistent/podman\"\n");
    let err = assert_refused(&env, &["start", "say hi"], 3, "/nonexistent/podman");
    assert!(err.contains("hint: "), "{err}");
    assert_nothing_stored(&env);
}

#[test]
fn no_login_is_refused_before_any_container() {
    let mut env = TestEnv::new();
    env.unset_env("ANTHROPIC_API_KEY");
    let err = assert_refused(&env, &["start", "say hi"], 3, "no Claude login");
    assert!(err.contains("hint: "), "{err}");
    assert_nothing_stored(&env);
}

#[test]
fn config_errors_name_the_key() {
    let env = TestEnv::with_config("idle_timout = 3\n");
    assert_refused(&env, &["status", "0123456789ab"], 2, "idle_timout");
    let env = TestEnv::with_config("memory = \"lots\"\n");
    assert_refused(&env, &["sessions"], 2, "memory");
    let mut env = TestEnv::new();
    env.set_env("CREEL_IDLE_TIMEOUT", "soon");
    assert_refused(&env, &["sessions"], 2, "CREEL_IDLE_TIMEOUT");
    // A misspelt variable is not ignored without a word.
    let mut env = TestEnv::new();
    env.set_env("CREEL_IDLE_TIMOUT", "5");
    let out = env.run(&["sessions"]);
    env.expect_code(&out, 0, &["sessions"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "warning: CREEL_IDLE_TIMOUT is not a creel setting (did you mean CREEL_IDLE_TIMEOUT?)"
        ),
        "{err}"
    );
}

#[test]
fn bad_start_requests_are_refused() {
    let env = TestEnv::new();
    assert_refused(&env, &["start", "   "], 2, "prompt is empty");
    assert_refused(
        &env,
        &["start", "say hi", "--max-turns", "0"],
        2,
        "max turns",
    );
    // `--model --evil` is refused by clap before creel's own check could run; `--model=--evil`
    // reaches it, and it is creel's message that must name the model.
    assert_refused(
        &env,
        &["start", "say hi", "--model=--evil"],
        2,
        "invalid model",
    );
    assert_refused(&env, &["start", "say hi", "--model=bad model"], 2, "model");
    assert_refused(
        &env,
        &["start", "say hi", "--workspace", "/nonexistent/dir"],
        2,
        "workspace",
    );
    assert_refused(
        &env,
        &["start", "say hi", "--workspace", "/etc/passwd"],
        2,
        "not a directory",
    );
    assert_nothing_stored(&env);
}

#[test]
fn workspace_is_only_for_a_new_session() {
    let env = TestEnv::new();
    let (job, _) = env.start("say one", &["--session", "ws-once"]);
    env.wait(&job);
    let dir = env.dir.path().join("other");
    std::fs::create_dir(&dir).unwrap();
    assert_refused(
        &env,
        &[
            "start",
            "say two",
            "--session",
            "ws-once",
            "--workspace",
            dir.to_str().unwrap(),
        ],
        2,
        "only for a new session",
    );
}

#[test]
fn help_teaches_and_documents_exit_codes() {
    let env = TestEnv::new();
    let out = env.run(&["--help"]);
    env.expect_code(&out, 0, &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "EXIT STATUS",
        "run",
        "start",
        "status",
        "output",
        "wait",
        "cancel",
        "sessions",
        "cleanup",
        "doctor",
        "mcp",
    ] {
        assert!(help.contains(needle), "{needle} missing from --help");
    }
    assert!(!help.contains("__monitor"));
}

#[test]
fn a_remembered_image_check_notices_the_image_going_away() {
    // Its own tag of the test image, so removing it disturbs no other test.
    let tag = format!("localhost/creel-vanishing:{}", std::process::id());
    let tagged = std::process::Command::new("podman")
        .args(["tag", crate::util::TEST_IMAGE, &tag])
        .status()
        .unwrap();
    assert!(tagged.success());
    let env = TestEnv::with_config(&format!("image = \"{tag}\"\n"));
    let (job, _) = env.start("say first", &[]);
    assert_eq!(env.wait(&job)["status"], "completed");
    assert!(
        env.home.join("image-check.json").is_file(),
        "the positive check is remembered"
    );
    let (job, _) = env.start("say second", &[]);
    assert_eq!(env.wait(&job)["status"], "completed");
    let removed = std::process::Command::new("podman")
        .args(["untag", crate::util::TEST_IMAGE, &tag])
        .status()
        .unwrap();
    assert!(removed.success());
    let err = assert_refused(&env, &["start", "say third"], 3, "creel-vanishing");
    assert!(err.contains("hint: "), "{err}");
}

#[test]
fn start_refuses_what_cannot_run_and_stores_nothing() {
    // A workspace owned by root: the agent never runs as root, and would own nothing there.
    let env = TestEnv::new();
    let root_owned = env.dir.path().join("root-owned");
    std::fs::create_dir(&root_owned).unwrap();
    std::os::unix::fs::chown(&root_owned, Some(0), Some(0)).unwrap();
    let ws = root_owned.to_str().unwrap();
    assert_refused(
        &env,
        &["start", "say hi", "--workspace", ws],
        2,
        "belongs to root",
    );
    // `:` and `,` cannot be mounted into a container.
    for name in ["a:b", "a,b"] {
        let odd = env.dir.path().join(name);
        std::fs::create_dir(&odd).unwrap();
        std::os::unix::fs::chown(&odd, Some(1000), Some(1000)).unwrap();
        assert_refused(
            &env,
            &["start", "say hi", "--workspace", odd.to_str().unwrap()],
            2,
            "cannot be mounted",
        );
    }
    // A prompt over the limit (64 MiB), from stdin.
    let big = vec![b'x'; (64 << 20) + 1];
    let out = env.run_stdin(&["start", "-"], &big);
    env.expect_code(&out, 2, &["start", "-"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_stored(&env);
    // An empty API key file.
    let key = env.dir.path().join("empty-key");
    std::fs::write(&key, "\n").unwrap();
    let mut env = TestEnv::with_config(&format!("api_key_file = \"{}\"\n", key.display()));
    env.unset_env("ANTHROPIC_API_KEY");
    assert_refused(&env, &["start", "say hi"], 2, "is empty");
    assert_nothing_stored(&env);
}

#[test]
fn two_starts_at_once_on_one_session_give_one_job() {
    let env = TestEnv::new();
    let spawn = || {
        env.cmd(&[
            "start",
            "--json",
            "say hi\nsleep 5",
            "--session",
            "contended",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(2)),
        "one start wins, the other is refused as busy: {codes:?}\n{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let loser = if a.status.success() { &b } else { &a };
    assert!(String::from_utf8_lossy(&loser.stderr).contains("busy"));
    let sessions = env.json(&["sessions", "--json"]);
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    let winner: serde_json::Value = serde_json::from_slice(if a.status.success() {
        &a.stdout
    } else {
        &b.stdout
    })
    .unwrap();
    env.run(&["cancel", winner["jobId"].as_str().unwrap()]);
}

#[test]
fn wait_with_a_timeout_exits_4_and_a_pending_job_can_be_cancelled() {
    let env = TestEnv::new();
    let (job, _) = env.start("say slow\nsleep 30", &[]);
    let args = ["wait", &job, "--timeout", "1"];
    let out = env.run(&args);
    env.expect_code(&out, 4, &args);
    env.run(&["cancel", &job]);
    // Cancelled straight after start, before its container could run: it stays cancelled,
    // and no container of it is left.
    let (job, _) = env.start("say never\nsleep 30", &[]);
    let s = env.json(&["cancel", &job, "--json"]);
    assert_eq!(s["status"], "cancelled", "{s}");
    let s = env.wait(&job);
    assert_eq!(s["status"], "cancelled", "{s}");
    crate::util::wait_monitor_exit(&env, &job);
    assert!(
        crate::util::podman_containers(&format!("io.creel.job={job}")).is_empty(),
        "a cancelled pending job left a container"
    );
}
