//! Claude's stream-json, line by line, as ACP `session/update`s: message and thought chunks,
//! tool calls (kind, title, host locations, file edits as diffs) and their results, and the
//! plan (`TodoWrite`). Pure: no I/O, so it is tested on transcripts alone.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use agent_client_protocol::v1::schema::{
    Content, ContentBlock, ContentChunk, Diff, Plan, PlanEntry, PlanEntryPriority, PlanEntryStatus,
    SessionUpdate, TextContent, ToolCall, ToolCallContent, ToolCallLocation, ToolCallStatus,
    ToolCallUpdate, ToolCallUpdateFields, ToolKind,
};
use serde_json::Value;

/// Where the session's workspace is mounted inside the container.
const CONTAINER_WORKSPACE: &str = "/workspace";
/// Tool calls remembered for their results and permission requests (oldest forgotten first).
const TOOLS_KEPT: usize = 4096;
/// The most of a tool's result text sent to the client.
const RESULT_TEXT_MAX: usize = 64 << 10;
/// The most of a title.
const TITLE_MAX: usize = 120;

/// A tool call seen in the stream: its name and a hash of its input (inputs can be whole
/// files; the hash is all a permission request needs to find its call).
#[derive(Debug, Clone)]
struct SeenTool {
    name: String,
    input: u64,
}

/// A hash of a JSON value that does not depend on the order of object keys.
fn input_hash(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                "{".hash(h);
                for k in keys {
                    k.hash(h);
                    feed(&m[k], h);
                }
                "}".hash(h);
            }
            Value::Array(a) => {
                "[".hash(h);
                for x in a {
                    feed(x, h);
                }
                "]".hash(h);
            }
            other => other.to_string().hash(h),
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    feed(v, &mut h);
    h.finish()
}

/// Turns one job's stream-json lines into session updates.
#[derive(Debug)]
pub(crate) struct Translator {
    workspace: PathBuf,
    tools: HashMap<String, SeenTool>,
    order: VecDeque<String>,
    /// The API's `stop_reason` of the last assistant message (`end_turn`, `max_tokens`,
    /// `refusal`, …).
    pub(crate) last_stop_reason: Option<String>,
}

impl Translator {
    /// A translator for a job whose `/workspace` is `workspace` on the host.
    pub(crate) fn new(workspace: &Path) -> Translator {
        Translator {
            workspace: workspace.to_path_buf(),
            tools: HashMap::new(),
            order: VecDeque::new(),
            last_stop_reason: None,
        }
    }

