//! What the engine's verbs take and return: the types every face (CLI, MCP, ACP, web) passes to and
//! reads from [`crate::Engine`].

use std::path::PathBuf;

use crate::job::JobRecord;

/// A request to start a job.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// The prompt (any size; never placed in argv).
    pub prompt: String,
    /// An existing or new session id; `None` makes a new session.
    pub session_id: Option<String>,
    /// For a new session: an existing directory to use as the workspace.
    pub workspace: Option<PathBuf>,
    /// For a new session: a git repository whose checkout (on its own branch
    /// `creel/<session>`) becomes the workspace. The repository itself is only read.
    pub repo: Option<PathBuf>,
    /// With `repo`: the commit to start from (default: the repository's HEAD).
    pub git_ref: Option<String>,
    /// With `repo`: carry the repository's uncommitted changes (tracked and untracked, as its
    /// `.gitignore` allows) into the session.
    pub include_uncommitted: bool,
    /// `--model`.
    pub model: Option<String>,
    /// `--max-turns`.
    pub max_turns: Option<u32>,
    /// Limits for the session's jobs together; for an existing session, limits given here
    /// replace its own (as `Engine::budget` does).
    pub budget: Budget,
    /// `skip` or `ask` (default: the config's `permissions`).
    pub permissions: Option<crate::steer::Permissions>,
    /// Started by an agent (through MCP) rather than a person: only such jobs use the
    /// completion webhook found in OpenClaw's own config; one in creel's config serves all.
    pub from_agent: bool,
}

/// What `start` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct StartResponse {
    /// The new job.
    pub job_id: String,
    /// Its session.
    pub session_id: String,
    /// Its state (pending).
    pub state: crate::job::JobState,
    /// The session's workspace on the host (where Claude's files appear).
    pub workspace: PathBuf,
    /// The session's git branch, for a session with a repository.
    pub branch: Option<String>,
    /// Warnings about the request (e.g. a repository with submodules).
    pub warnings: Vec<String>,
}

/// What the job is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Output within the last 10 s.
    Active,
    /// No recent output, but the container is using CPU.
    Processing,
    /// Neither.
    Idle,
    /// Claude asked a question (`mcp__creel__ask`) and waits for `reply`.
    NeedsInput,
    /// Claude waits for a permission request's `approve`.
    NeedsApproval,
}

impl Activity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Active => "active",
            Activity::Processing => "processing",
            Activity::Idle => "idle",
            Activity::NeedsInput => "needs_input",
            Activity::NeedsApproval => "needs_approval",
        }
    }
}

/// A job's status, as `status` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// The stored record.
    pub record: JobRecord,
    /// Seconds since the job was accepted (to its end, once final).
    pub elapsed_seconds: f64,
    /// Seconds since the latest output.
    pub last_output_seconds_ago: Option<f64>,
    /// Activity.
    pub activity: Activity,
    /// The rendered tail of the output (a few hundred characters).
    pub tail_output: String,
    /// The oldest unanswered question or permission request, while the job is not final.
    pub waiting_on: Option<crate::steer::Request>,
    /// The job's questions and permission requests, with their answers (the latest
    /// [`JobStatus::REQUESTS_SHOWN`]).
    pub requests: Vec<crate::steer::Request>,
    /// The session's budget and what its jobs spent, when it has one.
    pub budget: Option<BudgetStatus>,
}

impl JobStatus {
    /// How many of a job's requests a status carries.
    pub const REQUESTS_SHOWN: usize = 20;
}

/// `output` paging request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputRequest {
    /// Start offset (bytes of the chosen format).
    pub offset: u64,
    /// Maximum bytes to return.
    pub limit: u64,
    /// Raw stream-json or rendered text.
    pub format: OutputFormat,
}

impl Default for OutputRequest {
    fn default() -> Self {
        OutputRequest {
            offset: 0,
            limit: 64 * 1024,
            format: OutputFormat::Raw,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Claude's stream-json bytes; offsets are byte offsets into it.
    #[default]
    Raw,
    /// A rendered transcript; offsets are byte offsets into the rendering.
    Text,
}

/// A page of output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputChunk {
    /// The job.
    pub job_id: String,
    /// Its state when read.
    pub state: crate::job::JobState,
    /// Where this page starts (moved forward to a character boundary if needed).
    pub offset: u64,
    /// Where the next page starts.
    pub next_offset: u64,
    /// Total size so far.
    pub total_size: u64,
    /// Whether more is available now.
    pub has_more: bool,
    /// The text (never splits a UTF-8 character).
    pub content: String,
}

/// How `wait` ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOutcome {
    /// The job reached a final state.
    Finished(JobStatus),
    /// The timeout expired first.
    TimedOut(JobStatus),
    /// The job waits for an answer (`reply` or `approve`) and will not end without one.
    NeedsAnswer(JobStatus),
}

