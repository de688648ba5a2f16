//! End to end: the real Claude Code (2.1.328) in the real sandbox image
//! (`creel image build --offline`) under creel, against `creel fake-model` on the host's loopback
//! (`api_base_url` in the config). The network is the default allowlist: Claude reaches the
//! model only through creel's egress proxy, which adds the real API key (the container holds a
//! placeholder). Nothing is stubbed but the model.
//!
//! The image is big and slow to build, so these tests skip with a message when it is missing,
//! except under `CI=true`, where `.ci/run` builds it first and a missing image fails them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::TestEnv;
use crate::util::{lines_of, user_git, user_repo};

/// The image `creel image build` makes.
const REAL_IMAGE: &str = "localhost/creel-claude:2.1.328";

/// Whether the real image is there; panics under CI when it is not.
pub(crate) fn real_image() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        let present = Command::new("podman")
            .args(["image", "exists", REAL_IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            crate::util::skip_unless_ci(&format!(
                "the end-to-end tests need {REAL_IMAGE} (`creel image build --offline`)"
            ));
        }
        present
    })
}

/// A `creel fake-model` child process with a script and a request log; killed on drop.
pub(crate) struct FakeModel {
    child: Child,
    url: String,
    log: PathBuf,
}

impl FakeModel {
    /// Starts the fake model with `script` (TOML) written into `dir`, or the built-in script.
    pub(crate) fn start(dir: &Path, script: Option<&str>) -> FakeModel {
        let log = dir.join("requests.jsonl");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_creel"));
        cmd.args(["fake-model", "--quiet", "--listen", "127.0.0.1:0", "--log"])
            .arg(&log);
        if let Some(s) = script {
            let path = dir.join("script.toml");
            std::fs::write(&path, s).unwrap();
            cmd.arg("--script").arg(path);
        }
        let (child, url) = crate::util::spawn_reading_line(&mut cmd);
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "fake-model said {url:?}"
        );
        FakeModel { child, url, log }
    }

    /// Every request logged so far.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Requests to the Messages API whose `expect` strings were not all there.
    pub(crate) fn failed_expectations(&self) -> Vec<Value> {
        self.messages_requests()
            .into_iter()
            .filter(|r| {
                !r["failedExpectations"]
                    .as_array()
                    .is_none_or(|a| a.is_empty())
            })
            .collect()
    }

    /// Requests to the Messages API.
    pub(crate) fn messages_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == "/v1/messages")
            .collect()
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test environment running the real image against `model`, with one API retry.
pub(crate) fn env_for(model: &FakeModel, extra: &str) -> TestEnv {
    let mut env = TestEnv::with_config(&format!(
        "image = \"{REAL_IMAGE}\"\nnetwork = \"allowlist\"\napi_base_url = \"{}\"\nstartup_timeout = 120\nidle_timeout = 120\n{extra}",
        model.url
    ));
    env.set_env("CLAUDE_CODE_MAX_RETRIES", "1");
    env
}

fn workspace_of(env: &TestEnv, session: &str) -> PathBuf {
    let v = env.json(&["sessions", "--json"]);
    let list = v
        .as_array()
        .or_else(|| v["sessions"].as_array())
        .cloned()
        .unwrap_or_default();
    let s = list
        .iter()
        .find(|s| s["sessionId"] == session)
        .unwrap_or_else(|| panic!("no session {session} in {v}"));
    PathBuf::from(s["workspace"].as_str().unwrap())
}

const TASK: &str = r#"
[[turn]]
match = "FIRST-TASK"
text = "I'll write the notes file first."
tool_use = [{ name = "Write", input = { file_path = "/workspace/notes.txt", content = "creel e2e: written by the Write tool\n" } }]

[[turn]]
match = "File created successfully"
text = "Now a command."
tool_use = [{ name = "Bash", input = { command = "echo \"bash ran as uid $(id -u) in $(pwd)\" > /workspace/bash.txt && cat /workspace/notes.txt", description = "Write bash.txt and show notes.txt" } }]

[[turn]]
match = "written by the Write tool"
text = "All done: notes.txt and bash.txt are in the workspace."

[[turn]]
match = "SECOND-TASK"
expect = ["FIRST-TASK", "All done: notes.txt and bash.txt are in the workspace.", "bash ran as uid", "toolu_fake_"]
text = "Resumed: I remember writing notes.txt."
"#;

