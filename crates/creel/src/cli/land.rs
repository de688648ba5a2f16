//! `creel diff`, `log`, `apply`, `merge` and `branch`: a `--repo` session's work, read and
//! landed.

use anyhow::Context;
use creel_engine::Engine;
use creel_engine::git::{DiffRequest, LandHow, LandRequest};

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The session (started with --repo)
    pub session: String,
    /// Only what this job changed [default: everything since the session started]
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// A summary of the files changed instead of the patch
    #[arg(long)]
    pub stat: bool,
    /// Print {patch, truncated, changes: {commit, files, insertions, deletions}}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The session (started with --repo)
    pub session: String,
    /// Print the commits as a JSON array
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The session (started with --repo)
    pub session: String,
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The session (started with --repo)
    pub session: String,
    /// The branch to merge into [default: the branch checked out in the repository]
    #[arg(long, value_name = "BRANCH")]
    pub into: Option<String>,
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct BranchArgs {
    /// The session (started with --repo)
    pub session: String,
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn diff(engine: &Engine, args: DiffArgs) -> anyhow::Result<ExitStatus> {
    let d = engine
        .diff(&DiffRequest {
            session_id: args.session.clone(),
            job_id: args.job.clone(),
            stat: args.stat,
        })
        .with_context(|| format!("cannot diff session {}", args.session))?;
    if args.json {
        printer::json(&serde_json::json!({
            "patch": d.text,
            "truncated": d.truncated,
            "changes": wire::ChangesWire::from(&d.changes),
        }))?;
    } else {
        printer::out(d.text.as_bytes())?;
        if d.truncated {
            eprintln!(
                "warning: the diff was cut at 64 MiB; use `creel branch` and git for all of it"
            );
        }
    }
    Ok(ExitStatus::Success)
}

pub fn log(engine: &Engine, args: LogArgs) -> anyhow::Result<ExitStatus> {
    let commits = engine
        .log(&args.session)
        .with_context(|| format!("cannot read the log of session {}", args.session))?;
    if args.json {
        let list: Vec<_> = commits.iter().map(wire::CommitWire::from).collect();
        printer::json(&list)?;
        return Ok(ExitStatus::Success);
    }
    let mut text = String::new();
    for c in &commits {
        let job = c
            .job_id
            .as_deref()
            .map(|j| format!("job {j}"))
            .unwrap_or_else(|| "by Claude".into());
        text.push_str(&format!(
            "{}  {:<17} {:>3} files +{} -{}  {}\n",
            &c.commit[..c.commit.len().min(12)],
            job,
            c.files,
            c.insertions,
            c.deletions,
            c.subject
        ));
    }
    if commits.is_empty() {
        eprintln!("no commits yet on the session's branch");
    }
    printer::out(text.as_bytes())?;
    Ok(ExitStatus::Success)
}

fn land(engine: &Engine, req: LandRequest, json: bool) -> anyhow::Result<ExitStatus> {
    let how = req.how;
    let r = engine
        .land(&req)
        .with_context(|| format!("cannot {} session {}", how.as_str(), req.session_id))?;
    if json {
        printer::json(&wire::LandWire::from(&r))?;
        return Ok(ExitStatus::Success);
    }
    let repo = r.repo.display();
    let n = r.files.len();
    let line = match (how, r.nothing_to_do) {
        (LandHow::Apply, true) => "nothing to apply: the session changed nothing".to_string(),
        (LandHow::Apply, false) => {
            format!(
                "applied the session's changes to {n} files in {repo} (uncommitted; review with git diff)"
            )
        }
        (LandHow::Merge, true) => format!(
            "nothing to merge: {} already has the session's work",
            r.branch.as_deref().unwrap_or("the branch")
        ),
        (LandHow::Merge, false) => format!(
            "merged session {} into {} in {repo} ({}, {n} files): {}",
            req.session_id,
            r.branch.as_deref().unwrap_or("?"),
            if r.fast_forward {
                "fast-forward"
            } else {
                "merge commit"
            },
            r.commit.as_deref().unwrap_or("")
        ),
        (LandHow::Branch, true) => format!(
            "branch {} in {repo} is already up to date",
            r.branch.as_deref().unwrap_or("?")
        ),
        (LandHow::Branch, false) => format!(
            "fetched the session's work into {repo} as branch {} (review: git log -p {})",
            r.branch.as_deref().unwrap_or("?"),
            r.branch.as_deref().unwrap_or("?")
        ),
    };
    printer::out(format!("{line}\n").as_bytes())?;
    Ok(ExitStatus::Success)
}

pub fn apply(engine: &Engine, args: ApplyArgs) -> anyhow::Result<ExitStatus> {
    land(
        engine,
        LandRequest {
            session_id: args.session,
            how: LandHow::Apply,
            into: None,
        },
        args.json,
    )
}

pub fn merge(engine: &Engine, args: MergeArgs) -> anyhow::Result<ExitStatus> {
    land(
        engine,
        LandRequest {
            session_id: args.session,
            how: LandHow::Merge,
            into: args.into,
        },
        args.json,
    )
}

pub fn branch(engine: &Engine, args: BranchArgs) -> anyhow::Result<ExitStatus> {
    land(
        engine,
        LandRequest {
            session_id: args.session,
            how: LandHow::Branch,
            into: None,
        },
        args.json,
    )
}
