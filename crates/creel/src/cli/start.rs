//! `creel start`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use creel_engine::{Engine, StartRequest, StartResponse};

use super::ExitStatus;
use crate::{printer, wire};

/// Options shared by `start` and `run`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The task for Claude; `-` reads it from standard input (any size)
    pub prompt: String,
    /// Session to start or continue (continuing resumes Claude's conversation); new if omitted
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// For a new session: use this existing directory as the workspace (creel never deletes it)
    #[arg(long, value_name = "DIR", conflicts_with = "repo")]
    pub workspace: Option<PathBuf>,
    /// For a new session: work on a checkout of this git repository, on the branch
    /// creel/<session>; the repository is only read (land the work with `creel merge`,
    /// `apply` or `branch`)
    #[arg(long, value_name = "PATH")]
    pub repo: Option<PathBuf>,
    /// With --repo: the commit, branch or tag to start from [default: the repository's HEAD]
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// With --repo: carry the repository's uncommitted changes (tracked and untracked) over
    #[arg(long)]
    pub include_uncommitted: bool,
    /// Claude model (passed as --model)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Stop after this many agent turns (passed as --max-turns)
    #[arg(long, value_name = "N")]
    pub max_turns: Option<u32>,
    /// The session's budget in dollars, for all its jobs together (sets or raises it; see
    /// `creel budget`)
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// The session's budget in agent turns, for all its jobs together
    #[arg(long, value_name = "N")]
    pub max_session_turns: Option<u64>,
    /// The session's budget in seconds of running jobs, for all its jobs together
    #[arg(long, value_name = "SECS")]
    pub max_wall_seconds: Option<u64>,
    /// `ask`: every tool use that needs permission waits for `creel approve` (unless a
    /// `permissions_allow`/`permissions_deny` rule in the config decides); `skip`: none does,
    /// the container is the wall [default: the config's `permissions`, else skip]
    #[arg(long, value_name = "MODE")]
    pub permissions: Option<creel_engine::steer::Permissions>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: super::EngineChoice,
}

impl StartArgs {
    /// A note for a person who starts a new session from inside a git repository without
    /// saying where to work: creel does not use the current directory on its own.
    pub fn cwd_note(&self) -> Option<String> {
        if self.session.is_some() || self.workspace.is_some() || self.repo.is_some() {
            return None;
        }
        let cwd = std::env::current_dir().ok()?;
        cwd.ancestors().find(|d| d.join(".git").exists())?;
        Some(
            "note: a new session works in a fresh workspace, not in this repository: `--repo .` works on a branch of it (land with `creel merge`), `--workspace .` in it directly".into(),
        )
    }

    pub fn request(&self) -> anyhow::Result<StartRequest> {
        let prompt = if self.prompt == "-" {
            // One byte past the limit is enough to refuse it; never more than that in memory.
            let mut s = String::new();
            std::io::stdin()
                .take(creel_engine::MAX_PROMPT_BYTES as u64 + 1)
                .read_to_string(&mut s)
                .context("cannot read the prompt from standard input (it must be UTF-8)")?;
            s
        } else {
            self.prompt.clone()
        };
        Ok(StartRequest {
            prompt,
            session_id: self.session.clone(),
            workspace: self.workspace.clone(),
            repo: self
                .repo
                .as_deref()
                .map(std::path::absolute)
                .transpose()
                .context("cannot resolve the --repo path")?,
            git_ref: self.git_ref.clone(),
            include_uncommitted: self.include_uncommitted,
            model: self.model.clone(),
            max_turns: self.max_turns,
            permissions: self.permissions,
            budget: creel_engine::Budget {
                max_cost_usd: self.max_cost_usd,
                max_turns: self.max_session_turns,
                max_wall_seconds: self.max_wall_seconds,
            },
            from_agent: false,
        })
    }
}

/// Where a started job works, for people: its branch and checkout, or its workspace.
pub(super) fn place(r: &StartResponse) -> String {
    match &r.branch {
        Some(b) => format!("on branch {b} in {}", r.workspace.display()),
        None => format!("working in {}", r.workspace.display()),
    }
}

/// The start's warnings and, where it applies, the note about the current directory.
pub(super) fn notes(r: &StartResponse, args: &StartArgs) {
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(n) = args.cwd_note() {
        eprintln!("{n}");
    }
}

pub fn run(engine: &Engine, args: StartArgs) -> anyhow::Result<ExitStatus> {
    let r = engine
        .start(args.request()?)
        .context("cannot start the job")?;
    if args.json {
        printer::json(&wire::StartWire::from(&r))?;
    } else {
        printer::out(format!("{}\n", r.job_id).as_bytes())?;
        eprintln!(
            "started job {} in session {}, {} (follow: creel output {} --follow --format text)",
            r.job_id,
            r.session_id,
            place(&r),
            r.job_id
        );
        notes(&r, &args);
    }
    Ok(ExitStatus::Success)
}
