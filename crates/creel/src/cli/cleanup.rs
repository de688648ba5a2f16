//! `creel cleanup`.

use anyhow::Context;
use creel_engine::Engine;

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Remove sessions idle for more than this many seconds (0: every idle session)
    /// [default: session_idle_timeout; required when that is 0, which turns automatic cleanup off]
    #[arg(long, value_name = "N")]
    pub idle_seconds: Option<u64>,
    /// Also delete the workspaces creel created (never a --workspace you brought)
    #[arg(long)]
    pub delete_workspaces: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(engine: &Engine, args: CleanupArgs) -> anyhow::Result<ExitStatus> {
    let idle = match args.idle_seconds {
        Some(i) => i,
        None => engine
            .default_idle_threshold()
            .context("cannot clean up: which sessions? (--idle-seconds N)")?,
    };
    let r = engine
        .cleanup(idle, args.delete_workspaces)
        .context("cleanup failed")?;
    if args.json {
        printer::json(&wire::CleanupWire::from(&r))?;
    } else {
        let mut out = String::new();
        for s in &r.removed_sessions {
            out.push_str(&format!("removed session {s}\n"));
        }
        for w in &r.deleted_workspaces {
            out.push_str(&format!("deleted workspace {}\n", w.display()));
        }
        for s in &r.skipped_active {
            out.push_str(&format!("kept session {s}: it has a live job\n"));
        }
        for s in &r.kept_branches {
            out.push_str(&format!(
                "kept session {s}: its branch creel/{s} may hold unlanded work (--delete-workspaces removes it)\n"
            ));
        }
        if !r.drained_pool.is_empty() {
            out.push_str(&format!(
                "drained the warm pool ({} sandboxes)\n",
                r.drained_pool.len()
            ));
        }
        if out.is_empty() {
            eprintln!("nothing idle for more than {idle} s");
        }
        printer::out(out.as_bytes())?;
    }
    Ok(ExitStatus::Success)
}
