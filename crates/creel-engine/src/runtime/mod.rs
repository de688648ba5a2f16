//! Container runtimes. creel drives the `podman` and `docker` command-line programs (no socket,
//! no service; containers outlive creel). [`ContainerRuntime`] is the seam; [`CliRuntime`]
//! implements it for both, with the few differences in `podman.rs` and `docker.rs`. The
//! container command line itself is built only in [`argv`].

pub mod argv;

pub use crate::files::find_in_path;
mod docker;
pub(crate) mod podman;

pub(crate) use podman::podman_image_index;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::RuntimeKind;
use crate::job::Metrics;
use crate::logfile::LogFormat;

pub use crate::error::{Failure, RuntimeError};

/// What the runtime records about a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    /// Full id.
    pub id: String,
    /// `running`, `exited`, `created`, …
    pub status: String,
    /// Whether it is running.
    pub running: bool,
    /// Exit code (meaningful once exited).
    pub exit_code: i64,
    /// The runtime's OOM flag.
    pub oom_killed: bool,
    /// Host pid of the container's first process (0 when not running).
    pub pid: i64,
    /// The runtime's log file, when it reports one.
    pub log_path: Option<PathBuf>,
}

/// What creel needs from a container engine.
pub trait ContainerRuntime: Send + Sync {
    /// podman or docker.
    fn kind(&self) -> RuntimeKind;
    /// The binary in use.
    fn binary(&self) -> &Path;
    /// The runtime's version string.
    fn version(&self) -> Result<String, RuntimeError>;
    /// Whether `image` is in local storage.
    fn image_exists(&self, image: &str) -> Result<bool, RuntimeError>;
    /// `run -d` with these arguments (after `run`); returns the container id and any warnings
    /// the runtime printed.
    fn run(&self, args: &[OsString]) -> Result<(String, Vec<String>), RuntimeError>;
    /// Inspects a container; `None` if it does not exist.
    fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError>;
    /// Blocks until the container exits; returns its exit code.
    fn wait(&self, id: &str) -> Result<i64, RuntimeError>;
    /// Stops a container (SIGTERM, then SIGKILL after `grace_secs`). Missing is fine.
    fn stop(&self, id: &str, grace_secs: u64) -> Result<(), RuntimeError>;
    /// Force-removes a container. Missing is fine.
    fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    /// Samples resource use; `None` where the runtime cannot tell.
    fn stats(&self, id: &str) -> Result<Option<Metrics>, RuntimeError>;
    /// Ids of all containers (any state) of the creel home `home` carrying `label=value`.
    /// Never another home's: session names and job ids may repeat across homes.
    fn containers_with_label(
        &self,
        home: &Path,
        label: &str,
        value: &str,
    ) -> Result<Vec<String>, RuntimeError>;
    /// The format of the log file the runtime writes for creel's containers.
    fn log_format(&self) -> LogFormat;
    /// The file the runtime logs container `id`'s output to (started for the job whose
    /// directory is `job_dir`).
    fn log_path(&self, job_dir: &Path, id: &str) -> Result<PathBuf, RuntimeError>;
    /// Blocks until container `id` has ended, and says how that was learnt. The default asks
    /// the runtime ([`ContainerRuntime::wait`]).
    fn wait_exit(&self, job_dir: &Path, id: &str) -> Exit {
        let _ = job_dir;
        Exit::Waited(self.wait(id))
    }
    /// The host pid of container `id`'s first process while it runs. The default asks the
    /// runtime (`inspect`).
    fn container_pid(&self, job_dir: &Path, id: &str) -> Option<i64> {
        let _ = job_dir;
        self.inspect(id)
            .ok()
            .flatten()
            .filter(|i| i.running && i.pid > 0)
            .map(|i| i.pid)
    }
}

/// How the monitor learnt that a container ended.
#[derive(Debug)]
pub enum Exit {
    /// conmon recorded its exit (with the code, when its exit file could be read), or exited.
    /// Either way the container's last output is in the log.
    Conmon(Option<i64>),
    /// `wait` returned.
    Waited(Result<i64, RuntimeError>),
}

/// [`ContainerRuntime`] through the podman or docker CLI.
#[derive(Debug, Clone)]
pub struct CliRuntime {
    kind: RuntimeKind,
    bin: PathBuf,
}

