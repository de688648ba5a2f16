//! `creel mcp` driven by rmcp's own client, over stdio (the binary as a child process) and
//! streamable HTTP, against real Podman containers of the test image.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ReadResourceRequestParams, ResourceContents,
    ResourceUpdatedNotificationParam, SubscribeRequestParams,
};
use rmcp::service::{NotificationContext, Peer, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::util::{TestEnv, external_tool};

type Client = RunningService<RoleClient, ()>;

const TOOLS: [&str; 11] = [
    "claude_code_approve",
    "claude_code_cancel",
    "claude_code_cleanup",
    "claude_code_diff",
    "claude_code_land",
    "claude_code_output",
    "claude_code_reply",
    "claude_code_send",
    "claude_code_sessions",
    "claude_code_start",
    "claude_code_status",
];

/// `creel mcp` over stdio, as an MCP host would run it.
async fn stdio_client(env: &TestEnv) -> Client {
    let cmd = tokio::process::Command::from(env.cmd(&["mcp"]));
    let transport = TokioChildProcess::new(cmd).expect("spawn creel mcp");
    ().serve(transport).await.expect("MCP handshake over stdio")
}

/// A `creel mcp --http` child, killed on drop.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    /// Starts `creel mcp --http 127.0.0.1:0 EXTRA…` and reads the address it bound from stderr.
    fn start(env: &TestEnv, extra: &[&str]) -> HttpServer {
        let mut args = vec!["mcp", "--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = env
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn creel mcp --http");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .rsplit_once(' ')
            .map(|(_, u)| u.to_string())
            .filter(|u| u.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in the first stderr line: {line:?}"));
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            if !rest.is_empty() {
                eprintln!("creel mcp --http stderr:\n{rest}");
            }
        });
        HttpServer { child, url }
    }

    /// `host:port`.
    fn authority(&self) -> &str {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
    }

    /// One raw HTTP/1.1 POST of an `initialize` request; returns the status code.
    fn raw_initialize(&self, authorization: Option<&str>) -> u16 {
        self.initialize(authorization).0
    }

    /// A raw `initialize` that keeps its session open: (status, the session id if any).
    fn open_session(&self) -> (u16, Option<String>) {
        self.initialize(None)
    }

    /// One raw HTTP/1.1 POST of an `initialize` request: (status, the session id if any).
    fn initialize(&self, authorization: Option<&str>) -> (u16, Option<String>) {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
        .to_string();
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.authority(),
            body.len()
        );
        let mut stream = std::net::TcpStream::connect(self.authority()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut session = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("mcp-session-id")
            {
                session = Some(v.trim().to_string());
            }
        }
        (status, session)
    }

    /// `DELETE /mcp` for a session: its status.
    fn close_session(&self, id: &str) -> u16 {
        let req = format!(
            "DELETE /mcp HTTP/1.1\r\nHost: {}\r\nMcp-Session-Id: {id}\r\nConnection: close\r\n\r\n",
            self.authority()
        );
        let mut stream = std::net::TcpStream::connect(self.authority()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(req.as_bytes()).unwrap();
        let mut status_line = String::new();
        BufReader::new(stream).read_line(&mut status_line).unwrap();
        status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn http_sessions_a_client_never_closes_are_bounded() {
    let env = TestEnv::new();
    let server = HttpServer::start(&env, &[]);
    let before = rss_kib(server.child.id());
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..600 {
        match server.open_session() {
            (200, Some(id)) => open.push(id),
            (503, _) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(open.len(), 512, "at most 512 sessions at once");
    assert_eq!(refused, 600 - 512);
    let full = rss_kib(server.child.id());
    // Closing sessions makes room again.
    for id in open.drain(..100) {
        assert_eq!(server.close_session(&id), 202);
    }
    assert_eq!(server.open_session().0, 200);
    eprintln!("creel mcp --http RSS: {before} KiB idle, {full} KiB with 512 open sessions");
    assert!(
        full < before + 256 * 1024,
        "512 sessions took {} KiB",
        full - before
    );
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_client(server: &HttpServer, token: Option<&str>) -> Client {
    // reqwest is built without a default TLS crypto provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.url.as_str());
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("MCP handshake over HTTP")
}

/// Calls a tool; a protocol error fails the test (tool errors come back as `isError` results).
async fn call(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool)
        .with_arguments(args.as_object().expect("object arguments").clone());
    client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("{tool} {args}: protocol error {e}"))
}

fn texts(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured content of a successful result.
fn ok(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "tool error: {}", texts(r));
    let v = r
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("no structured content: {}", texts(r)));
    assert!(
        r.content.len() >= 2 && !texts(r).is_empty(),
        "a text summary is expected too"
    );
    v
}

/// The text of a tool error.
fn tool_error(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected a tool error, got {r:?}");
    texts(r)
}

/// Polls `claude_code_status` until `pred` holds (up to 120 s).
async fn status_until(
    client: &Peer<RoleClient>,
    job: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let begun = Instant::now();
    loop {
        let s = ok(&call(client, "claude_code_status", json!({"job_id": job})).await);
        if pred(&s) {
            return s;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_listed_with_schemas_and_safety_hints() {
    let env = TestEnv::new();
    let client = stdio_client(&env).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("creel")
    );
    assert!(
        info.instructions
            .as_deref()
            .unwrap_or("")
            .contains("claude_code_status")
    );

    // Eleven tools, each with an input schema, an output schema, a description and safety hints.
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOLS);
    for t in &tools {
        let a = t
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no annotations", t.name));
        let (read_only, destructive, idempotent) = match t.name.as_ref() {
            "claude_code_status"
            | "claude_code_output"
            | "claude_code_sessions"
            | "claude_code_diff" => (true, false, true),
            "claude_code_land"
            | "claude_code_reply"
            | "claude_code_approve"
            | "claude_code_send" => (false, false, false),
            "claude_code_cancel" => (false, true, true),
            "claude_code_cleanup" => (false, true, false),
            "claude_code_start" => (false, false, false),
            other => panic!("unexpected tool {other}"),
        };
        assert_eq!(a.read_only_hint, Some(read_only), "{}", t.name);
        assert_eq!(a.destructive_hint, Some(destructive), "{}", t.name);
        assert_eq!(a.idempotent_hint, Some(idempotent), "{}", t.name);
        assert!(t.output_schema.is_some(), "{}", t.name);
        assert!(
            t.description.as_deref().unwrap_or("").len() > 100,
            "{}",
            t.name
        );
    }
    let start = tools
        .iter()
        .find(|t| t.name == "claude_code_start")
        .unwrap();
    let props = start.input_schema.get("properties").unwrap();
    for p in [
        "prompt",
        "session_id",
        "workspace",
        "repo",
        "ref",
        "include_uncommitted",
        "model",
        "max_turns",
        "permissions",
    ] {
        assert!(props.get(p).is_some(), "claude_code_start lacks {p}");
    }
    assert_eq!(
        start.input_schema.get("required").unwrap(),
        &json!(["prompt"])
    );
    let output = tools
        .iter()
        .find(|t| t.name == "claude_code_output")
        .unwrap();
    assert!(
        output
            .input_schema
            .get("properties")
            .unwrap()
            .get("format")
            .is_some()
    );

    // Each optional argument has one plain type: no `["string","null"]`, which some clients
    // cannot read.
    for t in &tools {
        let schema = Value::Object(t.input_schema.as_ref().clone()).to_string();
        assert!(!schema.contains("null"), "{}: {schema}", t.name);
    }
    let cleanup = tools
        .iter()
        .find(|t| t.name == "claude_code_cleanup")
        .unwrap();
    assert!(
        cleanup.input_schema["properties"]
            .get("idle_seconds")
            .is_some()
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_started_followed_and_read_through_the_tools_and_resources() {
    let env = TestEnv::new();
    let client = stdio_client(&env).await;

    // Start: returns at once, pending.
    let begun = Instant::now();
    let started = ok(&call(
        &client,
        "claude_code_start",
        json!({"prompt": "say hello from mcp"}),
    )
    .await);
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "start must return at once"
    );
    assert_eq!(started["status"], "pending");
    let job = started["jobId"].as_str().unwrap().to_string();
    let session = started["sessionId"].as_str().unwrap().to_string();

    // Status until final.
    let s = status_until(&client, &job, "completion", |s| {
        s["status"] != "pending" && s["status"] != "running"
    })
    .await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["sessionId"], session.as_str());
    assert_eq!(s["result"], "hello from mcp");
    assert!(s["error"].is_null());
    for key in [
        "exitCode",
        "elapsedSeconds",
        "outputSize",
        "activityState",
        "tailOutput",
        "metrics",
        "warnings",
    ] {
        assert!(s.get(key).is_some(), "status lacks {key}: {s}");
    }
    // The right session is accepted, a wrong one is a tool error.
    ok(&call(
        &client,
        "claude_code_status",
        json!({"job_id": job, "session_id": session}),
    )
    .await);
    let e = tool_error(
        &call(
            &client,
            "claude_code_status",
            json!({"job_id": job, "session_id": "someone-else"}),
        )
        .await,
    );
    assert!(e.contains("someone-else"), "{e}");

    // Output, raw, paged 100 bytes at a time: byte-exact.
    let raw = env.raw_output(&job);
    assert!(!raw.is_empty());
    let mut offset = 0u64;
    let mut paged = String::new();
    loop {
        let r = call(
            &client,
            "claude_code_output",
            json!({"job_id": job, "offset": offset, "limit": 100}),
        )
        .await;
        let page = ok(&r);
        assert_eq!(page["offset"], offset);
        assert_eq!(page["status"], "completed");
        assert_eq!(page["totalSize"], raw.len() as u64);
        let content = page["content"].as_str().unwrap();
        // The page itself is the text after the summary, for clients that ignore structured content.
        assert_eq!(
            r.content
                .last()
                .and_then(|c| c.as_text())
                .map(|t| t.text.as_str()),
            Some(content)
        );
        paged.push_str(content);
        let next = page["nextOffset"].as_u64().unwrap();
        if !page["hasMore"].as_bool().unwrap() {
            break;
        }
        assert!(next > offset, "no progress at {offset}");
        offset = next;
    }
    assert_eq!(paged.as_bytes(), &raw[..]);
    // Output as a transcript.
    let text = ok(&call(
        &client,
        "claude_code_output",
        json!({"job_id": job, "format": "text", "session_id": session}),
    )
    .await);
    assert!(
        text["content"].as_str().unwrap().contains("hello from mcp"),
        "{text}"
    );
    assert!(text["content"].as_str().unwrap().len() < raw.len());
    let e = tool_error(
        &call(
            &client,
            "claude_code_output",
            json!({"job_id": job, "session_id": "someone-else"}),
        )
        .await,
    );
    assert!(e.contains("session"), "{e}");
    let e = tool_error(
        &call(
            &client,
            "claude_code_output",
            json!({"job_id": job, "format": "html"}),
        )
        .await,
    );
    assert!(e.contains("html") || e.contains("variant"), "{e}");

    // The same output as resources.
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "creel://jobs/{job_id}/output"),
        "{templates:?}"
    );
    let read = |uri: String| {
        let client = &client;
        async move {
            let r = client
                .read_resource(ReadResourceRequestParams::new(uri))
                .await
                .unwrap();
            match &r.contents[0] {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    assert_eq!(
        read(format!("creel://jobs/{job}/output")).await.as_bytes(),
        &raw[..]
    );
    assert!(
        read(format!("creel://jobs/{job}/transcript"))
            .await
            .contains("hello from mcp")
    );

    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_tool_error_with_a_hint_and_lenient_input_is_accepted() {
    let env = TestEnv::new();
    let client = stdio_client(&env).await;

    // Bad input: tool errors with the engine's message and a hint, never protocol errors.
    let e = tool_error(
        &call(
            &client,
            "claude_code_status",
            json!({"job_id": "no-such-job"}),
        )
        .await,
    );
    assert!(
        e.starts_with("error: unknown job") && e.contains("\nhint: "),
        "{e}"
    );
    let e = tool_error(&call(&client, "claude_code_status", json!({})).await);
    assert!(
        e.contains("job_id"),
        "creel names the missing argument: {e}"
    );
    let e = tool_error(
        &call(
            &client,
            "claude_code_start",
            json!({"prompt": "say x", "session_id": "../../etc"}),
        )
        .await,
    );
    assert!(e.contains("invalid session id"), "{e}");
    let e = tool_error(&call(&client, "claude_code_start", json!({"prompt": "   "})).await);
    assert!(e.starts_with("error: the prompt is empty"), "{e}");
    let e = tool_error(
        &call(
            &client,
            "claude_code_cancel",
            json!({"job_id": "no-such-job"}),
        )
        .await,
    );
    assert!(e.starts_with("error: unknown job"), "{e}");

    let e = tool_error(
        &call(
            &client,
            "claude_code_start",
            json!({"prompt": "say x", "workspace": "relative/dir"}),
        )
        .await,
    );
    assert!(
        e.starts_with("error: workspace `relative/dir` is not an absolute path"),
        "{e}"
    );
    let e = tool_error(
        &call(
            &client,
            "claude_code_status",
            json!({"job_id": "no-such-job", "wait_seconds": "soon"}),
        )
        .await,
    );
    assert!(e.contains("`soon` is not a valid value"), "{e}");
    // What older clients send: numbers as strings, and null for "not given".
    let e = tool_error(
        &call(
            &client,
            "claude_code_status",
            json!({"job_id": "no-such-job", "wait_seconds": "1", "session_id": null}),
        )
        .await,
    );
    assert!(e.starts_with("error: unknown job"), "{e}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_cleanup_with_a_chosen_workspace_and_idle_threshold() {
    let env = TestEnv::new();
    let client = stdio_client(&env).await;
    // A workspace of the caller's choosing, as `--workspace` gives the CLI.
    let user_ws = env.dir.path().join("agent-ws");
    std::fs::create_dir(&user_ws).unwrap();
    std::os::unix::fs::chown(&user_ws, Some(1000), Some(1000)).unwrap();
    let started = ok(&call(
        &client,
        "claude_code_start",
        json!({"prompt": "write made.txt by mcp", "workspace": user_ws, "max_turns": "5"}),
    )
    .await);
    let job = started["jobId"].as_str().unwrap().to_string();
    let session = started["sessionId"].as_str().unwrap().to_string();
    assert_eq!(
        std::path::Path::new(started["workspace"].as_str().unwrap()),
        user_ws.canonicalize().unwrap()
    );
    let s = status_until(&client, &job, "completion", |s| {
        s["status"] != "pending" && s["status"] != "running"
    })
    .await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(
        std::fs::read_to_string(user_ws.join("made.txt")).unwrap(),
        "by mcp\n"
    );

    // Sessions lists the session; cleanup (session_idle_timeout = 0 here) removes it.
    let list = ok(&call(&client, "claude_code_sessions", json!({})).await);
    let entry = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == session.as_str())
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(entry["jobCount"], 1);
    assert!(entry["activeJobId"].is_null());
    for key in ["createdAt", "lastActivity", "claudeSessionId", "workspace"] {
        assert!(entry.get(key).is_some(), "session lacks {key}: {entry}");
    }
    assert_eq!(
        std::path::Path::new(entry["workspace"].as_str().unwrap()),
        user_ws.canonicalize().unwrap()
    );
    // This server has automatic cleanup off (session_idle_timeout = 0): no default threshold.
    let e = tool_error(&call(&client, "claude_code_cleanup", json!({})).await);
    assert!(e.contains("no idle threshold given"), "{e}");
    // Not idle for an hour yet: kept.
    let kept = ok(&call(
        &client,
        "claude_code_cleanup",
        json!({"idle_seconds": 3600}),
    )
    .await);
    assert!(
        kept["removedSessions"].as_array().unwrap().is_empty(),
        "{kept}"
    );
    let cleaned = ok(&call(
        &client,
        "claude_code_cleanup",
        json!({"delete_workspaces": "true", "idle_seconds": 0}),
    )
    .await);
    for key in ["removedSessions", "skippedActive", "deletedWorkspaces"] {
        assert!(cleaned[key].is_array(), "cleanup lacks {key}: {cleaned}");
    }
    assert!(
        cleaned["removedSessions"]
            .as_array()
            .unwrap()
            .contains(&json!(session)),
        "{cleaned}"
    );
    // A workspace creel did not create is never deleted.
    assert!(cleaned["deletedWorkspaces"].as_array().unwrap().is_empty());
    assert!(user_ws.join("made.txt").exists());
    let e = tool_error(&call(&client, "claude_code_status", json!({"job_id": job})).await);
    assert!(
        e.starts_with("error: unknown job"),
        "cleaned up with its session: {e}"
    );

    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_jobs_outlive_the_server() {
    let env = TestEnv::new();
    let client = stdio_client(&env).await;
    let started = ok(&call(
        &client,
        "claude_code_start",
        json!({"prompt": "say starting\nsleep 30", "session_id": "long-one"}),
    )
    .await);
    let job = started["jobId"].as_str().unwrap().to_string();
    assert_eq!(started["sessionId"], "long-one");
    status_until(&client, &job, "running", |s| s["status"] == "running").await;
    // One job per session: a second start names the active job.
    let e = tool_error(
        &call(
            &client,
            "claude_code_start",
            json!({"prompt": "say again", "session_id": "long-one"}),
        )
        .await,
    );
    assert!(e.contains(&job), "{e}");
    // Stop the server: the job keeps running, and a new server sees it.
    client.cancel().await.unwrap();
    let client = stdio_client(&env).await;
    let s = ok(&call(&client, "claude_code_status", json!({"job_id": job})).await);
    assert_eq!(s["status"], "running", "{s}");
    let list = ok(&call(&client, "claude_code_sessions", json!({})).await);
    assert_eq!(list["sessions"][0]["activeJobId"], job.as_str(), "{list}");
    // A cancel naming the wrong session cancels nothing.
    let e = tool_error(
        &call(
            &client,
            "claude_code_cancel",
            json!({"job_id": job, "session_id": "other"}),
        )
        .await,
    );
    assert!(e.contains("other") && e.contains("long-one"), "{e}");
    assert_eq!(
        ok(&call(&client, "claude_code_status", json!({"job_id": job})).await)["status"],
        "running"
    );
    // Cancel, then again: idempotent.
    let c = ok(&call(
        &client,
        "claude_code_cancel",
        json!({"job_id": job, "session_id": "long-one"}),
    )
    .await);
    assert_eq!(c["status"], "cancelled", "{c}");
    let again = ok(&call(&client, "claude_code_cancel", json!({"job_id": job})).await);
    assert_eq!(again["status"], "cancelled");
    let s = ok(&call(&client, "claude_code_status", json!({"job_id": job})).await);
    assert_eq!(s["status"], "cancelled");
    client.cancel().await.unwrap();
}

/// A client that forwards resource updates, progress and log notifications to channels.
#[derive(Clone)]
struct Listener {
    updates: tokio::sync::mpsc::UnboundedSender<String>,
    progress: tokio::sync::mpsc::UnboundedSender<rmcp::model::ProgressNotificationParam>,
    logs: tokio::sync::mpsc::UnboundedSender<Value>,
}

impl Listener {
    #[allow(clippy::type_complexity)]
    fn new() -> (
        Listener,
        tokio::sync::mpsc::UnboundedReceiver<String>,
        tokio::sync::mpsc::UnboundedReceiver<rmcp::model::ProgressNotificationParam>,
    ) {
        let (updates, u) = tokio::sync::mpsc::unbounded_channel();
        let (progress, p) = tokio::sync::mpsc::unbounded_channel();
        let (logs, _) = tokio::sync::mpsc::unbounded_channel();
        (
            Listener {
                updates,
                progress,
                logs,
            },
            u,
            p,
        )
    }
}

impl ClientHandler for Listener {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }

    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }

    #[allow(deprecated)] // MCP logging (SEP-2577), still what clients show
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self
            .logs
            .send(json!({"logger": params.logger, "data": params.data}));
    }
}

/// A job asks through the tools: a status wait ends at the question, the client is notified
/// once per request, and the answers go back through claude_code_reply and
/// claude_code_approve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_and_an_approval_are_notified_and_answered_through_the_tools() {
    let env = TestEnv::new();
    let (mut listener, _updates, _progress) = Listener::new();
    let (logs, mut log_rx) = tokio::sync::mpsc::unbounded_channel();
    listener.logs = logs;
    let cmd = tokio::process::Command::from(env.cmd(&["mcp"]));
    let client = listener
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .expect("MCP handshake");
    let started = ok(&call(
        &client,
        "claude_code_start",
        json!({"prompt": "ask Deploy now?\napprove echo deployed > /workspace/deployed\nsay done", "permissions": "ask"}),
    )
    .await);
    let job = started["jobId"].as_str().unwrap().to_string();
    let begun = Instant::now();
    let r = call(
        &client,
        "claude_code_status",
        json!({"job_id": job, "wait_seconds": 120}),
    )
    .await;
    assert!(
        begun.elapsed() < Duration::from_secs(60),
        "the wait ended at the question"
    );
    let s = ok(&r);
    assert_eq!(s["activityState"], "needs_input", "{s}");
    assert_eq!(s["needsInput"]["question"], "Deploy now?", "{s}");
    assert!(texts(&r).contains("claude_code_reply"), "{}", texts(&r));
    let note = tokio::time::timeout(Duration::from_secs(30), log_rx.recv())
        .await
        .expect("a notification for the question")
        .unwrap();
    assert_eq!(note["logger"], "creel", "{note}");
    assert_eq!(note["data"]["jobId"], job.as_str(), "{note}");
    assert_eq!(note["data"]["request"]["question"], "Deploy now?", "{note}");

    // The wrong tool for the request says which one is right.
    let e = tool_error(&call(&client, "claude_code_approve", json!({"job_id": job})).await);
    assert!(e.contains("not waiting for an approval"), "{e}");
    let a = ok(&call(
        &client,
        "claude_code_reply",
        json!({"job_id": job, "answer": "yes, deploy"}),
    )
    .await);
    assert_eq!(a["requests"][0]["answer"]["text"], "yes, deploy", "{a}");

    let s = status_until(&client, &job, "the permission request", |s| {
        s["activityState"] == "needs_approval"
    })
    .await;
    assert_eq!(
        s["needsApproval"]["input"]["command"],
        "echo deployed > /workspace/deployed"
    );
    let note = tokio::time::timeout(Duration::from_secs(30), log_rx.recv())
        .await
        .expect("a notification for the permission request")
        .unwrap();
    assert_eq!(note["data"]["request"]["toolName"], "Bash", "{note}");
    ok(&call(
        &client,
        "claude_code_approve",
        json!({"job_id": job, "allow": true}),
    )
    .await);
    let s = status_until(&client, &job, "completion", |s| s["status"] == "completed").await;
    assert_eq!(s["requests"].as_array().unwrap().len(), 2, "{s}");
    let e = tool_error(
        &call(
            &client,
            "claude_code_send",
            json!({"job_id": job, "message": "too late"}),
        )
        .await,
    );
    assert!(e.contains("start a new job in session"), "{e}");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), log_rx.recv())
            .await
            .is_err(),
        "one notification per request, no more"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_subscription_announces_new_output() {
    let env = TestEnv::new();
    let (listener, mut updates, _progress) = Listener::new();
    let cmd = tokio::process::Command::from(env.cmd(&["mcp"]));
    let client = listener
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .expect("MCP handshake");
    let started = ok(&call(
        &client,
        "claude_code_start",
        json!({"prompt": "say first\nsleep 3\nsay second"}),
    )
    .await);
    let job = started["jobId"].as_str().unwrap().to_string();
    let uri = format!("creel://jobs/{job}/transcript");
    #[allow(deprecated)] // resources/subscribe is what clients on protocol 2025-11-25 use
    client
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .expect("subscribe");
    let got = tokio::time::timeout(Duration::from_secs(60), updates.recv())
        .await
        .expect("an update within 60 s");
    assert_eq!(got.as_deref(), Some(uri.as_str()));
    status_until(&client, &job, "completion", |s| s["status"] == "completed").await;
    // The last change (the job ending) is announced too; afterwards the resource is complete.
    let begun = Instant::now();
    loop {
        let r = client
            .read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
            .unwrap();
        let ResourceContents::TextResourceContents { text, .. } = &r.contents[0] else {
            panic!("{r:?}")
        };
        if text.contains("second") {
            break;
        }
        assert!(begun.elapsed() < Duration::from_secs(10), "{text}");
        let _ = tokio::time::timeout(Duration::from_secs(2), updates.recv()).await;
    }
    let e = client
        .read_resource(ReadResourceRequestParams::new("creel://jobs/nope/output"))
        .await;
    let e = e
        .expect_err("an unknown job's resource is an error")
        .to_string();
    assert!(e.contains("unknown job `nope`"), "creel's error: {e}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_tools_and_sessions() {
    let env = TestEnv::new();
    let server = HttpServer::start(&env, &[]);
    let client = http_client(&server, None).await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOLS);
    let list = ok(&call(&client, "claude_code_sessions", json!({})).await);
    assert_eq!(list, json!({"sessions": []}));
    let e = tool_error(&call(&client, "claude_code_output", json!({"job_id": "nope"})).await);
    assert!(e.starts_with("error: unknown job"), "{e}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_token_is_required_when_set() {
    let mut env = TestEnv::new();
    env.set_env("CREEL_MCP_TOKEN", "s3cret-token");
    let server = HttpServer::start(&env, &[]);
    assert_eq!(server.raw_initialize(None), 401);
    assert_eq!(server.raw_initialize(Some("Bearer wrong-token")), 401);
    assert_eq!(server.raw_initialize(Some("Bearer s3cret-token")), 200);
    let client = http_client(&server, Some("s3cret-token")).await;
    let list = ok(&call(&client, "claude_code_sessions", json!({})).await);
    assert!(list["sessions"].is_array());
    client.cancel().await.unwrap();
}

/// A raw `initialize` POST; argv: host, port, and an optional Authorization value. Prints the
/// status line.
const RAW_INITIALIZE: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
auth = ('Authorization: ' + sys.argv[3] + '\r\n') if len(sys.argv) > 3 else ''
body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"other-user","version":"1"}}}'
head = ('POST /mcp HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n'
        'Accept: application/json, text/event-stream\r\n%sContent-Length: %d\r\n'
        'Connection: close\r\n\r\n') % (host, port, auth, len(body))