#[test]
fn real_claude_writes_a_file_runs_a_command_and_resumes() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(TASK));
    let env = env_for(&model, "");
    let begun = Instant::now();
    let (job, session) = env.start(
        "FIRST-TASK: write notes.txt, then run a command that writes bash.txt",
        &[],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert!(s["error"].is_null(), "{s}");
    assert_eq!(s["exitCode"], 0);
    assert_eq!(s["numTurns"], 3, "{s}");
    // The fake model reports 1000 input and 50 output tokens a turn; Claude prices them.
    assert!(s["costUsd"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(
        s["result"],
        "All done: notes.txt and bash.txt are in the workspace."
    );
    let claude_session = s["claudeSessionId"].as_str().unwrap().to_string();
    assert_eq!(claude_session.len(), 36);
    assert!(
        begun.elapsed() < Duration::from_secs(60),
        "took {:?}",
        begun.elapsed()
    );

    // The files are on the host, in the session's workspace, not owned by root.
    let ws = workspace_of(&env, &session);
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "creel e2e: written by the Write tool\n"
    );
    let bash = std::fs::read_to_string(ws.join("bash.txt")).unwrap();
    assert!(bash.starts_with("bash ran as uid "), "{bash}");
    assert!(!bash.starts_with("bash ran as uid 0 "), "{bash}");
    assert!(bash.trim_end().ends_with("in /workspace"), "{bash}");

    // Raw output: Claude's stream-json, byte for byte, from init to result.
    let raw = env.raw_output(&job);
    assert_eq!(env.paged_output(&job, 4096, "raw").as_bytes(), &raw[..]);
    let events = lines_of(&raw);
    assert_eq!(events[0]["type"], "system");
    assert_eq!(events[0]["subtype"], "init");
    assert_eq!(events[0]["cwd"], "/workspace");
    assert_eq!(events[0]["session_id"], claude_session.as_str());
    let tools: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "assistant")
        .flat_map(|e| {
            e["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|c| c["type"] == "tool_use")
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(tools, ["Write", "Bash"]);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["is_error"], false);
    assert_eq!(last["num_turns"], 3);

    // Rendered output, for people and models.
    let text = env.paged_output(&job, 64 * 1024, "text");
    assert!(text.contains("I'll write the notes file first."), "{text}");
    assert!(text.contains("→ Write(/workspace/notes.txt"), "{text}");
    assert!(text.contains("→ Bash(echo"), "{text}");
    assert!(
        text.contains("creel e2e: written by the Write tool"),
        "{text}"
    );
    assert!(text.contains("✔ done"), "{text}");
    assert!(text.contains("3 turns"), "{text}");

    // What Claude sent: streaming requests to /v1/messages?beta=true with the real key, which
    // only the proxy had (the container's is a placeholder).
    let reqs = model.messages_requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r["query"], "beta=true");
        assert_eq!(r["stream"], true);
        assert!(r["failedExpectations"].as_array().unwrap().is_empty());
        let key = r["headers"]["x-api-key"].as_str().unwrap();
        assert!(key.ends_with("ends 6789>"), "{key}");
    }
    assert!(
        reqs[0]["lastUserText"]
            .as_str()
            .unwrap()
            .contains("FIRST-TASK")
    );
    assert_eq!(
        reqs.iter().map(|r| r["turn"].as_u64()).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );

    // A second job in the same session resumes the conversation: its request carries the
    // first one (the fake model checks `expect` and logs what failed).
    let (job2, session2) = env.start("SECOND-TASK: what did you write?", &["--session", &session]);
    assert_eq!(session2, session);
    let s2 = env.wait(&job2);
    assert_eq!(s2["status"], "completed", "{s2}");
    assert_eq!(s2["result"], "Resumed: I remember writing notes.txt.");
    assert_eq!(s2["claudeSessionId"], claude_session.as_str());
    let reqs = model.messages_requests();
    let resumed = reqs
        .iter()
        .find(|r| r["turn"] == 4)
        .unwrap_or_else(|| panic!("no request took turn 4: {reqs:#?}"));
    assert_eq!(
        resumed["failedExpectations"],
        serde_json::json!([]),
        "{resumed:#}"
    );
    assert!(
        resumed["lastUserText"]
            .as_str()
            .unwrap()
            .contains("SECOND-TASK")
    );
    // The first conversation (prompt, two tool rounds, final answer) precedes the new prompt.
    let msgs = resumed["body"]["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().filter_map(|m| m["role"].as_str()).collect();
    assert!(
        roles.iter().filter(|r| **r == "assistant").count() >= 3,
        "{roles:?}"
    );
    let events2 = lines_of(&env.raw_output(&job2));
    assert_eq!(events2[0]["session_id"], claude_session.as_str());
}

/// Runs one job against a fake model answering every request with `script`; returns the final
/// status and the fake model's requests.
fn failing_job(script: &str, extra_config: &str, start_args: &[&str]) -> (Value, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(script));
    let env = env_for(&model, extra_config);
    let (job, _) = env.start("this job is going to fail", start_args);
    let out = env.run(&["wait", &job, "--timeout", "180", "--json"]);
    env.expect_code(&out, 1, &["wait", &job]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["status"], "failed", "{s}");
    (s, model.messages_requests())
}

