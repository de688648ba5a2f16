//! creel's benchmark suite: its overhead over bare Podman, and its scale (BENCHMARKS.md).
//!
//! ```text
//! cargo bench -p creel --bench overhead -- [FIGURE...] [--iters N] [--jobs N] [--sessions N]
//!                                          [--big-bytes N] [--trials N] [--dir DIR] [--out FILE] [--keep]
//! FIGURE: start query throughput scale concurrent (default: these five), chaos
//!         [--chaos-jobs N] [--kills N] [--seed N], mcp-load [--mcp-sessions N],
//!         git [--repo-files N] [--history-mib N], dashboard [--big-bytes N], claude
//! ```
//!
//! Every figure runs creel and bare `podman` side by side in the same run, on the same image
//! (`localhost/creel-test:latest`, scripts/build-test-image.sh) and with the same container
//! flags: the bare argument vectors are built by `creel_engine::internals::run_args` from a
//! real job's spec. creel is measured through its real faces (the `creel` binary built by this
//! `cargo bench`, the in-process `Engine`, `creel mcp`); nothing is faked. This is a
//! `harness = false` bench: `cargo test` never runs it, and it asserts no timings.

mod chaos;
mod claude;
mod concurrent;
mod dashboard;
mod git_session;
mod mcp_load;
mod query;
mod scale;
mod start;
mod throughput;
mod util;

use std::fmt::Write as _;
use std::path::PathBuf;

/// Command-line options.
pub struct Opts {
    /// Where the bench environments live (several GB for `throughput`).
    pub base: PathBuf,
    /// Iterations for start latencies.
    pub iters: usize,
    /// Concurrent jobs.
    pub jobs: usize,
    /// Sessions inserted for `scale`.
    pub sessions: usize,
    /// Size of the big output (bytes).
    pub big_bytes: u64,
    /// Throughput trials per workload.
    pub trials: usize,
    /// Keep the environments.
    pub keep: bool,
    /// Jobs for `chaos`.
    pub chaos_jobs: usize,
    /// SIGKILLs for `chaos`.
    pub kills: u64,
    /// The seed of `chaos`'s random choices.
    pub seed: u64,
    /// Sessions opened and closed by `mcp-load`.
    pub mcp_sessions: usize,
    /// Files at HEAD of the `git` figure's repository.
    pub repo_files: usize,
    /// MiB of history in it.
    pub history_mib: u64,
}

/// Whether a figure met its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    Info,
}

/// One line of the results table.
pub struct Row {
    pub figure: String,
    pub creel: String,
    pub bare: String,
    pub ratio: String,
    pub goal: String,
    pub verdict: Verdict,
}

/// The results of a run.
#[derive(Default)]
pub struct Report {
    sections: Vec<(String, Vec<Row>, Vec<String>)>,
}

impl Report {
    pub fn section(&mut self, name: &str) {
        self.sections
            .push((name.to_string(), Vec::new(), Vec::new()));
        eprintln!("== {name} (load {})", util::loadavg());
    }

    pub fn row(
        &mut self,
        figure: impl Into<String>,
        creel: impl Into<String>,
        bare: impl Into<String>,
        ratio: impl Into<String>,
        goal: impl Into<String>,
        verdict: Verdict,
    ) {
        let row = Row {
            figure: figure.into(),
            creel: creel.into(),
            bare: bare.into(),
            ratio: ratio.into(),
            goal: goal.into(),
            verdict,
        };
        eprintln!(
            "   {} | creel {} | bare {} | {} | goal {} | {:?}",
            row.figure, row.creel, row.bare, row.ratio, row.goal, row.verdict
        );
        self.sections.last_mut().expect("section").1.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("   note: {note}");
        self.sections.last_mut().expect("section").2.push(note);
    }

    fn markdown(&self, machine: &[String], command: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "command: `{command}`\n");
        for m in machine {
            let _ = writeln!(s, "- {m}");
        }
        for (name, rows, notes) in &self.sections {
            let _ = writeln!(
                s,
                "\n### {name}\n\n`cargo bench -p creel --bench overhead -- {name}`\n"
            );
            let _ = writeln!(s, "| figure | creel | bare podman | ratio | goal | |");
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            for r in rows {
                let v = match r.verdict {
                    Verdict::Met => "met",
                    Verdict::Missed => "**missed**",
                    Verdict::Info => "",
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {v} |",
                    r.figure, r.creel, r.bare, r.ratio, r.goal
                );
            }
            for n in notes {
                let _ = writeln!(s, "\n- {n}");
            }
        }
        s
    }
}

