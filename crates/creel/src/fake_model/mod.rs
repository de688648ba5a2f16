//! `creel fake-model`: a scripted stand-in for the Anthropic Messages API.
//!
//! Claude Code (pointed at it with `ANTHROPIC_BASE_URL`, or creel's `api_base_url`) talks to it
//! as to the real API: `POST /v1/messages?beta=true` with `stream: true`, answered with
//! server-sent events. What it answers comes from a [`script::Script`]; every request is
//! appended to a JSON-lines log so tests (and users doing dry runs of their orchestration) can
//! see what Claude sent. It is a tool, not engine logic: nothing in `creel-engine` knows it.
//!
//! It never answers 400 to a well-formed HTTP request (Claude retries a 400 with other options):
//! unknown fields, headers and paths are accepted; a body that is not JSON is answered from the
//! script like any other.

mod protocol;
mod script;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use self::protocol::{Message, RequestFacts, error_body};
use self::script::{Answer, Cursor, Script};
use crate::exit::ExitStatus;

/// Largest request body read (Claude's requests carry the whole conversation).
const MAX_BODY: usize = 64 << 20;

/// `creel fake-model` options.
#[derive(Debug, clap::Args)]
pub struct FakeModelArgs {
    /// Address to listen on; port 0 picks a free port. The base URL is printed on stdout.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The script (TOML, or JSON when it starts with `{`) [default: a built-in three-turn task
    /// that writes `hello.txt` and runs a command; see --print-script]
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Append every request received (headers, body, the turn chosen) to FILE as a JSON line
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Print the built-in script, a commented template, and exit
    #[arg(long)]
    pub print_script: bool,
    /// Say nothing on stderr about each request
    #[arg(short, long)]
    pub quiet: bool,
}

/// Serves until Ctrl-C or SIGTERM.
pub fn run(args: FakeModelArgs) -> anyhow::Result<ExitStatus> {
    if args.print_script {
        crate::printer::out(script::DEMO_SCRIPT.as_bytes())?;
        return Ok(ExitStatus::Success);
    }
    let script = match &args.script {
        Some(path) => Script::load(path)?,
        None => Script::demo(),
    };
    let log = match &args.log {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the request log `{}`", path.display()))?,
        )),
        None => None,
    };
    let state = Arc::new(State {
        cursor: Mutex::new(Cursor::new(script)),
        log,
        requests: AtomicU64::new(0),
        quiet: args.quiet,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(state, args.listen))?;
    Ok(ExitStatus::Success)
}

struct State {
    cursor: Mutex<Cursor>,
    log: Option<Mutex<std::fs::File>>,
    requests: AtomicU64,
    quiet: bool,
}

/// Returned by the handler to drop a connection without answering (after a `hang`).
#[derive(Debug)]
struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hung up as scripted")
    }
}

impl std::error::Error for HangUp {}

async fn serve(state: Arc<State>, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    if !local.ip().is_loopback() {
        eprintln!(
            "creel fake-model: warning: listening on {local}, not loopback: anyone who can reach it can read what is scripted"
        );
    }
    // The base URL is the one line of data: tests and scripts read it.
    crate::printer::out(format!("http://{local}\n").as_bytes())?;
    if !state.quiet {
        eprintln!(
            "creel fake-model: a scripted stand-in for the Anthropic API on http://{local}\n\
             To run creel jobs against it, in another shell (any key will do):\n    \
             export CREEL_API_BASE_URL=http://{local} ANTHROPIC_API_KEY=stand-in\n\
             or put `api_base_url = \"http://{local}\"` in creel's config (and still export the key)."
        );
    }
    crate::http_serve::serve_until_shutdown(listener, None, || {
        let state = state.clone();
        hyper::service::service_fn(move |req| handle(state.clone(), req))
    })
    .await;
    Ok(())
}

