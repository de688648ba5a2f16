//! `creel acp` driven by ACP clients others wrote: acpx (npm), and a client built with the
//! official TypeScript SDK (`tests/acp/client.mjs` on `@agentclientprotocol/sdk`). Both run
//! the real Claude Code in the real sandbox image against `creel fake-model`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::e2e::{FakeModel, env_for, real_image};
use crate::util::{TestEnv, external_tool};

/// The TypeScript client's model: each turn's `match` is a word the client's prompts (or a
/// tool's result) carry, so the order of the client's steps is the order of the turns.
const SCRIPT: &str = r#"
[[turn]]
match = "ACP-ONE"
text = "Planning first."
tool_use = [{ name = "TodoWrite", input = { todos = [{ content = "Write notes", status = "in_progress", activeForm = "Writing notes" }] } }]

# Claude Code 2.1.328 disables TodoWrite in print mode: the call still shows in the stream.
[[turn]]
match = "No such tool available: TodoWrite"
text = "I'll write the notes file."
tool_use = [{ name = "Write", input = { file_path = "/workspace/notes.txt", content = "from acp\n" } }]

[[turn]]
match = "File created successfully"
text = "Done: notes.txt is written."

[[turn]]
match = "ACP-TWO"
expect = ["ACP-ONE", "Done: notes.txt is written."]
text = "Resumed and remembered."

[[turn]]
match = "ACP-THREE"
text = "Running a command."
tool_use = [{ name = "Bash", input = { command = "echo ran-after-approval | tee /workspace/ran.txt", description = "Write ran.txt" } }]

[[turn]]
match = "ran-after-approval"
text = "The command ran."

[[turn]]
match = "ACP-FOUR"
text = "A question first."
tool_use = [{ name = "mcp__creel__ask", input = { question = "Which colour?", options = ["blue", "green"] } }]

[[turn]]
match = "BLUE-ANSWER"
text = "You chose blue."

[[turn]]
match = "ACP-HANG"
hang = 120

[[turn]]
match = "ACP-SLOW"
hang = 120
"#;

/// A directory for the client's `cwd`, owned by an ordinary user (the agent never runs as
/// root, and creel refuses a root-owned workspace).
fn project(env: &TestEnv, name: &str) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::create_dir_all(&p).unwrap();
    std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
    p
}

/// A command for `program` with the environment `creel` gets in `env` (its home, config, key).
fn with_env(env: &TestEnv, program: &Path) -> Command {
    let base = env.cmd(&[]);
    let mut c = Command::new(program);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(Stdio::null());
    c
}

/// Runs the TypeScript SDK client's `scenario` and returns its report.
fn sdk_client(
    env: &TestEnv,
    (node, sdk): (&Path, &Path),
    scenario: &str,
    cwd: &Path,
    session: Option<&str>,
) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/acp/client.mjs");
    let out = with_env(env, node)
        .arg(script)
        .arg(scenario)
        .env("ACP_SDK", sdk)
        .env("ACP_AGENT_BIN", env!("CARGO_BIN_EXE_creel"))
        .env("ACP_CWD", cwd)
        .env("ACP_SESSION", session.unwrap_or_default())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the ACP client");
    assert!(out.status.success(), "the ACP client failed: {out:?}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(report["fatal"].is_null(), "{}", report["fatal"]);
    assert_eq!(
        report["agentExit"],
        serde_json::json!({"code": 0, "signal": null}),
        "creel acp exits when its client goes away"
    );
    report
}