const FIGURES: [&str; 5] = ["start", "query", "throughput", "scale", "concurrent"];
/// Figures run only when named (RELIABILITY.md).
const EXTRA_FIGURES: [&str; 5] = ["chaos", "mcp-load", "git", "dashboard", "claude"];

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench -p creel --bench overhead -- [{}|{}...] [--iters N] [--jobs N] [--sessions N] [--big-bytes N] [--trials N] [--chaos-jobs N] [--kills N] [--seed N] [--mcp-sessions N] [--repo-files N] [--history-mib N] [--dir DIR] [--out FILE] [--keep]",
        FIGURES.join("|"),
        EXTRA_FIGURES.join("|")
    );
    std::process::exit(2)
}

fn main() {
    let mut figures = Vec::new();
    let mut opts = Opts {
        base: std::env::temp_dir().join(format!("creel-bench-{}", std::process::id())),
        iters: 15,
        jobs: 50,
        sessions: 10_000,
        big_bytes: 1 << 30,
        trials: 3,
        keep: false,
        chaos_jobs: 100,
        mcp_sessions: 4000,
        repo_files: 100_000,
        history_mib: 1024,
        kills: 1000,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    };
    let mut out: Option<PathBuf> = None;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    let num =
        |v: Option<&String>| -> u64 { v.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()) };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {} // cargo bench passes it
            "--iters" => opts.iters = num(it.next()) as usize,
            "--jobs" => opts.jobs = num(it.next()) as usize,
            "--sessions" => opts.sessions = num(it.next()) as usize,
            "--big-bytes" => opts.big_bytes = num(it.next()),
            "--trials" => opts.trials = num(it.next()).max(1) as usize,
            "--dir" => opts.base = PathBuf::from(it.next().unwrap_or_else(|| usage())),
            "--out" => out = Some(PathBuf::from(it.next().unwrap_or_else(|| usage()))),
            "--keep" => opts.keep = true,
            "--chaos-jobs" => opts.chaos_jobs = num(it.next()).max(1) as usize,
            "--kills" => opts.kills = num(it.next()),
            "--mcp-sessions" => opts.mcp_sessions = num(it.next()).max(1) as usize,
            "--seed" => opts.seed = num(it.next()) | 1,
            "--repo-files" => opts.repo_files = num(it.next()).max(1) as usize,
            "--history-mib" => opts.history_mib = num(it.next()),
            f if FIGURES.contains(&f) || EXTRA_FIGURES.contains(&f) => figures.push(f.to_string()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if figures.is_empty() {
        figures = FIGURES.iter().map(|s| s.to_string()).collect();
    }
    if !util::podman(&["image", "exists", util::TEST_IMAGE]) {
        eprintln!(
            "error: image {} missing: run scripts/build-test-image.sh",
            util::TEST_IMAGE
        );
        std::process::exit(3);
    }
    std::fs::create_dir_all(&opts.base).expect("create the bench directory");
    let machine = util::machine();
    for m in &machine {
        eprintln!("{m}");
    }
    let mut report = Report::default();
    for f in &figures {
        report.section(f);
        match f.as_str() {
            "start" => start::run(&opts, &mut report),
            "query" => query::run(&opts, &mut report),
            "throughput" => throughput::run(&opts, &mut report),
            "scale" => scale::run(&opts, &mut report),
            "concurrent" => concurrent::run(&opts, &mut report),
            "chaos" => chaos::run(&opts, &mut report),
            "mcp-load" => mcp_load::run(&opts, &mut report),
            "git" => git_session::run(&opts, &mut report),
            "dashboard" => dashboard::run(&opts, &mut report),
            "claude" => claude::run(&opts, &mut report),
            _ => unreachable!(),
        }
        report.note(format!("load after: {}", util::loadavg()));
    }
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&opts.base);
    }
    let command = format!(
        "cargo bench -p creel --bench overhead -- {}",
        argv.iter()
            .filter(|a| *a != "--bench")
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let md = report.markdown(&machine, command.trim_end());
    println!("{md}");
    if let Some(path) = out {
        std::fs::write(&path, &md).expect("write --out");
        eprintln!("wrote {}", path.display());
    }
}
