//! Jobs: one Claude Code invocation in a fresh container. The whole lifecycle is here:
//! [`JobState`] and its allowed transitions, the error kinds a failed job carries, and the
//! record the store keeps. Each verb's work is in its own file (`start.rs`, `cancel.rs`,
//! `output.rs`, `status.rs`); the per-job monitor (`crate::monitor`) drives a job to its end.
//!
//! ```text
//!   pending ──► running ──► completed
//!      │           ├──────► failed { kind }
//!      └───────────┴──────► cancelled
//! ```

pub mod budget;
pub mod cancel;
pub mod output;
pub mod reply;
pub mod start;
pub mod status;
pub(crate) mod transcript;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{NetworkMode, RuntimeKind};

/// Where a job is in its life. Final states never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted; the container is not running yet.
    Pending,
    /// The container is running.
    Running,
    /// Claude finished and reported success.
    Completed,
    /// The job ended in failure; see [`ErrorKind`].
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// The lower-case name used in JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    /// Completed, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// Only a pending job can start running.
    pub fn can_run(self) -> bool {
        self == JobState::Pending
    }

    /// Any job that has not ended can be cancelled.
    pub fn can_cancel(self) -> bool {
        !self.is_final()
    }

    /// Any job that has not ended can be finalised (exactly once).
    pub fn can_finish(self) -> bool {
        !self.is_final()
    }
}

/// CPU use (percent of one core) above which a job printing nothing counts as busy: `status`
/// says "processing", and the monitor does not apply the idle timeout.
pub(crate) const BUSY_CPU_PERCENT: f64 = 5.0;

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No first output within `startup_timeout`.
    StartupTimeout,
    /// No output for `idle_timeout` while the container was not busy.
    IdleTimeout,
    /// Output reached `max_output_size`.
    OutputLimit,
    /// Killed for memory exhaustion.
    Oom,
    /// Claude exited with a non-zero code (and no more specific reason).
    ExitNonzero,
    /// The API answered with an error.
    ApiError,
    /// Authentication failed (401/403).
    Auth,
    /// Rate limited (429).
    RateLimit,
    /// `--max-turns` reached.
    MaxTurns,
    /// The session's budget (cost, turns or running time) is spent.
    Budget,
    /// The image vanished after the job was accepted.
    ImageMissing,
    /// The container runtime failed.
    Runtime,
}

impl ErrorKind {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::StartupTimeout => "startup_timeout",
            ErrorKind::IdleTimeout => "idle_timeout",
            ErrorKind::OutputLimit => "output_limit",
            ErrorKind::Oom => "oom",
            ErrorKind::ExitNonzero => "exit_nonzero",
            ErrorKind::ApiError => "api_error",
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::MaxTurns => "max_turns",
            ErrorKind::Budget => "budget",
            ErrorKind::ImageMissing => "image_missing",
            ErrorKind::Runtime => "runtime",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        [
            ErrorKind::StartupTimeout,
            ErrorKind::IdleTimeout,
            ErrorKind::OutputLimit,
            ErrorKind::Oom,
            ErrorKind::ExitNonzero,
            ErrorKind::ApiError,
            ErrorKind::Auth,
            ErrorKind::RateLimit,
            ErrorKind::MaxTurns,
            ErrorKind::Budget,
            ErrorKind::ImageMissing,
            ErrorKind::Runtime,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A failed job's reason.
#[derive(Debug, Clone, PartialEq)]
pub struct JobError {
    /// The kind.
    pub kind: ErrorKind,
    /// A human-readable message.
    pub message: String,
}

/// How the agent's uid is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserMode {
    /// Rootless podman: `--userns=keep-id --user uid:gid`.
    KeepId {
        /// The invoking user's uid.
        uid: u32,
        /// The invoking user's gid.
        gid: u32,
    },
    /// Rootful: `--user uid:gid`.
    Plain {
        /// The uid.
        uid: u32,
        /// The gid.
        gid: u32,
    },
}

impl UserMode {
    /// The owner of files creel writes for the agent: its uid when creel runs as root (else
    /// creel's own files are the agent's already).
    pub(crate) fn owner_if_root(&self) -> Option<(u32, u32)> {
        let (uid, gid) = match self {
            UserMode::KeepId { uid, gid } | UserMode::Plain { uid, gid } => (*uid, *gid),
        };
        rustix::process::geteuid().is_root().then_some((uid, gid))
    }
}

/// How Claude is told which conversation to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationMode {
    /// A new conversation with this id (`--session-id`).
    New(String),
    /// Continue this conversation (`--resume`).
    Resume(String),
}

