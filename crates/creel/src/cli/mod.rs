//! The command line: global options, one file per subcommand, error reporting and exit codes.

mod budget;
mod cancel;
mod cleanup;
mod doctor;
mod image;
mod jobs;
mod kube;
mod land;
mod monitor;
mod output;
mod pool;
pub(crate) mod remedy;
mod reply;
mod run;
mod sessions;
mod start;
mod status;
mod wait;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use creel_engine::config::RuntimeKind;
use creel_engine::{Config, Engine, EngineOptions, ErrorCategory, MonitorLauncher};

const LONG_ABOUT: &str = "\
creel runs Claude Code (`claude -p --dangerously-skip-permissions`) as background jobs inside \
hardened Podman (rootless or as root) or Docker containers: all capabilities dropped, no new privileges, \
read-only root, memory/CPU/pids limits, the prompt delivered as a read-only file. Jobs outlive \
the command that started them; their state and byte-exact output live under --home.

Typical use:
  creel run 'add a --verbose flag and tests'          start and follow a job
  creel start --session repo-1 'fix the failing test' start in the background; prints the job id
  creel status JOB; creel output JOB --follow        look in on it
  creel start --session repo-1 'now update the docs' continue the same conversation
  creel start --repo . 'fix the failing test'        work on a branch of this repository
  creel diff SESSION; creel merge SESSION            review the branch, then land it
  creel mcp                                          serve the same verbs to an agent (MCP)";

const EXIT_CODES: &str = "\
EXIT STATUS:
  0  done; for run/wait: the job completed
  1  for run/wait: the job ended failed or cancelled
  2  invalid request: usage, bad input, unknown job or session, busy session
  3  environment: runtime missing or broken, image missing, no login, store unreadable
  4  wait --timeout expired with the job still running
  5  for wait: the job waits for an answer (creel reply / creel approve)";

