//! The engine's error types: one enum per concern, gathered into [`Error`].

use std::path::PathBuf;

use crate::remedy::Remedy;

/// Whether an error is the caller's fault or the environment's (exit codes 2 and 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCategory {
    /// Bad input: usage, unknown job or session, busy session.
    Invalid,
    /// The environment failed: runtime missing or broken, image missing, no login, store.
    Environment,
}

/// Everything an [`crate::Engine`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A session id that does not match `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
    #[error("invalid session id {id:?}: {reason}")]
    InvalidSessionId {
        /// The id as given (debug-quoted, so control characters stay visible).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request that cannot be served as asked.
    #[error("{0}")]
    InvalidRequest(String),
    /// No job with this id is known.
    #[error("unknown job `{0}`")]
    UnknownJob(String),
    /// No session with this id is known.
    #[error("unknown session `{0}`")]
    UnknownSession(String),
    /// The session already has a job that has not finished.
    #[error("session `{session}` is busy: job `{job}` is still {state}")]
    SessionBusy {
        /// The session.
        session: String,
        /// Its active job.
        job: String,
        /// That job's state.
        state: String,
    },
    /// A job state rule was broken (e.g. a transition out of a final state).
    #[error("job `{job}` is {state}: cannot {action}")]
    IncorrectState {
        /// The job.
        job: String,
        /// Its current state.
        state: String,
        /// What was attempted.
        action: &'static str,
    },
    /// The session's budget is spent.
    #[error("session `{session}` has spent its budget: {why}")]
    BudgetSpent {
        /// The session.
        session: String,
        /// Which limit, and how much was used.
        why: String,
    },
    /// `reply`/`approve` for a job with no such open request.
    #[error("job `{job}` is not waiting for {what} (it is {state})")]
    NotWaiting {
        /// The job.
        job: String,
        /// Its state and activity, in words.
        state: String,
        /// `an answer` or `an approval`, or the request asked for.
        what: String,
    },
    /// The configured image is not present in the runtime's storage.
    #[error("image `{image}` is not present in {runtime}'s image store")]
    ImageMissing {
        /// The image reference.
        image: String,
        /// The runtime that was asked.
        runtime: String,
    },
    /// Neither an API key nor an OAuth login is available.
    #[error(
        "no Claude login found: set ANTHROPIC_API_KEY, `api_key_file`, or log in so that `{credentials}` exists"
    )]
    NoLogin {
        /// Where an OAuth credentials file was looked for.
        credentials: PathBuf,
    },
    /// A workspace that cannot be used.
    #[error("workspace `{path}`: {reason}")]
    Workspace {
        /// The workspace path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Configuration error.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Store (database) error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Container runtime error.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Building the sandbox image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A session's git branch: a bad repository or ref, a conflict while landing, git failing.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The Kubernetes API could not be reached, or refused (`runtime = "kubernetes"`).
    #[error("Kubernetes: cannot {action}")]
    Cluster {
        /// What creel was doing.
        action: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A filesystem operation failed.
    #[error("{action} `{path}`")]
    Io {
        /// What creel was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Caller's fault or environment's fault.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::InvalidSessionId { .. }
            | Error::InvalidRequest(_)
            | Error::UnknownJob(_)
            | Error::UnknownSession(_)
            | Error::SessionBusy { .. }
            | Error::IncorrectState { .. }
            | Error::NotWaiting { .. }
            | Error::BudgetSpent { .. }
            | Error::Workspace { .. } => ErrorCategory::Invalid,
            Error::Config(_) => ErrorCategory::Invalid,
            Error::Git(e) => match e {
                GitError::Missing
                | GitError::Spawn(_)
                | GitError::Io(_)
                | GitError::Failed { .. } => ErrorCategory::Environment,
                _ => ErrorCategory::Invalid,
            },
            Error::ImageMissing { .. }
            | Error::NoLogin { .. }
            | Error::Store(_)
            | Error::Runtime(_)
            | Error::Image(_)
            | Error::Cluster { .. }
            | Error::Io { .. } => ErrorCategory::Environment,
        }
    }

    /// A suggestion for the user, where one helps.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::InvalidSessionId { .. } => Some(Remedy::SessionIdFormat),
            Error::UnknownJob(_) => Some(Remedy::FindJob),
            Error::SessionBusy { job, .. } => Some(Remedy::WaitOrCancel { job: job.clone() }),
            Error::BudgetSpent { session, .. } => Some(Remedy::RaiseBudget {
                session: session.clone(),
            }),
            Error::ImageMissing { image, runtime } => {
                Some(Remedy::missing_image(image, runtime == "docker"))
            }
            Error::NoLogin { .. } => Some(Remedy::Login),
            Error::Runtime(e) => e.remedy(),
            Error::Image(e) => e.remedy(),
            _ => None,
        }
    }

    pub(crate) fn cluster(
        action: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Cluster {
            action: action.into(),
            source: source.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store `{path}` failed")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A row holds something this version cannot read.
    #[error("store `{path}`: corrupt row for {what}: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which row.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// An image build failure.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A program the build needs is not installed.
    #[error("`{tool}` not found on PATH; it is needed to {purpose}")]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// What for.
        purpose: &'static str,
    },
    /// A step needs root.
    #[error("{step} needs root (debootstrap creates device nodes and root-owned files)")]
    NeedsRoot {
        /// The step.
        step: &'static str,
    },
    /// No Claude Code build exists for this machine.
    #[error("no Claude Code build for this machine's architecture `{0}` (x86_64 and aarch64 only)")]
    Architecture(&'static str),
    /// A program ran and failed.
    #[error("`{command}` failed ({status}); its last output:\n{tail}")]
    Failed {
        /// The command line (program and fixed arguments).
        command: String,
        /// Exit status.
        status: String,
        /// The last lines it printed.
        tail: String,
        /// Whether this was an online build (for the hint).
        online: bool,
    },
    /// A program could not be started.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// npm handed over a package other than the pinned one.
    #[error(
        "the npm package `{package}` has integrity {got}, not the pinned {expected}; refusing it"
    )]
    Integrity {
        /// The package spec.
        package: String,
        /// The pinned value.
        expected: &'static str,
        /// What npm reported.
        got: String,
    },
    /// Output of a program that creel could not understand.
    #[error("cannot understand the output of `{command}`: {message}")]
    Parse {
        /// The command.
        command: String,
        /// What went wrong.
        message: String,
    },
    /// A filesystem operation failed.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What creel was doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// A suggestion for the user.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            ImageError::ToolMissing { tool, .. } => Some(Remedy::InstallTool {
                tool: tool.to_string(),
            }),
            ImageError::NeedsRoot { .. } => Some(Remedy::BuildOfflineAsRoot),
            ImageError::Failed {
                online: true, tail, ..
            } if tail.contains("registry")
                || tail.contains("no such host")
                || tail.contains("pull") =>
            {
                Some(Remedy::BuildOffline)
            }
            ImageError::Failed { command, .. } if command.starts_with("debootstrap") => {
                Some(Remedy::DebianMirror)
            }
            ImageError::Failed { command, .. } if command.starts_with("npm") => {
                Some(Remedy::NpmRegistry)
            }
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// A git failure, or a request about git that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git is not installed.
    #[error("`git` not found on PATH; sessions with --repo need it")]
    Missing,
    /// git could not be started.
    #[error("cannot run git")]
    Spawn(#[source] std::io::Error),
    /// A file of the session (its repository, its checkout, the copy of the agent's `.git`)
    /// could not be read or written.
    #[error("cannot read or write the session's files")]
    Io(#[source] std::io::Error),
    /// git ran and failed.
    #[error("`git {command}` failed ({status}): {stderr}")]
    Failed {
        /// The subcommand.
        command: String,
        /// Exit status.
        status: String,
        /// Its stderr, trimmed and cut.
        stderr: String,
    },
    /// Not a git repository.
    #[error("`{path}` is not inside a git repository")]
    NotARepository {
        /// The path given.
        path: PathBuf,
    },
    /// A bare repository has no work tree to start from.
    #[error(
        "`{path}` is a bare repository; give a repository with a work tree (or a clone of this one)"
    )]
    Bare {
        /// The path given.
        path: PathBuf,
    },
    /// The ref does not name a commit.
    #[error("`{reference}` does not name a commit in `{repo}`")]
    UnknownRef {
        /// The repository.
        repo: PathBuf,
        /// The ref given.
        reference: String,
    },
    /// A path creel cannot mount or store safely.
    #[error("`{path}`: {reason}")]
    UnusablePath {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The session was not started with `--repo`.
    #[error("session `{0}` has no git branch (it was not started with --repo)")]
    NoBranch(String),
    /// A job of another session, or one that recorded no commit.
    #[error("job `{job}` recorded no commit in session `{session}`")]
    NoJobCommit {
        /// The session.
        session: String,
        /// The job.
        job: String,
    },
    /// Landing would conflict; nothing was changed.
    #[error(
        "{action} would conflict in {}; your repository was left as it was",
        list(files)
    )]
    Conflict {
        /// merge or apply.
        action: &'static str,
        /// The files in conflict.
        files: Vec<String>,
    },
    /// HEAD is detached and no branch was named.
    #[error("`{repo}` has a detached HEAD: say which branch to merge into (--into BRANCH)")]
    DetachedHead {
        /// The user's repository.
        repo: PathBuf,
    },
    /// The target branch is checked out with uncommitted changes in the files a merge touches.
    #[error(
        "`{branch}` is checked out in `{repo}` with uncommitted changes that the merge would overwrite ({}); commit or stash them first",
        list(files)
    )]
    Dirty {
        /// The user's repository.
        repo: PathBuf,
        /// The branch.
        branch: String,
        /// The files.
        files: Vec<String>,
    },
    /// The session changed files that decide what git runs while it writes a work tree.
    #[error(
        "the session changed {}, which decide what your git runs or contacts while writing files; land it with `creel branch` and review it yourself",
        list(files)
    )]
    NeedsReview {
        /// The files.
        files: Vec<String>,
    },
    /// The branch exists in the user's repository and the session branch does not extend it.
    #[error(
        "branch `{branch}` in `{repo}` has commits the session branch lacks; it was left as it was (delete or rename it first)"
    )]
    BranchDiverged {
        /// The user's repository.
        repo: PathBuf,
        /// The branch.
        branch: String,
    },
}

