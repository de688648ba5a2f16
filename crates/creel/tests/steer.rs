//! Steering through the CLI, in real containers of the test image: a job asks a question or a
//! permission the way creel's steering server does (the stand-in's `ask` and `approve` write
//! the request file and wait for the answer file; the real server and the real Claude Code are
//! in e2e.rs), and creel shows, notifies, decides and answers.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Receiver, TestEnv, eventually};

/// `creel wait` until the job asks something (exit 5); its status then.
fn wait_for_request(env: &TestEnv, job: &str) -> Value {
    let out = env.run(&["wait", job, "--timeout", "60", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        env.describe(&["wait", job], &out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_question_waits_for_its_answer_past_the_idle_timeout_and_is_announced_once() {
    let rx = Receiver::start(vec![200]);
    let env = TestEnv::with_config(&format!(
        "idle_timeout = 2\ninput_timeout = 0\nnotify_webhook_url = \"{}\"\n",
        rx.url
    ));
    let (job, _) = env.start("ask Which colour should the bikeshed be?\nsay painted", &[]);
    let s = wait_for_request(&env, &job);
    assert_eq!(s["activityState"], "needs_input", "{s}");
    let q = &s["needsInput"];
    assert_eq!(q["question"], "Which colour should the bikeshed be?", "{s}");
    assert_eq!(q["options"], serde_json::json!(["yes", "no"]));
    assert_eq!(q["request"], 1);
    let human = env.run(&["status", &job]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("needs input: Which colour should the bikeshed be?")
            && human.contains(&format!("creel reply {job} TEXT")),
        "{human}"
    );
    // Twice the idle timeout without output: a waiting job is not idle.
    std::thread::sleep(Duration::from_secs(4));
    let s = env.json(&["status", &job, "--json"]);
    assert_eq!(s["status"], "running", "{s}");

    // The wrong verb, and an empty answer, are refused and change nothing.
    let out = env.run(&["approve", &job]);
    env.expect_code(&out, 2, &["approve", &job]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not waiting for an approval"),
        "{}",
        env.describe(&["approve", &job], &out)
    );
    env.expect_code(&env.run(&["reply", &job, "  "]), 2, &["reply", &job, "  "]);

    let answered = env.json(&["reply", &job, "green, like the grass", "--json"]);
    assert_eq!(
        answered["requests"][0]["answer"]["decidedBy"], "user",
        "{answered}"
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(
        raw.contains(r#""content":"green, like the grass""#),
        "the answer reached the job as the tool's result:\n{raw}"
    );
    assert!(s.get("needsInput").is_none(), "{s}");
    let out = env.run(&["reply", &job, "again"]);
    env.expect_code(&out, 2, &["reply", &job, "again"]);

    // One webhook for the question, one for the end.
    crate::util::wait_monitor_exit(&env, &job);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let asked = reqs
        .iter()
        .find(|r| {
            r.body["message"]
                .as_str()
                .unwrap_or("")
                .contains("needs input")
        })
        .unwrap_or_else(|| panic!("no question webhook in {reqs:?}"));
    let m = asked.body["message"].as_str().unwrap();
    assert!(
        m.contains("Which colour should the bikeshed be?") && m.contains("claude_code_reply"),
        "{m}"
    );
    assert!(
        asked
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("idempotency-key")
                && v == &format!("creel-job-{job}-request-1")),
        "{:?}",
        asked.headers
    );
}

#[test]
fn nobody_answering_within_the_input_timeout_gets_the_job_going_again() {
    let env = TestEnv::with_config("input_timeout = 1\n");
    let (job, _) = env.start("ask Anyone there?\nsay carried on", &[]);
    // (`creel wait` would end at the question: look until the job is final.)
    let s = eventually(Duration::from_secs(60), "the job to end", || {
        let s = env.json(&["status", &job, "--json"]);
        (s["status"] == "completed").then_some(s)
    });
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["requests"][0]["answer"]["decidedBy"], "timeout", "{s}");
    let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(raw.contains("No answer came within 1 seconds"), "{raw}");
}

#[test]
fn approvals_by_rule_and_by_person_survive_a_dead_monitor() {
    let env = TestEnv::with_config(
        "permissions_allow = [\"Bash(echo ok-by-rule*)\"]\npermissions_deny = [\"Bash(rm *)\"]\n",
    );
    let (job, _) = env.start(
        "approve echo ok-by-rule\napprove rm -rf /workspace\napprove echo person > /workspace/approved\napprove echo no > /workspace/refused\nsay end",
        &["--permissions", "ask"],
    );
    let s = wait_for_request(&env, &job);
    assert_eq!(s["activityState"], "needs_approval", "{s}");
    assert_eq!(s["needsApproval"]["request"], 3, "{s}");
    assert_eq!(s["needsApproval"]["toolName"], "Bash");
    assert_eq!(
        s["needsApproval"]["input"]["command"],
        "echo person > /workspace/approved"
    );
    let rules: Vec<(Value, Value, Value)> = s["requests"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|r| {
            (
                r["answer"]["decision"].clone(),
                r["answer"]["decidedBy"].clone(),
                r["answer"]["rule"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            (
                "allow".into(),
                "rule".into(),
                "Bash(echo ok-by-rule*)".into()
            ),
            ("deny".into(), "rule".into(), "Bash(rm *)".into())
        ],
        "{s}"
    );

    // The monitor dies while the job waits: the request is still there, and the answer still
    // reaches the job (through a new monitor, which the next status starts).
    let old = crate::util::kill_monitor(&env, &job);
    let s = env.json(&["status", &job, "--json"]);
    assert_eq!(s["needsApproval"]["request"], 3, "{s}");
    let new = eventually(Duration::from_secs(20), "a new monitor", || {
        crate::util::monitor_pid(&job).filter(|p| *p != old)
    });
    assert_ne!(new, old);
    env.json(&["approve", &job, "--json"]);
    let s = wait_for_request(&env, &job);
    assert_eq!(s["needsApproval"]["request"], 4, "{s}");
    env.json(&[
        "approve",
        &job,
        "--deny",
        "--message",
        "not that file",
        "--json",
    ]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let workspace = PathBuf::from(
        env.json(&["sessions", "--json"])[0]["workspace"]
            .as_str()
            .unwrap(),
    );
    assert!(
        workspace.join("approved").is_file(),
        "the approved command ran"
    );
    assert!(
        !workspace.join("refused").exists(),
        "the refused one did not"
    );
    let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(raw.contains("ok-by-rule"), "{raw}");
    assert!(
        raw.contains("not that file"),
        "the denial's message reached the job"
    );
    assert!(
        raw.contains("creel's rule `Bash(rm *)` denies this."),
        "{raw}"
    );
}

#[test]
fn a_request_that_is_not_a_file_is_answered_by_creel_and_never_followed() {
    let env = TestEnv::new();
    // The job plants a link where its first request goes, then asks for real.
    let (job, _) = env.start(
        "bash ln -s /etc/passwd /creel/asked/000001.json && mkfifo /creel/asked/000002.json\nask Still there?\nsay fine",
        &[],
    );
    let s = wait_for_request(&env, &job);
    let reqs = s["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 3, "{s}");
    for r in &reqs[..2] {
        assert_eq!(r["answer"]["decidedBy"], "creel", "{s}");
        assert!(
            r["question"]
                .as_str()
                .unwrap()
                .starts_with("(creel could not read request"),
            "{s}"
        );
    }
    assert_eq!(s["needsInput"]["question"], "Still there?", "{s}");
    env.json(&["reply", &job, "yes", "--json"]);
    assert_eq!(env.wait(&job)["status"], "completed");
}

#[test]
fn wait_and_status_say_nothing_of_requests_for_a_job_that_asks_nothing() {
    let env = TestEnv::new();
    let (job, _) = env.start("say quiet", &[]);
    let s = env.wait(&job);
    assert!(
        s.get("requests").is_none() && s.get("needsInput").is_none(),
        "{s}"
    );
    // The job's container saw the steering files read-only, its request directory writable.
    let (probe, _) = env.start(
        "bash touch /creel/steer/x 2>&1 || echo steer-is-read-only; touch /creel/asked/y && echo asked-is-writable; test -s /creel/steer/server.py && echo server-is-there",
        &[],
    );
    env.wait(&probe);
    let raw = String::from_utf8_lossy(&env.raw_output(&probe)).into_owned();
    for want in ["steer-is-read-only", "asked-is-writable", "server-is-there"] {
        assert!(raw.contains(want), "{want}: {raw}");
    }
}

/// `creel send`: a message into a running job is read after the prompt, in order, and the job
/// ends only once Claude has answered every message; a job that has ended takes no more.
#[test]
fn messages_sent_to_a_running_job_are_answered_before_it_ends() {
    let env = TestEnv::new();
    let (job, _) = env.start("say first\nsleep 3\nsay first done", &[]);
    eventually(Duration::from_secs(30), "the job to run", || {
        (env.json(&["status", &job, "--json"])["status"] == "running").then_some(())
    });
    let out = env.run(&[
        "send",
        &job,
        "say second\nbash echo from-the-second-message",
    ]);
    env.expect_code(&out, 0, &["send", &job]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent message 2"));
    let out = env.run_stdin(&["send", &job, "-"], b"say third, from stdin");
    env.expect_code(&out, 0, &["send", &job, "-"]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(
        s["result"], "third, from stdin",
        "the last message's result is the job's: {s}"
    );
    let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    let order: Vec<usize> = ["first done", "from-the-second-message", "third, from stdin"]
        .iter()
        .map(|w| raw.find(w).unwrap_or_else(|| panic!("{w} missing: {raw}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {raw}");
    assert_eq!(
        raw.matches(r#""type":"result""#).count(),
        3,
        "one result per message"
    );
    let late = env.run(&["send", &job, "say too late"]);
    env.expect_code(&late, 2, &["send", &job]);
    assert!(String::from_utf8_lossy(&late.stderr).contains("start a new job in session"));
    env.expect_code(&env.run(&["send", &job, " "]), 2, &["send", &job, " "]);
}

/// With `network = "none"` the job has no network at all, and a question still goes through:
/// the channel is files, not a connection.
#[test]
fn a_job_without_any_network_still_asks_and_gets_its_answer() {
    let env = TestEnv::with_config("network = \"none\"\n");
    let (job, _) = env.start(
        "bash cat /sys/class/net/*/operstate | tr '\\n' ' '; ls /sys/class/net\nask Offline question?\nsay answered offline",
        &[],
    );
    let s = wait_for_request(&env, &job);
    assert_eq!(s["needsInput"]["question"], "Offline question?", "{s}");
    let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(!raw.contains("eth0"), "only loopback: {raw}");
    env.json(&["reply", &job, "offline answer", "--json"]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(raw.contains(r#""content":"offline answer""#), "{raw}");
}
