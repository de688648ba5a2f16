//! Completion webhooks (OpenClaw's `/hooks/agent` shape) and OAuth logins.

use std::time::Duration;

use crate::util::{Receiver, TestEnv, eventually};

#[test]
fn one_webhook_per_final_state_with_the_jobs_facts() {
    let rx = Receiver::start(vec![200]);
    let env = TestEnv::with_config(&format!(
        "notify_webhook_url = \"{}\"\nhooks_token = \"tok-123\"\n",
        rx.url
    ));
    let (ok, session) = env.start("say all good", &[]);
    let (bad, _) = env.start("exit 4", &[]);
    let (cancelled, _) = env.start("say x\nsleep 60", &[]);
    env.wait(&ok);
    env.wait(&bad);
    eventually(Duration::from_secs(20), "running", || {
        (env.json(&["status", &cancelled, "--json"])["status"] == "running").then_some(())
    });
    env.json(&["cancel", &cancelled, "--json"]);
    let reqs = eventually(Duration::from_secs(30), "three webhooks", || {
        let r = rx.requests();
        (r.len() >= 3).then_some(r)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rx.requests().len(),
        3,
        "exactly one POST per job: {:?}",
        rx.requests()
    );
    for r in &reqs {
        assert_eq!(r.path, "/hooks/agent");
        assert_eq!(r.authorization.as_deref(), Some("Bearer tok-123"));
        assert_eq!(r.body["name"], "creel");
        assert_eq!(r.body["wakeMode"], "now");
        assert_eq!(r.body["deliver"], true);
        assert_eq!(r.body["channel"], "last");
    }
    let msg = |job: &str| {
        reqs.iter()
            .find(|r| r.body["message"].as_str().unwrap().contains(job))
            .unwrap()
            .body["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let m = msg(&ok);
    assert!(
        m.contains("completed")
            && m.contains(&session)
            && m.contains("all good")
            && m.contains("bytes"),
        "{m}"
    );
    assert!(msg(&bad).contains("failed") && msg(&bad).contains("exit_nonzero"));
    assert!(msg(&cancelled).contains("cancelled"));
}

#[test]
fn webhooks_are_retried_until_delivered_and_survive_a_monitor_kill() {
    let rx = Receiver::start(vec![500, 503, 200]);
    let env = TestEnv::with_config(&format!("notify_webhook_url = \"{}\"\n", rx.url));
    let (job, _) = env.start("say retried", &[]);
    env.wait(&job);
    eventually(Duration::from_secs(30), "delivery", || {
        (rx.requests().len() >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rx.requests().len(),
        3,
        "two failures then one success, no more"
    );
    assert!(
        rx.requests()[0].authorization.is_none(),
        "no token configured: no Authorization header"
    );

    // Kill the monitor mid-job: the reconciling monitor still sends exactly one webhook.
    let rx = Receiver::start(vec![200]);
    let env = TestEnv::with_config(&format!("notify_webhook_url = \"{}\"\n", rx.url));
    let (job, _) = env.start("lines 20000\nsleep 2\nsay end", &[]);
    let pid = eventually(Duration::from_secs(20), "monitor", || {
        crate::util::monitor_pid(&job)
    });
    std::thread::sleep(Duration::from_millis(400));
    std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed");
    eventually(Duration::from_secs(20), "webhook", || {
        (!rx.requests().is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.requests().len(), 1);
}

#[test]
fn no_webhook_without_a_token_or_url_and_the_token_comes_from_openclaw() {
    // OpenClaw's config names the token; the default URL is OpenClaw's gateway, which nobody
    // serves here, so point the URL at the receiver and check the token is used.
    let rx = Receiver::start(vec![200]);
    let env = TestEnv::with_config(&format!("notify_webhook_url = \"{}\"\n", rx.url));
    std::fs::create_dir_all(env.user_home.join(".openclaw")).unwrap();
    std::fs::write(
        env.user_home.join(".openclaw/openclaw.json"),
        "{ // JSON5\n hooks: { enabled: true, token: 'from-openclaw' },\n}\n",
    )
    .unwrap();
    let (job, _) = env.start("say hi", &[]);
    env.wait(&job);
    eventually(Duration::from_secs(20), "webhook", || {
        (!rx.requests().is_empty()).then_some(())
    });
    assert_eq!(
        rx.requests()[0].authorization.as_deref(),
        Some("Bearer from-openclaw")
    );
    // Without token and URL: the job runs, nothing is sent, and the token never shows up in
    // creel's own files or logs.
    let env2 = TestEnv::new();
    let (job2, _) = env2.start("say quiet", &[]);
    assert_eq!(env2.wait(&job2)["status"], "completed");
    let log = std::fs::read_to_string(env.home.join("jobs").join(&job).join("monitor.log"))
        .unwrap_or_default();
    assert!(!log.contains("from-openclaw"));
}

#[test]
fn oauth_credentials_are_copied_in_alone_and_refreshed_tokens_come_back() {
    let mut env = TestEnv::new();
    env.unset_env("ANTHROPIC_API_KEY");
    let claude_dir = env.user_home.join(".claude");
    std::fs::create_dir_all(&claude_dir).unwrap();
    let creds = claude_dir.join(".credentials.json");
    std::fs::write(
        &creds,
        r#"{"claudeAiOauth":{"accessToken":"old-token","refreshToken":"r","expiresAt":1}}"#,
    )
    .unwrap();
    std::fs::write(
        claude_dir.join("private-history.jsonl"),
        "secret host history",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // so the refreshed copy is visibly newer
    let (job, _) = env.start(
        "bash ls -a /creel/claude; env | grep -c ANTHROPIC_API_KEY || true\ncreds",
        &[],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let text = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(text.contains(".credentials.json"), "{text}");
    assert!(
        !text.contains("private-history"),
        "the rest of ~/.claude must not be visible: {text}"
    );
    let host = std::fs::read_to_string(&creds).unwrap();
    assert!(
        host.contains("refreshed-token"),
        "refreshed token not written back: {host}"
    );
    assert!(!host.contains("old-token"));
}

#[test]
fn a_webhook_the_receiver_refuses_is_not_retried() {
    // A 400 (or 401, 404…) will be the same answer next time: one POST, then creel stops.
    let rx = Receiver::start(vec![400, 200]);
    let env = TestEnv::with_config(&format!("notify_webhook_url = \"{}\"\n", rx.url));
    let (job, _) = env.start("say refused", &[]);
    env.wait(&job);
    eventually(Duration::from_secs(30), "the first POST", || {
        (!rx.requests().is_empty()).then_some(())
    });
    // The first retry would come 0.5 s later, the second 1.5 s later; wait past both, and
    // let a front end reconcile the job (a job that still owed its webhook would get a new
    // monitor that posts again).
    std::thread::sleep(Duration::from_secs(3));
    env.json(&["status", &job, "--json"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.requests().len(), 1, "{:?}", rx.requests());
}
