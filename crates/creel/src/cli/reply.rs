//! `creel reply` and `creel approve`: answering a running job.

use anyhow::Context;
use creel_engine::Engine;

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct ReplyArgs {
    /// The job id
    pub job: String,
    /// The answer Claude receives; `-` reads it from standard input
    pub answer: String,
    /// Answer this request (its number in `creel status --json`) [default: the oldest open
    /// question]
    #[arg(long, value_name = "N")]
    pub request: Option<u32>,
    /// Print the job's status afterwards as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The job id
    pub job: String,
    /// Refuse the tool use instead of allowing it
    #[arg(long)]
    pub deny: bool,
    /// With --deny: what Claude is told (e.g. what to do instead)
    #[arg(long, value_name = "TEXT", requires = "deny")]
    pub message: Option<String>,
    /// Decide this request (its number in `creel status --json`) [default: the oldest open
    /// permission request]
    #[arg(long, value_name = "N")]
    pub request: Option<u32>,
    /// Print the job's status afterwards as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The job id (a running job)
    pub job: String,
    /// The message, as if typed to Claude; `-` reads it from standard input
    pub message: String,
}

pub fn send(engine: &Engine, args: SendArgs) -> anyhow::Result<ExitStatus> {
    let message = if args.message == "-" {
        use std::io::Read;
        let mut s = String::new();
        std::io::stdin()
            .take(creel_engine::MAX_PROMPT_BYTES as u64 + 1)
            .read_to_string(&mut s)
            .context("cannot read the message from standard input (it must be UTF-8)")?;
        s
    } else {
        args.message.clone()
    };
    let n = engine
        .send(&args.job, &message)
        .with_context(|| format!("cannot send job {} a message", args.job))?;
    printer::out(
        format!(
            "sent message {n} to job {}; Claude reads it once it has finished with the ones before\n",
            args.job
        )
        .as_bytes(),
    )?;
    Ok(ExitStatus::Success)
}

pub fn reply(engine: &Engine, args: ReplyArgs) -> anyhow::Result<ExitStatus> {
    let answer = if args.answer == "-" {
        use std::io::Read;
        let mut s = String::new();
        std::io::stdin()
            .take(creel_engine::steer::MAX_ANSWER_BYTES as u64 + 1)
            .read_to_string(&mut s)
            .context("cannot read the answer from standard input (it must be UTF-8)")?;
        s
    } else {
        args.answer.clone()
    };
    let s = engine
        .reply(&args.job, &answer, args.request)
        .with_context(|| format!("cannot answer job {}", args.job))?;
    report(&s, args.json, "answered")
}

pub fn approve(engine: &Engine, args: ApproveArgs) -> anyhow::Result<ExitStatus> {
    let s = engine
        .approve(&args.job, args.deny, args.message.as_deref(), args.request)
        .with_context(|| format!("cannot decide for job {}", args.job))?;
    report(&s, args.json, if args.deny { "denied" } else { "allowed" })
}

fn report(s: &creel_engine::JobStatus, json: bool, verb: &str) -> anyhow::Result<ExitStatus> {
    if json {
        printer::json(&wire::StatusWire::from(s))?;
    } else {
        let mut line = format!("{verb}; job {} is {}", s.record.id, s.record.state);
        if let Some(next) = &s.waiting_on {
            line.push_str(&format!(
                " and waits on request {} (a {}): see creel status {}",
                next.seq,
                next.ask.kind(),
                s.record.id
            ));
        }
        line.push('\n');
        printer::out(line.as_bytes())?;
    }
    Ok(ExitStatus::Success)
}
