//! What MCP clients send: each tool's arguments and the resource URIs, parsed and turned into
//! engine requests. Everything a client controls enters through this file, which depends on
//! nothing of rmcp's, so the `mcp_input` fuzz target (`fuzz/`) compiles it as it is.
//!
//! Parsing is lenient where real clients differ and strict where it matters: numbers may also
//! arrive as strings (older MCP Inspectors send every field as a string), `null` means the same
//! as an absent field, and unknown fields are ignored; the values themselves are checked by the
//! engine, as for the CLI.

use std::path::PathBuf;

use creel_engine::{OutputFormat, OutputRequest, StartRequest};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// `claude_code_start` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StartParams {
    /// The task for Claude Code, in plain language, with everything it needs to know: it cannot see this conversation.
    pub prompt: String,
    /// Continue this session (conversation and workspace); omit to start a new one. Session ids are 1-128 letters, digits, `.`, `_` or `-`, starting with a letter or digit; an unknown id creates a session with that name.
    #[serde(default, deserialize_with = "opt_session_id")]
    pub session_id: Option<String>,
    /// For a new session only: an existing directory on the host to use as its workspace (absolute path; Claude reads and writes it, creel never deletes it). Omit for a fresh empty workspace.
    pub workspace: Option<String>,
    /// For a new session only: a git repository on the host (absolute path). The session works on its own checkout, on the branch `creel/<session>`; the repository itself is never written by the job. Read the changes with claude_code_diff, land them with claude_code_land.
    pub repo: Option<String>,
    /// With `repo`: the commit, branch or tag to start from; default: the repository's HEAD.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// With `repo`: carry the repository's uncommitted changes over; default false.
    #[serde(default, deserialize_with = "lenient")]
    pub include_uncommitted: Option<bool>,
    /// Claude model for this job (e.g. `sonnet`, `opus` or a full model name); default: the server's configuration.
    pub model: Option<String>,
    /// Stop after this many agentic turns (at least 1); default: no limit.
    #[schemars(range(min = 1))]
    #[serde(default, deserialize_with = "lenient")]
    pub max_turns: Option<u32>,
    /// The session's budget in dollars, for all its jobs together (Claude stops once it is spent; the job then fails with error kind `budget`). On an existing session it replaces the limit, e.g. to raise it.
    #[serde(default, deserialize_with = "lenient")]
    pub max_cost_usd: Option<f64>,
    /// The session's budget in agent turns, all jobs together.
    #[serde(default, deserialize_with = "lenient")]
    pub max_session_turns: Option<u64>,
    /// The session's budget in seconds of running jobs, all jobs together.
    #[serde(default, deserialize_with = "lenient")]
    pub max_wall_seconds: Option<u64>,
    /// `ask`: each tool use that needs permission waits (status activityState needs_approval) until you decide with claude_code_approve, unless the server's rules decide; `skip`: nothing waits, the container is the only wall. Default: the server's configuration (normally skip).
    pub permissions: Option<PermissionsParam>,
}

/// `permissions` of `claude_code_start`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PermissionsParam {
    /// Nothing waits for approval.
    Skip,
    /// Permission requests wait for claude_code_approve.
    Ask,
}

impl StartParams {
    /// The engine's request. A workspace must be an absolute path: a server's working
    /// directory is its host's, not the caller's.
    pub fn request(self) -> Result<StartRequest, creel_engine::Error> {
        let workspace = self.workspace.filter(|w| !w.is_empty()).map(PathBuf::from);
        if let Some(w) = &workspace
            && !w.is_absolute()
        {
            return Err(creel_engine::Error::InvalidRequest(format!(
                "workspace `{}` is not an absolute path",
                w.display()
            )));
        }
        let repo = self.repo.filter(|r| !r.is_empty()).map(PathBuf::from);
        if let Some(r) = &repo
            && !r.is_absolute()
        {
            return Err(creel_engine::Error::InvalidRequest(format!(
                "repo `{}` is not an absolute path",
                r.display()
            )));
        }
        Ok(StartRequest {
            prompt: self.prompt,
            session_id: self.session_id,
            workspace,
            repo,
            git_ref: self.git_ref.filter(|r| !r.is_empty()),
            include_uncommitted: self.include_uncommitted.unwrap_or(false),
            model: self.model,
            max_turns: self.max_turns,
            permissions: self.permissions.map(|p| match p {
                PermissionsParam::Skip => creel_engine::steer::Permissions::Skip,
                PermissionsParam::Ask => creel_engine::steer::Permissions::Ask,
            }),
            budget: creel_engine::Budget {
                max_cost_usd: self.max_cost_usd,
                max_turns: self.max_session_turns,
                max_wall_seconds: self.max_wall_seconds,
            },
            from_agent: true,
        })
    }
}