s = socket.create_connection((host, port), timeout=10)
s.sendall(head.encode() + body)
print(s.recv(200).split(b'\r\n')[0].decode())
"#;

/// The status line another local user (nobody, uid 65534) gets for a raw `initialize`.
fn initialize_as_nobody(server: &HttpServer, authorization: Option<&str>) -> String {
    let (host, port) = server.authority().rsplit_once(':').unwrap();
    let mut cmd = Command::new("setpriv");
    // (Debian's python3: root's PATH may point into root's own home, closed to nobody.)
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
    ])
    .args([RAW_INITIALIZE, host, port]);
    if let Some(a) = authorization {
        cmd.arg(a);
    }
    let out = cmd.output().expect("setpriv python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn http_on_loopback_without_a_token_admits_only_its_owners_processes() {
    let env = TestEnv::new();
    let server = HttpServer::start(&env, &[]);
    assert_eq!(
        server.raw_initialize(None),
        200,
        "the owner's own clients need nothing"
    );
    let other = initialize_as_nobody(&server, None);
    assert!(
        other.starts_with("HTTP/1.1 403"),
        "another local user must not be able to use it: {other}"
    );
}

#[test]
fn http_with_a_token_admits_other_users_that_send_it_and_never_takes_it_from_argv() {
    let mut env = TestEnv::new();
    env.set_env("CREEL_MCP_TOKEN", "s3cret-token");
    let server = HttpServer::start(&env, &[]);
    assert!(initialize_as_nobody(&server, None).starts_with("HTTP/1.1 401"));
    assert!(initialize_as_nobody(&server, Some("Bearer s3cret-token")).starts_with("HTTP/1.1 200"));
    // A token in argv is visible to every user in `ps`: refused, with the ways that work.
    let env = TestEnv::new();
    let args = ["mcp", "--http", "127.0.0.1:0", "--token", "visible"];
    let out = env.run(&args);
    env.expect_code(&out, 2, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CREEL_MCP_TOKEN") && stderr.contains("--token-file"),
        "{stderr}"
    );
    // --token-file works.
    let file = env.dir.path().join("token");
    std::fs::write(&file, "file-token\n").unwrap();
    let server = HttpServer::start(&env, &["--token-file", file.to_str().unwrap()]);
    assert_eq!(server.raw_initialize(None), 401);
    assert_eq!(server.raw_initialize(Some("Bearer file-token")), 200);
}