fn list(files: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = files
        .iter()
        .take(SHOWN)
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if files.len() > SHOWN {
        s.push_str(&format!(" and {} more", files.len() - SHOWN));
    }
    s
}

/// A container runtime failure, keeping the program's exit status and stderr.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime binary is not installed.
    #[error("container runtime `{bin}` not found")]
    Missing {
        /// The binary looked for.
        bin: String,
    },
    /// The binary could not be started.
    #[error("cannot run `{bin}`")]
    Spawn {
        /// The binary.
        bin: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime ran and failed.
    #[error("`{bin} {command}` failed ({status}): {stderr}")]
    Failed {
        /// The binary.
        bin: String,
        /// The subcommand.
        command: String,
        /// Exit status.
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
        /// What the failure was about, read from `stderr` once, where it was made
        /// ([`RuntimeError::failed`]).
        failure: Failure,
    },
    /// The runtime's answer could not be understood.
    #[error("cannot understand `{bin} {command}` output: {message}")]
    Parse {
        /// The binary.
        bin: String,
        /// The subcommand.
        command: String,
        /// What went wrong.
        message: String,
    },
}

/// What a failed runtime command was about. The container engines report failures only as
/// text; [`Failure::of`] is the one place that knows their words (Podman 4.3 and Docker 20+ as
/// shipped by Debian 12), so that nothing else in creel matches on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The container does not exist (any more).
    NoSuchContainer,
    /// `inspect` found no object of that name (Docker's word for a missing container or image).
    NoSuchObject,
    /// A container of that name exists already.
    NameInUse,
    /// The image is not in local storage.
    ImageMissing,
    /// crun could not set up cgroups (the runc remedy applies).
    CrunCgroup,
    /// A resource limit could not be applied.
    Rlimit,
    /// Anything else.
    Other,
}

