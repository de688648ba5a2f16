//! Completion webhooks in OpenClaw's `/hooks/agent` shape: one POST per final state, recorded
//! as delivered on a 2xx answer, retried with backoff otherwise. The job's facts travel inside
//! `message`. No POST at all when no token is known and no URL was configured (OpenClaw locks
//! out after 20 bad tokens a minute). The token is never logged.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::job::{JobRecord, JobState};

/// OpenClaw's gateway hook, used when a token is known and no URL was configured.
pub const OPENCLAW_HOOK_URL: &str = "http://127.0.0.1:18789/hooks/agent";

pub use crate::job::WebhookSpec;

/// Decides the webhook for a new job: the configured URL (with the token if one is known), or
/// OpenClaw's default URL when only a token is known (from `hooks_token`, else `hooks.token`
/// in `~/.openclaw/openclaw.json`), or none. What creel's own config names serves every job;
/// OpenClaw's token alone serves only jobs an agent started (`from_agent`: through MCP).
pub fn resolve(config: &Config, user_home: Option<&Path>, from_agent: bool) -> Option<WebhookSpec> {
    let own_token = config.hooks_token.clone().filter(|t| !t.is_empty());
    let url = config.notify_webhook_url.clone().filter(|u| !u.is_empty());
    // OpenClaw's own token is found without creel being told: it wakes OpenClaw's agent only
    // for the jobs an agent started, never for a person's `creel run`.
    if url.is_none() && own_token.is_none() && !from_agent {
        return None;
    }
    let token = own_token.or_else(|| user_home.and_then(openclaw_token));
    match (url, token) {
        (Some(url), token) => Some(WebhookSpec { url, token }),
        (None, Some(token)) => Some(WebhookSpec {
            url: OPENCLAW_HOOK_URL.into(),
            token: Some(token),
        }),
        (None, None) => None,
    }
}

/// `hooks.token` from `~/.openclaw/openclaw.json` (JSON5), unless that config turns its hooks
/// off (`hooks.enabled: false`): then OpenClaw would refuse every webhook anyway.
fn openclaw_token(home: &Path) -> Option<String> {
    let text = std::fs::read_to_string(home.join(".openclaw").join("openclaw.json")).ok()?;
    let v: serde_json::Value = json5::from_str(&text).ok()?;
    let hooks = v.get("hooks")?;
    if hooks.get("enabled").and_then(|e| e.as_bool()) == Some(false) {
        return None;
    }
    hooks
        .get("token")?
        .as_str()
        .filter(|t| !t.is_empty())
        .map(String::from)
}

/// The request body: OpenClaw's hook shape with the job's facts in `message`. OpenClaw runs
/// its agent on `message` and, by default, leaves the completion notice in the agent's main
/// session. (A `channel` would also need a recipient `to`: OpenClaw answers `400` to a
/// channel alone, and never accepts `"last"` there.)
pub fn body(job: &JobRecord) -> serde_json::Value {
    serde_json::json!({
        "message": message(job),
        "name": "creel",
        "wakeMode": "now",
    })
}

/// The request body announcing that a job waits for an answer: one per question or
/// permission request.
pub fn request_body(job: &JobRecord, request: &crate::steer::Request) -> serde_json::Value {
    serde_json::json!({
        "message": request_message(job, request),
        "name": "creel",
        "wakeMode": "now",
    })
}

/// The text an agent receives when a job asks something.
pub fn request_message(job: &JobRecord, request: &crate::steer::Request) -> String {
    use crate::steer::Ask;
    match &request.ask {
        Ask::Question { question, options } => {
            let mut m = format!(
                "creel job {} (session {}) needs input. Claude asks:\n{}",
                job.id,
                job.session_id,
                crate::stream::cut_str(question, 2000)
            );
            if !options.is_empty() {
                let shown: Vec<&str> = options
                    .iter()
                    .take(10)
                    .map(|o| crate::stream::cut_str(o, 200))
                    .collect();
                m.push_str(&format!("\nOptions: {}", shown.join(" | ")));
            }
            m.push_str(&format!(
                "\nAnswer with claude_code_reply (job_id {}, answer ...), or `creel reply {} ANSWER`.",
                job.id, job.id
            ));
            m
        }
        Ask::Approval { tool_name, input } => {
            let input = serde_json::to_string(input).unwrap_or_default();
            format!(
                "creel job {} (session {}) needs approval: Claude wants to use {} with {}\nDecide with claude_code_approve (job_id {}, allow true or false), or `creel approve {}` / `creel approve {} --deny`.",
                job.id,
                job.session_id,
                tool_name,
                crate::stream::cut_str(&input, 1000),
                job.id,
                job.id,
                job.id
            )
        }
    }
}