#[test]
fn api_500_ends_failed_as_api_error_after_one_retry() {
    if !real_image() {
        return;
    }
    let (s, reqs) = failing_job(
        "[[turn]]\nerror = { status = 500 }\nrepeat = true\n",
        "",
        &[],
    );
    assert_eq!(s["error"]["kind"], "api_error", "{s}");
    assert!(
        s["error"]["message"].as_str().unwrap().contains("500"),
        "{s}"
    );
    // CLAUDE_CODE_MAX_RETRIES=1 reached Claude: one try and one retry.
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(s["retry"]["maxRetries"], 1, "{s}");
}

#[test]
fn api_401_ends_failed_as_auth() {
    if !real_image() {
        return;
    }
    let (s, _) = failing_job(
        "[[turn]]\nerror = { status = 401, message = \"invalid x-api-key\" }\nrepeat = true\n",
        "",
        &[],
    );
    assert_eq!(s["error"]["kind"], "auth", "{s}");
}

#[test]
fn api_429_ends_failed_as_rate_limit() {
    if !real_image() {
        return;
    }
    let (s, reqs) = failing_job(
        "[[turn]]\nerror = { status = 429, retry_after = 1 }\nrepeat = true\n",
        "",
        &[],
    );
    assert_eq!(s["error"]["kind"], "rate_limit", "{s}");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
}

#[test]
fn max_turns_ends_failed_as_max_turns() {
    if !real_image() {
        return;
    }
    let (s, _) = failing_job(
        "[[turn]]\ntool_use = [{ name = \"Bash\", input = { command = \"echo again\" } }]\nrepeat = true\n",
        "",
        &["--max-turns", "2"],
    );
    assert_eq!(s["error"]["kind"], "max_turns", "{s}");
}

#[test]
fn a_hanging_model_ends_the_job_by_idle_timeout() {
    if !real_image() {
        return;
    }
    let begun = Instant::now();
    let (s, reqs) = failing_job("[[turn]]\nhang = 300\n", "idle_timeout = 5\n", &[]);
    assert_eq!(s["error"]["kind"], "idle_timeout", "{s}");
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert!(
        begun.elapsed() < Duration::from_secs(90),
        "took {:?}",
        begun.elapsed()
    );
}