/// `claude_code_reply` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReplyParams {
    /// The job whose question this answers (its status has activityState needs_input).
    #[serde(deserialize_with = "job_id")]
    pub job_id: String,
    /// The answer, in plain language; Claude receives it as the result of its question.
    pub answer: String,
    /// The request number (needsInput.request); default: the job's oldest open question.
    #[serde(default, deserialize_with = "lenient")]
    pub request: Option<u32>,
}

/// `claude_code_send` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendParams {
    /// The running job to send the message to.
    #[serde(deserialize_with = "job_id")]
    pub job_id: String,
    /// The message, as a person would type it to Claude (e.g. "also update the docs").
    pub message: String,
}

/// `claude_code_approve` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ApproveParams {
    /// The job whose permission request this decides (activityState needs_approval).
    #[serde(deserialize_with = "job_id")]
    pub job_id: String,
    /// true lets the tool run; false refuses it. Default true.
    #[serde(default, deserialize_with = "lenient")]
    pub allow: Option<bool>,
    /// When refusing: what Claude is told (e.g. what to do instead).
    pub message: Option<String>,
    /// The request number (needsApproval.request); default: the job's oldest open one.
    #[serde(default, deserialize_with = "lenient")]
    pub request: Option<u32>,
}

/// `claude_code_status` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusParams {
    /// The job id claude_code_start returned.
    #[serde(deserialize_with = "job_id")]
    pub job_id: String,
    /// If given, the job must belong to this session (a safety check).
    #[serde(default, deserialize_with = "opt_session_id")]
    pub session_id: Option<String>,
    /// Wait up to this many seconds (max 600) for the job to end before answering.
    #[serde(default, deserialize_with = "lenient")]
    pub wait_seconds: Option<f64>,
}

/// The longest a status call waits.
pub const MAX_WAIT_SECONDS: f64 = 600.0;

impl StatusParams {
    /// How long to wait for the job to end: `None` for not at all (absent, zero, negative or
    /// not a number), else at most [`MAX_WAIT_SECONDS`].
    pub fn wait(&self) -> Option<f64> {
        self.wait_seconds
            .filter(|w| w.is_finite() && *w > 0.0)
            .map(|w| w.min(MAX_WAIT_SECONDS))
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Claude's stream-json, byte for byte.
    #[default]
    Raw,
    /// A rendered transcript for reading.
    Text,
}

/// A page when the client does not say.
pub const DEFAULT_LIMIT: u64 = 64 * 1024;

/// `claude_code_output` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OutputParams {
    /// The job id claude_code_start returned.
    #[serde(deserialize_with = "job_id")]
    pub job_id: String,
    /// If given, the job must belong to this session (a safety check).
    #[serde(default, deserialize_with = "opt_session_id")]
    pub session_id: Option<String>,
    /// Byte offset to start at: 0 (default) or a previous page's nextOffset.
    #[serde(default, deserialize_with = "lenient")]
    pub offset: Option<u64>,
    /// Maximum bytes in this page (default, and for 0: 65536).
    #[serde(default, deserialize_with = "lenient")]
    pub limit: Option<u64>,
    /// "raw" (default): Claude's stream-json; "text": a readable transcript.
    pub format: Option<Format>,
}

impl OutputParams {
    /// The engine's request (the engine bounds the page size).
    pub fn request(&self) -> OutputRequest {
        OutputRequest {
            offset: self.offset.unwrap_or(0),
            limit: self.limit.filter(|&l| l > 0).unwrap_or(DEFAULT_LIMIT),
            format: match self.format.unwrap_or_default() {
                Format::Raw => OutputFormat::Raw,
                Format::Text => OutputFormat::Text,
            },
        }
    }
}

/// `claude_code_cancel` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CancelParams {
    /// The job id claude_code_start returned.
    #[serde(deserialize_with = "job_id")]
    pub job_id: String,
    /// If given, the job must belong to this session (a safety check); nothing is cancelled otherwise.
    #[serde(default, deserialize_with = "opt_session_id")]
    pub session_id: Option<String>,
}

