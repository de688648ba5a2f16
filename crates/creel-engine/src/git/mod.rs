//! A session's work on its own git branch.
//!
//! A session started with `--repo` gets three things under `$CREEL_HOME`:
//!
//! - **the session repository** `git/<session>/repo.git`: a bare repository that is creel's
//!   own. It borrows the user's objects through `objects/info/alternates` (nothing is copied)
//!   and holds the branch `creel/<session>`, one commit per job. It is never mounted writable
//!   into a container.
//! - **the checkout**, the session's workspace: a work tree of that branch, mounted at
//!   `/workspace`. Its `.git` is the agent's: creel makes it afresh before every job (HEAD on
//!   the session branch, an index that matches the tree, alternates to the session objects
//!   mounted read-only), so that `git status`, `diff`, `log` and `commit` work inside.
//! - after a job, **a quarantine copy** of the agent's refs and new objects (regular files only),
//!   from which the commits Claude made itself are fetched.
//!
//! **The trust rule.** Everything inside the checkout, its `.git` included, was written by the
//! agent. Git on the host never opens the agent's `.git` as a repository, and every git command
//! creel runs over the session repository goes through [`Git::trusted`]: no system or global
//! configuration, hooks, fsmonitor, external diff, textconv or pager, and no transport but local
//! files. The work tree is read as data (`git add` records symlinks as links and never follows
//! them; filters and drivers named in `.gitattributes` have no configuration to run). The
//! user's repository is only read while a session starts, and written only by `apply`, `merge`
//! and `branch`, through [`Git::user`].

mod land;
#[cfg(test)]
mod scenarios;
pub(crate) mod session;

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use land::{Changes, CommitInfo, DiffRequest, LandHow, LandReport, LandRequest};
pub use session::SessionGit;

pub use crate::error::GitError;

/// The most stdout a git command may return to creel (a diff is the largest); more is cut.
pub(crate) const MAX_OUTPUT: usize = 64 << 20;
/// The most stderr kept from a failed command.
const MAX_STDERR: usize = 4000;
/// How long one git command may run before it is killed: a checkout of 100,000 files takes
/// under a minute here, but objects and trees an agent wrote can make git work for hours.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(20 * 60);
/// The address space one git command may use (it maps packs; a zlib bomb must not take the
/// host's memory).
const MAX_ADDRESS_SPACE: u64 = 8 << 30;

/// The git program.
#[derive(Debug, Clone)]
pub(crate) struct Git {
    bin: PathBuf,
}

/// The configuration every command over the session repository runs with, after system and
/// global configuration are switched off. Each line closes a way for repository content or
/// configuration to run a program or reach outside the session.
const TRUSTED_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "core.pager=cat",
    "core.symlinks=true",
    "core.autocrlf=false",
    "core.quotePath=false",
    "core.sshCommand=false",
    "core.sharedRepository=0644",
    "safe.directory=*",
    "protocol.allow=never",
    "protocol.file.allow=always",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "diff.renames=true",
    "color.ui=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    "user.name=creel",
    "user.email=creel@localhost",
];

impl Git {
    /// git from PATH.
    pub(crate) fn find() -> Result<Git, GitError> {
        crate::files::find_in_path("git")
            .map(|bin| Git { bin })
            .ok_or(GitError::Missing)
    }

    /// A command over creel's session repository `git_dir` (and, when given, a work tree the
    /// agent wrote, read as data). Nothing from the environment, the system or the user's
    /// configuration applies.
    pub(crate) fn trusted(&self, git_dir: &Path, work_tree: Option<&Path>) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LC_ALL", "C")
            .env("HOME", "/nonexistent")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_DIR", git_dir);
        if let Some(w) = work_tree {
            c.env("GIT_WORK_TREE", w);
        }
        c.arg("--no-pager");
        for kv in TRUSTED_CONFIG {
            c.args(["-c", kv]);
        }
        c.stdin(Stdio::null());
        c
    }

    /// A command in the user's own repository, under the user's configuration (it is theirs),
    /// never prompting, never recursing into submodules.
    pub(crate) fn user(&self, repo: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
            .arg("--no-pager")
            .arg("-C")
            .arg(repo)
            .args(["-c", "color.ui=false", "-c", "core.quotePath=false"])
            // The session's commits carry the agent's `.gitmodules`: never act on it.
            .args([
                "-c",
                "submodule.recurse=false",
                "-c",
                "fetch.recurseSubmodules=false",
            ]);
        c.stdin(Stdio::null());
        c
    }
}

/// What a git command printed.
pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) truncated: bool,
}

/// Runs `cmd`; its stdout (cut at [`MAX_OUTPUT`]) on success, [`GitError::Failed`] otherwise.
pub(crate) fn run(cmd: Command) -> Result<Output, GitError> {
    run_status(cmd, &[0]).map(|(_, out)| out)
}

/// The commit (or other object) `spec` names, asked through `cmd` (a command in some
/// repository, as [`Git::trusted`] or [`Git::user`] make it); an error if it names none.
pub(crate) fn rev_parse(mut cmd: Command, spec: &str) -> Result<String, GitError> {
    cmd.args(["rev-parse", "--verify", "--end-of-options", spec]);
    object_id(&run(cmd)?, "rev-parse")
}

/// Whether commit `ancestor` is an ancestor of (or is) `of`, asked through `cmd`.
pub(crate) fn is_ancestor(mut cmd: Command, ancestor: &str, of: &str) -> Result<bool, GitError> {
    cmd.args(["merge-base", "--is-ancestor", ancestor, of]);
    Ok(run_status(cmd, &[0, 1])?.0 == 0)
}