/// Run Claude Code jobs in hardened rootless containers.
#[derive(Debug, Parser)]
#[command(name = "creel", version, long_about = LONG_ABOUT, after_long_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// State directory: the job store, outputs and session state [default: $XDG_DATA_HOME/creel]
    #[arg(long, global = true, env = "CREEL_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// TOML config file [default: $XDG_CONFIG_HOME/creel/config.toml]
    #[arg(long, global = true, env = "CREEL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log more to stderr (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a job and follow it, rendered for people
    ///
    /// Prints Claude's messages, tool calls and a final line with turns, cost and duration.
    /// With --json, Claude's stream-json is passed through unchanged. Exits 0 when the job
    /// completed, 1 when it failed or was cancelled. Ctrl-C stops following, not the job.
    #[command(mut_arg("json", |a| a.help("Pass Claude's stream-json through unchanged, one event per line")))]
    Run(start::StartArgs),
    /// Start a job in the background and print its id
    ///
    /// Returns at once with {jobId, sessionId, status}; a monitor process runs the container.
    #[command(mut_arg("json", |a| a.help("Print {jobId, sessionId, status, workspace, branch, warnings} as JSON")))]
    Start(start::StartArgs),
    /// Show a job's state, error, activity, metrics and the tail of its output
    Status(status::StatusArgs),
    /// Print a job's output by byte offset (raw stream-json or a rendered transcript)
    Output(output::OutputArgs),
    /// Wait for a job to end
    ///
    /// Exits 0 if it completed, 1 if it failed or was cancelled, 4 if --timeout expired first.
    Wait(wait::WaitArgs),
    /// Cancel a job and stop its container (idempotent)
    Cancel(cancel::CancelArgs),
    /// Answer the question a running job asked (Claude's mcp__creel__ask)
    ///
    /// The answer reaches Claude as the question's result and the job goes on. `creel status`
    /// shows the question (activity needs_input); `creel wait` ends with exit code 5 when a
    /// job asks.
    Reply(reply::ReplyArgs),
    /// Send a running job another message, e.g. "also update the docs"
    ///
    /// Claude reads it as the next user message, once it has answered the ones before; the
    /// job ends after it has answered them all. For a job that has ended, start a new job in
    /// its session instead (it continues the conversation).
    Send(reply::SendArgs),
    /// Allow (or with --deny refuse) the tool use a job waits on (permissions = "ask")
    ///
    /// `creel status` shows the tool and its input (activity needs_approval).
    Approve(reply::ApproveArgs),
    /// List jobs, newest first: id, session, state, when, the prompt's first line
    ///
    /// Filter with --session and --state (e.g. --state active for pending or running jobs).
    Jobs(jobs::JobsArgs),
    /// List sessions: workspace, job count, active job, Claude conversation
    Sessions(sessions::SessionsArgs),
    /// Show a session's budget (dollars, turns, running time), spent and left; or change it
    ///
    /// A job that spends the rest ends failed with error kind `budget`, and `start` refuses the
    /// session until the budget is raised; the next job then resumes the conversation.
    Budget(budget::BudgetArgs),
    /// Show what a --repo session changed: the patch since it started, or one job's
    ///
    /// Reads creel's copy of the session branch only; your repository is not touched.
    Diff(land::DiffArgs),
    /// List the commits on a --repo session's branch: one per job, plus Claude's own
    Log(land::LogArgs),
    /// Apply a --repo session's changes to your work tree as uncommitted edits
    ///
    /// All or nothing: if any file does not take the patch, nothing is changed and the
    /// files are listed.
    Apply(land::ApplyArgs),
    /// Merge a --repo session's branch into a branch of your repository
    ///
    /// Fast-forwards when it can, else makes a merge commit. On a conflict nothing is changed
    /// and the conflicting files are listed.
    Merge(land::MergeArgs),
    /// Fetch a --repo session's branch into your repository as creel/<session>
    ///
    /// For review in your own tools or a pull request. Never overwrites commits of yours.
    Branch(land::BranchArgs),
    /// Remove idle sessions: their containers, records and Claude state
    Cleanup(cleanup::CleanupArgs),
    /// Show, fill or drain the warm pool (config `pool = N`): sandboxes started ahead
    ///
    /// A pooled sandbox is a container already started (with its egress proxy) that waits for
    /// a prompt: a start that makes a new session takes one and is running at once. Starts
    /// top the pool up behind them; `creel pool fill` fills it first.
    Pool(pool::PoolArgs),
    /// Check this host: runtime, OCI runtime, cgroups, rlimits, rootless limits, network, image, login
    Doctor(doctor::DoctorArgs),
    /// Serve the job tools over the Model Context Protocol (stdio, or streamable HTTP)
    ///
    /// Tools: claude_code_start, claude_code_status, claude_code_output, claude_code_cancel,
    /// claude_code_reply, claude_code_approve, claude_code_send, claude_code_diff,
    /// claude_code_land, claude_code_cleanup, claude_code_sessions. Jobs outlive the server.
    Mcp(crate::mcp::McpArgs),
    /// Serve Claude Code in creel to Agent Client Protocol clients (Zed, acpx, OpenClaw)
    ///
    /// An ACP client (an editor or agent host) starts `creel acp` as its agent. Each ACP
    /// session is a creel session whose workspace is the client's working directory; each
    /// prompt is a creel job in it, streamed back as it runs (messages, tool calls with diffs,
    /// the plan). Modes: `ask` (permission requests go to the client) or `skip`. Jobs
    /// outlive the connection: `creel jobs` finds them and session/load reopens them.
    Acp(crate::acp::AcpArgs),
    /// Serve a live web dashboard: sessions, jobs, transcripts, controls
    ///
    /// Prints its URL (with a login token) as the first line on stdout and serves until
    /// Ctrl-C. Loopback only unless --allow-remote; only your own processes may connect.
    /// Everything it shows comes from creel's store: stopping it loses nothing.
    Ui(crate::ui::UiArgs),
    /// Build the sandbox image: Claude Code (pinned) on Debian bookworm, for a non-root user
    ///
    /// Builds `localhost/creel-claude:<claude code version>` and `:latest` from the
    /// Containerfile shipped with creel. --offline needs no container registry: the base is a
    /// debootstrap'ed Debian rootfs and Claude Code comes from its npm package (cached).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Serve a scripted stand-in for the Anthropic Messages API (no model, no tokens spent)
    ///
    /// Point Claude at it with `api_base_url` (or ANTHROPIC_BASE_URL) for dry runs of an
    /// orchestration. It answers turn by turn from a TOML or JSON script (text, tool calls,
    /// HTTP errors, or silence) and can log every request it receives as JSON lines.
    FakeModel(crate::fake_model::FakeModelArgs),
    /// Kubernetes: render a job's manifests (Pod, volume, Secret, policy); serve the egress proxy
    #[command(subcommand)]
    Kube(kube::KubeCommand),
    /// Internal: the per-job monitor process
    #[command(name = "__monitor", hide = true)]
    Monitor(monitor::MonitorArgs),
    /// Internal: the watcher of this store's jobs on a Kubernetes cluster
    #[command(name = "__kube-watch", hide = true)]
    KubeWatch,
    /// Internal: a stand-in Kubernetes API server that runs pods with Podman (tests)
    #[command(name = "fake-kube", hide = true)]
    FakeKube(crate::fake_kube::FakeKubeArgs),
}