/// `(sessionUpdate, text or title or status)` of each update, for compact assertions.
fn kinds(updates: &Value) -> Vec<(String, String)> {
    updates
        .as_array()
        .unwrap_or_else(|| panic!("no updates: {updates}"))
        .iter()
        .map(|u| {
            let what = u["content"]["text"]
                .as_str()
                .or(u["title"].as_str())
                .or(u["status"].as_str())
                .unwrap_or_default();
            (
                u["sessionUpdate"].as_str().unwrap().to_string(),
                what.to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// The session's jobs, oldest first, as `creel jobs --json` lists them.
fn jobs_of(env: &TestEnv, session: &str) -> Vec<Value> {
    let mut list = env
        .json(&["jobs", "--session", session, "--json"])
        .as_array()
        .cloned()
        .unwrap();
    list.reverse();
    list
}

/// One editor's day with creel through the official TypeScript SDK: a prompt that plans and
/// writes a file (streamed as a plan, a tool call with its diff on the host, its result and
/// the messages), a second prompt refused while the first runs, a resumed conversation,
/// permission requests answered by the client, a question answered by the next prompt, a
/// cancel, bad input answered with protocol errors; then a second connection reloads the
/// session and replays it, and a client that goes away mid-job leaves the job running.
#[test]
fn the_typescript_sdk_client_drives_real_claude_code_through_creel_acp() {
    if !real_image() {
        return;
    }
    let Some(node) = external_tool("CREEL_TEST_NODE24", "ACP client") else {
        return;
    };
    let Some(sdk) = external_tool("CREEL_TEST_ACP_SDK", "ACP client") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(SCRIPT));
    let env = env_for(&model, "");
    let cwd = project(&env, "project");
    let client = (node.as_path(), sdk.as_path());
    let r = sdk_client(&env, client, "main", &cwd, None);
    let steps = &r["steps"];

    let init = &steps["initialize"];
    assert_eq!(init["protocolVersion"], 1);
    assert_eq!(init["agentInfo"]["name"], "creel");
    assert_eq!(init["agentCapabilities"]["loadSession"], true);
    assert_eq!(init["authMethods"][0]["id"], "api-key", "{init}");

    assert_eq!(steps["badCwd"]["error"]["code"], -32602, "{steps}");
    assert!(
        steps["badCwd"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does-not-exist")
    );
    assert_eq!(steps["unknownSession"]["error"]["code"], -32002);
    assert_eq!(steps["busy"]["error"]["code"], -32600, "{steps}");
    assert!(
        steps["busy"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already running a prompt")
    );
    let session = steps["session"]["sessionId"].as_str().unwrap().to_string();
    assert_eq!(steps["session"]["modes"]["currentModeId"], "skip");

    // The first prompt, streamed.
    assert_eq!(steps["first"]["stopReason"], "end_turn", "{steps}");
    let notes = cwd.join("notes.txt");
    let first = &r["updates"]["first"];
    assert_eq!(
        kinds(first),
        vec![
            pair("agent_message_chunk", "Planning first."),
            pair("plan", ""),
            pair("agent_message_chunk", "I'll write the notes file."),
            pair("tool_call", &format!("Write {}", notes.display())),
            pair("tool_call_update", "completed"),
            pair("agent_message_chunk", "Done: notes.txt is written."),
        ],
        "{first}"
    );
    assert_eq!(first[1]["entries"][0]["content"], "Write notes");
    assert_eq!(first[1]["entries"][0]["status"], "in_progress");
    let write = &first[3];
    assert_eq!(write["kind"], "edit");
    assert_eq!(write["locations"][0]["path"], notes.display().to_string());
    assert_eq!(write["content"][0]["type"], "diff");
    assert_eq!(write["content"][0]["path"], notes.display().to_string());
    assert_eq!(write["content"][0]["newText"], "from acp\n");
    assert_eq!(first[4]["toolCallId"], write["toolCallId"]);
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "from acp\n");

    // The conversation resumes across prompts (the model checks it saw the first one).
    assert_eq!(steps["resumed"]["stopReason"], "end_turn");
    assert_eq!(
        kinds(&r["updates"]["resumed"]),
        vec![pair("agent_message_chunk", "Resumed and remembered.")]
    );

    // Modes and the model option.
    assert_eq!(steps["setMode"], serde_json::json!({}));
    assert_eq!(steps["badMode"]["error"]["code"], -32602);
    assert_eq!(
        steps["setModel"]["configOptions"][0]["currentValue"],
        "haiku"
    );

    // In the ask mode, Claude Code's permission prompt became the client's request.
    assert_eq!(steps["approved"]["stopReason"], "end_turn");
    let permissions = r["permissions"].as_array().unwrap();
    assert_eq!(permissions.len(), 1, "{permissions:?}");
    let approved = &r["updates"]["approved"];
    assert_eq!(
        permissions[0]["toolCall"]["toolCallId"],
        approved[1]["toolCallId"]
    );
    assert_eq!(permissions[0]["toolCall"]["kind"], "execute");
    assert_eq!(
        permissions[0]["toolCall"]["rawInput"]["command"],
        "echo ran-after-approval | tee /workspace/ran.txt"
    );
    assert_eq!(
        std::fs::read_to_string(cwd.join("ran.txt")).unwrap(),
        "ran-after-approval\n"
    );
    assert_eq!(
        kinds(approved).last().unwrap(),
        &pair("agent_message_chunk", "The command ran.")
    );

    // A question ends the turn; the next prompt is its answer, in the same job.
    assert_eq!(steps["asked"]["stopReason"], "end_turn");
    let asked = kinds(&r["updates"]["asked"]);
    let question = &asked.last().unwrap().1;
    assert!(question.contains("Which colour?"), "{asked:?}");
    assert!(question.contains("blue | green"), "{asked:?}");
    assert_eq!(steps["answered"]["stopReason"], "end_turn");
    assert_eq!(
        kinds(&r["updates"]["answered"]).last().unwrap(),
        &pair("agent_message_chunk", "You chose blue.")
    );

    // session/cancel cancels the job.
    assert_eq!(steps["cancelled"]["stopReason"], "cancelled", "{steps}");
    let jobs = jobs_of(&env, &session);
    let states: Vec<&str> = jobs.iter().map(|j| j["status"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        [
            "completed",
            "completed",
            "completed",
            "completed",
            "cancelled"
        ],
        "{jobs:?}"
    );
    assert_eq!(jobs[0]["workspace"], cwd.display().to_string());
    let listed = steps["list"]["sessions"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s["sessionId"] == session.as_str() && s["cwd"] == cwd.display().to_string()),
        "{listed:?}"
    );
    // The model option reached Claude Code (as the alias's model id).
    let models: Vec<String> = model
        .messages_requests()
        .iter()
        .map(|m| m["model"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(models.iter().any(|m| m.contains("haiku")), "{models:?}");
    let failed = model.failed_expectations();
    assert!(failed.is_empty(), "{failed:?}");

    // A second connection reopens the session and replays the conversation.
    let loaded = sdk_client(&env, client, "load", &cwd, Some(&session));
    assert_eq!(loaded["steps"]["load"]["modes"]["currentModeId"], "skip");
    assert_eq!(loaded["steps"]["loadUnknown"]["error"]["code"], -32002);
    let replay = kinds(&loaded["updates"]["load"]);
    assert_eq!(
        replay[..3],
        [
            pair("user_message_chunk", "ACP-ONE: write notes.txt"),
            pair("agent_message_chunk", "Planning first."),
            pair("plan", ""),
        ],
        "{replay:?}"
    );
    for said in [
        pair("user_message_chunk", "ACP-TWO: do you remember?"),
        pair("agent_message_chunk", "Resumed and remembered."),
        pair("agent_message_chunk", "You chose blue."),
        pair("user_message_chunk", "ACP-HANG: wait for it"),
    ] {
        assert!(replay.contains(&said), "{said:?} not in {replay:?}");
    }

    // A client that goes away mid-job: the agent exits, the job runs on, findable.
    let gone = sdk_client(&env, client, "disconnect", &cwd, None);
    let other = gone["steps"]["session"]["sessionId"].as_str().unwrap();
    let jobs = jobs_of(&env, other);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["status"], "running", "{jobs:?}");
    let job = jobs[0]["jobId"].as_str().unwrap();

    // Reopened by a new connection: the replay shows the prompt, a new prompt is refused
    // while the job runs, and session/cancel stops that job.
    let back = sdk_client(&env, client, "reattach", &cwd, Some(other));
    assert!(back["steps"]["load"]["error"].is_null(), "{back}");
    assert!(
        kinds(&back["updates"]["reattach"])
            .contains(&pair("user_message_chunk", "ACP-SLOW: take your time")),
        "{back}"
    );
    let busy = &back["steps"]["busy"]["error"];
    assert!(busy["message"].as_str().unwrap().contains(job), "{busy}");
    assert_eq!(env.wait(job)["status"], "cancelled");
}

const ACPX_SCRIPT: &str = r#"
[[turn]]
match = "ACPX-TASK"
text = "Writing it."
tool_use = [{ name = "Write", input = { file_path = "/workspace/acpx.txt", content = "written through acpx\n" } }]

[[turn]]
match = "File created successfully"
text = "Written via acpx."
"#;

/// acpx, the headless ACP client OpenClaw's ACP runtime goes through, with creel as its
/// `--agent`: one prompt in the ask mode (creel's config), the permission request answered by
/// acpx's `--approve-all`, the job in creel's store. acpx's `--cwd` is a git repository and
/// the config says `acp_repo = true`: the work lands on the session's own branch, in creel's
/// checkout, and the repository itself is untouched.
#[test]
fn acpx_runs_a_prompt_in_creel_on_its_own_branch_and_answers_its_permission_request() {
    if !real_image() {
        return;
    }
    let Some(node) = external_tool("CREEL_TEST_NODE24", "acpx") else {
        return;
    };
    let Some(acpx) = external_tool("CREEL_TEST_ACPX", "acpx") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(dir.path(), Some(ACPX_SCRIPT));
    let env = env_for(&model, "permissions = \"ask\"\nacp_repo = true\n");
    let cwd = env.dir.path().join("repo");
    crate::util::user_repo(&cwd, &[("README", "a repository\n")]);
    let agent = format!("{} acp", env!("CARGO_BIN_EXE_creel"));
    let out = with_env(&env, &node)
        .arg(&acpx)
        .args(["--agent", &agent, "--cwd"])
        .arg(&cwd)
        .args([
            "--format",
            "json",
            "--approve-all",
            "--timeout",
            "120",
            "exec",
            "ACPX-TASK: write acpx.txt",
        ])
        .env("HOME", env.dir.path())
        .output()
        .expect("run acpx");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "acpx failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let method =
        |m: &str| -> Vec<&Value> { messages.iter().filter(|v| v["method"] == m).collect() };
    let asked = method("session/request_permission");
    assert_eq!(asked.len(), 1, "{stdout}");
    assert_eq!(asked[0]["params"]["toolCall"]["kind"], "edit");
    let session = messages
        .iter()
        .find_map(|v| v["result"]["sessionId"].as_str())
        .unwrap_or_else(|| panic!("no session in {stdout}"));
    let listed = env.json(&["sessions", "--json"]);
    let workspace = listed
        .as_array()
        .or_else(|| listed["sessions"].as_array())
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == session)
        .and_then(|s| s["workspace"].as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no session {session} in {listed}"));
    assert_ne!(
        workspace, cwd,
        "a repository session works in creel's checkout"
    );
    let target = workspace.join("acpx.txt");
    let updates: Vec<&Value> = method("session/update")
        .into_iter()
        .map(|n| &n["params"]["update"])
        .collect();
    let call = updates
        .iter()
        .find(|u| u["sessionUpdate"] == "tool_call")
        .unwrap_or_else(|| panic!("no tool call in {stdout}"));
    assert_eq!(call["content"][0]["path"], target.display().to_string());
    assert_eq!(call["content"][0]["newText"], "written through acpx\n");
    assert!(
        updates
            .iter()
            .any(|u| u["content"]["text"] == "Written via acpx."),
        "{stdout}"
    );
    let stop = messages
        .iter()
        .find_map(|v| v["result"]["stopReason"].as_str())
        .unwrap_or_else(|| panic!("no stop reason in {stdout}"));
    assert_eq!(stop, "end_turn");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "written through acpx\n"
    );
    assert!(
        !cwd.join("acpx.txt").exists(),
        "the repository is only read"
    );
    // The job's commit is on the session's branch, for `creel diff` and `creel merge`.
    let diff = env.run(&["diff", session]);
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("+written through acpx"),
        "{}",
        env.describe(&["diff", session], &diff)
    );
    // creel's store has the job like any other, in the ACP session.
    let jobs = jobs_of(&env, session);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["status"], "completed");
    let job = jobs[0]["jobId"].as_str().unwrap();
    let status = env.json(&["status", job, "--json"]);
    assert_eq!(
        status["requests"][0]["answer"]["decision"], "allow",
        "{status}"
    );
    let failed = model.failed_expectations();
    assert!(failed.is_empty(), "{failed:?}");
}
