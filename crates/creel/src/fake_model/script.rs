//! The fake model's script: what to answer, turn by turn.
//!
//! A script is a list of turns (TOML `[[turn]]` tables, or JSON `{"turn": [...]}`). Each
//! request to `POST /v1/messages` takes the first unused turn whose `match` (if any) occurs in
//! the request's last `user` message (with what Claude Code puts after it: a message the user
//! sent mid-turn comes as a `system` entry), and gets that turn's answer: text and/or tool calls, an
//! HTTP error, or silence. A turn is used once unless `repeat = true`. When no turn fits, the
//! answer is the text `exhausted`.
//!
//! ```toml
//! [[turn]]
//! text = "I'll write the file."
//! tool_use = [{ name = "Write", input = { file_path = "/workspace/hello.txt", content = "hi\n" } }]
//!
//! [[turn]]
//! tool_use = [{ name = "Bash", input = { command = "cat hello.txt" } }]
//!
//! [[turn]]
//! text = "Done."
//!
//! [[turn]]
//! match = "second prompt"            # only for a request whose last user message has this
//! expect = ["hello.txt"]             # the request body must contain these (logged if not)
//! text = "Resumed."
//! ```

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;

/// The built-in script (`creel fake-model` without `--script`, and the demo): write a file,
/// run a command, report.
pub const DEMO_SCRIPT: &str = r#"# creel fake-model's built-in script: a three-turn task, the same for every job.
#
# A script is a list of [[turn]]s, answered in order, one per request. Each turn can have:
#   text = "..."                       assistant text
#   tool_use = [{ name = "Bash", input = { command = "ls" } }]
#                                      tool calls (Write, Bash, Read, Edit, ...); Claude runs
#                                      them and sends the results in its next request
#   match = "some words"               use this turn only for a request whose last user
#                                      message contains them (others are skipped over)
#   expect = ["text", ...]             strings the request must contain; a missing one is
#                                      logged (failedExpectations) and said in the answer
#   error = { status = 429, type = "rate_limit_error", message = "...", retry_after = 0,
#             should_retry = true }    answer with this HTTP error instead
#   hang = 300                         answer nothing for this many seconds, then hang up
#   repeat = true                      keep this turn for every later request that fits
#   usage = { input_tokens = 10, output_tokens = 5 }
#                                      the token counts reported (they make the cost)
# At the top level, exhausted = "..." is the text once no turn is left.
#
# The three turns repeat, so that every job gets the same task: the first request of a job
# fits only the last turn (the others want a tool's result), the Write's result fits the
# first, the command's output the second.
[[turn]]
match = "File created successfully"
text = "Now I'll run a command to show it."
tool_use = [{ name = "Bash", input = { command = "cat hello.txt && id -un && claude --version", description = "Show the file, the user and the Claude Code version" } }]
repeat = true

[[turn]]
match = "Hello from Claude Code in creel's sandbox."
text = "Done: I wrote `hello.txt` in the workspace and ran a command in the sandbox. (This answer was scripted by `creel fake-model`.)"
repeat = true

[[turn]]
text = "I'm creel's fake model (a scripted stand-in, not a real model). I'll write a file in the workspace."
tool_use = [{ name = "Write", input = { file_path = "/workspace/hello.txt", content = "Hello from Claude Code in creel's sandbox.\n" } }]
repeat = true
"#;

/// A whole script.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The turns, in order.
    #[serde(default, rename = "turn")]
    pub turns: Vec<Turn>,
    /// The text answered once no turn fits.
    #[serde(default = "default_exhausted")]
    pub exhausted: String,
}

fn default_exhausted() -> String {
    "(creel fake-model: the script has no turn left for this request)".into()
}