#[test]
fn http_refuses_a_public_address_without_a_token() {
    let env = TestEnv::new();
    let out = env.run(&["mcp", "--http", "0.0.0.0:0"]);
    // A request creel refuses is a usage error: exit 2.
    env.expect_code(&out, 2, &["mcp", "--http", "0.0.0.0:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without a token") && stderr.contains("CREEL_MCP_TOKEN"),
        "{stderr}"
    );
}

// Independent real clients: the official MCP Inspector in CLI mode and the real OpenClaw,
// installed outside the repository by `scripts/mcp-clients.sh install` (run by `.ci/run`) and
// found through the variables `scripts/test` exports. CI must run them; a developer without
// them skips with a message.

/// Runs `cmd` to completion with a deadline; returns (status, stdout, stderr).
fn run_within(
    mut cmd: std::process::Command,
    limit: Duration,
) -> (std::process::ExitStatus, String, String) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let begun = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if begun.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timed out after {limit:?}: {what}\n--- stdout\n{}\n--- stderr\n{}",
                out.join().unwrap(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// `node cli.js --cli creel -e CREEL_HOME=… -e CREEL_CONFIG=… -- mcp ARGS…`, run from the
/// Inspector's `build/` folder with the TestEnv's environment; returns its JSON answer.
fn inspector(env: &TestEnv, cli: &std::path::Path, args: &[&str]) -> Value {
    let mut c = std::process::Command::new("node");
    // The same environment `creel` gets from the harness, except the two variables that
    // the Inspector itself must pass to the server (`-e`).
    for (k, v) in env.cmd(&[]).get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env_remove("CREEL_HOME").env_remove("CREEL_CONFIG");
    c.current_dir(cli.parent().unwrap())
        .arg(cli)
        .arg("--cli")
        .arg(env!("CARGO_BIN_EXE_creel"))
        .arg("-e")
        .arg(format!("CREEL_HOME={}", env.home.display()))
        .arg("-e")
        .arg(format!("CREEL_CONFIG={}", env.config.display()))
        .args(["--", "mcp"])
        .args(args);
    let (status, out, err) = run_within(c, Duration::from_secs(60));
    assert!(
        status.success(),
        "MCP Inspector {args:?} failed: {status}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("Inspector {args:?}: not JSON ({e})\n{out}\n--- stderr\n{err}"))
}

#[test]
fn mcp_inspector_cli_lists_the_tools_and_calls_sessions() {
    let Some(cli) = external_tool("CREEL_TEST_INSPECTOR", "MCP Inspector") else {
        return;
    };
    let env = TestEnv::new();
    // A real session first, so that the call has something to report.
    let (job, session) = env.start("say hello from the inspector test", &[]);
    assert_eq!(env.wait(&job)["status"], "completed");

    let list = inspector(&env, &cli, &["--method", "tools/list"]);
    let tools = list["tools"].as_array().expect("tools array");
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, TOOLS, "{list}");
    for t in tools {
        let a = &t["annotations"];
        for hint in ["readOnlyHint", "destructiveHint", "idempotentHint"] {
            assert!(a[hint].is_boolean(), "{} lacks {hint}: {t}", t["name"]);
        }
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
    }

    let r = inspector(
        &env,
        &cli,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "claude_code_sessions",
        ],
    );
    assert_ne!(r["isError"], true, "{r}");
    let sessions = r["structuredContent"]["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no structured sessions: {r}"));
    assert_eq!(sessions.len(), 1, "{r}");
    assert_eq!(sessions[0]["sessionId"], session.as_str(), "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "a text summary is expected: {r}"
    );

    // A tool with an argument, and a tool error that stays a result.
    let r = inspector(
        &env,
        &cli,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "claude_code_status",
            "--tool-arg",
            &format!("job_id={job}"),
        ],
    );
    assert_eq!(r["structuredContent"]["status"], "completed", "{r}");
    let r = inspector(
        &env,
        &cli,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "claude_code_status",
            "--tool-arg",
            "job_id=no-such-job",
        ],
    );
    assert_eq!(r["isError"], true, "{r}");
}

