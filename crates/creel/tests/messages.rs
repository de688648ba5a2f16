//! What a person sees when something is wrong, snapshotted whole (exit code, stdout, stderr),
//! in the style of uv's CLI tests: review changes with `cargo insta review`. None of these
//! starts a container, so they belong to the fast tier (`scripts/test --fast`).

use crate::util::TestEnv;

/// Runs `creel ARGS` and renders what it printed, with the test's own paths replaced.
fn shown(env: &TestEnv, args: &[&str]) -> String {
    let out = env.cmd(args).output().unwrap();
    let clean = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace(env.dir.path().to_str().unwrap(), "[TMP]")
            .replace(env!("CARGO_PKG_VERSION"), "[VERSION]")
    };
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        clean(&out.stdout),
        clean(&out.stderr)
    )
}

#[test]
fn an_unknown_job() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["status", "no-such-job"]));
}

#[test]
fn an_unknown_job_as_json() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["output", "no-such-job", "--json"]));
}

#[test]
fn an_empty_prompt() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["start", "  "]));
}

#[test]
fn a_session_id_that_escapes() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["start", "say hi", "--session", "../../etc"]));
}

#[test]
fn zero_turns() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["start", "say hi", "--max-turns", "0"]));
}

#[test]
fn an_output_page_of_zero_bytes() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["output", "000000000001", "--limit", "0"]));
}

#[test]
fn a_workspace_that_does_not_exist() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(
        &env,
        &["start", "say hi", "--workspace", "/nonexistent/dir"]
    ));
}

#[test]
fn a_config_with_a_wrong_type() {
    let env = TestEnv::without_image("idle_timeout = \"soon\"\n");
    insta::assert_snapshot!(shown(&env, &["sessions"]));
}

#[test]
fn a_public_mcp_address_without_a_token() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["mcp", "--http", "0.0.0.0:8931"]));
}

#[test]
fn a_misspelt_command() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["stauts", "j-1"]));
}

#[test]
fn cleanup_without_a_threshold_when_automatic_cleanup_is_off() {
    let env = TestEnv::without_image("session_idle_timeout = 0\n");
    insta::assert_snapshot!(shown(&env, &["cleanup"]));
}

#[test]
fn a_repo_that_is_not_a_repository() {
    let env = TestEnv::without_image("");
    let plain = env.dir.path().join("plain dir");
    std::fs::create_dir_all(&plain).unwrap();
    insta::assert_snapshot!(shown(
        &env,
        &["start", "say hi", "--repo", plain.to_str().unwrap()]
    ));
}

#[test]
fn a_ref_the_repository_does_not_have() {
    let env = TestEnv::without_image("");
    let repo = env.dir.path().join("repo");
    crate::util::user_repo(&repo, &[]);
    insta::assert_snapshot!(shown(
        &env,
        &[
            "start",
            "say hi",
            "--repo",
            repo.to_str().unwrap(),
            "--ref",
            "no-such-branch"
        ]
    ));
}

#[test]
fn a_diff_of_a_session_without_a_repository() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["diff", "no-such-session"]));
}

#[test]
fn a_ref_without_a_repository() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["start", "say hi", "--ref", "main"]));
}

#[test]
fn a_fake_model_script_with_a_mistake() {
    let env = TestEnv::without_image("");
    let script = env.dir.path().join("script.toml");
    std::fs::write(&script, "[[turn]]\nmatch = \"hi\"\n").unwrap();
    insta::assert_snapshot!(shown(
        &env,
        &["fake-model", "--script", script.to_str().unwrap()]
    ));
}

#[test]
fn an_unknown_session_diffed_as_json() {
    let env = TestEnv::without_image("");
    insta::assert_snapshot!(shown(&env, &["diff", "nope", "--json"]));
}