/// `claude_code_diff` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DiffParams {
    /// A session started with `repo`.
    #[serde(deserialize_with = "session_id")]
    pub session_id: String,
    /// Only what this job changed; default: everything since the session started.
    #[serde(default, deserialize_with = "opt_job_id")]
    pub job_id: Option<String>,
    /// A summary (files and line counts) instead of the patch; default false.
    #[serde(default, deserialize_with = "lenient")]
    pub stat: Option<bool>,
}

impl DiffParams {
    /// The engine's request.
    pub fn request(self) -> creel_engine::git::DiffRequest {
        creel_engine::git::DiffRequest {
            session_id: self.session_id,
            job_id: self.job_id.filter(|j| !j.is_empty()),
            stat: self.stat.unwrap_or(false),
        }
    }
}

/// How `claude_code_land` lands a session's work.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LandHowParam {
    /// Merge (or fast-forward) the session branch into a branch of the repository.
    Merge,
    /// The session's changes as uncommitted edits in the repository's work tree.
    Apply,
    /// The session branch fetched into the repository as `creel/<session>`, for review.
    Branch,
}

/// `claude_code_land` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LandParams {
    /// A session started with `repo`.
    #[serde(deserialize_with = "session_id")]
    pub session_id: String,
    /// `merge`, `apply` or `branch`.
    pub how: LandHowParam,
    /// For `merge`: the branch to merge into; default: the branch checked out in the repository.
    pub into: Option<String>,
}

impl LandParams {
    /// The engine's request.
    pub fn request(self) -> creel_engine::git::LandRequest {
        use creel_engine::git::LandHow;
        creel_engine::git::LandRequest {
            session_id: self.session_id,
            how: match self.how {
                LandHowParam::Merge => LandHow::Merge,
                LandHowParam::Apply => LandHow::Apply,
                LandHowParam::Branch => LandHow::Branch,
            },
            into: self.into.filter(|b| !b.is_empty()),
        }
    }
}

/// `claude_code_cleanup` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CleanupParams {
    /// Remove sessions idle (no job running, no activity) for more than this many seconds (0: every idle session); default: the server's session_idle_timeout (an hour unless configured; required when the server has automatic cleanup off).
    #[serde(default, deserialize_with = "lenient")]
    pub idle_seconds: Option<u64>,
    /// Also delete the removed sessions' workspaces (only those creel created). Default false.
    #[serde(default, deserialize_with = "lenient")]
    pub delete_workspaces: Option<bool>,
}

/// The resource URIs: `creel://jobs/{job_id}/output` and `creel://jobs/{job_id}/transcript`.
pub const RESOURCE_PREFIX: &str = "creel://jobs/";

/// `(job id, format, mime type)` of a resource URI; `None` for anything else.
pub fn resource(uri: &str) -> Option<(&str, OutputFormat, &'static str)> {
    let rest = uri.strip_prefix(RESOURCE_PREFIX)?;
    let (job, kind) = rest.split_once('/')?;
    if job.is_empty() {
        return None;
    }
    match kind {
        "output" => Some((job, OutputFormat::Raw, "application/x-ndjson")),
        "transcript" => Some((job, OutputFormat::Text, "text/plain")),
        _ => None,
    }
}

/// A value as JSON has it, or the same value written as a string (`"30"`, `"true"`); `null` is
/// the same as absent.
/// An id as a string, or as the number a client made of an all-digit one (MCP Inspector's CLI
/// turns `"581410212356"` into `581410212356`). A job id is 12 characters: a number gets back
/// the leading zeros it lost.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

fn job_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Id::deserialize(d)? {
        Id::Text(s) => s,
        Id::Number(n) => format!("{n:012}"),
    })
}

fn opt_job_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Text(s) => s,
        Id::Number(n) => format!("{n:012}"),
    }))
}

fn session_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Id::deserialize(d)? {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    })
}

fn opt_session_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    }))
}

fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Value(T),
        Text(String),
    }
    match Option::<Either<T>>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Value(v)) => Ok(Some(v)),
        Some(Either::Text(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse().map(Some).map_err(|e| {
                serde::de::Error::custom(format!("`{s}` is not a valid value here: {e}"))
            })
        }
    }
}