/// One answer.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Use this turn only for a request whose last user message contains this text.
    #[serde(default, rename = "match")]
    pub matches: Option<String>,
    /// Strings the request body must contain; a missing one is logged (`failedExpectations`)
    /// and the answer's text says so.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Keep this turn for every later request that fits (e.g. an error that persists).
    #[serde(default)]
    pub repeat: bool,
    /// Assistant text (before any tool calls).
    #[serde(default)]
    pub text: Option<String>,
    /// Tool calls; the answer stops with `tool_use` when there are any.
    #[serde(default)]
    pub tool_use: Vec<ToolCall>,
    /// Answer with this HTTP error instead.
    #[serde(default)]
    pub error: Option<ErrorReply>,
    /// Answer nothing for this many seconds, then close the connection.
    #[serde(default)]
    pub hang: Option<u64>,
    /// Token counts reported for this answer (they make Claude's cost).
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// A tool call: Claude runs it and sends back the result.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Tool name: `Write`, `Bash`, `Read`, `Edit`, …
    pub name: String,
    /// The tool's input object.
    #[serde(default = "empty_object")]
    pub input: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// An HTTP error answer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// HTTP status (400–599).
    pub status: u16,
    /// The error `type` (default from the status: `rate_limit_error` for 429, …).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The error message.
    #[serde(default)]
    pub message: Option<String>,
    /// A `retry-after` header, in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// An `x-should-retry` header.
    #[serde(default)]
    pub should_retry: Option<bool>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            input_tokens: 1000,
            output_tokens: 50,
        }
    }
}

impl ErrorReply {
    /// The Anthropic error type for this answer.
    pub fn error_type(&self) -> String {
        if let Some(k) = &self.kind {
            return k.clone();
        }
        match self.status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        }
        .into()
    }

    /// The message for this answer.
    pub fn error_message(&self) -> String {
        self.message.clone().unwrap_or_else(|| {
            format!(
                "creel fake-model: scripted HTTP {} ({})",
                self.status,
                self.error_type()
            )
        })
    }
}

/// What a turn answers, once chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A message (text and/or tool calls).
    Message,
    /// An HTTP error.
    Error,
    /// Silence.
    Hang,
}

impl Turn {
    /// Which kind of answer this turn gives.
    pub fn answer(&self) -> Answer {
        if self.error.is_some() {
            Answer::Error
        } else if self.hang.is_some() {
            Answer::Hang
        } else {
            Answer::Message
        }
    }

    /// A one-line description for the server's stderr and the log.
    pub fn summary(&self) -> String {
        match self.answer() {
            Answer::Error => format!("HTTP {}", self.error.as_ref().map_or(0, |e| e.status)),
            Answer::Hang => format!("hang {} s", self.hang.unwrap_or(0)),
            Answer::Message => {
                let mut parts = Vec::new();
                if self.text.is_some() {
                    parts.push("text".to_string());
                }
                parts.extend(self.tool_use.iter().map(|t| t.name.clone()));
                parts.join(" + ")
            }
        }
    }
}

