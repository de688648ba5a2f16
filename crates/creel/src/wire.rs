//! The JSON shapes: what `--json` prints and what MCP tools return. Only this
//! crate knows JSON; the engine returns plain Rust values and these types translate them.

use creel_engine::{
    CleanupReport, DoctorFinding, DoctorLevel, JobStatus, OutputChunk, SessionSummary,
    StartResponse,
};
use schemars::JsonSchema;
use serde::Serialize;

/// `start` → `{jobId, sessionId, status}`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartWire {
    /// The new job's id.
    pub job_id: String,
    /// Its session (pass it as `session_id` to continue the conversation).
    pub session_id: String,
    /// `pending`.
    pub status: String,
    /// The session's workspace on the host: where Claude's files appear.
    pub workspace: String,
    /// The session's git branch (`creel/<session>`), for a session with a repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Things to know about the request (e.g. submodules not checked out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<&StartResponse> for StartWire {
    fn from(r: &StartResponse) -> Self {
        StartWire {
            job_id: r.job_id.clone(),
            session_id: r.session_id.clone(),
            status: r.state.to_string(),
            workspace: r.workspace.display().to_string(),
            branch: r.branch.clone(),
            warnings: r.warnings.clone(),
        }
    }
}

/// What a job (or a session) changed on its git branch.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangesWire {
    /// The commit that ends the changes on the session branch; null when nothing changed.
    pub commit: Option<String>,
    /// Files changed.
    pub files: u64,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
}

impl From<&creel_engine::git::Changes> for ChangesWire {
    fn from(c: &creel_engine::git::Changes) -> Self {
        ChangesWire {
            commit: c.commit.clone(),
            files: c.files,
            insertions: c.insertions,
            deletions: c.deletions,
        }
    }
}

/// One commit of a session's branch (`creel log`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitWire {
    /// Commit id.
    pub commit: String,
    /// Subject line.
    pub subject: String,
    /// The job that recorded it; null for commits Claude made itself.
    pub job_id: Option<String>,
    /// Author.
    pub author: String,
    /// RFC 3339.
    pub time: String,
    /// Files changed.
    pub files: u64,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
}

impl From<&creel_engine::git::CommitInfo> for CommitWire {
    fn from(c: &creel_engine::git::CommitInfo) -> Self {
        CommitWire {
            commit: c.commit.clone(),
            subject: c.subject.clone(),
            job_id: c.job_id.clone(),
            author: c.author.clone(),
            time: rfc3339(c.time.saturating_mul(1000)),
            files: c.files,
            insertions: c.insertions,
            deletions: c.deletions,
        }
    }
}

/// What landing a session's work did (`apply`, `merge`, `branch`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LandWire {
    /// apply, merge or branch.
    pub how: String,
    /// The user's repository.
    pub repo: String,
    /// The branch written (merge: the target; branch: `creel/<session>`).
    pub branch: Option<String>,
    /// The commit that branch now points at.
    pub commit: Option<String>,
    /// Whether a merge was a fast-forward.
    pub fast_forward: bool,
    /// The files the session changed.
    pub files: Vec<String>,
    /// True when there was nothing to land.
    pub nothing_to_do: bool,
}

impl From<&creel_engine::git::LandReport> for LandWire {
    fn from(r: &creel_engine::git::LandReport) -> Self {
        LandWire {
            how: r.how.as_str().into(),
            repo: r.repo.display().to_string(),
            branch: r.branch.clone(),
            commit: r.commit.clone(),
            fast_forward: r.fast_forward,
            files: r.files.clone(),
            nothing_to_do: r.nothing_to_do,
        }
    }
}

/// A failed job's reason.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorWire {
    /// startup_timeout, idle_timeout, output_limit, oom, exit_nonzero, api_error, auth, rate_limit, max_turns, image_missing, runtime.
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// Resource use.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsWire {
    /// CPU in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// Memory limit, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// Processes.
    pub pids: Option<u64>,
}

