//! `creel status`.

use anyhow::Context;
use creel_engine::{Engine, JobStatus};

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The job id
    pub job: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(engine: &Engine, args: StatusArgs) -> anyhow::Result<ExitStatus> {
    let s = engine
        .status(&args.job)
        .with_context(|| format!("cannot get the status of job {}", args.job))?;
    if args.json {
        printer::json(&wire::StatusWire::from(&s))?;
    } else {
        printer::out(human(&s).as_bytes())?;
    }
    Ok(ExitStatus::Success)
}

/// A status for people.
pub fn human(s: &JobStatus) -> String {
    let w = wire::StatusWire::from(s);
    let mut out = format!("job {}  session {}  {}", w.job_id, w.session_id, w.status);
    if let Some(e) = &w.error {
        out.push_str(&format!(" ({})", e.kind));
    }
    out.push('\n');
    if let Some(e) = &w.error {
        out.push_str(&format!("error: {}\n", e.message));
    }
    let mut facts = vec![
        format!("{:.1}s since accepted", w.elapsed_seconds),
        format!("output {} bytes", w.output_size),
    ];
    if let Some(c) = w.exit_code {
        facts.push(format!("exit code {c}"));
    }
    if let Some(t) = w.num_turns {
        facts.push(format!("{t} turn{}", if t == 1 { "" } else { "s" }));
    }
    if let Some(c) = w.cost_usd {
        facts.push(format!("${c:.4}"));
    }
    if !s.record.state.is_final() {
        facts.push(w.activity_state.clone());
        if let Some(cpu) = w.metrics.cpu_percent {
            facts.push(format!("cpu {cpu:.1}%"));
        }
        if let Some(m) = w.metrics.memory_bytes {
            facts.push(format!("mem {:.1} MiB", m as f64 / 1048576.0));
        }
    }
    out.push_str(&facts.join(" · "));
    out.push('\n');
    if let Some(b) = &w.budget {
        out.push_str(&b.human());
        out.push('\n');
    }
    if let Some(q) = &w.needs_input {
        let text = |s: &str| creel_engine::stream::terminal_text(s, 2000);
        out.push_str(&format!(
            "needs input: {}\n",
            text(q.question.as_deref().unwrap_or_default())
        ));
        if !q.options.is_empty() {
            let options: Vec<String> = q.options.iter().map(|o| text(o)).collect();
            out.push_str(&format!("  options: {}\n", options.join(" | ")));
        }
        out.push_str(&format!("  answer with: creel reply {} TEXT\n", w.job_id));
    }
    if let Some(a) = &w.needs_approval {
        let input = a.input.as_ref().map(|i| i.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "needs approval: {} {}\n",
            creel_engine::stream::terminal_text(a.tool_name.as_deref().unwrap_or_default(), 200),
            creel_engine::stream::terminal_text(&input, 600)
        ));
        out.push_str(&format!(
            "  decide with: creel approve {} [--deny --message TEXT]\n",
            w.job_id
        ));
    }
    if let Some(r) = &w.retry {
        out.push_str(&format!(
            "retrying: attempt {}/{} ({})\n",
            r.attempt, r.max_retries, r.error
        ));
    }
    if let Some(c) = &w.changes {
        let branch = s
            .record
            .spec
            .git
            .as_ref()
            .map(|g| g.branch.as_str())
            .unwrap_or("?");
        match &c.commit {
            Some(commit) => out.push_str(&format!(
                "changes: {} files +{} -{} on {branch} ({}; see creel diff {} --job {})\n",
                c.files,
                c.insertions,
                c.deletions,
                &commit[..commit.len().min(12)],
                w.session_id,
                w.job_id
            )),
            None => out.push_str(&format!("changes: none on {branch}\n")),
        }
    }
    for warning in &w.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    if !w.tail_output.is_empty() {
        out.push_str("--- tail\n");
        out.push_str(&w.tail_output);
        out.push('\n');
    }
    out
}