impl Script {
    /// Parses a script: JSON when it starts with `{`, TOML otherwise.
    pub fn parse(text: &str) -> anyhow::Result<Script> {
        let script: Script = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).context("invalid JSON script")?
        } else {
            toml::from_str(text).context("invalid TOML script")?
        };
        script.validate()?;
        Ok(script)
    }

    /// Reads and parses a script file.
    pub fn load(path: &Path) -> anyhow::Result<Script> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::exit::InvalidInput(format!("cannot read the script `{}`: {e}", path.display()))
        })?;
        Script::parse(&text).map_err(|e| {
            e.context(crate::exit::InvalidInput(format!(
                "in the script `{}`",
                path.display()
            )))
        })
    }

    /// The built-in demo script.
    pub fn demo() -> Script {
        // The constant is tested to parse; fall back to an empty script rather than panic.
        Script::parse(DEMO_SCRIPT).unwrap_or(Script {
            turns: Vec::new(),
            exhausted: default_exhausted(),
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (i, t) in self.turns.iter().enumerate() {
            let n = i + 1;
            let message = t.text.is_some() || !t.tool_use.is_empty();
            let kinds = [message, t.error.is_some(), t.hang.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if kinds != 1 {
                bail!("turn {n}: give exactly one of: `text` and/or `tool_use`, `error`, `hang`");
            }
            if let Some(e) = &t.error
                && !(400..=599).contains(&e.status)
            {
                bail!("turn {n}: error status {} is not 400-599", e.status);
            }
            for call in &t.tool_use {
                if call.name.trim().is_empty() {
                    bail!("turn {n}: a tool call without a name");
                }
                if !call.input.is_object() {
                    bail!("turn {n}: the input of `{}` must be an object", call.name);
                }
            }
        }
        Ok(())
    }
}

/// Which turns are used up.
#[derive(Debug)]
pub struct Cursor {
    script: Script,
    used: Vec<bool>,
}

impl Cursor {
    /// A fresh cursor over `script`.
    pub fn new(script: Script) -> Cursor {
        let used = vec![false; script.turns.len()];
        Cursor { script, used }
    }

    /// The first unused turn that fits `last_user_text`, marking it used unless it repeats.
    /// Returns its index (0-based) and a copy.
    pub fn next(&mut self, last_user_text: &str) -> Option<(usize, Turn)> {
        let i = self.script.turns.iter().enumerate().position(|(i, t)| {
            !self.used[i]
                && t.matches
                    .as_deref()
                    .is_none_or(|m| last_user_text.contains(m))
        })?;
        let turn = self.script.turns[i].clone();
        if !turn.repeat {
            self.used[i] = true;
        }
        Some((i, turn))
    }

    /// The text for requests no turn fits.
    pub fn exhausted(&self) -> &str {
        &self.script.exhausted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_template_documents_every_key() {
        let comments: String = DEMO_SCRIPT.lines().filter(|l| l.starts_with('#')).collect();
        for key in [
            "text =",
            "tool_use =",
            "match =",
            "expect =",
            "error =",
            "hang =",
            "repeat =",
            "usage =",
            "exhausted =",
            "retry_after",
            "should_retry",
        ] {
            assert!(comments.contains(key), "{key}");
        }
        assert!(Script::parse(DEMO_SCRIPT).is_ok());
    }

    #[test]
    fn demo_script_parses_and_gives_every_job_the_same_task() {
        let s = Script::parse(DEMO_SCRIPT).unwrap();
        assert_eq!(s.turns.len(), 3);
        assert_eq!(Script::demo(), s);
        // The requests of two jobs, as their last user messages: the prompt, the Write
        // tool's result, the Bash tool's output.
        let mut c = Cursor::new(s);
        for prompt in ["write hello.txt", "and again"] {
            let tools: Vec<String> = [
                prompt,
                "File created successfully at: /workspace/hello.txt",
                "Hello from Claude Code in creel's sandbox.\nagent\n2.1.328 (Claude Code)",
            ]
            .iter()
            .map(|text| {
                let (_, t) = c.next(text).expect("a turn for every request");
                t.tool_use
                    .first()
                    .map_or("-".to_string(), |u| u.name.clone())
            })
            .collect();
            assert_eq!(tools, ["Write", "Bash", "-"], "{prompt}");
        }
    }

    #[test]
    fn toml_and_json() {
        let t = Script::parse(
            "[[turn]]\nerror = { status = 429, retry_after = 0 }\nrepeat = true\n[[turn]]\nhang = 5\n",
        )
        .unwrap();
        assert_eq!(t.turns[0].answer(), Answer::Error);
        assert_eq!(
            t.turns[0].error.as_ref().unwrap().error_type(),
            "rate_limit_error"
        );
        assert_eq!(t.turns[1].answer(), Answer::Hang);
        let j = Script::parse(
            r#"{"turn": [{"text": "hi", "tool_use": [{"name": "Bash", "input": {"command": "ls"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(j.turns[0].summary(), "text + Bash");
    }

    #[test]
    fn bad_scripts_are_refused() {
        for bad in [
            "[[turn]]\n",
            "[[turn]]\ntext = \"x\"\nhang = 1\n",
            "[[turn]]\nerror = { status = 200 }\n",
            "[[turn]]\ntool_use = [{ name = \"Bash\", input = 3 }]\n",
            "[[turn]]\ntxt = \"typo\"\n",
        ] {
            assert!(Script::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursor_matches_uses_and_repeats() {
        let s = Script::parse(
            "[[turn]]\nmatch = \"second\"\ntext = \"B\"\n[[turn]]\ntext = \"A\"\n[[turn]]\nerror = { status = 500 }\nrepeat = true\n",
        )
        .unwrap();
        let mut c = Cursor::new(s);
        assert_eq!(c.next("first").map(|x| x.0), Some(1));
        assert_eq!(c.next("the second one").map(|x| x.0), Some(0));
        assert_eq!(c.next("second").map(|x| x.0), Some(2));
        assert_eq!(c.next("second").map(|x| x.0), Some(2));
    }
}