/// How long one delivery may take: OpenClaw answers once the agent run is admitted, which it
/// allows up to 15 s.
pub const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// The text an agent receives.
pub fn message(job: &JobRecord) -> String {
    let secs = match (job.finished_at_ms, job.started_at_ms) {
        (Some(end), Some(start)) => (end - start).max(0) as f64 / 1000.0,
        (Some(end), None) => (end - job.created_at_ms).max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    let mut m = format!(
        "creel job {} {} (session {}) after {:.1}s; output {} bytes",
        job.id, job.state, job.session_id, secs, job.output_size
    );
    if let Some(e) = &job.error {
        m.push_str(&format!(
            "; error {}: {}",
            e.kind.as_str(),
            crate::stream::cut_str(&e.message, 300)
        ));
    }
    if let Some(t) = job.num_turns {
        m.push_str(&format!("; {t} turn{}", if t == 1 { "" } else { "s" }));
    }
    if let Some(r) = job.result.as_deref().filter(|r| !r.is_empty()) {
        let first: Vec<&str> = r.lines().take(5).collect();
        m.push_str("\nClaude's result: ");
        m.push_str(crate::stream::cut_str(&first.join("\n"), 1000));
    }
    if let Some(c) = &job.changes {
        match &c.commit {
            Some(commit) => m.push_str(&format!(
                "\nChanges on branch {}: {} files, +{} -{} (commit {}); review with claude_code_diff, land with claude_code_land (session_id {}).",
                job.spec.git.as_ref().map(|g| g.branch.as_str()).unwrap_or("?"),
                c.files,
                c.insertions,
                c.deletions,
                &commit[..commit.len().min(12)],
                job.session_id
            )),
            None => m.push_str("\nThe job changed no files."),
        }
    }
    if job.state != JobState::Cancelled {
        m.push_str(&format!(
            "\nRead the output with claude_code_output (job_id {}); continue with claude_code_start (session_id {}).",
            job.id, job.session_id
        ));
    }
    m
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A 2xx answer.
    Delivered,
    /// A failure that may pass: a network error, a timeout, 408, 409, 429 or 5xx.
    Retry(String),
    /// An answer that repeating the same request cannot change (another 4xx, a redirect):
    /// retrying would only hammer the receiver (OpenClaw locks out repeated bad tokens).
    GiveUp(String),
}

/// Whether a receiver's answer is worth another attempt.
/// (409: OpenClaw's "hook configuration changed; retry request".)
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..600).contains(&status)
}

/// One delivery attempt. `idempotency_key` (the job id) goes out as `Idempotency-Key`:
/// OpenClaw answers a repeat of the same key and body with the first run instead of waking its
/// agent again, so a monitor killed between a delivery and its record cannot double it.
pub fn post(
    spec: &WebhookSpec,
    body: &serde_json::Value,
    idempotency_key: &str,
    timeout: Duration,
) -> Delivery {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::blocking::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return Delivery::Retry(format!("cannot build an HTTP client: {e}")),
    };
    let mut req = client
        .post(&spec.url)
        .header("Idempotency-Key", format!("creel-job-{idempotency_key}"))
        .json(body);
    if let Some(t) = &spec.token {
        req = req.bearer_auth(t);
    }
    match req.send() {
        Ok(r) if r.status().is_success() => Delivery::Delivered,
        Ok(r) => {
            let status = r.status();
            // The receiver's reason, shortened: OpenClaw says what it disliked.
            let text = r.text().unwrap_or_default();
            let why = crate::stream::cut_str(text.trim(), 300).to_string();
            let msg = if why.is_empty() {
                format!("{} answered {status}", spec.url)
            } else {
                format!("{} answered {status}: {why}", spec.url)
            };
            if retryable(status.as_u16()) {
                Delivery::Retry(msg)
            } else {
                Delivery::GiveUp(msg)
            }
        }
        Err(e) => Delivery::Retry(format!("POST {} failed: {}", spec.url, e.without_url())),
    }
}

/// How a series of delivery attempts ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// An answer that repeating cannot change.
    Refused(String),
    /// The last allowed attempt failed too.
    Exhausted(String),
    /// The caller stopped the series before an attempt.
    Stopped,
}

