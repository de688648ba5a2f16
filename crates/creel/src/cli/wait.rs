//! `creel wait`.

use std::time::Duration;

use anyhow::Context;
use creel_engine::{Engine, JobState, WaitOutcome};

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The job id
    pub job: String,
    /// Give up after this many seconds (exit code 4). A job that asks a question or a
    /// permission ends the wait too (exit code 5): it would not end without an answer
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Print the final status as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(engine: &Engine, args: WaitArgs) -> anyhow::Result<ExitStatus> {
    let timeout = match args.timeout {
        Some(t) if !(t >= 0.0 && t.is_finite()) => {
            anyhow::bail!(creel_engine::Error::InvalidRequest(format!(
                "--timeout {t} is not a number of seconds"
            )))
        }
        // A timeout longer than a Duration can hold is no timeout at all.
        Some(t) => Some(Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX)),
        None => None,
    };
    let outcome = engine
        .wait(&args.job, timeout)
        .with_context(|| format!("cannot wait for job {}", args.job))?;
    let (status, code) = match &outcome {
        WaitOutcome::Finished(s) if s.record.state == JobState::Completed => {
            (s, ExitStatus::Success)
        }
        WaitOutcome::Finished(s) => (s, ExitStatus::Failure),
        WaitOutcome::TimedOut(s) => (s, ExitStatus::Timeout),
        WaitOutcome::NeedsAnswer(s) => (s, ExitStatus::NeedsAnswer),
    };
    if args.json {
        printer::json(&wire::StatusWire::from(status))?;
    } else {
        printer::out(super::status::human(status).as_bytes())?;
        if code == ExitStatus::NeedsAnswer {
            eprintln!(
                "creel: job {} waits for an answer: `creel reply {} TEXT` or `creel approve {} [--deny]`",
                status.record.id, status.record.id, status.record.id
            );
        }
        if code == ExitStatus::Timeout {
            eprintln!(
                "creel: timed out; job {} is still {}",
                status.record.id, status.record.state
            );
        }
    }
    Ok(code)
}