pub use crate::exit::ExitStatus;

pub use crate::choice::EngineChoice;

impl Command {
    /// Whether the user asked for JSON: then an error is also printed as JSON on stdout.
    pub fn json(&self) -> bool {
        match self {
            Command::Run(a) | Command::Start(a) => a.json,
            Command::Status(a) => a.json,
            Command::Output(a) => a.json,
            Command::Wait(a) => a.json,
            Command::Cancel(a) => a.json,
            Command::Reply(a) => a.json,
            Command::Send(_) => false,
            Command::Approve(a) => a.json,
            Command::Jobs(a) => a.json,
            Command::Sessions(a) => a.json,
            Command::Budget(a) => a.json,
            Command::Diff(a) => a.json,
            Command::Log(a) => a.json,
            Command::Apply(a) => a.json,
            Command::Merge(a) => a.json,
            Command::Branch(a) => a.json,
            Command::Cleanup(a) => a.json,
            Command::Pool(a) => a.json,
            Command::Doctor(a) => a.json,
            Command::Image(image::ImageCommand::Build(a)) => a.json,
            Command::Mcp(_)
            | Command::Acp(_)
            | Command::Ui(_)
            | Command::FakeModel(_)
            | Command::Kube(_)
            | Command::Monitor(_)
            | Command::KubeWatch
            | Command::FakeKube(_) => false,
        }
    }
}

pub fn init_tracing(global: &GlobalArgs) {
    let level = match global.verbose {
        // The ACP SDK warns about every error response it sends: those are answers to the
        // client, not problems of creel's.
        0 => "warn,agent_client_protocol=error",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CREEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitStatus> {
    let g = &cli.global;
    match cli.command {
        Command::Run(args) => run::run(&open_engine_with(g, &args.engine)?, args),
        Command::Start(args) => start::run(&open_engine_with(g, &args.engine)?, args),
        Command::Status(args) => status::run(&open_engine(g)?, args),
        Command::Output(args) => output::run(&open_engine(g)?, args),
        Command::Wait(args) => wait::run(&open_engine(g)?, args),
        Command::Jobs(args) => jobs::run(&open_engine(g)?, args),
        Command::Cancel(args) => cancel::run(&open_engine(g)?, args),
        Command::Reply(args) => reply::reply(&open_engine(g)?, args),
        Command::Send(args) => reply::send(&open_engine(g)?, args),
        Command::Approve(args) => reply::approve(&open_engine(g)?, args),
        Command::Sessions(args) => sessions::run(&open_engine(g)?, args),
        Command::Budget(args) => budget::run(&open_engine(g)?, args),
        Command::Diff(args) => land::diff(&open_engine(g)?, args),
        Command::Log(args) => land::log(&open_engine(g)?, args),
        Command::Apply(args) => land::apply(&open_engine(g)?, args),
        Command::Merge(args) => land::merge(&open_engine(g)?, args),
        Command::Branch(args) => land::branch(&open_engine(g)?, args),
        Command::Cleanup(args) => cleanup::run(&open_engine(g)?, args),
        Command::Pool(args) => pool::run(&open_engine(g)?, args),
        Command::Kube(kube::KubeCommand::Proxy(a)) => kube::run_proxy(a),
        Command::Kube(cmd) => kube::run(&open_engine(g)?, cmd),
        Command::Doctor(args) => doctor::run(&open_engine_with(g, &args.engine)?, g, args),
        Command::Ui(args) => {
            crate::ui::run(open_engine_with(g, &args.engine)?, args)?;
            Ok(ExitStatus::Success)
        }
        Command::Acp(args) => {
            let engine = open_engine_with(g, &args.engine);
            crate::acp::run(engine, args)?;
            Ok(ExitStatus::Success)
        }
        Command::Mcp(args) => {
            let engine = open_engine_with(g, &args.engine);
            crate::mcp::run(engine, args)?;
            Ok(ExitStatus::Success)
        }
        Command::Monitor(args) => monitor::run(g, args),
        Command::KubeWatch => monitor::run_kube_watch(g),
        Command::FakeKube(args) => crate::fake_kube::run(args),
        Command::Image(cmd) => image::run(g, cmd),
        Command::FakeModel(args) => crate::fake_model::run(args),
    }
}

/// `--home`, or `$XDG_DATA_HOME/creel`, or `~/.local/share/creel`.
pub fn home_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(h) = &global.home {
        return Ok(h.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("creel"));
    }
    let home = std::env::var_os("HOME")
        .context("neither --home, CREEL_HOME, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/creel"))
}

