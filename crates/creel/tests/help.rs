//! `--help` is documentation: snapshot it (review changes with `cargo insta review`).

use crate::util::TestEnv;

fn help(args: &[&str]) -> String {
    let env = TestEnv::without_image("");
    // Without the per-test paths, which clap would show as `[env: CREEL_HOME=…]`.
    let out = env
        .cmd(args)
        .env_remove("CREEL_HOME")
        .env_remove("CREEL_CONFIG")
        .output()
        .unwrap();
    env.expect_code(&out, 0, args);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn top_level_help() {
    insta::assert_snapshot!(help(&["--help"]));
}

#[test]
fn start_help() {
    insta::assert_snapshot!(help(&["start", "--help"]));
}

#[test]
fn output_help() {
    insta::assert_snapshot!(help(&["output", "--help"]));
}