    /// The updates one line of stream-json makes (none for lines that are not JSON, or that
    /// carry nothing a client shows).
    pub(crate) fn line(&mut self, line: &[u8]) -> Vec<SessionUpdate> {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return Vec::new();
        };
        match v["type"].as_str() {
            Some("assistant") => self.assistant(&v["message"]),
            Some("user") => self.user(&v["message"]),
            _ => Vec::new(),
        }
    }

    /// The id of the latest tool call to `name` with `input` (what Claude Code's permission
    /// prompt asks about), if one was seen.
    pub(crate) fn tool_call_for(&self, name: &str, input: &Value) -> Option<String> {
        let hash = input_hash(input);
        self.order
            .iter()
            .rev()
            .find(|id| {
                self.tools
                    .get(*id)
                    .is_some_and(|t| t.name == name && t.input == hash)
            })
            .cloned()
    }

    /// The tool call as a permission request shows it: the same id, title, kind and content
    /// as the announced call when there was one.
    pub(crate) fn permission_subject(&self, id: &str, name: &str, input: &Value) -> ToolCallUpdate {
        let call = self.tool_call(id, name, input);
        ToolCallUpdate::new(
            id.to_string(),
            ToolCallUpdateFields::new()
                .title(call.title)
                .kind(call.kind)
                .status(ToolCallStatus::Pending)
                .content(call.content)
                .locations(call.locations)
                .raw_input(input.clone()),
        )
    }

    fn assistant(&mut self, message: &Value) -> Vec<SessionUpdate> {
        if let Some(r) = message["stop_reason"].as_str() {
            self.last_stop_reason = Some(r.to_string());
        }
        let Some(content) = message["content"].as_array() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for block in content {
            match block["type"].as_str() {
                Some("text") => {
                    if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                        out.push(SessionUpdate::AgentMessageChunk(text_chunk(t)));
                    }
                }
                Some("thinking") => {
                    if let Some(t) = block["thinking"].as_str().filter(|t| !t.is_empty()) {
                        out.push(SessionUpdate::AgentThoughtChunk(text_chunk(t)));
                    }
                }
                Some("tool_use") => {
                    let (Some(id), Some(name)) = (block["id"].as_str(), block["name"].as_str())
                    else {
                        continue;
                    };
                    let input = block["input"].clone();
                    self.remember(id, name, &input);
                    if name == "TodoWrite" {
                        out.push(SessionUpdate::Plan(plan(&input)));
                    } else {
                        out.push(SessionUpdate::ToolCall(self.tool_call(id, name, &input)));
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn user(&mut self, message: &Value) -> Vec<SessionUpdate> {
        let Some(content) = message["content"].as_array() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for block in content {
            if block["type"] != "tool_result" {
                continue;
            }
            let Some(id) = block["tool_use_id"].as_str() else {
                continue;
            };
            let Some(tool) = self.tools.get(id) else {
                continue;
            };
            if tool.name == "TodoWrite" {
                continue;
            }
            let failed = block["is_error"].as_bool().unwrap_or(false);
            let text = result_text(&block["content"]);
            let mut fields = ToolCallUpdateFields::new().status(if failed {
                ToolCallStatus::Failed
            } else {
                ToolCallStatus::Completed
            });
            // An edit's result is a one-line confirmation: the diff stays the call's content.
            if !text.is_empty() && (!is_edit(&tool.name) || failed) {
                let shown = cut(&text, RESULT_TEXT_MAX);
                fields = fields.content(vec![ToolCallContent::Content(Content::new(
                    ContentBlock::Text(TextContent::new(shown)),
                ))]);
            }
            out.push(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                id.to_string(),
                fields,
            )));
        }
        out
    }

    fn remember(&mut self, id: &str, name: &str, input: &Value) {
        let seen = SeenTool {
            name: name.to_string(),
            input: input_hash(input),
        };
        if self.tools.insert(id.to_string(), seen).is_some() {
            return;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > TOOLS_KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.tools.remove(&old);
        }
    }

    /// A container path on the host, when it is in the workspace.
    fn host_path(&self, p: &str) -> Option<PathBuf> {
        let rest = p.strip_prefix(CONTAINER_WORKSPACE)?;
        if rest.is_empty() {
            return Some(self.workspace.clone());
        }
        let rest = Path::new(rest.strip_prefix('/')?);
        // Only plain names below the workspace: no `..`, no second root (`//etc`), no `.`.
        if !rest
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return None;
        }
        Some(self.workspace.join(rest))
    }

    /// A container path as a title shows it: on the host when it is in the workspace, else as
    /// Claude wrote it, marked as the sandbox's.
    fn shown_path(&self, p: &str) -> String {
        match self.host_path(p) {
            Some(h) => h.display().to_string(),
            None => format!("{p} (in the sandbox)"),
        }
    }

    fn tool_call(&self, id: &str, name: &str, input: &Value) -> ToolCall {
        let s = |k: &str| input[k].as_str().unwrap_or_default();
        let file = input["file_path"]
            .as_str()
            .or_else(|| input["notebook_path"].as_str());
        let kind = tool_kind(name);
        let title = match name {
            "Bash" => format!("`{}`", cut(first_line(s("command")), TITLE_MAX)),
            "Read" | "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => {
                let verb = if name == "Read" { "Read" } else { "Edit" };
                let verb = if name == "Write" { "Write" } else { verb };
                format!(
                    "{verb} {}",
                    file.map(|f| self.shown_path(f)).unwrap_or_default()
                )
            }
            "Grep" => format!("grep {}", cut(s("pattern"), TITLE_MAX)),
            "Glob" => format!("Find {}", cut(s("pattern"), TITLE_MAX)),
            "WebFetch" => format!("Fetch {}", cut(s("url"), TITLE_MAX)),
            "WebSearch" => format!("Search the web: {}", cut(s("query"), TITLE_MAX)),
            "Task" => format!("Task: {}", cut(s("description"), TITLE_MAX)),
            "mcp__creel__ask" => format!("Ask: {}", cut(first_line(s("question")), TITLE_MAX)),
            _ => name.to_string(),
        };
        let mut content = Vec::new();
        // Diffs only for files the client can open: those in the workspace on the host.
        if let Some(path) = file.and_then(|f| self.host_path(f)) {
            match name {
                "Write" => content.push(ToolCallContent::Diff(Diff::new(
                    path.clone(),
                    s("content").to_string(),
                ))),
                "Edit" => content.push(ToolCallContent::Diff(
                    Diff::new(path.clone(), s("new_string").to_string())
                        .old_text(s("old_string").to_string()),
                )),
                "MultiEdit" => {
                    for e in input["edits"].as_array().into_iter().flatten() {
                        content.push(ToolCallContent::Diff(
                            Diff::new(
                                path.clone(),
                                e["new_string"].as_str().unwrap_or_default().to_string(),
                            )
                            .old_text(e["old_string"].as_str().unwrap_or_default().to_string()),
                        ));
                    }
                }
                _ => {}
            }
        }
        let mut locations = Vec::new();
        if let Some(p) = file.and_then(|f| self.host_path(f)) {
            let line = input["offset"].as_u64().and_then(|l| u32::try_from(l).ok());
            locations.push(ToolCallLocation::new(p).line(line));
        } else if let Some(p) = input["path"].as_str().and_then(|p| self.host_path(p)) {
            locations.push(ToolCallLocation::new(p));
        }
        if name == "Bash"
            && let Some(d) = input["description"].as_str().filter(|d| !d.is_empty())
        {
            content.push(ToolCallContent::Content(Content::new(ContentBlock::Text(
                TextContent::new(d.to_string()),
            ))));
        }
        ToolCall::new(id.to_string(), title)
            .name(name.to_string())
            .kind(kind)
            .status(ToolCallStatus::InProgress)
            .content(content)
            .locations(locations)
            .raw_input(input.clone())
    }
}

