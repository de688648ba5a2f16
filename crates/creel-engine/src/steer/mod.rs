//! Steering a running job: Claude asks, someone answers.
//!
//! Every job's Claude Code gets a stdio MCP server named `creel` (`server.py`, run by the
//! image's `python3`), so Claude sees `mcp__creel__ask`; with `permissions = "ask"` the same
//! server's `approve` tool is Claude Code's `--permission-prompt-tool`. The server reaches
//! creel through files only, so it works in every network mode and opens no way out:
//!
//! ```text
//!   container                         host (jobs/<id>/)
//!   /creel/asked/NNNNNN.json   rw  ──  asked/            requests, written by the container
//!   /creel/steer/answers/…     ro  ──  steer/answers/    answers, written by creel
//!   /creel/steer/server.py     ro  ──  steer/server.py   this module's SERVER, unchanged
//! ```
//!
//! The monitor reads each new request (numbered from 1, read without following links, at most
//! [`MAX_REQUEST_BYTES`]) into the store, where `status` sees it as `needs_input` or
//! `needs_approval`; it applies the job's approval rules and its `input_timeout`, and sends one
//! webhook per request. Whoever answers (`creel reply`, `creel approve`, MCP, a rule, the
//! timeout) first claims the request in the store, then writes the answer file; the server in
//! the container waits for that file. Nothing is in memory only: a monitor killed while a
//! request waits is replaced, and the answer still reaches Claude.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use crate::config::Permissions;

/// The MCP server run inside the container (Python 3, standard library only).
pub const SERVER: &str = include_str!("server.py");
/// Where the read-only steering directory (server, MCP config, answers) is mounted.
pub const CONTAINER_STEER: &str = "/creel/steer";
/// The user messages Claude reads (`--input-format stream-json`), in the container: the
/// prompt is `1.json`, each `creel send` the next number; `close` holds how many there are once
/// creel ends the input.
pub const CONTAINER_INBOX: &str = "/creel/steer/inbox";
/// Where the container's request directory is mounted (read-write).
pub const CONTAINER_ASKED: &str = "/creel/asked";
/// The MCP config Claude is given (`--mcp-config`), inside the container.
pub const CONTAINER_MCP_CONFIG: &str = "/creel/steer/mcp.json";
/// The tool Claude Code asks for permission (`--permission-prompt-tool`).
pub const APPROVE_TOOL: &str = "mcp__creel__approve";
/// The question tool, as Claude names it.
pub const ASK_TOOL: &str = "mcp__creel__ask";
/// Requests one job may make; later ones are not read (the job's idle timeout ends it).
pub const MAX_REQUESTS: u32 = 1000;
/// The largest request file read; a larger approval request is denied, a larger question
/// answered with a note.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// The largest answer a person or agent may give.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;

/// A job's steering settings, fixed when the job is accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteerSpec {
    /// Claude reads its prompt, and later messages (`send`), as stream-json from the inbox
    /// (jobs accepted before `send` existed read the prompt file).
    #[serde(default)]
    pub messages: bool,
    /// Skip or ask.
    pub permissions: Permissions,
    /// Rules that approve a permission request without asking.
    pub allow: Vec<String>,
    /// Rules that deny one without asking (they win over `allow`).
    pub deny: Vec<String>,
    /// Seconds a request waits for an answer before creel answers it (0: forever).
    pub input_timeout: u64,
}

/// What Claude asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Ask {
    /// `mcp__creel__ask`.
    Question {
        /// The question.
        question: String,
        /// Possible answers, if any.
        #[serde(default)]
        options: Vec<String>,
    },
    /// A permission request.
    Approval {
        /// The tool Claude wants to use.
        tool_name: String,
        /// Its input.
        #[serde(default)]
        input: serde_json::Value,
    },
}

impl Ask {
    /// `question` or `approval`.
    pub fn kind(&self) -> &'static str {
        match self {
            Ask::Question { .. } => "question",
            Ask::Approval { .. } => "approval",
        }
    }
}

/// How a request was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    /// A question's answer.
    Answer {
        /// The text Claude receives.
        text: String,
    },
    /// The tool may run.
    Allow,
    /// The tool may not run.
    Deny {
        /// What Claude is told.
        message: String,
    },
}