/// Posts `body` until it is delivered, refused for good, or the attempts up to
/// [`crate::job::WEBHOOK_MAX_ATTEMPTS`] (counting from `first`) have failed, waiting 0.5 s,
/// 1 s, 2 s … (at most 8 s) between them. `before(n)` runs before attempt `n`: it can record
/// it, or stop the series by returning false.
pub fn post_with_retries(
    spec: &WebhookSpec,
    body: &serde_json::Value,
    idempotency_key: &str,
    first: u32,
    mut before: impl FnMut(u32) -> bool,
) -> Outcome {
    let mut delay = Duration::from_millis(500);
    let mut attempt = first;
    loop {
        if !before(attempt) {
            return Outcome::Stopped;
        }
        match post(spec, body, idempotency_key, POST_TIMEOUT) {
            Delivery::Delivered => return Outcome::Delivered,
            Delivery::GiveUp(e) => return Outcome::Refused(e),
            Delivery::Retry(e) => {
                tracing::warn!(key = idempotency_key, attempt, "webhook not delivered: {e}");
                if attempt >= crate::job::WEBHOOK_MAX_ATTEMPTS {
                    return Outcome::Exhausted(e);
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(8));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_a_repo_job_s_changes_and_how_to_land_them() {
        let mut spec = crate::runtime::argv::tests::spec();
        spec.git = Some(crate::git::SessionGit {
            repo: "/r".into(),
            objects: "/r/.git/objects".into(),
            session_repo: "/h/git/s/repo.git".into(),
            branch: "creel/s".into(),
            base: "a".repeat(40),
        });
        let mut job = JobRecord::pending("0123456789ab".into(), "s".into(), spec, 1, vec![]);
        job.state = JobState::Completed;
        job.changes = Some(crate::git::Changes {
            commit: Some("b".repeat(40)),
            parent: "a".repeat(40),
            files: 2,
            insertions: 5,
            deletions: 1,
        });
        let m = message(&job);
        assert!(
            m.contains("Changes on branch creel/s: 2 files, +5 -1 (commit bbbbbbbbbbbb)"),
            "{m}"
        );
        assert!(m.contains("claude_code_land"), "{m}");
        job.changes = Some(crate::git::Changes {
            commit: None,
            parent: "a".repeat(40),
            ..Default::default()
        });
        assert!(message(&job).contains("The job changed no files."));
    }

    #[test]
    fn only_failures_that_can_pass_are_retried() {
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert!(retryable(s), "{s}");
        }
        for s in [300, 301, 400, 401, 403, 404, 413, 422] {
            assert!(!retryable(s), "{s}");
        }
    }

    #[test]
    fn no_webhook_without_token_or_url() {
        let dir = tempfile::tempdir().unwrap();
        assert!(resolve(&Config::default(), Some(dir.path()), true).is_none());
    }

    #[test]
    fn token_from_openclaw_json5() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".openclaw")).unwrap();
        std::fs::write(
            dir.path().join(".openclaw/openclaw.json"),
            "// OpenClaw config\n{ hooks: { enabled: true, token: 'sekrit', }, }\n",
        )
        .unwrap();
        assert!(
            resolve(&Config::default(), Some(dir.path()), false).is_none(),
            "a person's job does not wake OpenClaw's agent unless creel's config says so"
        );
        let w = resolve(&Config::default(), Some(dir.path()), true).unwrap();
        assert_eq!(w.url, OPENCLAW_HOOK_URL);
        assert_eq!(w.token.as_deref(), Some("sekrit"));
        assert!(
            !format!("{w:?}").contains("sekrit"),
            "the token is never printed"
        );
        let c = Config {
            hooks_token: Some("from-config".into()),
            notify_webhook_url: Some("http://127.0.0.1:9/x".into()),
            ..Config::default()
        };
        let w = resolve(&c, Some(dir.path()), false).unwrap();
        assert_eq!(
            (w.url.as_str(), w.token.as_deref()),
            ("http://127.0.0.1:9/x", Some("from-config"))
        );
        std::fs::write(
            dir.path().join(".openclaw/openclaw.json"),
            "{ hooks: { enabled: false, token: 'sekrit' } }\n",
        )
        .unwrap();
        assert!(
            resolve(&Config::default(), Some(dir.path()), true).is_none(),
            "OpenClaw's hooks are off: no webhook"
        );
    }
}