#[test]
fn openclaw_loads_creel_as_an_mcp_server_offline() {
    let Some(node) = external_tool("CREEL_TEST_NODE24", "OpenClaw") else {
        return;
    };
    let Some(openclaw) = external_tool("CREEL_TEST_OPENCLAW", "OpenClaw") else {
        return;
    };
    let env = TestEnv::new();
    // An isolated HOME with OpenClaw's config (JSON5): local gateway, no update or model
    // catalog checks, and creel as a stdio MCP server whose environment comes from `env`.
    let oc_home = env.dir.path().join("openclaw-home");
    std::fs::create_dir_all(oc_home.join(".openclaw")).unwrap();
    let q = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).unwrap();
    let config = format!(
        r#"// OpenClaw config for creel's test (JSON5)
{{
  gateway: {{ mode: "local", bind: "loopback" }},
  update: {{ checkOnStart: false }},
  models: {{ catalogRefresh: {{ enabled: false }} }},
  mcp: {{
    servers: {{
      creel: {{
        command: {bin},
        args: ["mcp"],
        env: {{ CREEL_HOME: {home}, CREEL_CONFIG: {config} }},
      }},
    }},
  }},
}}
"#,
        bin = q(std::path::Path::new(env!("CARGO_BIN_EXE_creel"))),
        home = q(&env.home),
        config = q(&env.config),
    );
    std::fs::write(oc_home.join(".openclaw/openclaw.json"), config).unwrap();

    // No network at all but loopback: `unshare -n` (in a user namespace when not root).
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0;
    let mut c = std::process::Command::new("unshare");
    if !root {
        c.arg("-r");
    }
    let path = format!(
        "{}:{}",
        node.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.arg("-n")
        .args(["sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
        .arg(&node)
        .arg(&openclaw)
        .args(["mcp", "probe", "creel", "--json"])
        .env_clear()
        .env("PATH", path)
        .env("HOME", &oc_home)
        .env("NO_COLOR", "1")
        .current_dir(&oc_home);
    let (status, out, err) = run_within(c, Duration::from_secs(180));
    let context = format!("status: {status}\n--- stdout\n{out}\n--- stderr\n{err}");
    assert!(status.success(), "openclaw mcp probe failed\n{context}");
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("openclaw mcp probe: not JSON ({e})\n{context}"));

    // All the tools, under OpenClaw's `server__tool` names.
    let listed: Vec<&str> = v["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools\n{context}"))
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for t in TOOLS {
        let name = format!("creel__{t}");
        assert!(listed.contains(&name.as_str()), "{name} missing\n{context}");
    }
    let server = &v["servers"]["creel"];
    assert_eq!(server["tools"], TOOLS.len(), "{context}");
    // No complaint about missing safety annotations, and no diagnostics at all.
    assert!(server.get("approvalHint").is_none(), "{context}");
    assert_eq!(v["diagnostics"], json!([]), "{context}");
    assert!(
        !format!("{out}{err}").to_lowercase().contains("annotation"),
        "{context}"
    );
    // The server really ran with the `env` block of OpenClaw's config.
    assert!(env.home.join("creel.db").exists(), "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_can_wait_for_the_end_with_progress_notifications() {
    let env = TestEnv::new();
    let (listener, _updates, mut progress) = Listener::new();
    let cmd = tokio::process::Command::from(env.cmd(&["mcp"]));
    let client = listener
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .expect("MCP handshake");
    let started = ok(&call(
        &client,
        "claude_code_start",
        json!({"prompt": "say one\nsleep 2\nsay two\nsleep 2\nsay three"}),
    )
    .await);
    let job = started["jobId"].as_str().unwrap().to_string();
    let mut params = rmcp::model::CallToolRequestParams::new("claude_code_status");
    params.arguments = json!({"job_id": job, "wait_seconds": 60})
        .as_object()
        .cloned();
    let handle = client
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(params)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let response = handle.await_response().await.unwrap();
    let rmcp::model::ServerResult::CallToolResult(result) = response else {
        panic!("{response:?}")
    };
    let s = ok(&result);
    assert_eq!(
        s["status"], "completed",
        "waiting returns the final status: {s}"
    );
    let mut notes = Vec::new();
    while let Ok(p) = progress.try_recv() {
        notes.push(p);
    }
    assert!(
        notes.len() >= 2,
        "progress notifications while waiting: {notes:?}"
    );
    assert!(notes.iter().all(|p| p.progress_token == token));
    assert!(
        notes.windows(2).all(|w| w[1].progress > w[0].progress),
        "progress increases"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_server_reattaches_jobs_whose_monitor_died() {
    let env = TestEnv::new();
    let (job, _) = env.start("lines 2000\nsleep 4\nsay end", &[]);
    let pid = crate::util::kill_monitor(&env, &job);
    // Only the MCP server runs now, and no tool is called: its housekeeping re-attaches.
    let client = stdio_client(&env).await;
    let new_pid = crate::util::eventually(Duration::from_secs(20), "a new monitor", || {
        crate::util::monitor_pid(&job)
    });
    assert_ne!(new_pid, pid);
    let s = status_until(&client, &job, "completion", |s| s["status"] == "completed").await;
    assert_eq!(s["status"], "completed");
    let raw = env.raw_output(&job);
    assert_eq!(
        String::from_utf8_lossy(&raw).matches("\"line ").count(),
        2000,
        "byte-exact after re-attaching"
    );
    client.cancel().await.unwrap();
}

/// The README's `claude mcp add` lines, run as written with the real Claude Code (the binary
/// `creel image build` caches), and the server they add connects.
#[test]
fn claude_code_accepts_the_readmes_mcp_add_lines_and_connects() {
    let Some(claude) = external_tool("CREEL_TEST_CLAUDE", "Claude Code `claude mcp add`") else {
        return;
    };
    let env = TestEnv::new();
    let readme = std::fs::read_to_string(crate::util::repo_root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("claude mcp add --scope user creel"))
        .collect();
    assert_eq!(lines.len(), 2, "the README's stdio snippets: {lines:?}");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_creel"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in lines {
        let home = env.dir.path().join(format!("claude-home-{}", line.len()));
        std::fs::create_dir_all(&home).unwrap();
        // As written, with the example config path pointing at this test's config.
        let line = line.replace(
            "/home/me/.config/creel/config.toml",
            env.config.to_str().unwrap(),
        );
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let run = |args: &[&str]| {
            Command::new(&claude)
                .args(args)
                .env("HOME", &home)
                .env("PATH", &path)
                .env("CREEL_HOME", &env.home)
                .env("CREEL_CONFIG", &env.config)
                .env("ANTHROPIC_API_KEY", "sk-test-key-0123456789")
                .env("DISABLE_AUTOUPDATER", "1")
                .output()
                .unwrap()
        };
        let added = run(&args);
        assert!(
            added.status.success(),
            "`{line}`: {}{}",
            String::from_utf8_lossy(&added.stdout),
            String::from_utf8_lossy(&added.stderr)
        );
        let got = run(&["mcp", "get", "creel"]);
        let text = String::from_utf8_lossy(&got.stdout);
        assert!(
            text.contains("Connected"),
            "`{line}` then `claude mcp get creel`: {text}"
        );
    }
}

/// A bad config under an MCP host: the server still starts, and every tool says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_reported_through_the_tools_not_a_closed_connection() {
    let env = TestEnv::without_image("idle_timeout = \"soon\"\n");
    let client = stdio_client(&env).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), TOOLS.len());
    for (tool, args) in [
        ("claude_code_sessions", json!({})),
        ("claude_code_start", json!({"prompt": "say hi"})),
    ] {
        let e = tool_error(&call(&client, tool, args).await);
        assert!(
            e.starts_with("error: creel cannot run jobs: invalid configuration")
                && e.contains("idle_timeout")
                && e.contains("\nhint: this needs the operator"),
            "{tool}: {e}"
        );
    }
    client.cancel().await.unwrap();
}

