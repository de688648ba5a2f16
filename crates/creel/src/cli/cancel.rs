//! `creel cancel`.

use anyhow::Context;
use creel_engine::Engine;

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The job id
    pub job: String,
    /// Print the status as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(engine: &Engine, args: CancelArgs) -> anyhow::Result<ExitStatus> {
    let s = engine
        .cancel(&args.job)
        .with_context(|| format!("failed to cancel job {}", args.job))?;
    if args.json {
        printer::json(&wire::StatusWire::from(&s))?;
    } else {
        printer::out(format!("job {} is {}\n", s.record.id, s.record.state).as_bytes())?;
    }
    Ok(ExitStatus::Success)
}