type HttpResponse = Response<Full<Bytes>>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<HttpResponse, HangUp> {
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let request_id = format!("req_fake_{n:04}");
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(String::from);
    let headers = logged_headers(req.headers());
    let raw = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::debug!("request #{n}: body not read: {e}");
            Bytes::new()
        }
    };
    let body: Option<Value> = serde_json::from_slice(&raw).ok();
    let mut entry = json!({
        "n": n,
        "unixMs": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        "method": method.as_str(),
        "path": path,
        "query": query,
        "headers": headers,
        "body": body.clone().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&raw).into_owned())),
    });
    let where_ = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };

    let is_messages = method == Method::POST && path.trim_end_matches('/') == "/v1/messages";
    if !is_messages {
        let (status, answer) = match (&method, path.trim_end_matches('/')) {
            (&Method::POST, "/v1/messages/count_tokens") => (
                StatusCode::OK,
                json!({"input_tokens": (raw.len() / 4).max(1)}),
            ),
            (&Method::GET | &Method::HEAD, _) => (StatusCode::OK, json!({"ok": true})),
            _ => (
                StatusCode::NOT_FOUND,
                json!({"type": "error", "error": {"type": "not_found_error",
                       "message": format!("creel fake-model: no {path} here; it answers POST /v1/messages")}}),
            ),
        };
        entry["answer"] = json!(format!("HTTP {}", status.as_u16()));
        state.record(
            &entry,
            &format!("#{n} {method} {where_} → HTTP {}", status.as_u16()),
        );
        return Ok(json_response(status, &answer, &request_id));
    }

    let facts = RequestFacts::from_body(body.as_ref().unwrap_or(&Value::Null));
    let chosen = match state.cursor.lock() {
        Ok(mut c) => c
            .next(&facts.last_user_text)
            .ok_or_else(|| c.exhausted().to_string()),
        Err(poisoned) => {
            let mut c = poisoned.into_inner();
            c.next(&facts.last_user_text)
                .ok_or_else(|| c.exhausted().to_string())
        }
    };
    entry["model"] = json!(facts.model);
    entry["stream"] = json!(facts.stream);
    entry["messages"] = json!(facts.messages);
    entry["lastUserText"] = json!(facts.last_user_text);

    let (turn_no, turn) = match chosen {
        Ok((i, turn)) => (i + 1, turn),
        Err(exhausted) => {
            entry["turn"] = Value::Null;
            entry["answer"] = json!("exhausted");
            entry["failedExpectations"] = json!([]);
            state.record(
                &entry,
                &format!("#{n} POST {where_} → no turn left: exhausted text"),
            );
            let m = Message::text(n, &exhausted, facts.model.as_deref());
            return Ok(message_response(&m, facts.stream, &request_id));
        }
    };
    let failed = failed_expectations(&turn.expect, &raw, body.as_ref());
    entry["turn"] = json!(turn_no);
    entry["answer"] = json!(turn.summary());
    entry["failedExpectations"] = json!(failed);
    let mut line = format!(
        "#{n} POST {where_} ({} messages) → turn {turn_no}: {}",
        facts.messages,
        turn.summary()
    );
    if !failed.is_empty() {
        line.push_str(&format!(" [EXPECTATION FAILED: {}]", failed.join(", ")));
    }
    state.record(&entry, &line);

    match turn.answer() {
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(turn.hang.unwrap_or(0))).await;
            Err(HangUp)
        }
        Answer::Error => {
            let Some(e) = turn.error.as_ref() else {
                return Err(HangUp);
            };
            let status =
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = json_response(status, &error_body(e, &request_id), &request_id);
            if let Some(s) = e.retry_after
                && let Ok(v) = header::HeaderValue::from_str(&s.to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            if let Some(retry) = e.should_retry {
                r.headers_mut().insert(
                    "x-should-retry",
                    header::HeaderValue::from_static(if retry { "true" } else { "false" }),
                );
            }
            Ok(r)
        }
        Answer::Message => {
            let note = (!failed.is_empty()).then(|| {
                format!(
                    "creel fake-model: expectation failed: the request does not contain {}",
                    failed.join(", ")
                )
            });
            let m = Message::from_turn(n, &turn, facts.model.as_deref(), note.as_deref());
            Ok(message_response(&m, facts.stream, &request_id))
        }
    }
}

impl State {
    /// Appends `entry` to the log and says `line` on stderr.
    fn record(&self, entry: &Value, line: &str) {
        if let Some(log) = &self.log {
            let mut text = entry.to_string();
            text.push('\n');
            let mut f = match log.lock() {
                Ok(f) => f,
                Err(p) => p.into_inner(),
            };
            if let Err(e) = f.write_all(text.as_bytes()).and_then(|_| f.flush()) {
                eprintln!("creel fake-model: cannot write the request log: {e}");
            }
        }
        if !self.quiet {
            eprintln!("creel fake-model: {line}");
        }
    }
}

/// The expected strings that occur neither in the raw body nor in any of its JSON strings.
fn failed_expectations(expect: &[String], raw: &[u8], body: Option<&Value>) -> Vec<String> {
    if expect.is_empty() {
        return Vec::new();
    }
    let raw = String::from_utf8_lossy(raw);
    let mut strings = String::new();
    if let Some(b) = body {
        collect_strings(b, &mut strings);
    }
    expect
        .iter()
        .filter(|e| !raw.contains(e.as_str()) && !strings.contains(e.as_str()))
        .cloned()
        .collect()
}

fn collect_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Request headers for the log, with credentials shortened to their last four characters.
fn logged_headers(h: &header::HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in h {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let v = match name.as_str() {
            "x-api-key" | "authorization" => {
                let tail: String = v
                    .chars()
                    .rev()
                    .take(4)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("<redacted {} bytes, ends {tail}>", v.len())
            }
            _ => v,
        };
        map.insert(name.as_str().to_string(), Value::String(v));
    }
    Value::Object(map)
}

fn json_response(status: StatusCode, body: &Value, request_id: &str) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = header::HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    r
}

fn message_response(m: &Message, stream: bool, request_id: &str) -> HttpResponse {
    if !stream {
        return json_response(StatusCode::OK, &m.to_json(), request_id);
    }
    let mut r = Response::new(Full::new(Bytes::from(m.to_sse())));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    if let Ok(v) = header::HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_look_in_strings_and_raw_json() {
        let body = json!({"messages": [{"role": "user", "content": "say \"hi\"\nthen stop"}]});
        let raw = body.to_string();
        let failed = failed_expectations(
            &[
                "say \"hi\"\nthen".into(),
                "\"role\":\"user\"".into(),
                "absent".into(),
            ],
            raw.as_bytes(),
            Some(&body),
        );
        assert_eq!(failed, vec!["absent".to_string()]);
    }

    #[test]
    fn credentials_are_redacted() {
        let mut h = header::HeaderMap::new();
        h.insert(
            "x-api-key",
            header::HeaderValue::from_static("sk-secret-6789"),
        );
        h.insert("anthropic-beta", header::HeaderValue::from_static("x,y"));
        let v = logged_headers(&h);
        assert_eq!(v["x-api-key"], "<redacted 14 bytes, ends 6789>");
        assert_eq!(v["anthropic-beta"], "x,y");
    }
}