/// What `cleanup` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanupReport {
    /// Sessions removed.
    pub removed_sessions: Vec<String>,
    /// Sessions idle long enough but with a live job.
    pub skipped_active: Vec<String>,
    /// `--repo` sessions idle long enough but kept: only a cleanup that deletes workspaces
    /// removes them (their branch may hold work not yet landed).
    pub kept_branches: Vec<String>,
    /// Workspaces deleted.
    pub deleted_workspaces: Vec<PathBuf>,
    /// Warm-pool sandboxes taken down (every one: a cleanup drains the pool).
    pub drained_pool: Vec<String>,
}

/// Which jobs [`crate::Engine::jobs`] lists.
#[derive(Debug, Clone, Default)]
pub struct JobsRequest {
    /// Only this session's.
    pub session: Option<String>,
    /// Only jobs in this state.
    pub state: Option<crate::job::JobState>,
    /// Only unfinished jobs (pending or running); overrides `state`.
    pub active: bool,
    /// At most this many, newest first (0: all).
    pub limit: u64,
}

/// One job in a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// The stored record.
    pub record: JobRecord,
    /// The prompt's first line, shortened (empty when the prompt is gone).
    pub prompt_head: String,
}

/// A session's limits; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    /// Dollars, as Claude reports its cost.
    pub max_cost_usd: Option<f64>,
    /// Agent turns.
    pub max_turns: Option<u64>,
    /// Seconds the session's jobs may run, together.
    pub max_wall_seconds: Option<u64>,
}

impl Budget {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.max_cost_usd.is_none() && self.max_turns.is_none() && self.max_wall_seconds.is_none()
    }

    /// `self` with every limit `other` sets replaced.
    pub fn overlaid(&self, other: &Budget) -> Budget {
        Budget {
            max_cost_usd: other.max_cost_usd.or(self.max_cost_usd),
            max_turns: other.max_turns.or(self.max_turns),
            max_wall_seconds: other.max_wall_seconds.or(self.max_wall_seconds),
        }
    }

    /// Checks the values (a cost must be a positive number).
    pub fn check(&self) -> crate::error::Result<()> {
        if let Some(c) = self.max_cost_usd
            && !(c > 0.0 && c.is_finite())
        {
            return Err(crate::error::Error::InvalidRequest(format!(
                "max_cost_usd {c} is not a positive number of dollars"
            )));
        }
        if self.max_turns == Some(0) || self.max_wall_seconds == Some(0) {
            return Err(crate::error::Error::InvalidRequest(
                "a budget of 0 turns or 0 seconds allows nothing; leave it out for no limit".into(),
            ));
        }
        Ok(())
    }
}

/// What a session's jobs have used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spent {
    /// Dollars (finished jobs, and running ones as far as Claude has reported).
    pub cost_usd: f64,
    /// Turns.
    pub turns: u64,
    /// Seconds the jobs have run (a running job up to now).
    pub wall_seconds: f64,
}

/// A session's budget with what is spent and left.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The session.
    pub session_id: String,
    /// The limits.
    pub budget: Budget,
    /// What is used.
    pub spent: Spent,
    /// The first limit reached, in words, once one is.
    pub exhausted: Option<String>,
}

impl BudgetStatus {
    /// Dollars left, if limited.
    pub fn cost_left(&self) -> Option<f64> {
        self.budget
            .max_cost_usd
            .map(|m| (m - self.spent.cost_usd).max(0.0))
    }

    /// Turns left, if limited.
    pub fn turns_left(&self) -> Option<u64> {
        self.budget
            .max_turns
            .map(|m| m.saturating_sub(self.spent.turns))
    }

    /// Seconds left, if limited.
    pub fn wall_seconds_left(&self) -> Option<u64> {
        self.budget
            .max_wall_seconds
            .map(|m| (m as f64 - self.spent.wall_seconds).max(0.0) as u64)
    }
}

/// How Claude logs in for a job (see [`crate::Engine::login`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Login {
    /// An API key (`ANTHROPIC_API_KEY` or the config's `api_key_file`).
    ApiKey,
    /// A Claude Pro/Max login: the OAuth credentials file found on the host.
    OAuth(PathBuf),
}