/// An API retry in progress.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryWire {
    /// Attempt number.
    pub attempt: u64,
    /// Maximum retries.
    pub max_retries: u64,
    /// The error.
    pub error: String,
}

/// Egress refusals per host.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EgressWire {
    /// The host asked for.
    pub host: String,
    /// How many times it was refused.
    pub count: u64,
}

/// `status`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusWire {
    /// Job id.
    pub job_id: String,
    /// Session id.
    pub session_id: String,
    /// pending, running, completed, failed or cancelled.
    pub status: String,
    /// Why it failed.
    pub error: Option<ErrorWire>,
    /// Container exit code, once known.
    pub exit_code: Option<i64>,
    /// Seconds since the job was accepted (to its end, once final).
    pub elapsed_seconds: f64,
    /// Bytes of raw output captured.
    pub output_size: u64,
    /// Seconds since the latest output.
    pub last_output_seconds_ago: Option<f64>,
    /// active (output within 10 s), processing (CPU busy), idle, needs_input (Claude asked a
    /// question: answer it with reply) or needs_approval (approve or deny a tool use).
    pub activity_state: String,
    /// While the job waits on a question: the question (answer with `claude_code_reply`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_input: Option<RequestWire>,
    /// While the job waits on a permission request: the tool and its input (decide with
    /// `claude_code_approve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_approval: Option<RequestWire>,
    /// The job's questions and permission requests, with their answers (the latest 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestWire>,
    /// The session's budget, spent and left, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetWire>,
    /// The rendered tail of the output.
    pub tail_output: String,
    /// Latest sampled resource use.
    pub metrics: MetricsWire,
    /// Claude's conversation id.
    pub claude_session_id: Option<String>,
    /// Turns Claude took.
    pub num_turns: Option<u64>,
    /// Cost Claude reported (for the whole conversation).
    pub cost_usd: Option<f64>,
    /// Claude's final result text.
    pub result: Option<String>,
    /// An API retry in progress.
    pub retry: Option<RetryWire>,
    /// Network requests refused by the egress allowlist: the most recently refused hosts
    /// (at most 32) with their counts.
    pub egress_denied: Vec<EgressWire>,
    /// All refusals, including those of hosts no longer listed in `egressDenied`.
    pub egress_denied_total: u64,
    /// Things the user should know (limits not enforced, resume notes, runtime warnings).
    pub warnings: Vec<String>,
    /// For a session with a repository, once the job has ended: what it changed on the
    /// session's branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangesWire>,
}

impl From<&JobStatus> for StatusWire {
    fn from(s: &JobStatus) -> Self {
        let r = &s.record;
        let m = r.metrics.clone().unwrap_or_default();
        StatusWire {
            job_id: r.id.clone(),
            session_id: r.session_id.clone(),
            status: r.state.to_string(),
            error: r.error.as_ref().map(|e| ErrorWire {
                kind: e.kind.as_str().into(),
                message: e.message.clone(),
            }),
            exit_code: r.exit_code,
            elapsed_seconds: round1(s.elapsed_seconds),
            output_size: r.output_size,
            last_output_seconds_ago: s.last_output_seconds_ago.map(round1),
            activity_state: s.activity.as_str().into(),
            needs_input: s
                .waiting_on
                .as_ref()
                .filter(|r| r.ask.kind() == "question")
                .map(RequestWire::from),
            needs_approval: s
                .waiting_on
                .as_ref()
                .filter(|r| r.ask.kind() == "approval")
                .map(RequestWire::from),
            requests: s.requests.iter().map(RequestWire::from).collect(),
            budget: s.budget.as_ref().map(BudgetWire::from),
            tail_output: s.tail_output.clone(),
            metrics: MetricsWire {
                cpu_percent: m.cpu_percent,
                memory_bytes: m.memory_bytes,
                memory_limit_bytes: m.memory_limit_bytes,
                pids: m.pids,
            },
            claude_session_id: r.claude_session_id.clone(),
            num_turns: r.num_turns,
            cost_usd: r.cost_usd,
            result: r.result.clone(),
            retry: r.retry.as_ref().map(|x| RetryWire {
                attempt: x.attempt,
                max_retries: x.max_retries,
                error: x.error.clone(),
            }),
            egress_denied_total: r.egress_denied.total,
            egress_denied: r
                .egress_denied
                .hosts
                .iter()
                .map(|(host, count)| EgressWire {
                    host: host.clone(),
                    count: *count,
                })
                .collect(),
            warnings: r
                .spec
                .warnings
                .iter()
                .chain(r.warnings.iter())
                .cloned()
                .fold(Vec::new(), |mut v, w| {
                    if !v.contains(&w) {
                        v.push(w);
                    }
                    v
                }),
            changes: r.changes.as_ref().map(ChangesWire::from),
        }
    }
}