impl ConversationMode {
    /// The Claude session id either way.
    pub fn id(&self) -> &str {
        match self {
            ConversationMode::New(id) | ConversationMode::Resume(id) => id,
        }
    }
}

/// Everything the monitor needs to run a job, fixed when the job is accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// podman or docker.
    pub runtime: RuntimeKind,
    /// The runtime binary.
    pub runtime_bin: PathBuf,
    /// The image.
    pub image: String,
    /// `--runtime` for the OCI runtime, if one must be forced.
    pub oci_runtime: Option<String>,
    /// `--memory`.
    pub memory: String,
    /// `--cpus`.
    pub cpus: String,
    /// `--pids-limit`.
    pub pids_limit: u64,
    /// `--network`.
    pub network: NetworkMode,
    /// AppArmor profile, if any.
    pub apparmor_profile: Option<String>,
    /// `/tmp` tmpfs size.
    pub tmpfs_size: String,
    /// `--ulimit` values (name, value) within the host's hard limits.
    pub ulimits: Vec<(String, u64)>,
    /// The agent's user.
    pub user: UserMode,
    /// Seconds to the first output.
    pub startup_timeout: u64,
    /// Seconds of silence while not busy.
    pub idle_timeout: u64,
    /// Output cap in bytes (0: none).
    pub max_output_size: u64,
    /// `claude` inside the image.
    pub claude_path: String,
    /// `--model`.
    pub model: Option<String>,
    /// `--max-turns`.
    pub max_turns: Option<u32>,
    /// Host path of the workspace.
    pub workspace: PathBuf,
    /// Host path of the session's Claude config dir.
    pub claude_config_dir: PathBuf,
    /// New conversation or resume.
    pub conversation: ConversationMode,
    /// Non-secret environment for the container.
    pub env: Vec<(String, String)>,
    /// Whether an API key file was written for this job.
    pub api_key: bool,
    /// Warnings found when the job was accepted (host quirks, resume notes).
    pub warnings: Vec<String>,
    /// Where the completion webhook goes, if anywhere.
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
    /// The host's OAuth credentials file, when the job logs in with it (copied back after the
    /// job if Claude refreshed the token).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// `network = "allowlist"`: what the job's proxy admits.
    #[serde(default)]
    pub egress: Option<crate::egress::EgressSpec>,
    /// The API key stays on the host: the proxy adds it (allowlist mode).
    #[serde(default)]
    pub key_via_proxy: bool,
    /// The session's git branch, when it has one: its objects are mounted read-only and the
    /// job's changes are recorded on it when the job ends.
    #[serde(default)]
    pub git: Option<crate::git::SessionGit>,
    /// The session branch's commit when the job started: what its changes are counted from.
    #[serde(default)]
    pub git_base: Option<String>,
    /// Questions and approvals: the `creel` MCP server in the container and its settings.
    /// (Jobs accepted before steering existed have none.)
    #[serde(default)]
    pub steer: Option<crate::steer::SteerSpec>,
    /// What the job may use of its session's budget.
    #[serde(default)]
    pub budget: Option<JobBudget>,
}

/// What a job may use of its session's budget, fixed when it is accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobBudget {
    /// Passed as `--max-budget-usd`.
    pub cost_usd: Option<f64>,
    /// Whether the job's `--max-turns` is the budget's (so hitting it is `budget`).
    pub turns_from_budget: bool,
    /// Seconds the job may run before the monitor stops it.
    pub wall_seconds: Option<u64>,
}

/// Resource usage sampled by the monitor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// CPU use in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Memory in use.
    pub memory_bytes: Option<u64>,
    /// Memory limit.
    pub memory_limit_bytes: Option<u64>,
    /// Processes.
    pub pids: Option<u64>,
    /// When sampled (unix ms).
    pub sampled_at_ms: i64,
}

/// A retry Claude reported (`system/api_retry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// Attempt number.
    pub attempt: u64,
    /// Maximum retries.
    pub max_retries: u64,
    /// The error.
    pub error: String,
}