/// Who answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", content = "rule", rename_all = "lowercase")]
pub enum DecidedBy {
    /// A person or agent (`creel reply`/`approve`, MCP).
    User,
    /// A configured rule, named.
    Rule(String),
    /// Nobody answered within `input_timeout`.
    Timeout,
    /// creel itself (a request it could not read or show).
    Creel,
}

/// An answer, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// What was decided.
    #[serde(flatten)]
    pub decision: Decision,
    /// By whom.
    pub decided_by: DecidedBy,
    /// When (unix ms).
    pub at_ms: i64,
}

/// One request of a job, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Its number within the job, from 1.
    pub seq: u32,
    /// What was asked.
    pub ask: Ask,
    /// When the monitor read it (unix ms).
    pub asked_at_ms: i64,
    /// The answer, once given.
    pub answer: Option<Answer>,
}

/// What reading one request file found.
#[derive(Debug)]
pub(crate) enum Read {
    /// No such request (yet).
    Missing,
    /// A request.
    Found(Ask),
    /// A file that is not a request creel can take (a link, too big, not JSON).
    Bad(String),
}

/// `jobs/<id>/steer`: the server, its MCP config and the answers (read-only in the container).
pub(crate) fn steer_dir(job_dir: &Path) -> PathBuf {
    job_dir.join("steer")
}

/// `jobs/<id>/asked`: the requests (written by the container).
pub(crate) fn asked_dir(job_dir: &Path) -> PathBuf {
    job_dir.join("asked")
}

/// Makes a new job's steering directories and files, owned by the agent's user where creel
/// runs as root (`owner`).
pub fn prepare(job_dir: &Path, spec: &SteerSpec, owner: Option<(u32, u32)>) -> Result<()> {
    let mut files = crate::files::Unsynced::default();
    prepare_unsynced(job_dir, spec, owner, &mut files)?;
    files.sync()
}

/// [`prepare`], its files left for the caller to sync.
pub(crate) fn prepare_unsynced(
    job_dir: &Path,
    spec: &SteerSpec,
    owner: Option<(u32, u32)>,
    files: &mut crate::files::Unsynced,
) -> Result<()> {
    use crate::files::{chown, create_private_dir};
    let steer = steer_dir(job_dir);
    for d in [
        steer.clone(),
        steer.join("answers"),
        steer.join("inbox"),
        asked_dir(job_dir),
    ] {
        create_private_dir(&d)?;
        chown(&d, owner)?;
    }
    if spec.messages {
        // The feeder in the container sleeps on this FIFO; creel rings it (a newline) when a
        // message or the end of input is there. It keeps a write end open itself, so no ring
        // is ever lost and creel's non-blocking ring never waits.
        let bell = steer.join("doorbell");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &bell,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::io("cannot create", &bell, e.into()))?;
        chown(&bell, owner)?;
    }
    files.write(&steer.join("server.py"), SERVER.as_bytes(), 0o444, owner)?;
    let mut args = vec![format!("{CONTAINER_STEER}/server.py")];
    if spec.permissions == Permissions::Ask {
        args.push("--approvals".into());
    }
    let config = serde_json::json!({
        "mcpServers": { "creel": { "type": "stdio", "command": "python3", "args": args } }
    });
    files.write(
        &steer.join("mcp.json"),
        config.to_string().as_bytes(),
        0o444,
        owner,
    )?;
    Ok(())
}

