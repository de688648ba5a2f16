//! The per-job monitor: one small process per job (as conmon is per container) that owns the
//! job from acceptance to its final state. It starts the container, copies the runtime's log
//! into the job's clean output file by byte offset (never `logs -f`), enforces the startup and
//! idle timeouts and the output limit, samples metrics, finalises the job exactly once and
//! removes the container.
//!
//! **Crash safety:** the monitor holds the job's lock while alive. Progress is checkpointed as a
//! pair (log bytes consumed, output bytes written) after the output is flushed; a new monitor
//! truncates the output to the checkpoint and resumes from the log offset, so output is
//! byte-exact whatever moment the previous monitor died at.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::job_dir;
use crate::error::{Error, Result};
use crate::files::read_pid_file;
use crate::job::{ErrorKind, JobError, JobRecord, JobState, Metrics, Retry, now_ms};
use crate::runtime::argv::{CONTAINER_PIDFILE, ContainerArgs, LABEL_JOB, run_args};
use crate::runtime::{CliRuntime, ContainerRuntime, Failure, RuntimeError};
use crate::store::{Progress, Store};
use crate::stream::{Line, StreamFacts};

mod follow;
mod pooled;
mod steer;
#[cfg(test)]
mod tests;
pub(crate) mod verdict;

use verdict::{KillReason, start_failure};