impl CliRuntime {
    /// A runtime of `kind`, with `bin` or the kind's name found on PATH.
    pub fn new(kind: RuntimeKind, bin: Option<&Path>) -> Result<CliRuntime, RuntimeError> {
        if kind == RuntimeKind::Kubernetes {
            // Pods are the cluster's: `kube/` speaks to its API, no command-line program.
            return Err(RuntimeError::Missing {
                bin: "a container engine (runtime = \"kubernetes\" runs jobs as pods)".into(),
            });
        }
        let bin = match bin {
            Some(b) => {
                if !b.exists() {
                    return Err(RuntimeError::Missing {
                        bin: b.display().to_string(),
                    });
                }
                b.to_path_buf()
            }
            None => find_in_path(kind.name()).ok_or_else(|| RuntimeError::Missing {
                bin: kind.name().to_string(),
            })?,
        };
        Ok(CliRuntime { kind, bin })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.stdin(Stdio::null());
        c
    }

    /// Runs the runtime with `args`, returning stdout on success.
    fn exec<I, S>(&self, args: I) -> Result<(String, String), RuntimeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self
            .command()
            .args(&args)
            .output()
            .map_err(|source| self.spawn_error(source))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() {
            return Err(RuntimeError::failed(
                self.kind.name(),
                subcommand(&args),
                out.status.to_string(),
                cut(&stderr, 2000),
            ));
        }
        Ok((stdout, stderr))
    }

    fn spawn_error(&self, source: std::io::Error) -> RuntimeError {
        if source.kind() == std::io::ErrorKind::NotFound {
            RuntimeError::Missing {
                bin: self.bin.display().to_string(),
            }
        } else {
            RuntimeError::Spawn {
                bin: self.bin.display().to_string(),
                source,
            }
        }
    }

    fn parse_error(&self, command: &str, message: impl Into<String>) -> RuntimeError {
        RuntimeError::Parse {
            bin: self.kind.name().into(),
            command: command.into(),
            message: message.into(),
        }
    }
}

/// Whether a container command failed because the container is gone.
fn is_missing(e: &RuntimeError) -> bool {
    matches!(
        e.failure(),
        Failure::NoSuchContainer | Failure::NoSuchObject
    )
}

