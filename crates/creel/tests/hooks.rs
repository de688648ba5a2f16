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
    // Only a monitor sends webhooks: once all three have exited, no more can come.
    for j in [&ok, &bad, &cancelled] {
        crate::util::wait_monitor_exit(&env, j);
    }
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
        // A channel without a recipient is what the real gateway refuses (400).
        assert!(r.body.get("channel").is_none(), "{:?}", r.body);
        let key = r
            .headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map(|(_, v)| v.clone());
        assert!(
            key.as_deref().is_some_and(|k| r.body["message"]
                .as_str()
                .unwrap()
                .contains(&k["creel-job-".len()..])),
            "the job id as Idempotency-Key: {key:?}"
        );
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
    crate::util::wait_monitor_exit(&env, &job);
    assert_eq!(
        rx.requests().len(),
        3,
        "two failures then one success, no more"
    );
    assert!(
        rx.requests()[0].authorization.is_none(),
        "no token configured: no Authorization header"
    );

    // Kill the monitor while it delivers (between two attempts): the monitor a front end
    // starts next carries on, and exactly one POST succeeds, with none after it.
    let rx = Receiver::start(vec![503, 503, 503, 200]);
    let env = TestEnv::with_config(&format!(
        "notify_webhook_url = \"{}\"\nhooks_token = \"tok-never-logged\"\n",
        rx.url
    ));
    let (job, _) = env.start("say end", &[]);
    eventually(
        Duration::from_secs(30),
        "the first delivery attempt",
        || (!rx.requests().is_empty()).then_some(()),
    );
    crate::util::kill_monitor(&env, &job);
    let sent_before_kill = rx.requests().len();
    assert!(sent_before_kill < 4, "the kill came after the delivery");
    // The next front end notices the job still owes its webhook.
    env.json(&["status", &job, "--json"]);
    eventually(Duration::from_secs(30), "delivery", || {
        (rx.requests().len() >= 4).then_some(())
    });
    crate::util::wait_monitor_exit(&env, &job);
    assert_eq!(rx.requests().len(), 4, "nothing after the 200");
    // The token never reaches creel's logs, not even in the failures' messages.
    for f in ["monitor.log", "stderr.log"] {
        let text =
            std::fs::read_to_string(env.home.join("jobs").join(&job).join(f)).unwrap_or_default();
        assert!(!text.contains("tok-never-logged"), "{f}: {text}");
    }
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
    // Without token and URL: the job runs and nothing is sent, not even to OpenClaw's default
    // address (listened on here), and the token never shows up in creel's own files or logs.
    let default = Receiver::start_on("127.0.0.1:18789");
    let env2 = TestEnv::new();
    let (job2, _) = env2.start("say quiet", &[]);
    assert_eq!(env2.wait(&job2)["status"], "completed");
    crate::util::wait_monitor_exit(&env2, &job2);
    assert!(default.requests().is_empty(), "{:?}", default.requests());
    // OpenClaw's token alone, nothing in creel's config: a person's CLI job wakes nobody.
    let env3 = TestEnv::new();
    std::fs::create_dir_all(env3.user_home.join(".openclaw")).unwrap();
    std::fs::write(
        env3.user_home.join(".openclaw/openclaw.json"),
        "{ hooks: { enabled: true, token: 'from-openclaw' } }\n",
    )
    .unwrap();
    let (job3, _) = env3.start("say mine", &[]);
    assert_eq!(env3.wait(&job3)["status"], "completed");
    crate::util::wait_monitor_exit(&env3, &job3);
    assert!(default.requests().is_empty(), "{:?}", default.requests());
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
        "bash ls -a /creel/claude; echo KEYVARS=$(env | grep -c ANTHROPIC_API_KEY)\ncreds",
        &[],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let text = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
    assert!(text.contains(".credentials.json"), "{text}");
    assert!(
        text.contains("KEYVARS=0"),
        "an OAuth job gets no API key variable: {text}"
    );
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
    // The monitor ends without a retry; then a front end reconciles the job (one that still
    // owed its webhook would get a new monitor that posts again).
    crate::util::wait_monitor_exit(&env, &job);
    env.json(&["status", &job, "--json"]);
    crate::util::wait_monitor_exit(&env, &job);
    assert_eq!(rx.requests().len(), 1, "{:?}", rx.requests());
}