/// The README's demo: `creel run` with the fake model's built-in script.
#[test]
fn run_with_the_built_in_script_renders_the_demo() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), None);
    let env = env_for(&model, "");
    let out = env.run(&["run", "Write hello.txt and show it"]);
    env.expect_code(&out, 0, &["run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("→ Write(/workspace/hello.txt"), "{stdout}");
    assert!(
        stdout.contains("→ Bash(cat hello.txt && id -un && claude --version)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("← Hello from Claude Code in creel's sandbox."),
        "{stdout}"
    );
    assert!(stdout.contains("✔ done · 3 turns"), "{stdout}");
}

/// Sends one raw HTTP/1.1 request and returns the status code and the body.
fn http(url: &str, request_head: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{request_head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// The stand-in itself (no image needed): it never answers 400, accepts what it does not
/// know, streams a scripted tool call, answers scripted errors and logs every request.
#[test]
fn fake_model_speaks_the_messages_api_and_logs_requests() {
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(
        dir.path(),
        Some(
            "[[turn]]\nmatch = \"please\"\ntool_use = [{ name = \"Read\", input = { file_path = \"/workspace/a\" } }]\n\
             [[turn]]\nmatch = \"fail\"\nerror = { status = 429, retry_after = 7 }\n",
        ),
    );
    let body = serde_json::json!({
        "model": "claude-x", "stream": true, "some_new_field": {"x": 1},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "please read"}]},
                     {"role": "system", "content": "a reminder"}]
    })
    .to_string();
    let (status, sse) = http(
        &model.url,
        "POST /v1/messages?beta=true HTTP/1.1\r\nContent-Type: application/json\r\nanthropic-beta: future-2099-01-01\r\nx-api-key: sk-abcd",
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{sse}");
    assert!(sse.contains("event: message_start"), "{sse}");
    assert!(sse.contains("\"type\":\"input_json_delta\""), "{sse}");
    assert!(sse.contains("\"stop_reason\":\"tool_use\""), "{sse}");
    assert!(sse.contains("\"model\":\"claude-x\""), "{sse}");
    assert!(
        sse.trim_end()
            .ends_with("data: {\"type\":\"message_stop\"}"),
        "{sse}"
    );

    let (status, err) = http(
        &model.url,
        "POST /v1/messages HTTP/1.1",
        br#"{"messages":[{"role":"user","content":"fail now"}]}"#,
    );
    assert_eq!(status, 429);
    assert!(err.contains("rate_limit_error"), "{err}");

    // Not JSON, unknown paths, HEAD: answered, never with 400.
    let (status, text) = http(&model.url, "POST /v1/messages HTTP/1.1", b"not json");
    assert_eq!(status, 200);
    assert!(text.contains("no turn left"), "{text}");
    assert_eq!(http(&model.url, "HEAD / HTTP/1.1", b"").0, 200);
    assert_eq!(
        http(&model.url, "POST /v1/messages/count_tokens HTTP/1.1", b"{}").0,
        200
    );
    assert_eq!(http(&model.url, "POST /v2/else HTTP/1.1", b"{}").0, 404);

    let log = model.requests();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert_eq!(log[0]["turn"], 1);
    // What Claude puts after the last user message (a `system` entry: a mid-turn message from
    // the user, a reminder) counts as part of it.
    assert_eq!(log[0]["lastUserText"], "please read\na reminder");
    assert_eq!(log[0]["headers"]["anthropic-beta"], "future-2099-01-01");
    assert_eq!(
        log[0]["headers"]["x-api-key"],
        "<redacted 7 bytes, ends abcd>"
    );
    assert_eq!(log[0]["body"]["some_new_field"]["x"], 1);
    assert_eq!(log[1]["answer"], "HTTP 429");
    assert_eq!(log[2]["answer"], "exhausted");
    assert_eq!(log[2]["body"], "not json");
}

/// A second `creel image build --offline` (after `.ci/run`'s first) reuses the base image, the
/// cached Claude Code binary and Podman's layer cache.
#[test]
fn a_second_image_build_reuses_what_the_first_made() {
    if !real_image() {
        return;
    }
    let env = TestEnv::new();
    let image_id = || {
        let out = std::process::Command::new("podman")
            .args(["image", "inspect", "--format", "{{.Id}}", REAL_IMAGE])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = image_id();
    let out = env.run(&["image", "build", "--offline", "--json"]);
    env.expect_code(&out, 0, &["image", "build", "--offline", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["tags"],
        serde_json::json!([REAL_IMAGE, "localhost/creel-claude:latest"])
    );
    assert!(
        v["claudeVersion"].as_str().unwrap().contains("2.1.328"),
        "{v}"
    );
    let reused = v["reused"].as_array().unwrap();
    assert!(
        reused
            .iter()
            .any(|r| r == "localhost/creel-debian:bookworm"),
        "{v}"
    );
    assert!(
        reused
            .iter()
            .any(|r| r.as_str().unwrap().ends_with("/claude")),
        "{v}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[1/4] base image"), "{stderr}");
    assert!(stderr.contains("reused:"), "{stderr}");
    // Podman's layer cache served every step: the same image, not a rebuilt equal one.
    assert!(!before.is_empty());
    assert_eq!(image_id(), before, "the second build made a new image");
}

/// What the job's Bash runs: real work and a commit of Claude's own, then everything a hostile
/// agent can plant in its checkout to make git on the host run something (each would touch a
/// file in `$1`, a directory on the host) or read outside the session.
const PLANT: &str = r#"set -e
M="$1"
echo "real work" > work.txt
git add work.txt
git commit -qm "Claude's own commit"
mkdir -p .git/hooks
for h in pre-commit post-commit post-checkout post-merge reference-transaction post-index-change pre-auto-gc; do
  printf '#!/bin/sh\ntouch %s/hook-%s\n' "$M" "$h" > .git/hooks/$h
  chmod +x .git/hooks/$h
done
mkdir -p evil-hooks
printf '#!/bin/sh\ntouch %s/hookspath\n' "$M" > evil-hooks/post-commit
chmod +x evil-hooks/post-commit
git config core.hooksPath /workspace/evil-hooks
git config core.fsmonitor "touch $M/fsmonitor"
git config core.sshCommand "touch $M/ssh"
git config core.pager "touch $M/pager"
git config diff.external "touch $M/extdiff"
git config diff.evil.textconv "touch $M/textconv"
git config filter.evil.clean "touch $M/clean"
git config filter.evil.smudge "touch $M/smudge"
git config merge.evil.driver "touch $M/mergedriver"
git config uploadpack.packObjectsHook "touch $M/packhook"
echo '* filter=evil diff=evil merge=evil' > .gitattributes
printf '[submodule "m"]\n\tpath = m\n\turl = ext::sh -c touch%% %s/submodule\n' "$M" > .gitmodules
ln -s "$M/../secret.txt" secret-link
ln -s / root-link
echo "planted everything"
"#;

const GIT_TASK: &str = r#"
[[turn]]
match = "HOSTILE-TASK"
text = "Working, and planting."
tool_use = [{ name = "Bash", input = { command = "sh plant.sh MARKERS", description = "work and plant" } }]

[[turn]]
match = "planted everything"
text = "Done."

[[turn]]
match = "NEXT-TASK"
text = "Looking at the history."
tool_use = [{ name = "Bash", input = { command = "git log --format=%s; git status --short; ls .git/hooks; cat .git/config; git rm -q .gitattributes", description = "history" } }]

[[turn]]
match = "Claude's own commit"
text = "The history is there."
"#;

#[test]
fn a_repo_session_records_each_job_on_its_branch_and_nothing_planted_runs_on_the_host() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET host data\n").unwrap();
    // The user's repository, in a directory with a space, with an uncommitted edit.
    let repo = dir.path().join("user repo");
    user_repo(&repo, &[("README", "hello\n"), ("plant.sh", PLANT)]);
    let head = user_git(&repo, &["rev-parse", "HEAD"]);
    let script = GIT_TASK.replace("MARKERS", &markers.display().to_string());
    let model = FakeModel::start(dir.path(), Some(&script));
    let env = env_for(&model, "");

    let started = env.json(&[
        "start",
        "--json",
        "--repo",
        repo.to_str().unwrap(),
        "--session",
        "landing",
        "HOSTILE-TASK: do the work",
    ]);
    assert_eq!(started["branch"], "creel/landing", "{started}");
    let job = started["jobId"].as_str().unwrap();
    let s = env.wait(job);
    assert_eq!(s["status"], "completed", "{s}");
    let changes = &s["changes"];
    assert!(changes["commit"].is_string(), "{s}");
    assert_eq!(
        changes["files"],
        6,
        "{s}\n{}",
        env.paged_output(job, 1 << 20, "text")
    );
    // The job never wrote the user's repository.
    assert_eq!(user_git(&repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(user_git(&repo, &["status", "--porcelain"]), "");

    // Reading: the log has Claude's commit and the job's, the diff has the work.
    let log = env.json(&["log", "landing", "--json"]);
    let subjects: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["HOSTILE-TASK: do the work", "Claude's own commit"]
    );
    assert_eq!(log[0]["jobId"], job);
    let diff = env.run(&["diff", "landing"]);
    let patch = String::from_utf8_lossy(&diff.stdout);
    assert!(patch.contains("+real work"), "{patch}");
    assert!(!patch.contains("TOP SECRET"), "{patch}");
    env.run(&["diff", "landing", "--stat", "--job", job]);

    // Landing: a branch for review; a merge is refused while the session brings a
    // `.gitattributes` (it names filters the user's git might run), and nothing changes.
    let b = env.json(&["branch", "landing", "--json"]);
    assert_eq!(b["branch"], "creel/landing", "{b}");
    let refused = env.run(&["merge", "landing"]);
    env.expect_code(&refused, 2, &["merge", "landing"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("`.gitattributes`"),
        "{}",
        env.describe(&["merge", "landing"], &refused)
    );
    assert_eq!(user_git(&repo, &["rev-parse", "HEAD"]), head);

    // The next job continues on the branch, with a fresh `.git` (no planted hooks or config),
    // and removes the attributes; then the merge goes through.
    let (next, _) = env.start("NEXT-TASK: look", &["--session", "landing"]);
    let s = env.wait(&next);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["result"], "The history is there.");
    let text = env.paged_output(&next, 1 << 20, "text");
    assert!(
        !text.contains("fsmonitor") && !text.contains("hooksPath"),
        "{text}"
    );
    assert_eq!(s["changes"]["files"], 1, "{s}");
    let m = env.json(&["merge", "landing", "--json"]);
    assert_eq!(m["fastForward"], true, "{m}");
    assert_eq!(
        std::fs::read_to_string(repo.join("work.txt")).unwrap(),
        "real work\n"
    );
    assert!(
        std::fs::symlink_metadata(repo.join("secret-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let ran: Vec<_> = std::fs::read_dir(&markers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(ran.is_empty(), "ran on the host: {ran:?}");

    // Cleanup removes the session's checkout and repository, not the user's branch.
    let ws = workspace_of(&env, "landing");
    env.run(&["cleanup", "--idle-seconds", "0", "--delete-workspaces"]);
    assert!(!ws.exists());
    assert!(!env.home.join("git/landing").exists());
    user_git(&repo, &["rev-parse", "--verify", "creel/landing"]);
}

const STEER: &str = r#"
[[turn]]
match = "STEER-TASK"
text = "I need a decision first."
tool_use = [{ name = "mcp__creel__ask", input = { question = "Which greeting should hello.txt hold?", options = ["hello", "howdy"] } }]

[[turn]]
match = "HOWDY-ANSWER"
text = "Writing it with a command."
tool_use = [{ name = "Bash", input = { command = "echo howdy > /workspace/hello.txt && cat /workspace/hello.txt", description = "Write hello.txt" } }]

[[turn]]
match = "howdy"
text = "And a secret file."
tool_use = [{ name = "Write", input = { file_path = "/workspace/secret.txt", content = "x\n" } }]

[[turn]]
match = "denies this"
expect = ["HOWDY-ANSWER", "Write(/workspace/secret*)"]
text = "Done without the secret file."
"#;

/// The steering server and Claude Code's own permission prompt, for real: Claude calls
/// `mcp__creel__ask` and waits; a person answers with `creel reply`; Claude's Bash call waits
/// for `creel approve` (permissions = "ask"), survives a kill -9 of the monitor meanwhile, and
/// a rule denies its Write. All in the default network mode (allowlist), where the container has
/// no network of its own.
#[test]
fn real_claude_asks_waits_for_approval_and_obeys_the_rules() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(STEER));
    let env = env_for(
        &model,
        "permissions = \"ask\"\npermissions_deny = [\"Write(/workspace/secret*)\"]\n",
    );
    let (job, session) = env.start("STEER-TASK: write hello.txt", &[]);
    let wait = |what: &str| -> Value {
        let out = env.run(&["wait", &job, "--timeout", "120", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(5),
            "{what}: {}",
            env.describe(&["wait", &job], &out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = wait("the question");
    assert_eq!(s["activityState"], "needs_input", "{s}");
    assert_eq!(
        s["needsInput"]["question"],
        "Which greeting should hello.txt hold?"
    );
    assert_eq!(
        s["needsInput"]["options"],
        serde_json::json!(["hello", "howdy"])
    );
    env.json(&["reply", &job, "HOWDY-ANSWER: use howdy", "--json"]);

    let s = wait("the permission request");
    assert_eq!(s["activityState"], "needs_approval", "{s}");
    assert_eq!(s["needsApproval"]["toolName"], "Bash", "{s}");
    assert_eq!(
        s["needsApproval"]["input"]["command"],
        "echo howdy > /workspace/hello.txt && cat /workspace/hello.txt"
    );
    let ws = workspace_of(&env, &session);
    assert!(
        !ws.join("hello.txt").exists(),
        "nothing ran before the approval"
    );
    crate::util::kill_monitor(&env, &job);
    assert_eq!(
        env.json(&["status", &job, "--json"])["needsApproval"]["request"],
        2
    );
    env.json(&["approve", &job, "--json"]);

    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["result"], "Done without the secret file.", "{s}");
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.txt")).unwrap(),
        "howdy\n"
    );
    assert!(!ws.join("secret.txt").exists(), "the rule denied the Write");
    let decided: Vec<(Value, Value)> = s["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["answer"]["decision"].clone(),
                r["answer"]["decidedBy"].clone(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        vec![
            ("answer".into(), "user".into()),
            ("allow".into(), "user".into()),
            ("deny".into(), "rule".into())
        ],
        "{s}"
    );
    let failed = model.failed_expectations();
    assert!(failed.is_empty(), "{failed:?}");
}

const SPENDER: &str = r#"
[[turn]]
match = "SPEND-AGAIN"
expect = ["SPEND-FIRST"]
text = "Spending more (resumed)."
tool_use = [{ name = "Bash", input = { command = "echo step", description = "One step" } }]
repeat = true

[[turn]]
text = "Spending."
tool_use = [{ name = "Bash", input = { command = "echo step", description = "One step" } }]
repeat = true
"#;

/// A cost budget with the real Claude Code: creel passes what is left as Claude's own
/// `--max-budget-usd`, Claude stops after the turn that crosses it, the job ends `budget`
/// (each turn costs $0.005 at the fake model's token counts), the session refuses new jobs,
/// and after `creel budget` raises it the next job resumes the conversation with what is left.
#[test]
fn real_claude_stops_at_the_session_s_cost_budget_and_resumes_once_raised() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(SPENDER));
    let env = env_for(&model, "");
    let (job, session) = env.start(
        "SPEND-FIRST: keep going",
        &["--session", "spender", "--max-cost-usd", "0.012"],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "budget", "{s}");
    assert_eq!(s["numTurns"], 3, "three turns of $0.005 cross $0.012: {s}");
    assert_eq!(s["budget"]["spent"]["costUsd"], 0.015, "{s}");
    assert!(s["budget"]["exhausted"].is_string(), "{s}");
    let out = env.run(&["start", "--session", &session, "SPEND-AGAIN"]);
    env.expect_code(&out, 2, &["start", "--session", &session]);

    let b = env.json(&["budget", &session, "--max-cost-usd", "0.03", "--json"]);
    assert_eq!(b["remaining"]["costUsd"], 0.015, "{b}");
    let (again, _) = env.start("SPEND-AGAIN: more", &["--session", &session]);
    let s = env.wait(&again);
    assert_eq!(s["error"]["kind"], "budget", "{s}");
    // Claude reports the conversation's cost (both jobs); the session counts it once.
    assert_eq!(s["costUsd"], 0.03, "{s}");
    assert_eq!(s["budget"]["spent"]["costUsd"], 0.03, "{s}");
    assert_eq!(s["budget"]["spent"]["turns"], 6, "{s}");
    let failed = model.failed_expectations();
    assert!(
        failed.is_empty(),
        "the second job resumed the first's conversation: {failed:?}"
    );
}

const TWO_MESSAGES: &str = r#"
[[turn]]
match = "FIRST-MESSAGE"
text = "Working on the first message."
tool_use = [{ name = "Bash", input = { command = "sleep 4; echo first-step-done", description = "A slow step" } }]

[[turn]]
match = "SECOND-MESSAGE"
expect = ["FIRST-MESSAGE", "first-step-done"]
text = "Both done: I saw the second message while I worked."
"#;

/// `creel send` with the real Claude Code: a message sent while Claude works on the prompt
/// reaches it within the running turn (Claude Code surfaces it beside the next tool result),
/// the model sees it in the same conversation, and the job ends once Claude has answered.
#[test]
fn real_claude_reads_a_message_sent_while_it_works() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(TWO_MESSAGES));
    let env = env_for(&model, "");
    let (job, _) = env.start("FIRST-MESSAGE: take your time", &[]);
    crate::util::eventually(Duration::from_secs(60), "the slow step", || {
        let raw = String::from_utf8_lossy(&env.raw_output(&job)).into_owned();
        raw.contains("sleep 4").then_some(())
    });
    let out = env.run(&["send", &job, "SECOND-MESSAGE: and then this"]);
    env.expect_code(&out, 0, &["send", &job]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(
        s["result"], "Both done: I saw the second message while I worked.",
        "{s}"
    );
    let failed = model.failed_expectations();
    assert!(failed.is_empty(), "{failed:?}");
    let late = env.run(&["send", &job, "too late"]);
    env.expect_code(&late, 2, &["send", &job]);
}

/// The warm pool with the real Claude Code: the start takes the sandbox whose Claude has been
/// waiting, Claude runs the prompt it is then given (tools and all, through the sandbox's own
/// proxy), and the session goes on like any other: the next job resumes its conversation.
#[test]
fn real_claude_in_a_pooled_sandbox_runs_the_prompt_it_is_given_and_resumes() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(TASK));
    let env = env_for(&model, "pool = 1\n");
    let filled = env.json(&["pool", "fill", "--json"]);
    let sandbox = filled["sandboxes"][0]["jobId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(filled["sandboxes"][0]["ready"], true, "{filled}");
    let v = env.json(&[
        "start",
        "--json",
        "FIRST-TASK: write notes.txt, then run a command that writes bash.txt",
    ]);
    assert_eq!(v["jobId"], sandbox.as_str(), "{v}");
    assert_eq!(v["status"], "running", "{v}");
    let session = v["sessionId"].as_str().unwrap().to_string();
    let s = env.wait(&sandbox);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["numTurns"], 3, "{s}");
    assert_eq!(
        s["result"],
        "All done: notes.txt and bash.txt are in the workspace."
    );
    let ws = workspace_of(&env, &session);
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "creel e2e: written by the Write tool\n"
    );
    // The model never saw a request before the prompt came: the waiting Claude sent nothing.
    let first = model.messages_requests();
    assert_eq!(first.len(), 3, "{first:#?}");
    assert!(
        first[0]["lastUserText"]
            .as_str()
            .is_some_and(|t| t.contains("FIRST-TASK")),
        "the first request carries the prompt: {}",
        first[0]
    );
    let key = first[0]["headers"]["x-api-key"].as_str().unwrap();
    assert!(
        key.ends_with("ends 6789>"),
        "the sandbox's proxy added the key: {key}"
    );
    let (job2, _) = env.start("SECOND-TASK: what did you write?", &["--session", &session]);
    let s2 = env.wait(&job2);
    assert_eq!(s2["status"], "completed", "{s2}");
    assert_eq!(s2["result"], "Resumed: I remember writing notes.txt.");
    assert!(model.failed_expectations().is_empty());
    let drained = env.json(&["pool", "drain", "--json"]);
    assert_eq!(drained["drained"].as_array().unwrap().len(), 1, "{drained}");
}

const POD_TASK: &str = r#"
[[turn]]
match = "POD-TASK"
text = "Looking around the pod."
tool_use = [{ name = "Bash", input = { command = "id -u; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; touch /rootfs-write 2>&1; pwd; echo from-the-pod > /workspace/pod.txt", description = "Look around" } }]

[[turn]]
match = "NoNewPrivs"
text = "The pod is as it should be."
"#;

/// `creel kube render` for the real image, run with `podman kube play`: the real Claude Code
/// in the rendered pod, hardened as rendered, talks to `creel fake-model` where creel's egress
/// proxy would be (the pod shares the host's network only to reach it on loopback), with the
/// job's token as its key.
#[test]
fn real_claude_runs_in_a_rendered_pod_under_podman_kube_play() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(POD_TASK));
    let env = env_for(&model, "");
    let proxy = model
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let out = env.run(&[
        "kube",
        "render",
        "--session",
        "kube-real",
        "--pull-policy",
        "Never",
        "--egress-proxy",
        proxy,
        "POD-TASK: look around",
    ]);
    env.expect_code(&out, 0, &["kube", "render"]);
    let docs = crate::kube::docs(&String::from_utf8(out.stdout).unwrap());
    let token = docs[1]["stringData"]["token"].as_str().unwrap().to_string();
    let job = docs[3]["metadata"]["labels"]["creel.dev/job"]
        .as_str()
        .unwrap()
        .to_string();
    let volume = "creel-session-kube-real";
    let (log, _down) = crate::kube::play(docs, &dir.path().join("played.yaml"), true, volume, &job);
    assert!(log.contains("The pod is as it should be."), "{log}");
    let reqs = model.messages_requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let seen = reqs[1]["lastUserText"].as_str().unwrap_or_default();
    for fact in [
        "1000\n",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
        "'/rootfs-write': Read-only file system",
        "/workspace",
    ] {
        assert!(seen.contains(fact), "{fact} in {seen}");
    }
    // Claude's key was the job's token, never an API key.
    let key = reqs[0]["headers"]["x-api-key"].as_str().unwrap();
    assert!(
        key.ends_with(&format!("ends {}>", &token[token.len() - 4..])),
        "{key}"
    );
    let inspect =
        crate::kube::podman(&["volume", "inspect", volume, "--format", "{{.Mountpoint}}"]);
    let mountpoint = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&mountpoint).join("pod.txt")).unwrap(),
        "from-the-pod\n"
    );
}

