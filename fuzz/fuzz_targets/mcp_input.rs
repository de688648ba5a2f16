//! What an MCP client sends creel's server: a JSON-RPC message, decoded as rmcp decodes it, then
//! the tool arguments and resource URIs parsed by creel's own `mcp/params.rs` (compiled here as
//! it is) and the start request checked by the engine. See `creel_engine::fuzzing` for the
//! other targets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};

#[allow(dead_code, unused_imports)]
#[path = "../../crates/creel/src/mcp/params.rs"]
mod params;

use params::{Call, MAX_WAIT_SECONDS, RESOURCE_PREFIX};

fuzz_target!(|data: &[u8]| {
    let Ok(JsonRpcMessage::Request(message)) = serde_json::from_slice::<ClientJsonRpcMessage>(data)
    else {
        return;
    };
    match message.request {
        ClientRequest::CallToolRequest(call) => {
            let args = serde_json::Value::Object(call.params.arguments.unwrap_or_default());
            match Call::parse(&call.params.name, args) {
                Some(Ok(call)) => check_call(call),
                Some(Err(e)) => assert!(!e.to_string().is_empty()),
                None => {}
            }
        }
        ClientRequest::ReadResourceRequest(r) => check_uri(&r.params.uri),
        ClientRequest::SubscribeRequest(r) => check_uri(&r.params.uri),
        _ => {}
    }
});

fn check_call(call: Call) {
    match call {
        Call::Start(p) => {
            let Ok(req) = p.request() else {
                return;
            };
            if let Some(w) = &req.workspace {
                assert!(w.is_absolute());
            }
            if let Some(r) = &req.repo {
                assert!(r.is_absolute());
            }
            if req.check().is_ok() {
                assert!(!req.prompt.trim().is_empty());
                assert_ne!(req.max_turns, Some(0));
                if let Some(id) = &req.session_id {
                    let mut chars = id.chars();
                    assert!(chars.next().is_some_and(|c| c.is_ascii_alphanumeric()));
                    assert!(chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
                    assert!(id.len() <= 128);
                }
            }
        }
        Call::Status(p) => {
            if let Some(w) = p.wait() {
                assert!(w.is_finite() && w > 0.0 && w <= MAX_WAIT_SECONDS, "{w}");
            }
        }
        Call::Output(p) => {
            let req = p.request();
            assert_eq!(req.offset, p.offset.unwrap_or(0));
        }
        Call::Diff(p) => {
            let req = p.request();
            assert!(req.job_id.as_deref() != Some(""));
        }
        Call::Land(p) => {
            let req = p.request();
            assert!(req.into.as_deref() != Some(""));
        }
        Call::Cancel(_) | Call::Cleanup(_) | Call::Sessions => {}
    }
}

fn check_uri(uri: &str) {
    if let Some((job, format, _)) = params::resource(uri) {
        assert!(!job.is_empty() && !job.contains('/'));
        let kind = match format {
            creel_engine::OutputFormat::Raw => "output",
            creel_engine::OutputFormat::Text => "transcript",
        };
        assert_eq!(format!("{RESOURCE_PREFIX}{job}/{kind}"), uri);
    }
}