/// One tool call as a client sent it: the tool's name and its arguments, parsed as the server
/// parses them. Used by the fuzz target; the server itself lets rmcp dispatch by name.
#[derive(Debug)]
#[allow(dead_code)] // the server lets rmcp dispatch; the fuzz target and tests use this
pub enum Call {
    /// `claude_code_start`.
    Start(StartParams),
    /// `claude_code_status`.
    Status(StatusParams),
    /// `claude_code_output`.
    Output(OutputParams),
    /// `claude_code_cancel`.
    Cancel(CancelParams),
    /// `claude_code_diff`.
    Diff(DiffParams),
    /// `claude_code_land`.
    Land(LandParams),
    /// `claude_code_cleanup`.
    Cleanup(CleanupParams),
    /// `claude_code_sessions` (no arguments).
    Sessions,
}

impl Call {
    /// Parses a `tools/call`: `None` for a tool creel does not have, else the arguments or why
    /// they were refused.
    #[allow(dead_code)]
    pub fn parse(
        name: &str,
        arguments: serde_json::Value,
    ) -> Option<Result<Call, serde_json::Error>> {
        let args = arguments;
        Some(match name {
            "claude_code_start" => serde_json::from_value(args).map(Call::Start),
            "claude_code_status" => serde_json::from_value(args).map(Call::Status),
            "claude_code_output" => serde_json::from_value(args).map(Call::Output),
            "claude_code_cancel" => serde_json::from_value(args).map(Call::Cancel),
            "claude_code_cleanup" => serde_json::from_value(args).map(Call::Cleanup),
            "claude_code_diff" => serde_json::from_value(args).map(Call::Diff),
            "claude_code_land" => serde_json::from_value(args).map(Call::Land),
            "claude_code_sessions" => Ok(Call::Sessions),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_may_arrive_as_strings() {
        let p: StatusParams =
            serde_json::from_value(json!({"job_id": "j", "wait_seconds": "30"})).unwrap();
        assert_eq!(p.wait(), Some(30.0));
        let p: StatusParams =
            serde_json::from_value(json!({"job_id": "j", "wait_seconds": 12.5})).unwrap();
        assert_eq!(p.wait(), Some(12.5));
        let p: StatusParams =
            serde_json::from_value(json!({"job_id": "j", "wait_seconds": null})).unwrap();
        assert_eq!(p.wait(), None);
        let p: StatusParams =
            serde_json::from_value(json!({"job_id": "j", "wait_seconds": "9e9"})).unwrap();
        assert_eq!(p.wait(), Some(MAX_WAIT_SECONDS));
        let p: StartParams =
            serde_json::from_value(json!({"prompt": "p", "max_turns": " 3 "})).unwrap();
        assert_eq!(p.max_turns, Some(3));
        let p: CleanupParams = serde_json::from_value(
            json!({"idle_seconds": "0", "delete_workspaces": "true", "extra": 1}),
        )
        .unwrap();
        assert_eq!((p.idle_seconds, p.delete_workspaces), (Some(0), Some(true)));
    }

    #[test]
    fn all_digit_ids_may_arrive_as_numbers() {
        // MCP Inspector's CLI sends `"job_id": "012345678901"` as the number 12345678901.
        let p: StatusParams =
            serde_json::from_value(json!({"job_id": 12345678901u64, "session_id": 42})).unwrap();
        assert_eq!(p.job_id, "012345678901");
        assert_eq!(p.session_id.as_deref(), Some("42"));
        let p: StatusParams = serde_json::from_value(json!({"job_id": "abc"})).unwrap();
        assert_eq!((p.job_id.as_str(), p.session_id), ("abc", None));
        assert!(serde_json::from_value::<StatusParams>(json!({"job_id": -1})).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let e =
            serde_json::from_value::<StatusParams>(json!({"job_id": "j", "wait_seconds": "soon"}))
                .unwrap_err();
        assert!(e.to_string().contains("`soon` is not a valid value"), "{e}");
        let e = serde_json::from_value::<StartParams>(json!({"prompt": "p", "max_turns": -1}))
            .unwrap_err();
        assert!(!e.to_string().is_empty());
        assert!(serde_json::from_value::<StartParams>(json!({"max_turns": 1})).is_err());
    }

    #[test]
    fn calls_and_uris() {
        assert!(Call::parse("rm_rf", json!({})).is_none());
        assert!(matches!(
            Call::parse("claude_code_output", json!({"job_id": "j", "format": "text"})),
            Some(Ok(Call::Output(p))) if p.request().format == OutputFormat::Text
        ));
        assert_eq!(
            resource("creel://jobs/abc/transcript").map(|r| r.0),
            Some("abc")
        );
        assert!(resource("creel://jobs//output").is_none());
        assert!(resource("creel://jobs/a/b/output").is_none());
        assert!(resource("creel://jobs/a/outputs").is_none());
    }
}
