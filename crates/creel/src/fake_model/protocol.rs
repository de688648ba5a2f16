//! The Anthropic Messages API as Claude Code uses it: reading a request, writing an answer as
//! server-sent events (`message_start`, `content_block_start`/`delta`/`stop` with `text_delta`
//! and `input_json_delta`, `message_delta` with the stop reason, `message_stop`) or as one JSON
//! message, and error bodies.

use serde_json::{Value, json};

use super::script::{ErrorReply, Turn, Usage};

/// The facts of a request the fake model acts on. Anything else in it is accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFacts {
    /// The requested model (echoed back).
    pub model: Option<String>,
    /// Whether the answer should stream.
    pub stream: bool,
    /// Number of entries in `messages`.
    pub messages: usize,
    /// The text of the last message with `role: "user"`: its text blocks and tool results.
    pub last_user_text: String,
}

impl RequestFacts {
    /// Reads what matters from a request body (any JSON; nothing is required).
    pub fn from_body(body: &Value) -> RequestFacts {
        let messages = body.get("messages").and_then(Value::as_array);
        // Claude can put a `role: "system"` entry after the first user message: look for the
        // last `user` one, not the last one. What comes after it is part of it: Claude Code
        // passes a message the user sent mid-turn as a `system` entry after the tool results.
        let last_user_text = messages
            .and_then(|m| {
                let at = m
                    .iter()
                    .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
                let texts: Vec<String> = m[at..]
                    .iter()
                    .filter(|m| {
                        matches!(
                            m.get("role").and_then(Value::as_str),
                            Some("user" | "system")
                        )
                    })
                    .filter_map(|m| m.get("content").map(content_text))
                    .collect();
                Some(texts.join("\n"))
            })
            .unwrap_or_default();
        RequestFacts {
            model: body.get("model").and_then(Value::as_str).map(String::from),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            messages: messages.map_or(0, Vec::len),
            last_user_text,
        }
    }
}

/// The text of a message's `content`: a string, or the text of its text and tool-result blocks.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = b.get("text").and_then(Value::as_str) {
                            parts.push(t.to_string());
                        }
                    }
                    Some("tool_result") => {
                        if let Some(c) = b.get("content") {
                            parts.push(content_text(c));
                        }
                    }
                    _ => {}
                }
            }
            parts.join("\n")
        }
        _ => String::new(),
    }
}

/// One content block of an answer.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// A whole assistant message, before it is written out.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    id: String,
    model: String,
    blocks: Vec<Block>,
    usage: Usage,
}

/// The model name used when the request names none.
const DEFAULT_MODEL: &str = "claude-fake-model";

impl Message {
    /// The message for request number `n` (1-based) answered by `turn`, with `note` (a failed
    /// expectation) put before the turn's text.
    pub fn from_turn(n: u64, turn: &Turn, model: Option<&str>, note: Option<&str>) -> Message {
        let mut blocks = Vec::new();
        let text = match (note, turn.text.as_deref()) {
            (Some(n), Some(t)) => Some(format!("{n}\n\n{t}")),
            (Some(n), None) => Some(n.to_string()),
            (None, t) => t.map(String::from),
        };
        if let Some(t) = text {
            blocks.push(Block::Text(t));
        }
        for (i, call) in turn.tool_use.iter().enumerate() {
            blocks.push(Block::ToolUse {
                id: format!("toolu_fake_{n:04}_{i}"),
                name: call.name.clone(),
                input: call.input.clone(),
            });
        }
        Message {
            id: format!("msg_fake_{n:04}"),
            model: model.unwrap_or(DEFAULT_MODEL).to_string(),
            blocks,
            usage: turn.usage.unwrap_or_default(),
        }
    }

    /// A plain text answer.
    pub fn text(n: u64, text: &str, model: Option<&str>) -> Message {
        let turn = Turn {
            text: Some(text.to_string()),
            ..Default::default()
        };
        Message::from_turn(n, &turn, model, None)
    }