/// A `repo` session through the tools: started on a repository, its changes read with
/// claude_code_diff and landed with claude_code_land; a conflict is a tool error that names
/// the file and leaves the repository alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repo_session_is_diffed_and_landed_through_the_tools() {
    let env = TestEnv::new();
    let repo = env.dir.path().join("repo");
    crate::util::user_repo(&repo, &[("notes.txt", "one\n")]);
    let git = |args: &[&str]| crate::util::user_git(&repo, args);
    let client = stdio_client(&env).await;
    let started = ok(&call(
        &client,
        "claude_code_start",
        json!({"prompt": "write notes.txt from the agent", "repo": repo, "session_id": "mcp-repo"}),
    )
    .await);
    assert_eq!(started["branch"], "creel/mcp-repo", "{started}");
    let job = started["jobId"].as_str().unwrap().to_string();
    let s = status_until(&client, &job, "the job to end", |s| {
        s["status"] == "completed"
    })
    .await;
    assert_eq!(s["changes"]["files"], 1, "{s}");

    let d = ok(&call(
        &client,
        "claude_code_diff",
        json!({"session_id": "mcp-repo"}),
    )
    .await);
    assert!(
        d["patch"].as_str().unwrap().contains("+from the agent"),
        "{d}"
    );
    let stat = ok(&call(
        &client,
        "claude_code_diff",
        json!({"session_id": "mcp-repo", "job_id": job, "stat": "true"}),
    )
    .await);
    assert!(
        stat["patch"].as_str().unwrap().contains("1 file changed"),
        "{stat}"
    );

    // The user changes the same line: landing is refused and nothing moves.
    std::fs::write(repo.join("notes.txt"), "the user's\n").unwrap();
    git(&["commit", "-qam", "user edit"]);
    let head = git(&["rev-parse", "HEAD"]);
    let e = tool_error(
        &call(
            &client,
            "claude_code_land",
            json!({"session_id": "mcp-repo", "how": "merge"}),
        )
        .await,
    );
    assert!(e.contains("conflict in `notes.txt`"), "{e}");
    assert_eq!(git(&["rev-parse", "HEAD"]), head);
    assert_eq!(git(&["status", "--porcelain"]), "");
    let b = ok(&call(
        &client,
        "claude_code_land",
        json!({"session_id": "mcp-repo", "how": "branch"}),
    )
    .await);
    assert_eq!(b["branch"], "creel/mcp-repo", "{b}");
    assert_eq!(
        git(&["show", "creel/mcp-repo:notes.txt"]),
        "from the agent\n"
    );
    let bad = tool_error(
        &call(
            &client,
            "claude_code_land",
            json!({"session_id": "mcp-repo", "how": "rebase"}),
        )
        .await,
    );
    assert!(bad.contains("rebase"), "{bad}");
    client.cancel().await.unwrap();
}
