//! `creel output`.

use anyhow::Context;
use creel_engine::{Engine, JobWatch, OutputFormat, OutputRequest};

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Claude's stream-json bytes, exactly as written
    Raw,
    /// A rendered transcript: text, tool calls summarised, results shortened
    Text,
}

impl From<Format> for OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Raw => OutputFormat::Raw,
            Format::Text => OutputFormat::Text,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// The job id
    pub job: String,
    /// Start at this byte offset (of the chosen format)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub offset: u64,
    /// Print at most this many bytes (a page never splits a UTF-8 character) [default: all; one page of 65536 with --json]
    ///
    /// When the limit cuts the output short, stderr says where, and the command that prints
    /// the rest.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// raw (stream-json) or text (rendered)
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
    /// Keep printing new output until the job ends
    #[arg(long, short)]
    pub follow: bool,
    /// Print a page as JSON {jobId, status, offset, nextOffset, totalSize, hasMore, content}; with --follow, JSON Lines
    #[arg(long)]
    pub json: bool,
}

/// The largest page read at once (the engine's own cap is higher).
const PAGE: u64 = 1 << 20;

pub fn run(engine: &Engine, args: OutputArgs) -> anyhow::Result<ExitStatus> {
    let ctx = || format!("cannot read the output of job {}", args.job);
    let read = |offset: u64, limit: u64| {
        engine
            .output(
                &args.job,
                OutputRequest {
                    offset,
                    limit,
                    format: args.format.into(),
                },
            )
            .with_context(ctx)
    };
    if !args.follow && args.json {
        // One page, as JSON: its offsets say how to get the next one.
        let page = read(args.offset, args.limit.unwrap_or(64 * 1024))?;
        printer::json(&wire::OutputWire::from(&page))?;
        return Ok(ExitStatus::Success);
    }
    if !args.follow {
        // Everything there is now (or up to --limit), page by page, like `podman logs`.
        let mut offset = args.offset;
        let mut remaining = args.limit;
        loop {
            let page = read(offset, remaining.unwrap_or(PAGE).min(PAGE))?;
            printer::out(page.content.as_bytes())?;
            offset = page.next_offset;
            if let Some(r) = remaining.as_mut() {
                *r = r.saturating_sub(page.next_offset.saturating_sub(page.offset));
            }
            if !page.has_more {
                return Ok(ExitStatus::Success);
            }
            if remaining == Some(0) || page.next_offset == page.offset {
                let format = match args.format {
                    Format::Raw => "",
                    Format::Text => " --format text",
                };
                printer::note(&format!(
                    "output cut at byte {offset} of {} by --limit; the rest: creel output {}{format} --offset {offset}",
                    page.total_size, args.job
                ));
                return Ok(ExitStatus::Success);
            }
        }
    }
    // Taken before the first read, so that no output between a read and the wait is missed.
    let mut watch = engine
        .watch_job(&args.job)
        .with_context(|| format!("cannot follow job {}", args.job))?;
    let mut offset = args.offset;
    let mut remaining = args.limit;
    loop {
        let page = read(offset, remaining.unwrap_or(PAGE).min(PAGE))?;
        if !page.content.is_empty() {
            if args.json {
                let line =
                    serde_json::json!({"type": "output", "data": wire::OutputWire::from(&page)});
                printer::out(format!("{line}\n").as_bytes())?;
            } else {
                printer::out(page.content.as_bytes())?;
            }
            if let Some(r) = remaining.as_mut() {
                *r = r.saturating_sub(page.next_offset - page.offset);
                if *r == 0 {
                    return Ok(ExitStatus::Success);
                }
            }
        }
        offset = page.next_offset;
        if page.has_more {
            continue;
        }
        if page.state.is_final() {
            // One more read: output may have landed between the page and the state.
            let last = read(offset, PAGE)?;
            if last.content.is_empty() {
                return Ok(ExitStatus::Success);
            }
            continue;
        }
        watch.wait(JobWatch::RECHECK);
    }
}