/// The ACP kind of a Claude Code tool.
fn tool_kind(name: &str) -> ToolKind {
    match name {
        "Read" | "NotebookRead" => ToolKind::Read,
        "Edit" | "MultiEdit" | "Write" | "NotebookEdit" => ToolKind::Edit,
        "Bash" | "BashOutput" | "KillShell" | "KillBash" => ToolKind::Execute,
        "Grep" | "Glob" | "LS" | "ToolSearch" => ToolKind::Search,
        "WebFetch" | "WebSearch" => ToolKind::Fetch,
        "Task" => ToolKind::Think,
        "ExitPlanMode" | "EnterPlanMode" => ToolKind::SwitchMode,
        _ => ToolKind::Other,
    }
}

fn is_edit(name: &str) -> bool {
    matches!(name, "Edit" | "MultiEdit" | "Write" | "NotebookEdit")
}

/// `TodoWrite`'s list as an ACP plan.
fn plan(input: &Value) -> Plan {
    let entries = input["todos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let content = t["content"].as_str()?;
            let status = match t["status"].as_str() {
                Some("completed") => PlanEntryStatus::Completed,
                Some("in_progress") => PlanEntryStatus::InProgress,
                _ => PlanEntryStatus::Pending,
            };
            let priority = match t["priority"].as_str() {
                Some("high") => PlanEntryPriority::High,
                Some("low") => PlanEntryPriority::Low,
                _ => PlanEntryPriority::Medium,
            };
            Some(PlanEntry::new(content.to_string(), priority, status))
        })
        .collect();
    Plan::new(entries)
}

