//! `creel jobs`.

use anyhow::Context;
use creel_engine::{Engine, JobState, JobsRequest};

use super::ExitStatus;
use crate::{printer, wire};

/// Which jobs by state.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateFilter {
    /// Pending or running
    Active,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// Only this session's jobs
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// Only jobs in this state (`active`: pending or running)
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<StateFilter>,
    /// At most this many, newest first (0: all)
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: u64,
    /// Print JSON (a list)
    #[arg(long)]
    pub json: bool,
}

pub fn run(engine: &Engine, args: JobsArgs) -> anyhow::Result<ExitStatus> {
    let state = match args.state {
        None | Some(StateFilter::Active) => None,
        Some(StateFilter::Pending) => Some(JobState::Pending),
        Some(StateFilter::Running) => Some(JobState::Running),
        Some(StateFilter::Completed) => Some(JobState::Completed),
        Some(StateFilter::Failed) => Some(JobState::Failed),
        Some(StateFilter::Cancelled) => Some(JobState::Cancelled),
    };
    let req = JobsRequest {
        session: args.session,
        state,
        active: matches!(args.state, Some(StateFilter::Active)),
        limit: args.limit,
    };
    let jobs = engine.jobs(&req).context("cannot list jobs")?;
    let list: Vec<wire::JobListWire> = jobs.iter().map(wire::JobListWire::from).collect();
    if args.json {
        printer::json(&list)?;
        return Ok(ExitStatus::Success);
    }
    if list.is_empty() {
        eprintln!("no jobs");
        return Ok(ExitStatus::Success);
    }
    let mut out = format!(
        "{:<14} {:<24} {:<10} {:<20} {}\n",
        "JOB", "SESSION", "STATE", "CREATED", "PROMPT"
    );
    for j in &list {
        out.push_str(&format!(
            "{:<14} {:<24} {:<10} {:<20} {}\n",
            j.job_id, j.session_id, j.status, j.created_at, j.prompt
        ));
    }
    printer::out(out.as_bytes())?;
    if req.limit > 0 && list.len() as u64 == req.limit {
        printer::note(&format!(
            "the newest {} shown; --limit 0 lists all",
            req.limit
        ));
    }
    Ok(ExitStatus::Success)
}