impl Failure {
    /// Reads a runtime's stderr.
    pub fn of(stderr: &str) -> Failure {
        let s = stderr.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| s.contains(w));
        if any(&["no such container", "no container with name or id"]) {
            Failure::NoSuchContainer
        } else if any(&[
            "image not known",
            "no such image",
            "unable to find image",
            "image not found",
        ]) {
            Failure::ImageMissing
        } else if s.contains("no such object") {
            Failure::NoSuchObject
        } else if s.contains("already in use") {
            Failure::NameInUse
        } else if s.contains("crun") && s.contains("cgroup") {
            Failure::CrunCgroup
        } else if s.contains("rlimit") {
            Failure::Rlimit
        } else {
            Failure::Other
        }
    }
}

impl RuntimeError {
    /// A failed runtime command, its stderr classified once.
    pub fn failed(
        bin: impl Into<String>,
        command: impl Into<String>,
        status: impl Into<String>,
        stderr: impl Into<String>,
    ) -> RuntimeError {
        let stderr = stderr.into();
        RuntimeError::Failed {
            bin: bin.into(),
            command: command.into(),
            status: status.into(),
            failure: Failure::of(&stderr),
            stderr,
        }
    }

    /// What a failed command was about ([`Failure::Other`] for errors that are not failures).
    pub fn failure(&self) -> Failure {
        match self {
            RuntimeError::Failed { failure, .. } => *failure,
            _ => Failure::Other,
        }
    }

    /// A hint for the user.
    pub fn remedy(&self) -> Option<Remedy> {
        Some(match self {
            RuntimeError::Missing { bin } => Remedy::InstallRuntime {
                podman: bin.contains("podman"),
            },
            _ => match self.failure() {
                Failure::CrunCgroup => Remedy::UseRunc,
                Failure::Rlimit => Remedy::RaiseRlimits,
                _ => Remedy::CheckHost,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Failure::{self, *};

    #[test]
    fn runtime_failures_are_classified_from_both_engines_words() {
        for (stderr, want) in [
            (
                "Error: no container with name or id \"x\" found: no such container",
                NoSuchContainer,
            ),
            ("Error: No such container: x", NoSuchContainer),
            ("Error: No such object: x", NoSuchObject),
            ("Error: x: image not known", ImageMissing),
            ("Error: No such image: x", ImageMissing),
            ("Unable to find image 'x:latest' locally", ImageMissing),
            (
                "Error: creating container storage: the container name \"creel-x\" is already in use by abc",
                NameInUse,
            ),
            (
                "Conflict. The container name \"/creel-x\" is already in use",
                NameInUse,
            ),
            ("crun: cannot set up cgroup", CrunCgroup),
            ("setrlimit RLIMIT_NOFILE: operation not permitted", Rlimit),
            ("permission denied", Other),
        ] {
            assert_eq!(Failure::of(stderr), want, "{stderr}");
        }
    }
}