fn subcommand(args: &[OsString]) -> String {
    args.iter()
        .take(2)
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

use crate::stream::cut_marked as cut;

impl ContainerRuntime for CliRuntime {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn binary(&self) -> &Path {
        &self.bin
    }

    fn version(&self) -> Result<String, RuntimeError> {
        let (out, _) = self.exec(["version", "--format", "{{.Client.Version}}"])?;
        Ok(out.trim().to_string())
    }

    fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        let out = self
            .command()
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| self.spawn_error(source))?;
        if out.status.success() {
            return Ok(true);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let e = RuntimeError::failed(
            self.kind.name(),
            "image inspect",
            out.status.to_string(),
            cut(stderr.trim(), 2000),
        );
        match e.failure() {
            Failure::ImageMissing | Failure::NoSuchObject => Ok(false),
            _ => Err(e),
        }
    }

    fn run(&self, args: &[OsString]) -> Result<(String, Vec<String>), RuntimeError> {
        let mut full = vec![OsString::from("run")];
        full.extend(args.iter().cloned());
        let (out, err) = self.exec(&full)?;
        let id = out
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.parse_error("run", format!("expected a container id, got {out:?}")));
        }
        let warnings = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{}: {l}", self.kind.name()))
            .collect();
        Ok((id.to_string(), warnings))
    }

    fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        match self.exec(["inspect", "--type", "container", id]) {
            Ok((out, _)) => self.parse_inspect(&out).map(Some),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        let (out, _) = self.exec(["wait", id])?;
        out.trim()
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<i64>().ok())
            .ok_or_else(|| self.parse_error("wait", format!("expected an exit code, got {out:?}")))
    }

    fn stop(&self, id: &str, grace_secs: u64) -> Result<(), RuntimeError> {
        match self.exec([
            "stop".to_string(),
            "-t".into(),
            grace_secs.to_string(),
            id.to_string(),
        ]) {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        match self.exec(["rm", "-f", id]) {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn stats(&self, id: &str) -> Result<Option<Metrics>, RuntimeError> {
        let out = self
            .command()
            .args([
                "stats",
                "--no-stream",
                "--format",
                "{{.CPUPerc}}\t{{.MemUsage}}\t{{.PIDs}}",
                id,
            ])
            .stderr(Stdio::null())
            .output()
            .map_err(|source| self.spawn_error(source))?;
        if !out.status.success() {
            return Ok(None);
        }
        // An exited container reports all zeros: that is no sample.
        Ok(parse_stats(&String::from_utf8_lossy(&out.stdout)).filter(|m| m.pids != Some(0)))
    }

    fn containers_with_label(
        &self,
        home: &Path,
        label: &str,
        value: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        // Label filters are ANDed by both podman and docker.
        let (out, _) = self.exec([
            "ps".to_string(),
            "-a".into(),
            "--no-trunc".into(),
            "--filter".into(),
            format!("label={}={}", argv::LABEL_HOME, home.display()),
            "--filter".into(),
            format!("label={label}={value}"),
            "--format".into(),
            "{{.ID}}".into(),
        ])?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    fn log_format(&self) -> LogFormat {
        match self.kind {
            RuntimeKind::Podman | RuntimeKind::Kubernetes => LogFormat::K8sFile,
            RuntimeKind::Docker => LogFormat::DockerJson,
        }
    }

    fn log_path(&self, job_dir: &Path, id: &str) -> Result<PathBuf, RuntimeError> {
        // Podman writes where `argv.rs` told it to; Docker chooses, and `inspect` says where.
        Ok(match self.kind {
            RuntimeKind::Podman | RuntimeKind::Kubernetes => None,
            RuntimeKind::Docker => self.inspect(id)?.and_then(|i| i.log_path),
        }
        .unwrap_or_else(|| job_dir.join(argv::CONTAINER_LOG)))
    }

    fn wait_exit(&self, job_dir: &Path, id: &str) -> Exit {
        // `podman wait` is the fallback: Docker, a container started before creel wrote
        // conmon.pid, no pidfd support.
        if self.kind == RuntimeKind::Podman
            && let Some(exit) = podman::wait_conmon(job_dir, id)
        {
            return exit;
        }
        Exit::Waited(self.wait(id))
    }

    fn container_pid(&self, job_dir: &Path, id: &str) -> Option<i64> {
        // Podman's `--pidfile`, else `inspect`.
        crate::files::read_pid_file(&job_dir.join(argv::CONTAINER_PIDFILE)).or_else(|| {
            self.inspect(id)
                .ok()
                .flatten()
                .filter(|i| i.running && i.pid > 0)
                .map(|i| i.pid)
        })
    }
}

impl CliRuntime {
    fn parse_inspect(&self, out: &str) -> Result<ContainerInfo, RuntimeError> {
        let v: serde_json::Value =
            serde_json::from_str(out).map_err(|e| self.parse_error("inspect", e.to_string()))?;
        let c = v
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| self.parse_error("inspect", "empty answer"))?;
        let state = &c["State"];
        let log_path = match self.kind {
            RuntimeKind::Podman | RuntimeKind::Kubernetes => podman::log_path(c),
            RuntimeKind::Docker => docker::log_path(c),
        };
        Ok(ContainerInfo {
            id: c["Id"].as_str().unwrap_or_default().to_string(),
            status: state["Status"].as_str().unwrap_or_default().to_string(),
            running: state["Running"].as_bool().unwrap_or(false),
            exit_code: state["ExitCode"].as_i64().unwrap_or(-1),
            oom_killed: state["OOMKilled"].as_bool().unwrap_or(false),
            pid: state["Pid"].as_i64().unwrap_or(0),
            log_path,
        })
    }
}

/// Parses `CPUPerc \t MemUsage \t PIDs` as both podman and docker print them.
fn parse_stats(out: &str) -> Option<Metrics> {
    let line = out.lines().find(|l| !l.trim().is_empty())?;
    let mut parts = line.split('\t');
    let cpu = parts
        .next()?
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok();
    let mem = parts.next().unwrap_or_default();
    let (used, limit) = match mem.split_once('/') {
        Some((u, l)) => (parse_human_size(u), parse_human_size(l)),
        None => (parse_human_size(mem), None),
    };
    let pids = parts.next().and_then(|p| p.trim().parse::<u64>().ok());
    Some(Metrics {
        cpu_percent: cpu,
        memory_bytes: used,
        memory_limit_bytes: limit,
        pids,
        sampled_at_ms: crate::job::now_ms(),
    })
}

/// Parses `786.4kB`, `67.11MB`, `1.5MiB`, `0B` into bytes.
fn parse_human_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines() {
        let m = parse_stats("2.59%\t786.4kB / 67.11MB\t2\n").unwrap();
        assert_eq!(m.cpu_percent, Some(2.59));
        assert_eq!(m.memory_bytes, Some(786_400));
        assert_eq!(m.memory_limit_bytes, Some(67_110_000));
        assert_eq!(m.pids, Some(2));
        let m = parse_stats("0.00%\t1.5MiB / 64MiB\t1\n").unwrap();
        assert_eq!(m.memory_bytes, Some(1_572_864));
        assert_eq!(m.memory_limit_bytes, Some(64 << 20));
        assert_eq!(parse_human_size("0B"), Some(0));
        assert_eq!(parse_human_size("x"), None);
        assert!(parse_stats("").is_none());
    }
}