/// Why a job's egress proxy could not start (the job then fails closed).
#[derive(Debug, thiserror::Error)]
enum EgressStart {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the job's container disappeared")]
    NotRunning,
    #[error("cannot listen inside the job's network namespace: {0}")]
    Bind(#[source] std::io::Error),
    #[error("cannot read the API key: {0}")]
    Key(#[source] std::io::Error),
    #[error("bad API upstream: {0}")]
    Upstream(String),
}

/// How often the log is polled when nothing new arrived and inotify is not available.
const POLL: Duration = Duration::from_millis(20);
/// How often progress is checkpointed while output flows.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// How often the job's state is re-read (to notice a cancel) when nothing rings: a cancel
/// creates a file in the job's directory, which wakes the monitor at once; this is the safety
/// net (a cancel by a creel that did not ring, a file that could not be written).
const STATE_EVERY: Duration = Duration::from_secs(10);
/// The same without a watch on the job's directory (no inotify): the old timed look.
const STATE_EVERY_UNWATCHED: Duration = Duration::from_millis(300);
/// How often metrics are sampled.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// How much of the container's stderr is kept in `stderr.log` (the rest is counted, and its
/// last bytes kept in memory for the error message).
const STDERR_KEEP: u64 = 1 << 20;
/// With an output limit, consumed parts of the runtime's log are given back to the file
/// system (hole-punched) once this much has been consumed since the last time.
const PUNCH_EVERY: u64 = 1 << 20;
/// Lines longer than this are kept as output but not parsed for facts.
const MAX_PARSE_LINE: usize = 16 << 20;
/// Grace between SIGTERM and SIGKILL when creel stops a container.
const STOP_GRACE_SECS: u64 = 2;

/// Runs the monitor for `job_id` under `home` until the job is final. `inherited_lock` is the
/// job's lock handed over by the process that spawned us; without it the monitor takes the lock
/// itself, and quietly returns if another monitor holds it.
pub fn run(home: &Path, job_id: &str, inherited_lock: Option<File>) -> Result<()> {
    let lock = match inherited_lock {
        Some(f) => {
            // The lock came in without close-on-exec; children (podman, conmon) must not hold
            // it, or a dead monitor would look alive as long as the container runs.
            if let Ok(flags) = rustix::io::fcntl_getfd(&f) {
                let _ = rustix::io::fcntl_setfd(&f, flags | rustix::io::FdFlags::CLOEXEC);
            }
            f
        }
        None => match crate::engine::try_lock_job(home, job_id)? {
            Some(f) => f,
            None => return Ok(()),
        },
    };
    let store = Store::open(&home.join("creel.db"))?;
    let job = match store.job(job_id)? {
        Some(job) => job,
        None => match store.pool_entry(job_id)? {
            // A sandbox of the warm pool, waiting for a start to claim it.
            Some(entry) => {
                let result = pooled::run(home, store, entry);
                drop(lock);
                return result;
            }
            None => return Err(Error::UnknownJob(job_id.to_string())),
        },
    };
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(CliRuntime::new(
        job.spec.runtime,
        Some(&job.spec.runtime_bin),
    )?);
    let result = drive_with(home, store, job, runtime);
    drop(lock);
    result
}

/// The monitor's work for `job` on `runtime`, once the job's lock is held.
fn drive_with(
    home: &Path,
    store: Store,
    job: JobRecord,
    runtime: Arc<dyn ContainerRuntime>,
) -> Result<()> {
    let mut m = Monitor::new(home, store, job, runtime);
    let result = m.drive_job();
    m.conclude(result)
}

impl Monitor {
    fn new(
        home: &Path,
        store: Store,
        job: JobRecord,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Monitor {
        let denied = job.egress_denied.clone();
        Monitor {
            home: home.to_path_buf(),
            dir: job_dir(home, &job.id),
            store,
            runtime,
            job,
            denied: Arc::new(Mutex::new(denied)),
            keeper: None,
        }
    }

    /// The end of a monitor's work, whatever `result` it had: a final job's webhook, the
    /// rest of its transcript.
    fn conclude(mut self, result: Result<()>) -> Result<()> {
        // Whatever happened, a final job announces itself (once).
        let notified = self.notify();
        // Then the rest of its transcript is rendered, before the monitor goes.
        if let Some(k) = self.keeper.take() {
            k.finish();
        }
        result.and(notified)
    }

    /// A thread that waits for `container` to end, sends its exit and rings `bell`.
    fn wait_exit_in_thread(
        &self,
        container: &str,
        bell: crate::watch::Bell,
    ) -> std::sync::mpsc::Receiver<crate::runtime::Exit> {
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = self.runtime.clone();
        let c = container.to_string();
        let dir = self.dir.clone();
        std::thread::spawn(move || {
            let exit = rt.wait_exit(&dir, &c);
            let _ = tx.send(exit);
            bell.ring();
        });
        rx
    }
}

struct Monitor {
    home: PathBuf,
    dir: PathBuf,
    store: Store,
    runtime: Arc<dyn ContainerRuntime>,
    job: JobRecord,
    /// Allowlist mode: refusals (a bounded summary).
    denied: Arc<Mutex<crate::egress::Refusals>>,
    /// The transcript's renderer, once the job's output has been followed to its end.
    keeper: Option<crate::job::transcript::Keeper>,
}

impl Monitor {
    fn drive_job(&mut self) -> Result<()> {
        let id = self.job.id.clone();
        let mut container = self.job.container_id.clone();
        // A pending job goes straight to `run` (a container a dead monitor already made shows
        // up there as a name conflict); only a running job without a recorded container needs
        // the lookup by label.
        if container.is_none() && self.job.state != JobState::Pending {
            container = self
                .runtime
                .containers_with_label(&self.home, LABEL_JOB, &id)?
                .into_iter()
                .next();
            if let Some(c) = &container {
                self.store.set_container(&id, c)?;
                if self.job.state == JobState::Pending {
                    self.store.set_running(&id, c, now_ms())?;
                }
            }
        }
        let container = match container {
            Some(c) => c,
            None if self.job.state.can_run() => match self.start_container()? {
                Some(c) => c,
                None => return Ok(()),
            },
            None if self.job.state.is_final() => {
                self.tidy_files();
                return Ok(());
            }
            None => {
                // Running, but the container is gone and was never recorded.
                self.finish(
                    Some(JobError {
                        kind: ErrorKind::Runtime,
                        message: "the job's container disappeared".into(),
                    }),
                    None,
                )?;
                return Ok(());
            }
        };
        self.job = self
            .store
            .job(&id)?
            .ok_or_else(|| Error::UnknownJob(id.clone()))?;
        if self.job.spec.egress.is_some() && !self.job.state.is_final() {
            if let Err(e) = self.start_egress(&container) {
                // Fail closed: without its proxy the job has no way out, and it must not run
                // on (it cannot have sent anything yet: its first message waits below).
                let _ = self.runtime.stop(&container, 0);
                let kind = match &e {
                    EgressStart::Runtime(e) => start_failure(e),
                    _ => ErrorKind::Runtime,
                };
                self.finish(
                    Some(JobError {
                        kind,
                        message: format!("the egress proxy could not start: {e}"),
                    }),
                    None,
                )?;
                let _ = self.runtime.remove(&container);
                return Ok(());
            }
            // The proxy listens: Claude may have its first message now.
            crate::steer::release_held_prompt(&self.dir)?;
        }
        self.follow(&container)
    }

    /// Allowlist mode: binds the proxy's socket inside the job container's own network
    /// namespace (it has only loopback: `--network none`) and serves the proxy from this
    /// process. A container that is no longer running needs no proxy (its output is still
    /// drained); that is not an error.
    fn start_egress(&mut self, container: &str) -> std::result::Result<(), EgressStart> {
        let id = self.job.id.clone();
        let Some(spec) = self.job.spec.egress.clone() else {
            return Ok(());
        };
        // (A pid from podman's file may be a later process's once the container ended:
        // `listen_in_container` checks that it is the container's.)
        let Some(pid) = self.runtime.container_pid(&self.dir, container) else {
            return match self.runtime.inspect(container)? {
                Some(_) => Ok(()),
                None => Err(EgressStart::NotRunning),
            };
        };
        // Podman: the container's first process is conmon's child.
        let parent = read_pid_file(&self.dir.join(crate::runtime::argv::CONMON_PIDFILE))
            .and_then(|p| i32::try_from(p).ok())
            .filter(|_| self.job.spec.runtime == crate::config::RuntimeKind::Podman);
        let listener = match crate::netns::listen_in_container(
            i32::try_from(pid).unwrap_or(0),
            crate::egress::PROXY_PORT,
            parent,
        ) {
            Ok(l) => l,
            Err(e) => {
                // A container that ended at once (a bad command, a crash) needs no proxy: its
                // output and exit are followed as any job's.
                if let Ok(Some(info)) = self.runtime.inspect(container)
                    && !info.running
                {
                    return Ok(());
                }
                return Err(EgressStart::Bind(e));
            }
        };
        let key = if self.job.spec.key_via_proxy {
            let path = self.dir.join("api-key");
            Some(
                std::fs::read_to_string(&path)
                    .map_err(EgressStart::Key)?
                    .trim()
                    .to_string(),
            )
        } else {
            None
        };
        let api = match &spec.api_upstream {
            Some(url) => {
                Some(crate::egress::ApiUpstream::parse(url, key).map_err(EgressStart::Upstream)?)
            }
            None => None,
        };
        let config = Arc::new(crate::egress::ProxyConfig {
            policy: crate::egress::Policy::new(&spec.allow, &spec.resolve),
            api,
            tokens: None,
        });
        let denied = self.denied.clone();
        let job_id = id.clone();
        let sink: crate::egress::DenialSink = Arc::new(move |d: &crate::egress::Denial| {
            tracing::info!(job = %job_id, host = %d.host, "egress refused: {}", d.reason);
            denied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(&d.host);
        });
        std::thread::spawn(move || crate::egress::serve(listener, config, sink));
        Ok(())
    }

    /// Creates and starts the job's container (`run -d`): its id and the runtime's warnings.
    fn run_container(&self) -> std::result::Result<(String, Vec<String>), RuntimeError> {
        let id = &self.job.id;
        let spec = &self.job.spec;
        let log_path = self.dir.join(crate::runtime::argv::CONTAINER_LOG);
        let prompt = self.dir.join("prompt");
        let key = self.dir.join("api-key");
        // (The pid file of an earlier attempt must not name the new container's process.)
        let _ = std::fs::remove_file(self.dir.join(CONTAINER_PIDFILE));
        let args = run_args(&ContainerArgs {
            job_id: id,
            session_id: &self.job.session_id,
            home: &self.home,
            spec,
            job_dir: &self.dir,
            log_path: &log_path,
            prompt_path: &prompt,
            api_key_path: (spec.api_key && !spec.key_via_proxy).then_some(key.as_path()),
        });
        self.runtime.run(&args)
    }

    /// Creates and starts the container. `None` if the job ended instead.
    fn start_container(&mut self) -> Result<Option<String>> {
        let id = self.job.id.clone();
        // No image check first: `run --pull never` reports a missing image itself (as
        // `image_missing` below), and the check would cost a runtime call per job.
        match self.run_container() {
            Ok((cid, warnings)) => {
                for w in warnings {
                    self.store.add_warning(&id, &w)?;
                }
                if !self.store.set_running(&id, &cid, now_ms())? {
                    // Cancelled while starting: stop it; the follow loop drains and removes it.
                    self.store.set_container(&id, &cid)?;
                    let _ = self.runtime.stop(&cid, 0);
                }
                Ok(Some(cid))
            }
            Err(e) if e.failure() == Failure::NameInUse => {
                // A previous monitor started it and died before recording it: adopt it.
                let Some(cid) = self
                    .runtime
                    .containers_with_label(&self.home, LABEL_JOB, &id)?
                    .into_iter()
                    .next()
                else {
                    return Err(e.into());
                };
                self.store.set_container(&id, &cid)?;
                self.store.set_running(&id, &cid, now_ms())?;
                Ok(Some(cid))
            }
            Err(e) => {
                let kind = start_failure(&e);
                self.finish(
                    Some(JobError {
                        kind,
                        message: e.to_string(),
                    }),
                    None,
                )?;
                // A container may exist half-made.
                if let Ok(ids) = self
                    .runtime
                    .containers_with_label(&self.home, LABEL_JOB, &id)
                {
                    for c in ids {
                        let _ = self.runtime.remove(&c);
                    }
                }
                Ok(None)
            }
        }
    }

    fn checkpoint(
        &mut self,
        id: &str,
        out: &mut File,
        out_path: &Path,
        progress: &mut Progress,
        facts: &StreamFacts,
        metrics: &Arc<Mutex<Option<Metrics>>>,
    ) -> Result<()> {
        out.flush()
            .map_err(|e| Error::io("cannot write", out_path, e))?;
        let _ = out.sync_data();
        apply_facts(progress, facts);
        progress.egress_denied = self
            .denied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(m) = metrics.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            progress.metrics = Some(m);
        }
        self.store.set_progress(id, progress)?;
        Ok(())
    }

    /// Records the final state (once; a cancelled job keeps `cancelled`) and tidies up.
    fn finish(&mut self, error: Option<JobError>, exit_code: Option<i64>) -> Result<()> {
        let id = self.job.id.clone();
        if let Some(sg) = self.job.spec.git.clone() {
            self.record_changes(&sg)?;
        }
        // The key removed and a refreshed login written back before the job is final: whoever
        // waits for the job finds the host's credentials current.
        self.tidy_files();
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Completed
        };
        let applied = self
            .store
            .finish(&id, state, error.as_ref(), exit_code, now_ms())?;
        if !applied && let Some(c) = exit_code {
            self.store.set_exit_code(&id, c)?;
        }
        Ok(())
    }

    /// Records what the job changed as a commit on its session's branch (before the job is
    /// final, so that whoever waits for it sees the changes). A failure here is a warning on
    /// the job, never a failed job: the work is still in the workspace.
    fn record_changes(&mut self, sg: &crate::git::SessionGit) -> Result<()> {
        let id = self.job.id.clone();
        let (prompt, _) = crate::engine::prompt_first_line(&self.dir.join("prompt"));
        let recorded = crate::git::Git::find().and_then(|git| {
            crate::git::session::record_job(
                &git,
                sg,
                &self.job.spec.workspace,
                &id,
                &prompt,
                self.job.spec.git_base.as_deref(),
            )
        });
        match recorded {
            Ok((changes, warnings)) => {
                self.store.set_changes(&id, &changes)?;
                for w in warnings {
                    self.store.add_warning(&id, &w)?;
                }
            }
            Err(e) => {
                tracing::warn!(job = %id, "could not record the job's changes: {e}");
                self.store.add_warning(
                    &id,
                    &format!(
                        "the job's changes could not be recorded on branch {}: {e}; they are still in the workspace",
                        sg.branch
                    ),
                )?;
            }
        }
        Ok(())
    }

    fn tidy_files(&self) {
        let _ = std::fs::remove_file(self.dir.join("api-key"));
        if let Some(host_file) = &self.job.spec.credentials_file
            && let Err(e) = crate::login::copy_credentials_back(
                &self.home,
                &self.job.spec.claude_config_dir,
                host_file,
            )
        {
            tracing::warn!(job = %self.job.id, "could not write refreshed OAuth credentials back: {e}");
        }
    }

    /// Sends the completion webhook of a final job, retrying with backoff; records delivery.
    fn notify(&mut self) -> Result<()> {
        let id = self.job.id.clone();
        send_webhook(&mut self.store, &id)
    }
}

fn observe(facts: &mut StreamFacts, line: Line<'_>) {
    if let Line::Complete(l) = line {
        facts.observe(l);
    }
}

fn apply_facts(p: &mut Progress, f: &StreamFacts) {
    p.claude_session_id = f.claude_session_id.clone();
    p.num_turns = f.num_turns;
    p.cost_usd = f.cost_usd;
    p.result = f.result.clone();
    p.retry = f.retry.as_ref().map(|r| Retry {
        attempt: r.attempt,
        max_retries: r.max_retries,
        error: match r.status {
            Some(s) => format!("{} ({s})", r.error),
            None => r.error.clone(),
        },
    });
}

pub(crate) fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    crate::stream::cut_str(line, max).to_string()
}