/// Runs `cmd` and accepts any exit status in `ok` (e.g. `merge-tree` exits 1 on a conflict):
/// the status and stdout (cut at [`MAX_OUTPUT`]).
pub(crate) fn run_status(mut cmd: Command, ok: &[i32]) -> Result<(i32, Output), GitError> {
    let cmd = &mut cmd;
    use std::os::unix::process::CommandExt;
    let command = subcommand(cmd);
    // SAFETY: the closure runs in the forked child before exec; it makes one system call
    // (setrlimit, async-signal-safe), allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(MAX_ADDRESS_SPACE),
                maximum: Some(MAX_ADDRESS_SPACE),
            };
            let _ = rustix::process::setrlimit(rustix::process::Resource::As, limit);
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GitError::Missing,
            _ => GitError::Spawn(e),
        })?;
    // The deadline: a watchdog that kills the child through a pidfd (never a reused pid).
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let timed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let watchdog = {
        let timed_out = timed_out.clone();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(DEADLINE)
                && let Some(fd) = &pidfd
            {
                timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
        })
    };
    let stderr = child.stderr.take();
    let errs = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr {
            let _ = s.take(64 << 10).read_to_end(&mut buf);
        }
        buf
    });
    let mut buf = Vec::new();
    let mut truncated = false;
    if let Some(out) = child.stdout.take() {
        let _ = out.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut buf);
        if buf.len() > MAX_OUTPUT {
            buf.truncate(MAX_OUTPUT);
            truncated = true;
            let _ = child.kill();
        }
    }
    let status = child.wait().map_err(GitError::Spawn);
    let _ = done.send(());
    let _ = watchdog.join();
    let status = status?;
    let err = errs.join().unwrap_or_default();
    let code = status.code().unwrap_or(-1);
    if timed_out.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(GitError::Failed {
            command,
            status: status.to_string(),
            stderr: format!("stopped after {} minutes", DEADLINE.as_secs() / 60),
        });
    }
    if !truncated && !ok.contains(&code) {
        let stderr = String::from_utf8_lossy(&err).trim().to_string();
        return Err(GitError::Failed {
            command,
            status: status.to_string(),
            stderr: cut(&stderr, MAX_STDERR),
        });
    }
    Ok((
        code,
        Output {
            stdout: String::from_utf8_lossy(&buf).into_owned(),
            truncated,
        },
    ))
}

/// The first words of a command that are not options, for messages.
fn subcommand(cmd: &Command) -> String {
    let mut skip_next = false;
    cmd.get_args()
        .filter(|a| {
            if skip_next {
                skip_next = false;
                return false;
            }
            if *a == OsStr::new("-c") || *a == OsStr::new("-C") {
                skip_next = true;
                return false;
            }
            !a.to_string_lossy().starts_with('-')
        })
        .take(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

use crate::stream::cut_marked as cut;

/// The lines added and removed by one line of `--numstat` output (a binary file's `-` counts
/// 0); `None` for a line that is not one.
pub(crate) fn numstat(line: &str) -> Option<(u64, u64)> {
    let mut parts = line.splitn(3, '\t');
    let (added, removed, _path) = (parts.next()?, parts.next()?, parts.next()?);
    Some((added.parse().unwrap_or(0), removed.parse().unwrap_or(0)))
}

/// Whether `s` is a full hexadecimal object id (SHA-1 or SHA-256).
pub(crate) fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first line of `stdout`, which must be an object id.
pub(crate) fn object_id(out: &Output, command: &str) -> Result<String, GitError> {
    let id = out.stdout.lines().next().unwrap_or("").trim();
    if is_object_id(id) {
        Ok(id.to_string())
    } else {
        Err(GitError::Failed {
            command: command.into(),
            status: "exit status: 0".into(),
            stderr: format!("expected an object id, got {id:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_messages_name_the_files_and_cut_long_lists() {
        let e = GitError::Conflict {
            action: "merge",
            files: (0..12).map(|i| format!("f{i}")).collect(),
        };
        let s = e.to_string();
        assert!(s.starts_with("merge would conflict in `f0`, `f1`"), "{s}");
        assert!(s.contains("and 2 more"), "{s}");
        assert!(s.ends_with("your repository was left as it was"), "{s}");
    }

    #[test]
    fn object_ids() {
        assert!(is_object_id(&"a".repeat(40)));
        assert!(is_object_id(&"0".repeat(64)));
        assert!(!is_object_id(&"g".repeat(40)));
        assert!(!is_object_id("HEAD"));
    }

    #[test]
    fn trusted_commands_carry_no_inherited_configuration() {
        let git = Git {
            bin: PathBuf::from("git"),
        };
        let c = git.trusted(Path::new("/r.git"), Some(Path::new("/w")));
        let envs: Vec<_> = c.get_envs().collect();
        assert!(envs.contains(&(
            OsStr::new("GIT_CONFIG_GLOBAL"),
            Some(OsStr::new("/dev/null"))
        )));
        assert!(envs.contains(&(OsStr::new("GIT_CONFIG_NOSYSTEM"), Some(OsStr::new("1")))));
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.iter().any(|a| a == "core.hooksPath=/dev/null"));
        assert!(args.iter().any(|a| a == "core.fsmonitor=false"));
        assert!(args.iter().any(|a| a == "protocol.allow=never"));
        assert_eq!(subcommand(&c), "");
    }
}