/// A question or permission request a job made.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestWire {
    /// Its number within the job (from 1).
    pub request: u32,
    /// `question` or `approval`.
    pub kind: String,
    /// A question's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// A question's suggested answers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// The tool a permission request is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// That tool's input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// When it was asked (RFC 3339).
    pub since: String,
    /// The answer, once given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerWire>,
}

/// How a request was answered.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnswerWire {
    /// `answer`, `allow` or `deny`.
    pub decision: String,
    /// A question's answer, or what a denial told Claude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `user`, `rule`, `timeout` or `creel`.
    pub decided_by: String,
    /// The rule, when a rule decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

impl From<&creel_engine::steer::Request> for RequestWire {
    fn from(r: &creel_engine::steer::Request) -> Self {
        use creel_engine::steer::{Ask, DecidedBy, Decision};
        let (question, options, tool_name, input) = match &r.ask {
            Ask::Question { question, options } => {
                (Some(question.clone()), options.clone(), None, None)
            }
            Ask::Approval { tool_name, input } => {
                (None, vec![], Some(tool_name.clone()), Some(input.clone()))
            }
        };
        RequestWire {
            request: r.seq,
            kind: r.ask.kind().into(),
            question,
            options,
            tool_name,
            input,
            since: rfc3339(r.asked_at_ms),
            answer: r.answer.as_ref().map(|a| {
                let (decision, text) = match &a.decision {
                    Decision::Answer { text } => ("answer", Some(text.clone())),
                    Decision::Allow => ("allow", None),
                    Decision::Deny { message } => ("deny", Some(message.clone())),
                };
                let (by, rule) = match &a.decided_by {
                    DecidedBy::User => ("user", None),
                    DecidedBy::Rule(r) => ("rule", Some(r.clone())),
                    DecidedBy::Timeout => ("timeout", None),
                    DecidedBy::Creel => ("creel", None),
                };
                AnswerWire {
                    decision: decision.into(),
                    text,
                    decided_by: by.into(),
                    rule,
                    at: rfc3339(a.at_ms),
                }
            }),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `output`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputWire {
    /// Job id.
    pub job_id: String,
    /// The job's state when read.
    pub status: String,
    /// Where this page starts.
    pub offset: u64,
    /// Pass this as `offset` for the next page.
    pub next_offset: u64,
    /// Total size so far.
    pub total_size: u64,
    /// More is available now (a running job may write more later).
    pub has_more: bool,
    /// The page; never splits a UTF-8 character.
    pub content: String,
}

impl From<&OutputChunk> for OutputWire {
    fn from(c: &OutputChunk) -> Self {
        OutputWire {
            job_id: c.job_id.clone(),
            status: c.state.to_string(),
            offset: c.offset,
            next_offset: c.next_offset,
            total_size: c.total_size,
            has_more: c.has_more,
            content: c.content.clone(),
        }
    }
}

/// One session.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionWire {
    /// Session id.
    pub session_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_activity: String,
    /// Jobs run in it.
    pub job_count: u64,
    /// The unfinished job, if any.
    pub active_job_id: Option<String>,
    /// The newest job, finished or not (its id, to find a lost one).
    pub last_job_id: Option<String>,
    /// Its state.
    pub last_job_status: Option<String>,
    /// Claude's conversation id.
    pub claude_session_id: String,
    /// Host path of the workspace.
    pub workspace: String,
    /// The session's git branch, for a session with a repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The repository it was started from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Its budget, spent and left, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetWire>,
}

/// A session's budget: the limits, what its jobs spent, what is left.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetWire {
    /// The session.
    pub session_id: String,
    /// The limits (absent: none).
    pub limits: BudgetAmounts,
    /// What the session's jobs used.
    pub spent: BudgetAmounts,
    /// What is left of each limit.
    pub remaining: BudgetAmounts,
    /// The limit that is reached, in words: new jobs are refused until it is raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exhausted: Option<String>,
}

/// Dollars, turns and seconds.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetAmounts {
    /// Dollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Agent turns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turns: Option<u64>,
    /// Seconds of running jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
}