pub(crate) fn config_path(global: &GlobalArgs) -> (Option<PathBuf>, bool) {
    if let Some(c) = &global.config {
        return (Some(c.clone()), true);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    (base.map(|b| b.join("creel/config.toml")), false)
}

/// Loads the config (file, then `CREEL_*` env) and opens the engine.
pub fn open_engine(global: &GlobalArgs) -> anyhow::Result<Engine> {
    open_engine_with(global, &EngineChoice::default())
}

/// Loads the config (file, then `CREEL_*` env, then `--runtime`/`--image`) and opens the
/// engine.
pub fn open_engine_with(global: &GlobalArgs, choice: &EngineChoice) -> anyhow::Result<Engine> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for (name, guess) in creel_engine::config::unknown_env_vars(names.iter().map(String::as_str)) {
        match guess {
            Some(g) => eprintln!("warning: {name} is not a creel setting (did you mean {g}?)"),
            None => eprintln!("warning: {name} is not a creel setting; it is ignored"),
        }
    }
    let (path, required) = config_path(global);
    let mut config = Config::load(path.as_deref(), required, &|k| std::env::var(k).ok())?;
    if let Some(r) = &choice.runtime {
        config.runtime = r.parse::<RuntimeKind>().map_err(anyhow::Error::msg)?;
    }
    if let Some(i) = &choice.image {
        config.image = i.clone();
    }
    config.validate()?;
    let home = home_dir(global)?;
    let mut opts = EngineOptions::from_env(home, config);
    opts.monitor = Some(MonitorLauncher {
        program: std::env::current_exe().context("cannot find the creel executable")?,
        args: vec!["__monitor".into()],
    });
    Ok(Engine::open(opts)?)
}

/// Prints `error: …`, the causes, and a hint on stderr; with `json`, the same as one JSON
/// object on stdout (`{"error": {"message", "causes", "hint", "exitCode"}}`), for scripts.
/// Returns the exit status.
pub fn report_error(err: &anyhow::Error, json: bool) -> ExitStatus {
    if err.downcast_ref::<crate::printer::BrokenPipe>().is_some() {
        return ExitStatus::Success;
    }
    let engine_err = err
        .chain()
        .find_map(|e| e.downcast_ref::<creel_engine::Error>());
    let status = match engine_err.map(|e| e.category()) {
        Some(ErrorCategory::Environment) => ExitStatus::Environment,
        Some(ErrorCategory::Invalid) => ExitStatus::Invalid,
        None if err.chain().any(|e| {
            e.downcast_ref::<creel_engine::config::ConfigError>()
                .is_some()
        }) || err.downcast_ref::<crate::exit::InvalidInput>().is_some() =>
        {
            ExitStatus::Invalid
        }
        None => ExitStatus::Environment,
    };
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  Caused by: {cause}");
    }
    let hint = engine_err
        .and_then(|e| e.remedy())
        .map(|r| remedy::phrase(&r));
    if let Some(h) = &hint {
        eprintln!("\nhint: {h}");
    }
    if json {
        let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
        let _ = crate::printer::json(&serde_json::json!({
            "error": {
                "message": err.to_string(),
                "causes": causes,
                "hint": hint,
                "exitCode": status as u8,
            }
        }));
    }
    status
}