/// `runtime = "kubernetes"` with creel's shared egress proxy (`creel kube proxy`), on the
/// API stand-in: the real Claude Code in a pod reaches the model only through the proxy, with
/// its job's token as its key; the proxy checks the token and adds the real key; a request
/// without a good token is refused.
#[test]
fn real_claude_on_the_api_stand_in_reaches_the_model_only_through_the_token_checking_proxy() {
    if !real_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(POD_TASK));
    let fk = crate::kube_api::FakeKube::start();
    let ns = crate::kube_api::NAMESPACE;
    let signing = "a-signing-key-of-at-least-32-bytes-0123456789";
    fk.create(
        &format!("/api/v1/namespaces/{ns}/secrets"),
        &serde_json::json!({"metadata": {"name": "creel-egress"}, "stringData": {"signing-key": signing}}),
    );
    std::fs::write(dir.path().join("signing-key"), signing).unwrap();
    std::fs::write(
        dir.path().join("api-key"),
        "sk-real-key-held-by-the-proxy-9876\n",
    )
    .unwrap();
    let (proxy, addr) = crate::util::spawn_reading_line(
        Command::new(env!("CARGO_BIN_EXE_creel"))
            .args([
                "kube",
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--signing-key-file",
            ])
            .arg(dir.path().join("signing-key"))
            .arg("--api-key-file")
            .arg(dir.path().join("api-key"))
            .args(["--api-base-url", &model.url]),
    );
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _proxy = Kill(proxy);

    let env = fk.front_end_with(
        REAL_IMAGE,
        "",
        &format!("egress_proxy = \"{addr}\"\nimage_pull_policy = \"Never\"\n"),
    );
    let (job, _) = env.start("POD-TASK: look around", &[]);
    let done = env.wait(&job);
    assert_eq!(done["status"], "completed", "{done}");
    let out = String::from_utf8_lossy(&env.raw_output(&job)).to_string();
    assert!(out.contains("The pod is as it should be."), "{out}");
    let reqs = model.messages_requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let seen = reqs[1]["lastUserText"].as_str().unwrap_or_default();
    for fact in [
        "1000\n",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Read-only file system",
    ] {
        assert!(seen.contains(fact), "{fact} in {seen}");
    }
    // The model got the proxy's key; the pod only ever had its token.
    for r in &reqs {
        let key = r["headers"]["x-api-key"].as_str().unwrap();
        assert!(key.ends_with("ends 9876>"), "{key}");
    }
    // Without its token, nothing passes: an API call with a made-up key, a tunnel without
    // credentials.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let refused = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/v1/messages"))
        .header("x-api-key", format!("{job}.9999999999.{}", "0".repeat(64)))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    assert_eq!(
        model.messages_requests().len(),
        2,
        "nothing more reached the model"
    );
}