/// A tool result's text: a string, or the text blocks of a list.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") => b["text"].as_str().unwrap_or_default().to_string(),
                Some("image") => "[image]".to_string(),
                _ => String::new(),
            })
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub(crate) fn text_chunk(text: &str) -> ContentChunk {
    ContentChunk::new(ContentBlock::Text(TextContent::new(text.to_string())))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn updates(lines: &[&str]) -> Vec<Value> {
        let mut t = Translator::new(Path::new("/home/u/project"));
        lines
            .iter()
            .flat_map(|l| t.line(l.as_bytes()))
            .map(|u| serde_json::to_value(u).unwrap())
            .collect()
    }

    #[test]
    fn text_thinking_and_a_write_with_its_result() {
        let u = updates(&[
            r#"{"type":"system","subtype":"init","cwd":"/workspace"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"plan it"},{"type":"text","text":"Writing."},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/workspace/a/b.txt","content":"hi\n"}}],"stop_reason":null}}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"t1","type":"tool_result","content":"File created successfully at: /workspace/a/b.txt"}]}}"#,
            r#"{"type":"result","subtype":"success"}"#,
            "not json",
        ]);
        insta::assert_snapshot!(serde_json::to_string_pretty(&u).unwrap());
    }

    #[test]
    fn bash_edit_plan_and_a_failed_command() {
        let u = updates(&[
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"p","name":"TodoWrite","input":{"todos":[{"content":"Read","status":"completed","activeForm":"Reading"},{"content":"Fix","status":"in_progress","activeForm":"Fixing"},{"content":"Test","status":"pending","activeForm":"Testing"}]}}]}}"#,
            r#"{"type":"user","message":{"content":[{"tool_use_id":"p","type":"tool_result","content":"Todos have been modified"}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"e","name":"Edit","input":{"file_path":"/workspace/src/x.rs","old_string":"a","new_string":"b"}}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"b","name":"Bash","input":{"command":"cargo test\necho more","description":"Run the tests"}}]}}"#,
            r#"{"type":"user","message":{"content":[{"tool_use_id":"b","type":"tool_result","content":[{"type":"text","text":"1 failed"}],"is_error":true}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"r","name":"Read","input":{"file_path":"/etc/passwd","offset":3}}],"stop_reason":"refusal"}}"#,
        ]);
        insta::assert_snapshot!(serde_json::to_string_pretty(&u).unwrap());
    }

    #[test]
    fn paths_outside_the_workspace_are_not_mapped() {
        let t = Translator::new(Path::new("/w"));
        assert_eq!(t.host_path("/workspace"), Some(PathBuf::from("/w")));
        assert_eq!(t.host_path("/workspace/x"), Some(PathBuf::from("/w/x")));
        assert_eq!(t.host_path("/workspacex/y"), None);
        assert_eq!(t.host_path("/workspace/../etc"), None);
        assert_eq!(t.host_path("/tmp/x"), None);
        assert_eq!(t.host_path("/workspace//etc/passwd"), None, "a second root");
        assert_eq!(t.host_path("/workspace/./x"), None);
        assert_eq!(t.host_path("/workspace/a/../../etc"), None);
        assert_eq!(t.host_path("/workspace/a/b"), Some(PathBuf::from("/w/a/b")));
        // A write outside the workspace: no host path, no diff, said to be the sandbox's.
        let mut t = Translator::new(Path::new("/w"));
        let u = t.line(br#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"a","name":"Write","input":{"file_path":"/workspace//etc/x","content":"y"}}]}}"#);
        let u = serde_json::to_value(&u[0]).unwrap();
        assert_eq!(u["title"], "Write /workspace//etc/x (in the sandbox)");
        assert!(
            u.get("content").is_none() && u.get("locations").is_none(),
            "{u}"
        );
    }

    #[test]
    fn a_permission_request_finds_its_tool_call() {
        let mut t = Translator::new(Path::new("/w"));
        t.line(br#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"a","name":"Bash","input":{"command":"ls"}},{"type":"tool_use","id":"b","name":"Bash","input":{"command":"pwd"}}]}}"#);
        let pwd = serde_json::json!({"command": "pwd"});
        assert_eq!(t.tool_call_for("Bash", &pwd).as_deref(), Some("b"));
        // The key order of the request's input does not matter.
        t.line(br#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"c","name":"Edit","input":{"file_path":"/workspace/f","old_string":"a","new_string":"b"}}]}}"#);
        let reordered =
            serde_json::json!({"new_string": "b", "old_string": "a", "file_path": "/workspace/f"});
        assert_eq!(t.tool_call_for("Edit", &reordered).as_deref(), Some("c"));
        assert_eq!(t.tool_call_for("Write", &pwd), None);
        let subject = serde_json::to_value(t.permission_subject("b", "Bash", &pwd)).unwrap();
        assert_eq!(subject["title"], "`pwd`");
        assert_eq!(subject["kind"], "execute");
        assert_eq!(subject["status"], "pending");
    }

    #[test]
    fn remembered_tools_are_bounded() {
        let mut t = Translator::new(Path::new("/w"));
        for i in 0..TOOLS_KEPT + 10 {
            t.remember(&format!("id{i}"), "Bash", &Value::Null);
        }
        assert_eq!(t.tools.len(), TOOLS_KEPT);
        assert!(!t.tools.contains_key("id0"));
        assert_eq!(t.order.len(), TOOLS_KEPT);
    }
}