impl From<&creel_engine::BudgetStatus> for BudgetWire {
    fn from(b: &creel_engine::BudgetStatus) -> Self {
        BudgetWire {
            session_id: b.session_id.clone(),
            limits: BudgetAmounts {
                cost_usd: b.budget.max_cost_usd,
                turns: b.budget.max_turns,
                wall_seconds: b.budget.max_wall_seconds.map(|s| s as f64),
            },
            spent: BudgetAmounts {
                cost_usd: Some((b.spent.cost_usd * 1e6).round() / 1e6),
                turns: Some(b.spent.turns),
                wall_seconds: Some(round1(b.spent.wall_seconds)),
            },
            remaining: BudgetAmounts {
                cost_usd: b.cost_left().map(|c| (c * 1e6).round() / 1e6),
                turns: b.turns_left(),
                wall_seconds: b.wall_seconds_left().map(|s| s as f64),
            },
            exhausted: b.exhausted.clone(),
        }
    }
}

impl BudgetWire {
    /// One line for people: `$0.0150 of $0.0500 · 3 of 10 turns · …`.
    pub fn human(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.limits.cost_usd {
            parts.push(format!(
                "${:.4} of ${m:.4}",
                self.spent.cost_usd.unwrap_or_default()
            ));
        }
        if let Some(m) = self.limits.turns {
            parts.push(format!(
                "{} of {m} turns",
                self.spent.turns.unwrap_or_default()
            ));
        }
        if let Some(m) = self.limits.wall_seconds {
            parts.push(format!(
                "{:.0} of {m:.0} s",
                self.spent.wall_seconds.unwrap_or_default()
            ));
        }
        let mut s = format!("budget: {}", parts.join(" · "));
        if let Some(e) = &self.exhausted {
            s.push_str(&format!(" (exhausted: {e})"));
        }
        s
    }
}

impl From<&SessionSummary> for SessionWire {
    fn from(s: &SessionSummary) -> Self {
        SessionWire {
            session_id: s.record.id.clone(),
            created_at: rfc3339(s.record.created_at_ms),
            last_activity: rfc3339(s.record.last_activity_ms),
            job_count: s.job_count,
            active_job_id: s.active_job_id.clone(),
            last_job_id: s.last_job.as_ref().map(|(id, _)| id.clone()),
            last_job_status: s.last_job.as_ref().map(|(_, st)| st.to_string()),
            claude_session_id: s.record.claude_session_id.clone(),
            workspace: s.record.workspace.display().to_string(),
            branch: s.record.git.as_ref().map(|g| g.branch.clone()),
            repo: s.record.git.as_ref().map(|g| g.repo.display().to_string()),
            budget: s.budget.as_ref().map(BudgetWire::from),
        }
    }
}