    fn stop_reason(&self) -> &'static str {
        if self
            .blocks
            .iter()
            .any(|b| matches!(b, Block::ToolUse { .. }))
        {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn usage_json(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.usage.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    }

    /// The answer as one JSON message (`stream: false`).
    pub fn to_json(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Text(t) => json!({"type": "text", "text": t}),
                Block::ToolUse { id, name, input } => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
            })
            .collect();
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason(),
            "stop_sequence": null,
            "usage": self.usage_json(self.usage.output_tokens),
        })
    }

    /// The answer as a server-sent event stream.
    pub fn to_sse(&self) -> String {
        let mut out = String::new();
        event(
            &mut out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": self.usage_json(1),
                }
            }),
        );
        event(&mut out, "ping", &json!({"type": "ping"}));
        for (index, block) in self.blocks.iter().enumerate() {
            match block {
                Block::Text(t) => {
                    event(
                        &mut out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": index,
                                "content_block": {"type": "text", "text": ""}}),
                    );
                    for piece in pieces(t, 48) {
                        event(
                            &mut out,
                            "content_block_delta",
                            &json!({"type": "content_block_delta", "index": index,
                                    "delta": {"type": "text_delta", "text": piece}}),
                        );
                    }
                }
                Block::ToolUse { id, name, input } => {
                    event(
                        &mut out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": index,
                                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                    );
                    let partial = input.to_string();
                    for piece in pieces(&partial, 32) {
                        event(
                            &mut out,
                            "content_block_delta",
                            &json!({"type": "content_block_delta", "index": index,
                                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                        );
                    }
                }
            }
            event(
                &mut out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
        event(
            &mut out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
                    "usage": {"output_tokens": self.usage.output_tokens}}),
        );
        event(&mut out, "message_stop", &json!({"type": "message_stop"}));
        out
    }
}

fn event(out: &mut String, name: &str, data: &Value) {
    out.push_str("event: ");
    out.push_str(name);
    out.push_str("\ndata: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

/// Splits `s` into pieces of about `size` bytes, never inside a UTF-8 character; at least one
/// piece (possibly empty).
fn pieces(s: &str, size: usize) -> Vec<&str> {
    let mut v = Vec::new();
    let mut rest = s;
    while rest.len() > size {
        let mut cut = size;
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (a, b) = rest.split_at(cut);
        v.push(a);
        rest = b;
    }
    if !rest.is_empty() || v.is_empty() {
        v.push(rest);
    }
    v
}

/// The JSON body of an error answer.
pub fn error_body(e: &ErrorReply, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": e.error_type(), "message": e.error_message()},
        "request_id": request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_model::script::ToolCall;

    #[test]
    fn last_user_message_and_what_claude_put_after_it() {
        let body = json!({
            "model": "claude-x",
            "stream": true,
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "out"}]},
                    {"type": "text", "text": "more"}
                ]},
                {"role": "system", "content": "The user sent a new message while you were working:\nmid-turn"}
            ],
            "unknown": {"fields": "are fine"}
        });
        let f = RequestFacts::from_body(&body);
        assert_eq!(f.model.as_deref(), Some("claude-x"));
        assert!(f.stream);
        assert_eq!(f.messages, 4);
        assert_eq!(
            f.last_user_text,
            "out\nmore\nThe user sent a new message while you were working:\nmid-turn"
        );
        assert_eq!(
            RequestFacts::from_body(&json!("not an object")),
            RequestFacts::default()
        );
    }

    fn parse_sse(s: &str) -> Vec<(String, Value)> {
        s.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut lines = e.lines();
                let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                (name.to_string(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[test]
    fn sse_stream_is_well_formed() {
        let turn = Turn {
            text: Some("héllo ".repeat(20)),
            tool_use: vec![ToolCall {
                name: "Write".into(),
                input: json!({"file_path": "/workspace/a", "content": "ünïcode ".repeat(10)}),
            }],
            ..Default::default()
        };
        let m = Message::from_turn(7, &turn, Some("claude-x"), None);
        let events = parse_sse(&m.to_sse());
        let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.last(), Some(&"message_stop"));
        assert_eq!(events[0].1["message"]["model"], "claude-x");
        let text: String = events
            .iter()
            .filter(|e| e.1["delta"]["type"] == "text_delta")
            .map(|e| e.1["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "héllo ".repeat(20));
        let json: String = events
            .iter()
            .filter(|e| e.1["delta"]["type"] == "input_json_delta")
            .map(|e| e.1["delta"]["partial_json"].as_str().unwrap())
            .collect();
        let input: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(input["file_path"], "/workspace/a");
        let delta = events.iter().find(|e| e.0 == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
        let start = events
            .iter()
            .find(|e| e.1["content_block"]["type"] == "tool_use")
            .unwrap();
        assert_eq!(start.1["index"], 1);
        assert_eq!(start.1["content_block"]["id"], "toolu_fake_0007_0");
    }

    #[test]
    fn text_only_ends_the_turn() {
        let m = Message::text(1, "done", None);
        let v = m.to_json();
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["content"][0]["text"], "done");
        assert_eq!(v["model"], DEFAULT_MODEL);
    }

    #[test]
    fn pieces_keep_characters_whole() {
        assert_eq!(pieces("", 4), vec![""]);
        assert_eq!(pieces("abcdefgh", 4), vec!["abcd", "efgh"]);
        assert_eq!(pieces("ééé", 3).concat(), "ééé");
        assert!(pieces("ééé", 3).iter().all(|p| !p.is_empty()));
    }
}