/// The stream-json line of a user message: what Claude reads on standard input.
pub(crate) fn user_message_line(text: &str) -> String {
    let content = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    format!(r#"{{"type":"user","message":{{"role":"user","content":{content}}}}}"#) + "\n"
}

/// Writes message `n` (1 is the prompt) into the job's inbox and rings the feeder.
pub fn write_message(job_dir: &Path, n: u32, text: &str, owner: Option<(u32, u32)>) -> Result<()> {
    let path = steer_dir(job_dir).join("inbox").join(format!("{n}.json"));
    crate::files::write_file_atomic(&path, user_message_line(text).as_bytes(), 0o444, owner)?;
    ring(job_dir);
    Ok(())
}

/// Where the first message waits in allowlist mode until the job's proxy listens: the feeder
/// in the container starts Claude's input only with `inbox/1.json`, so Claude cannot make a
/// request before there is a proxy to take it.
const HELD_PROMPT: &str = "held-1.json";

/// Writes the first message (the prompt): given to Claude at once, or with `held`, waiting for
/// [`release_held_prompt`]. Left for the caller to sync (`start`).
pub(crate) fn write_first_message(
    job_dir: &Path,
    text: &str,
    owner: Option<(u32, u32)>,
    held: bool,
    files: &mut crate::files::Unsynced,
) -> Result<()> {
    let inbox = steer_dir(job_dir).join("inbox");
    let name = if held { HELD_PROMPT } else { "1.json" };
    files.write(
        &inbox.join(name),
        user_message_line(text).as_bytes(),
        0o444,
        owner,
    )?;
    if !held {
        ring(job_dir);
    }
    Ok(())
}

/// Gives Claude the held first message (a rename in the inbox) and rings the feeder. Nothing
/// to do if it was released before (by a monitor that then died).
pub(crate) fn release_held_prompt(job_dir: &Path) -> Result<()> {
    let inbox = steer_dir(job_dir).join("inbox");
    match std::fs::rename(inbox.join(HELD_PROMPT), inbox.join("1.json")) {
        Ok(()) => {
            ring(job_dir);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot release", inbox.join(HELD_PROMPT), e)),
    }
}

/// Ends Claude's input after `n` messages (Claude then finishes and exits) and rings.
pub fn write_close(job_dir: &Path, n: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let path = steer_dir(job_dir).join("inbox").join("close");
    crate::files::write_file_atomic(&path, format!("{n}\n").as_bytes(), 0o444, owner)?;
    ring(job_dir);
    Ok(())
}

/// Whether the input's end is written.
pub(crate) fn close_written(job_dir: &Path) -> bool {
    steer_dir(job_dir).join("inbox").join("close").is_file()
}

/// Wakes the feeder: one newline into the doorbell FIFO, never blocking (a FIFO with no
/// reader yet, or a full one, needs no ring: the feeder looks at the inbox before it sleeps).
fn ring(job_dir: &Path) {
    use rustix::fs::{Mode, OFlags};
    let bell = steer_dir(job_dir).join("doorbell");
    if let Ok(fd) = rustix::fs::open(
        &bell,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = rustix::io::write(&fd, b"\n");
    }
}

/// Reads request `seq` from the container's directory: never through a link, never blocking
/// on a FIFO, never more than [`MAX_REQUEST_BYTES`].
pub(crate) fn read_request(job_dir: &Path, seq: u32) -> Read {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read as _;
    let path = asked_dir(job_dir).join(format!("{seq:06}.json"));
    let fd = match rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Read::Missing,
        Err(e) => return Read::Bad(format!("cannot open it: {e}")),
    };
    let file = std::fs::File::from(fd);
    match file.metadata() {
        Ok(m) if !m.is_file() => return Read::Bad("not a regular file".into()),
        Ok(m) if m.len() > MAX_REQUEST_BYTES => {
            return Read::Bad(format!(
                "{} bytes, more than creel reads ({MAX_REQUEST_BYTES})",
                m.len()
            ));
        }
        Ok(_) => {}
        Err(e) => return Read::Bad(format!("cannot stat it: {e}")),
    }
    let mut data = Vec::new();
    if let Err(e) = file.take(MAX_REQUEST_BYTES + 1).read_to_end(&mut data) {
        return Read::Bad(format!("cannot read it: {e}"));
    }
    if data.len() as u64 > MAX_REQUEST_BYTES {
        return Read::Bad("it grew past the size creel reads".into());
    }
    parse_request(&data)
}

/// Parses a request file's bytes (also the fuzz target's entry).
pub(crate) fn parse_request(data: &[u8]) -> Read {
    match serde_json::from_slice::<Ask>(data) {
        Ok(Ask::Question { question, .. }) if question.trim().is_empty() => {
            Read::Bad("an empty question".into())
        }
        Ok(Ask::Question { options, .. }) if options.len() > 50 => {
            Read::Bad("more than 50 options".into())
        }
        Ok(ask) => Read::Found(ask),
        Err(e) => Read::Bad(format!("not a request: {e}")),
    }
}

/// The text the container's server hands Claude for `decision`: a question's answer as is; for
/// a permission request, the JSON Claude Code's `--permission-prompt-tool` expects.
pub(crate) fn tool_result(ask: &Ask, decision: &Decision) -> String {
    match (ask, decision) {
        (_, Decision::Answer { text }) => text.clone(),
        (Ask::Approval { input, .. }, Decision::Allow) => {
            serde_json::json!({ "behavior": "allow", "updatedInput": input }).to_string()
        }
        (Ask::Question { .. }, Decision::Allow) => "yes".into(),
        (Ask::Approval { .. }, Decision::Deny { message }) => {
            serde_json::json!({ "behavior": "deny", "message": message }).to_string()
        }
        (Ask::Question { .. }, Decision::Deny { message }) => message.clone(),
    }
}

/// Writes the answer file for request `seq` (atomically; the container only ever sees a
/// whole answer). Called after the store has recorded the answer.
pub(crate) fn write_answer(
    job_dir: &Path,
    seq: u32,
    ask: &Ask,
    decision: &Decision,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let body = serde_json::json!({ "text": tool_result(ask, decision) }).to_string();
    let path = steer_dir(job_dir)
        .join("answers")
        .join(format!("{seq:06}.json"));
    crate::files::write_file_atomic(&path, body.as_bytes(), 0o444, owner)
}

/// Whether request `seq`'s answer file is in place.
pub(crate) fn answer_written(job_dir: &Path, seq: u32) -> bool {
    steer_dir(job_dir)
        .join("answers")
        .join(format!("{seq:06}.json"))
        .is_file()
}

/// Checks an answer a person or agent gives.
pub(crate) fn check_answer(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::InvalidRequest("the answer is empty".into()));
    }
    if text.len() > MAX_ANSWER_BYTES {
        return Err(Error::InvalidRequest(format!(
            "the answer is {} bytes; at most {MAX_ANSWER_BYTES} are passed on",
            text.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_named() {
        assert!(matches!(
            parse_request(br#"{"kind":"question","question":"Which?","options":["a","b"]}"#),
            Read::Found(Ask::Question { ref options, .. }) if options.len() == 2
        ));
        assert!(matches!(
            parse_request(br#"{"kind":"approval","tool_name":"Bash","input":{"command":"ls"},"tool_use_id":"t"}"#),
            Read::Found(Ask::Approval { .. })
        ));
        for bad in [
            &br#"{"kind":"question","question":"  "}"#[..],
            br#"{"kind":"shell","command":"rm -rf /"}"#,
            b"\xff\xfe",
            b"[]",
        ] {
            assert!(matches!(parse_request(bad), Read::Bad(_)), "{bad:?}");
        }
    }

    #[test]
    fn hostile_request_files_are_not_followed_or_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path();
        std::fs::create_dir(asked_dir(job)).unwrap();
        std::fs::write(
            job.join("secret"),
            br#"{"kind":"question","question":"leak"}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink(job.join("secret"), asked_dir(job).join("000001.json")).unwrap();
        assert!(matches!(read_request(job, 1), Read::Bad(_)), "a link");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            asked_dir(job).join("000002.json"),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert!(matches!(read_request(job, 2), Read::Bad(_)), "a FIFO");
        let big = vec![b' '; MAX_REQUEST_BYTES as usize + 1];
        std::fs::write(asked_dir(job).join("000003.json"), big).unwrap();
        assert!(matches!(read_request(job, 3), Read::Bad(_)), "too big");
        assert!(matches!(read_request(job, 4), Read::Missing));
    }

    #[test]
    fn approvals_answer_in_claude_code_s_shape() {
        let ask = Ask::Approval {
            tool_name: "Bash".into(),
            input: serde_json::json!({"command": "ls"}),
        };
        let allow: serde_json::Value =
            serde_json::from_str(&tool_result(&ask, &Decision::Allow)).unwrap();
        assert_eq!(allow["behavior"], "allow");
        assert_eq!(allow["updatedInput"]["command"], "ls");
        let deny: serde_json::Value = serde_json::from_str(&tool_result(
            &ask,
            &Decision::Deny {
                message: "no".into(),
            },
        ))
        .unwrap();
        assert_eq!(
            (deny["behavior"].as_str(), deny["message"].as_str()),
            (Some("deny"), Some("no"))
        );
    }

    #[test]
    fn prepared_files_name_the_server_and_approvals_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SteerSpec {
            permissions: Permissions::Ask,
            ..Default::default()
        };
        prepare(dir.path(), &spec, None).unwrap();
        let config = std::fs::read_to_string(steer_dir(dir.path()).join("mcp.json")).unwrap();
        assert!(config.contains("--approvals"), "{config}");
        assert_eq!(
            std::fs::read_to_string(steer_dir(dir.path()).join("server.py")).unwrap(),
            SERVER
        );
        assert!(asked_dir(dir.path()).is_dir());
    }
}