/// Sends job `id`'s completion webhook if it is final and still owes it (attempts counted in
/// `store`, so that no two processes go past the cap).
pub(crate) fn send_webhook(store: &mut crate::store::Store, id: &str) -> Result<()> {
    let id = id.to_string();
    let Some(job) = store.job(&id)? else {
        return Ok(());
    };
    if !job.webhook_pending() {
        return Ok(());
    }
    let Some(spec) = job.spec.webhook.clone() else {
        return Ok(());
    };
    let body = crate::webhook::body(&job);
    let mut failed = None;
    let outcome =
        crate::webhook::post_with_retries(&spec, &body, &id, job.webhook_attempts + 1, |_| {
            // Another monitor may have delivered it meanwhile; an attempt is counted
            // before it is made, so a monitor killed during one never goes past the cap.
            let go = store.job(&id).and_then(|j| match j {
                Some(j) if j.webhook_pending() => store.add_webhook_attempt(&id).map(|()| true),
                _ => Ok(false),
            });
            go.unwrap_or_else(|e| {
                failed = Some(e);
                false
            })
        });
    if let Some(e) = failed {
        return Err(e.into());
    }
    match outcome {
        crate::webhook::Outcome::Delivered => store.end_webhook(&id, Some(now_ms()))?,
        crate::webhook::Outcome::Refused(e) => {
            tracing::warn!(job = %id, "webhook refused, not retried: {e}");
            store.end_webhook(&id, None)?;
        }
        crate::webhook::Outcome::Exhausted(_) => store.end_webhook(&id, None)?,
        crate::webhook::Outcome::Stopped => {}
    }
    Ok(())
}