/// The real OpenClaw gateway, running on loopback in this test, with hooks turned on in its
/// own JSON5 config (which creel reads the hook token from, as for a real user).
struct Gateway {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Gateway {
    fn start(
        node: &std::path::Path,
        openclaw: &std::path::Path,
        home: &std::path::Path,
    ) -> Gateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = home.join("openclaw.log");
        std::fs::create_dir_all(home.join(".openclaw")).unwrap();
        std::fs::write(
            home.join(".openclaw/openclaw.json"),
            format!(
                r#"// OpenClaw's config for creel's webhook test (JSON5)
{{
  gateway: {{ mode: "local", bind: "loopback", port: {port},
             auth: {{ mode: "token", token: "gateway-token-not-the-hook-token" }} }},
  update: {{ checkOnStart: false }},
  telemetry: {{ enabled: false }},
  logging: {{ file: {log:?} }},
  models: {{ catalogRefresh: {{ enabled: false }} }},
  hooks: {{ enabled: true, token: "creel-test-hook-token-0123456789", path: "/hooks" }},
}}
"#
            ),
        )
        .unwrap();
        let path = format!("{}:/usr/bin:/bin", node.parent().unwrap().display());
        let child = std::process::Command::new(node)
            .arg(openclaw)
            .args(["gateway", "run", "--port", &port.to_string()])
            .env_clear()
            .env("PATH", path)
            .env("HOME", home)
            .env("NO_COLOR", "1")
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .env("OPENCLAW_NO_RESPAWN", "1")
            .env("OPENCLAW_SKIP_CHANNELS", "1")
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("OPENCLAW_EXEC_SHELL_SNAPSHOT", "0")
            .current_dir(home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the OpenClaw gateway");
        let g = Gateway { child, port, log };
        // Ready when /readyz says so (about 20 s on 2 cores). Never probe the hook itself:
        // tokenless requests count toward OpenClaw's lockout.
        eventually(
            Duration::from_secs(180),
            "the OpenClaw gateway ready",
            || (g.get("/readyz")? == 200).then_some(()),
        );
        g
    }

    fn get(&self, path: &str) -> Option<u16> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// The gateway's log lines for completed hook runs of `name`.
    fn hook_runs(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("hook agent run completed") && l.contains(&format!("\"{name}\""))
            })
            .map(String::from)
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn the_real_openclaw_gateway_accepts_the_webhook_once_per_job() {
    let Some(node) = crate::util::external_tool("CREEL_TEST_NODE24", "OpenClaw gateway") else {
        return;
    };
    let Some(openclaw) = crate::util::external_tool("CREEL_TEST_OPENCLAW", "OpenClaw gateway")
    else {
        return;
    };
    let probe = TestEnv::new();
    let gateway = Gateway::start(&node, &openclaw, &probe.user_home);
    // creel finds the token in ~/.openclaw/openclaw.json; only the port is not the default.
    let mut env = TestEnv::with_config(&format!(
        "notify_webhook_url = \"http://127.0.0.1:{}/hooks/agent\"\n",
        gateway.port
    ));
    env.user_home = probe.user_home.clone();
    let (job, _) = env.start("say done for the gateway", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let runs = eventually(Duration::from_secs(60), "the gateway's hook run", || {
        let runs = gateway.hook_runs("creel");
        (!runs.is_empty()).then_some(runs)
    });
    // No retries of an accepted webhook, and nothing creel logged as undelivered.
    crate::util::wait_monitor_exit(&env, &job);
    assert_eq!(gateway.hook_runs("creel").len(), 1, "{runs:?}");
    let monitor_log =
        std::fs::read_to_string(env.home.join("jobs").join(&job).join("monitor.log")).unwrap();
    assert!(!monitor_log.contains("webhook"), "{monitor_log}");
    assert!(
        !monitor_log.contains("creel-test-hook-token"),
        "the token is never logged"
    );
}

#[test]
fn a_webhook_that_keeps_failing_is_tried_six_times_then_never_again() {
    let rx = Receiver::start(vec![503]);
    let env = TestEnv::with_config(&format!("notify_webhook_url = \"{}\"\n", rx.url));
    let (job, _) = env.start("say unheard", &[]);
    env.wait(&job);
    // Backoff 0.5 + 1 + 2 + 4 + 8 s between the six attempts.
    eventually(Duration::from_secs(60), "six attempts", || {
        (rx.requests().len() >= 6).then_some(())
    });
    crate::util::wait_monitor_exit(&env, &job);
    // A front end reconciling the job finds nothing owed: no seventh attempt.
    env.json(&["status", &job, "--json"]);
    env.json(&["sessions", "--json"]);
    crate::util::wait_monitor_exit(&env, &job);
    assert_eq!(rx.requests().len(), 6, "{:?}", rx.requests());
}
