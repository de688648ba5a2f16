//! `creel image build`: the sandbox image, with progress on stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use creel_engine::image::{self, BuildOptions, Progress};

use super::{ExitStatus, GlobalArgs};
use crate::{printer, wire};

/// `creel image …`
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build the sandbox image `localhost/creel-claude:<version>` (also tagged `latest`)
    ///
    /// Debian bookworm with git, ripgrep, jq, python3 and build tools, a non-root user `agent`,
    /// and Claude Code pinned to one version with auto-update and nonessential traffic off.
    /// Online, Podman pulls `debian:bookworm-slim` and the build downloads Claude Code from
    /// npm. With --offline no container registry is needed: debootstrap makes the Debian base
    /// (as root, the first time) and npm on this host fetches Claude Code; both are cached, and
    /// a second build reuses them and Podman's layer cache. Prints the tags on stdout.
    Build(BuildArgs),
}

/// `creel image build` options.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build without a container registry: Debian from debootstrap, Claude Code from npm
    #[arg(long)]
    pub offline: bool,
    /// Where downloads are cached [default: /var/cache/creel as root, else ~/.cache/creel]
    #[arg(long, env = "CREEL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The Debian archive debootstrap uses (--offline)
    #[arg(long, value_name = "URL", default_value = image::DEFAULT_MIRROR)]
    pub mirror: String,
    /// Ignore every cache: bootstrap, download and build each layer again
    #[arg(long)]
    pub refresh: bool,
    /// Print {tags, imageId, claudeVersion, reused, elapsedSeconds} as JSON
    #[arg(long)]
    pub json: bool,
    /// Refused with docker (the build uses Podman; the error says how to move the image)
    #[arg(long, env = "CREEL_RUNTIME", value_name = "RUNTIME", value_parser = ["podman", "docker"])]
    pub runtime: Option<String>,
}

/// Runs an image subcommand.
pub fn run(g: &GlobalArgs, cmd: ImageCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ImageCommand::Build(args) => build(g, args),
    }
}

fn build(g: &GlobalArgs, args: BuildArgs) -> anyhow::Result<ExitStatus> {
    if args.runtime.as_deref() == Some("docker") {
        anyhow::bail!(
            "`creel image build` builds with Podman; for Docker, build it with Podman and then run \
             `podman save {} | docker load` (and tag it `{}`)",
            image::versioned_tag(),
            image::latest_tag()
        );
    }
    let mut opts = BuildOptions::new(
        None,
        args.offline,
        args.cache_dir.unwrap_or_else(image::default_cache_dir),
    );
    opts.mirror = args.mirror;
    opts.refresh = args.refresh;
    let mut view = ProgressView::new(g.verbose > 0);
    eprintln!(
        "creel: building {} (Claude Code {}, {}; cache {})",
        image::versioned_tag(),
        image::CLAUDE_CODE_VERSION,
        if opts.offline { "offline" } else { "online" },
        opts.cache_dir.display()
    );
    let result = image::build(&opts, &mut |p| view.show(p));
    view.clear_line();
    let report = result.context("failed to build the sandbox image")?;
    eprintln!(
        "creel: built {} in {} ({})",
        report.tags.join(" and "),
        seconds(report.elapsed),
        report.claude_version
    );
    if args.json {
        printer::json(&wire::ImageBuildWire::from(&report))?;
    } else {
        printer::out(format!("{}\n", report.tags.join("\n")).as_bytes())?;
    }
    Ok(ExitStatus::Success)
}

/// Progress on stderr: step lines always; the programs' output in full with -v, as one
/// rewritten status line on a terminal, not at all otherwise (a failure shows its last lines).
struct ProgressView {
    verbose: bool,
    tty: bool,
    width: usize,
    status_shown: bool,
}

impl ProgressView {
    fn new(verbose: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        ProgressView {
            verbose,
            tty,
            width: terminal_width().unwrap_or(100).clamp(20, 400),
            status_shown: false,
        }
    }

    fn show(&mut self, p: Progress<'_>) {
        let mut err = std::io::stderr().lock();
        match p {
            Progress::Step {
                index,
                total,
                title,
            } => {
                self.clear(&mut err);
                let _ = writeln!(err, "[{index}/{total}] {title}");
            }
            Progress::Reused(what) => {
                self.clear(&mut err);
                let _ = writeln!(err, "      reused: {what}");
            }
            Progress::StepDone { index, elapsed } => {
                self.clear(&mut err);
                let _ = writeln!(err, "      step {index} done in {}", seconds(elapsed));
            }
            Progress::Output(line) => {
                if self.verbose {
                    let _ = writeln!(err, "      | {line}");
                } else if self.tty && !line.trim().is_empty() {
                    let max = self.width.saturating_sub(9);
                    let shown: String =
                        line.chars().filter(|c| !c.is_control()).take(max).collect();
                    let _ = write!(err, "\r\x1b[K      | {shown}");
                    let _ = err.flush();
                    self.status_shown = true;
                }
            }
        }
    }

    fn clear(&mut self, err: &mut impl Write) {
        if self.status_shown {
            let _ = write!(err, "\r\x1b[K");
            self.status_shown = false;
        }
    }

    fn clear_line(&mut self) {
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a winsize struct for a terminal fd and fails otherwise.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0)
            .then_some(ws.ws_col as usize)
    }
}