/// What the store keeps about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// Session id.
    pub session_id: String,
    /// State.
    pub state: JobState,
    /// Set when failed.
    pub error: Option<JobError>,
    /// Container exit code, once known.
    pub exit_code: Option<i64>,
    /// Accepted at (unix ms).
    pub created_at_ms: i64,
    /// Container started at.
    pub started_at_ms: Option<i64>,
    /// Final state reached at.
    pub finished_at_ms: Option<i64>,
    /// Container id.
    pub container_id: Option<String>,
    /// The fixed spec.
    pub spec: JobSpec,
    /// Bytes of output captured (checkpointed).
    pub output_size: u64,
    /// Bytes of the runtime log consumed (checkpointed with `output_size`).
    pub log_offset: u64,
    /// First output at.
    pub first_output_at_ms: Option<i64>,
    /// Latest output at.
    pub last_output_at_ms: Option<i64>,
    /// Claude's session id from its stream.
    pub claude_session_id: Option<String>,
    /// Turns from the result event.
    pub num_turns: Option<u64>,
    /// Cost from the result event.
    pub cost_usd: Option<f64>,
    /// Claude's result text.
    pub result: Option<String>,
    /// The latest API retry, while retrying.
    pub retry: Option<Retry>,
    /// Latest metrics.
    pub metrics: Option<Metrics>,
    /// Warnings gathered while running.
    pub warnings: Vec<String>,
    /// When the completion webhook was delivered.
    pub webhook_delivered_at_ms: Option<i64>,
    /// Webhook delivery attempts so far.
    pub webhook_attempts: u32,
    /// Requests the egress proxy refused, per host.
    pub egress_denied: crate::egress::Refusals,
    /// What the job changed on its session's git branch, once recorded.
    pub changes: Option<crate::git::Changes>,
}

/// Webhook delivery attempts before giving up.
pub const WEBHOOK_MAX_ATTEMPTS: u32 = 6;

impl JobRecord {
    /// A job just accepted: pending, nothing run, nothing captured yet.
    pub fn pending(
        id: String,
        session_id: String,
        spec: JobSpec,
        created_at_ms: i64,
        warnings: Vec<String>,
    ) -> JobRecord {
        JobRecord {
            id,
            session_id,
            state: JobState::Pending,
            error: None,
            exit_code: None,
            created_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            container_id: None,
            spec,
            output_size: 0,
            log_offset: 0,
            first_output_at_ms: None,
            last_output_at_ms: None,
            claude_session_id: None,
            num_turns: None,
            cost_usd: None,
            result: None,
            retry: None,
            metrics: None,
            warnings,
            webhook_delivered_at_ms: None,
            webhook_attempts: 0,
            egress_denied: Default::default(),
            changes: None,
        }
    }

    /// Whether a final job still owes its completion webhook.
    pub fn webhook_pending(&self) -> bool {
        self.state.is_final()
            && self.spec.webhook.is_some()
            && self.webhook_delivered_at_ms.is_none()
            && self.webhook_attempts < WEBHOOK_MAX_ATTEMPTS
    }
}

/// A new random job id: 12 lower-case hex digits.
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Job ids are what [`new_job_id`] makes; anything else is unknown without a lookup.
pub fn looks_like_job_id(id: &str) -> bool {
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub use crate::config::validate_model;

/// Where a job's completion is announced.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSpec {
    /// The URL to POST to.
    pub url: String,
    /// Bearer token, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_are_final() {
        for s in [JobState::Completed, JobState::Failed, JobState::Cancelled] {
            assert!(s.is_final());
            assert!(!s.can_cancel() && !s.can_finish() && !s.can_run());
        }
        assert!(JobState::Pending.can_run());
        assert!(!JobState::Running.can_run());
        assert!(JobState::Running.can_cancel());
    }

    #[test]
    fn names_round_trip() {
        for s in ["pending", "running", "completed", "failed", "cancelled"] {
            assert_eq!(JobState::parse(s).unwrap().as_str(), s);
        }
        for k in ["oom", "max_turns", "startup_timeout", "runtime"] {
            assert_eq!(ErrorKind::parse(k).unwrap().as_str(), k);
        }
    }

    #[test]
    fn job_ids() {
        let id = new_job_id();
        assert!(looks_like_job_id(&id), "{id}");
        assert!(!looks_like_job_id("../../etc"));
    }

    #[test]
    fn models() {
        assert!(validate_model("claude-opus-5-5").is_ok());
        assert!(validate_model("--dangerous").is_err());
        assert!(validate_model("a b").is_err());
    }
}
