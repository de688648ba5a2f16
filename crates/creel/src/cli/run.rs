//! `creel run`: start and follow, rendered for people (or raw with --json).

use anyhow::Context;
use creel_engine::stream::{Line, LineSplitter, Renderer};
use creel_engine::{Engine, JobState, JobWatch, OutputFormat, OutputRequest};

use super::ExitStatus;
use super::start::StartArgs;
use crate::printer;

pub fn run(engine: &Engine, args: StartArgs) -> anyhow::Result<ExitStatus> {
    let started = engine
        .start(args.request()?)
        .context("cannot start the job")?;
    let job = started.job_id.clone();
    eprintln!(
        "creel: job {job} in session {}, {} (ctrl-c stops following, not the job: creel cancel {job})",
        started.session_id,
        super::start::place(&started),
    );
    super::start::notes(&started, &args);
    // Taken before the first read, so that no output between a read and the wait is missed.
    let mut watch = engine.watch_job(&job)?;
    let mut offset = 0u64;
    let mut renderer = Renderer::new();
    let mut splitter = LineSplitter::new(64 << 20);
    loop {
        let page = engine
            .output(
                &job,
                OutputRequest {
                    offset,
                    limit: 1 << 20,
                    format: OutputFormat::Raw,
                },
            )
            .with_context(|| format!("cannot read the output of job {job}"))?;
        if !page.content.is_empty() {
            if args.json {
                printer::out(page.content.as_bytes())?;
            } else {
                let mut text = String::new();
                splitter.push(page.content.as_bytes(), |l| {
                    if let Line::Complete(l) = l {
                        renderer.line(l, &mut text);
                    }
                });
                printer::out(text.as_bytes())?;
            }
        }
        offset = page.next_offset;
        if page.has_more {
            continue;
        }
        if page.state.is_final() {
            let status = engine.status(&job)?;
            if status.record.output_size > offset {
                continue;
            }
            if !args.json {
                let mut text = String::new();
                splitter.finish(|l| {
                    if let Line::Complete(l) = l {
                        renderer.line(l, &mut text);
                    }
                });
                printer::out(text.as_bytes())?;
            }
            return Ok(match status.record.state {
                JobState::Completed => ExitStatus::Success,
                state => {
                    match &status.record.error {
                        Some(e) => eprintln!(
                            "creel: job {job} {state} ({}): {}",
                            e.kind.as_str(),
                            e.message
                        ),
                        None => eprintln!("creel: job {job} {state}"),
                    }
                    ExitStatus::Failure
                }
            });
        }
        watch.wait(JobWatch::RECHECK);
    }
}
