//! `creel sessions`.

use anyhow::Context;
use creel_engine::Engine;

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    /// Print JSON (a list)
    #[arg(long)]
    pub json: bool,
}

pub fn run(engine: &Engine, args: SessionsArgs) -> anyhow::Result<ExitStatus> {
    let sessions = engine.sessions().context("cannot list sessions")?;
    let list: Vec<wire::SessionWire> = sessions.iter().map(wire::SessionWire::from).collect();
    if args.json {
        printer::json(&list)?;
        return Ok(ExitStatus::Success);
    }
    if list.is_empty() {
        eprintln!("no sessions");
        return Ok(ExitStatus::Success);
    }
    let mut out = format!(
        "{:<24} {:>4}  {:<14} {:<20} {}\n",
        "SESSION", "JOBS", "ACTIVE JOB", "LAST ACTIVITY", "WORKSPACE"
    );
    for s in &list {
        out.push_str(&format!(
            "{:<24} {:>4}  {:<14} {:<20} {}\n",
            s.session_id,
            s.job_count,
            s.active_job_id.as_deref().unwrap_or("-"),
            s.last_activity,
            s.workspace
        ));
    }
    for s in list.iter().filter(|s| s.budget.is_some()) {
        if let Some(b) = &s.budget {
            out.push_str(&format!("{}  {}\n", s.session_id, b.human()));
        }
    }
    printer::out(out.as_bytes())?;
    Ok(ExitStatus::Success)
}