/// One job in `creel jobs`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobListWire {
    /// Job id.
    pub job_id: String,
    /// Its session.
    pub session_id: String,
    /// pending, running, completed, failed or cancelled.
    pub status: String,
    /// Why it failed, when it did (an error kind such as `idle_timeout`).
    pub error_kind: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once final.
    pub finished_at: Option<String>,
    /// The prompt's first line, shortened.
    pub prompt: String,
    /// Host path of the workspace.
    pub workspace: String,
}

impl From<&creel_engine::JobSummary> for JobListWire {
    fn from(j: &creel_engine::JobSummary) -> Self {
        let r = &j.record;
        JobListWire {
            job_id: r.id.clone(),
            session_id: r.session_id.clone(),
            status: r.state.to_string(),
            error_kind: r.error.as_ref().map(|e| e.kind.as_str().to_string()),
            created_at: rfc3339(r.created_at_ms),
            finished_at: r.finished_at_ms.map(rfc3339),
            prompt: j.prompt_head.clone(),
            workspace: r.spec.workspace.display().to_string(),
        }
    }
}

/// `sessions`: wrapped in an object for MCP structured content.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionsWire {
    /// All sessions, most recently active first.
    pub sessions: Vec<SessionWire>,
}

/// `cleanup`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupWire {
    /// Sessions removed.
    pub removed_sessions: Vec<String>,
    /// Sessions idle long enough but with a live job (never removed).
    pub skipped_active: Vec<String>,
    /// Sessions with a git branch (`repo`) kept: only delete_workspaces removes them.
    pub kept_branches: Vec<String>,
    /// Workspaces deleted (only with delete_workspaces, only those creel created).
    pub deleted_workspaces: Vec<String>,
    /// Warm-pool sandboxes taken down (a cleanup drains the pool; starts fill it again).
    pub drained_pool: Vec<String>,
}

impl From<&CleanupReport> for CleanupWire {
    fn from(r: &CleanupReport) -> Self {
        CleanupWire {
            removed_sessions: r.removed_sessions.clone(),
            skipped_active: r.skipped_active.clone(),
            kept_branches: r.kept_branches.clone(),
            deleted_workspaces: r
                .deleted_workspaces
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            drained_pool: r.drained_pool.clone(),
        }
    }
}

/// One `doctor` finding.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DoctorWire {
    /// What was checked.
    pub check: String,
    /// ok, warn or error.
    pub level: String,
    /// What was found.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

impl From<&DoctorFinding> for DoctorWire {
    fn from(f: &DoctorFinding) -> Self {
        DoctorWire {
            check: f.check.clone(),
            level: match f.level {
                DoctorLevel::Ok => "ok",
                DoctorLevel::Warn => "warn",
                DoctorLevel::Error => "error",
            }
            .into(),
            message: f.message.clone(),
            hint: f
                .hint
                .clone()
                .or_else(|| f.remedy.as_ref().map(crate::cli::remedy::phrase)),
        }
    }
}

/// Unix milliseconds as RFC 3339 (UTC, seconds).
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `image build --json` → `{tags, imageId, claudeVersion, reused, elapsedSeconds}`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildWire {
    /// The image's tags, versioned first.
    pub tags: Vec<String>,
    /// The image id.
    pub image_id: String,
    /// What `claude --version` printed in the image.
    pub claude_version: String,
    /// What the build reused instead of making (base image, cached downloads).
    pub reused: Vec<String>,
    /// Whole build time.
    pub elapsed_seconds: f64,
}

impl From<&creel_engine::image::BuildReport> for ImageBuildWire {
    fn from(r: &creel_engine::image::BuildReport) -> Self {
        ImageBuildWire {
            tags: r.tags.clone(),
            image_id: r.image_id.clone(),
            claude_version: r.claude_version.clone(),
            reused: r.reused.clone(),
            elapsed_seconds: r.elapsed.as_secs_f64(),
        }
    }
}
