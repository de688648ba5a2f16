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
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cgroup::CgroupStats;
use crate::engine::job_dir;
use crate::error::{Error, Result};
use crate::files::{open_nofollow, read_pid_file, tail_of_file};
use crate::job::{
    BUSY_CPU_PERCENT, ErrorKind, JobError, JobRecord, JobState, Metrics, Retry, now_ms,
};
use crate::logfile::{Decoded, LogFormat, decode};
use crate::runtime::argv::{CONMON_PIDFILE, CONTAINER_PIDFILE, PAUSE_PIDFILE};
use crate::runtime::argv::{ContainerArgs, LABEL_JOB, LABEL_PAUSE, pause_args, run_args};
use crate::runtime::{CliRuntime, ContainerRuntime};
use crate::store::{Progress, Store};
use crate::stream::{Line, LineSplitter, ResultFailure, StreamFacts, failure_kind};
use crate::watch::Wakeups;

/// How often the log is polled when nothing new arrived and inotify is not available.
const POLL: Duration = Duration::from_millis(20);
/// How often progress is checkpointed while output flows.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// How often the job's state is re-read (to notice a cancel).
const STATE_EVERY: Duration = Duration::from_millis(300);
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
    let job = store
        .job(job_id)?
        .ok_or_else(|| Error::UnknownJob(job_id.to_string()))?;
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(CliRuntime::new(
        job.spec.runtime,
        Some(&job.spec.runtime_bin),
    )?);
    let denied = job.egress_denied.clone();
    let mut m = Monitor {
        home: home.to_path_buf(),
        dir: job_dir(home, job_id),
        store,
        runtime,
        job,
        pause: None,
        denied: Arc::new(Mutex::new(denied)),
    };
    let result = m.drive();
    // Whatever happened, a final job announces itself (once).
    let notified = m.notify();
    drop(lock);
    result.and(notified)
}

struct Monitor {
    home: PathBuf,
    dir: PathBuf,
    store: Store,
    runtime: Arc<dyn ContainerRuntime>,
    job: JobRecord,
    /// Allowlist mode: the container holding the job's network namespace.
    pause: Option<String>,
    /// Allowlist mode: refusals (a bounded summary).
    denied: Arc<Mutex<crate::egress::Refusals>>,
}

/// Why creel itself stopped a container.
#[derive(Debug, Clone)]
struct KillReason {
    kind: ErrorKind,
    message: String,
}

impl Monitor {
    fn drive(&mut self) -> Result<()> {
        let result = self.drive_job();
        // The namespace holder lives exactly as long as the job.
        if self.job.spec.egress.is_some()
            && let Ok(ids) =
                self.runtime
                    .containers_with_label(&self.home, LABEL_PAUSE, &self.job.id)
            && self
                .store
                .job(&self.job.id)
                .ok()
                .flatten()
                .is_some_and(|j| j.state.is_final())
        {
            for p in ids {
                let _ = self.runtime.remove(&p);
            }
        }
        result
    }

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
        if self.job.spec.egress.is_some()
            && !self.job.state.is_final()
            && let Err(e) = self.start_egress(container.as_deref())
        {
            // Fail closed: without its proxy the job has no way out, and it must not run on.
            if let Some(c) = &container {
                let _ = self.runtime.stop(c, 0);
            }
            // The namespace holder runs the job's image: a vanished image shows here first.
            let kind = if is_image_missing(&e) {
                ErrorKind::ImageMissing
            } else {
                ErrorKind::Runtime
            };
            self.finish(
                Some(JobError {
                    kind,
                    message: format!("the egress proxy could not start: {e}"),
                }),
                None,
            )?;
            if let Some(c) = &container {
                let _ = self.runtime.remove(c);
            }
            return Ok(());
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
        self.follow(&container)
    }

    /// Allowlist mode: makes sure the job's network namespace exists (a pause container with
    /// no network), binds the proxy's socket inside it and serves the proxy from this process.
    fn start_egress(&mut self, job_container: Option<&str>) -> std::result::Result<(), String> {
        let id = self.job.id.clone();
        let Some(spec) = self.job.spec.egress.clone() else {
            return Ok(());
        };
        let find = || {
            self.runtime
                .containers_with_label(&self.home, LABEL_PAUSE, &id)
                .map(|ids| ids.into_iter().next())
                .map_err(|e| e.to_string())
        };
        // As for the job's container: a pending job goes straight to `run`, and a holder that
        // a dead monitor already made shows up as a name conflict.
        let fresh = self.job.state == JobState::Pending && job_container.is_none();
        let existing = if fresh { None } else { find()? };
        let pidfile = self.dir.join(PAUSE_PIDFILE);
        let (pause, made) = match existing {
            Some(p) => (p, false),
            None => {
                let _ = std::fs::remove_file(&pidfile);
                let args = pause_args(
                    &id,
                    &self.job.session_id,
                    &self.home,
                    &self.dir,
                    &self.job.spec,
                );
                match self.runtime.run(&args) {
                    Ok((p, _)) => (p, true),
                    Err(e) if e.to_string().contains("already in use") => {
                        (find()?.ok_or_else(|| e.to_string())?, false)
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        // Any live process in the namespace will do: the holder (its pid straight from the
        // file podman wrote when we just made it), or the job itself.
        let mut pid = if made {
            read_pid_file(&pidfile).unwrap_or(0)
        } else {
            0
        };
        for c in [Some(pause.as_str()), job_container].into_iter().flatten() {
            if pid > 0 {
                break;
            }
            if let Ok(Some(info)) = self.runtime.inspect(c)
                && info.running
                && info.pid > 0
            {
                pid = info.pid;
            }
        }
        if pid <= 0 {
            return Err("the network namespace holder is not running".into());
        }
        let listener = crate::netns::listen_in(pid as i32, crate::egress::PROXY_PORT)
            .map_err(|e| e.to_string())?;
        let key = if self.job.spec.key_via_proxy {
            let path = self.dir.join("api-key");
            Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the API key: {e}"))?
                    .trim()
                    .to_string(),
            )
        } else {
            None
        };
        let api = match &spec.api_upstream {
            Some(url) => Some(crate::egress::ApiUpstream::parse(url, key)?),
            None => None,
        };
        let config = Arc::new(crate::egress::ProxyConfig {
            policy: crate::egress::Policy::new(&spec.allow, &spec.resolve),
            api,
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
        self.pause = Some(pause);
        Ok(())
    }

    /// Creates and starts the container. `None` if the job ended instead.
    fn start_container(&mut self) -> Result<Option<String>> {
        let id = self.job.id.clone();
        let spec = self.job.spec.clone();
        // No image check first: `run --pull never` reports a missing image itself (as
        // `image_missing` below), and the check would cost a runtime call per job.
        let log_path = self.dir.join("container.log");
        let prompt = self.dir.join("prompt");
        let key = self.dir.join("api-key");
        let args = run_args(&ContainerArgs {
            job_id: &id,
            session_id: &self.job.session_id,
            home: &self.home,
            spec: &spec,
            log_path: &log_path,
            prompt_path: &prompt,
            api_key_path: (spec.api_key && !spec.key_via_proxy).then_some(key.as_path()),
            network_container: self.pause.as_deref(),
        });
        match self.runtime.run(&args) {
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
            Err(e) if e.to_string().contains("already in use") => {
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
                let kind = if is_image_missing(&e.to_string()) {
                    ErrorKind::ImageMissing
                } else {
                    ErrorKind::Runtime
                };
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

    fn follow(&mut self, container: &str) -> Result<()> {
        let id = self.job.id.clone();
        let spec = self.job.spec.clone();
        let format = self.runtime.log_format();
        let log_path = match format {
            LogFormat::K8sFile => self.dir.join("container.log"),
            LogFormat::DockerJson => {
                match self.runtime.inspect(container)?.and_then(|i| i.log_path) {
                    Some(p) => p,
                    None => self.dir.join("container.log"),
                }
            }
        };
        let out_path = self.dir.join("output.jsonl");
        let mut out = open_nofollow(&out_path, true)?;
        out.set_len(self.job.output_size)
            .map_err(|e| Error::io("cannot truncate", &out_path, e))?;
        out.seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot seek", &out_path, e))?;
        let err_path = self.dir.join("stderr.log");
        let mut errf = open_nofollow(&err_path, true)?;
        let mut stderr_kept = errf
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot seek", &err_path, e))?;
        // stderr seen (kept or not) since this monitor began, plus what an earlier one kept.
        let mut stderr_seen = stderr_kept;
        let mut stderr_tail: Vec<u8> = Vec::new();
        // With an output limit the runtime's log must not keep what the limit keeps out of
        // creel's own files: consumed parts of it are punched out (offsets stay valid).
        let punch_log = spec.max_output_size > 0 && format == LogFormat::K8sFile;
        let mut punched = 0u64;

        // Rebuild stream facts from what was captured before (after a monitor crash).
        let mut facts = StreamFacts::default();
        let mut splitter = LineSplitter::new(MAX_PARSE_LINE);
        if self.job.output_size > 0 {
            let mut f = open_nofollow(&out_path, false)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| Error::io("cannot read", &out_path, e))?;
                if n == 0 {
                    break;
                }
                splitter.push(&buf[..n], |l| observe(&mut facts, l));
            }
        }

        let mut progress = Progress {
            output_size: self.job.output_size,
            log_offset: self.job.log_offset,
            first_output_at_ms: self.job.first_output_at_ms,
            last_output_at_ms: self.job.last_output_at_ms,
            metrics: self.job.metrics.clone(),
            ..Progress::default()
        };
        apply_facts(&mut progress, &facts);

        // The waiter and metrics threads ring `wake` when they have news; the log's growth
        // rings it too (inotify), so an idle monitor sleeps until something happens.
        let mut wake = Wakeups::new();
        let (exit_tx, exit_rx) = mpsc::channel();
        {
            let rt = self.runtime.clone();
            let c = container.to_string();
            let conmon = conmon_pid(&self.dir, format);
            let bell = wake.bell();
            std::thread::spawn(move || {
                // `podman wait` is the fallback: Docker, a container started before creel
                // wrote conmon.pid, no pidfd support.
                let exit = match conmon.and_then(|pid| wait_conmon(pid, &c)) {
                    Some(e) => e,
                    None => Exit::Waited(rt.wait(&c)),
                };
                let _ = exit_tx.send(exit);
                bell.ring();
            });
        }
        let metrics: Arc<Mutex<Option<Metrics>>> = Arc::new(Mutex::new(None));
        let (stop_stats, stats_stopped) = mpsc::channel::<()>();
        {
            let rt = self.runtime.clone();
            let c = container.to_string();
            let metrics = metrics.clone();
            let pidfile = self.dir.join(CONTAINER_PIDFILE);
            std::thread::spawn(move || {
                let mut cgroup = container_pid(&pidfile, rt.as_ref(), &c)
                    .and_then(|pid| CgroupStats::of_container(pid, &c));
                match &cgroup {
                    Some(g) => tracing::debug!("metrics from the container's cgroup: {g:?}"),
                    None => tracing::debug!("metrics from `{} stats`", rt.kind()),
                }
                loop {
                    let sample = match cgroup.as_mut() {
                        Some(g) => g.sample(),
                        None => rt.stats(&c).ok().flatten(),
                    };
                    if let Some(m) = sample {
                        *metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
                    }
                    match stats_stopped.recv_timeout(STATS_EVERY) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
            });
        }

        let started_ms = self.job.started_at_ms.unwrap_or_else(now_ms);
        let mut log: Option<File> = None;
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 4 << 20];
        let mut kill: Option<KillReason> = None;
        let mut stopped = false;
        let mut state = self.job.state;
        let mut last_checkpoint = Instant::now();
        let mut last_state_check = Instant::now();
        let mut dirty = false;
        let mut metrics_saved_at = 0i64;
        let mut exit: Option<Exit> = None;
        let mut quiet_reads_after_exit = 0;
        loop {
            // Only a read that began after the exit was known can be the last one.
            let exited_before_read = exit.is_some();
            // Watch before reading, so that a write between the read and the sleep wakes us.
            wake.watch(&log_path);
            // Read what the runtime logged since the last time.
            if log.is_none() {
                log = match open_nofollow(&log_path, false) {
                    Ok(mut f) => {
                        let _ = f.seek(SeekFrom::Start(progress.log_offset));
                        Some(f)
                    }
                    Err(_) => None,
                };
            }
            let mut got = 0usize;
            if let Some(f) = log.as_mut() {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| Error::io("cannot read", &log_path, e))?;
                if n > 0 {
                    got = n;
                    pending.extend_from_slice(&buf[..n]);
                    let mut decoded = Decoded::default();
                    let consumed = decode(format, &pending, &mut decoded);
                    pending.drain(..consumed);
                    let limit = spec.max_output_size;
                    let mut stdout = &decoded.stdout[..];
                    if limit > 0 && progress.output_size + stdout.len() as u64 > limit {
                        let room = limit.saturating_sub(progress.output_size) as usize;
                        stdout = &stdout[..room.min(stdout.len())];
                        if kill.is_none() {
                            kill = Some(KillReason {
                                kind: ErrorKind::OutputLimit,
                                message: format!(
                                    "output reached max_output_size ({limit} bytes); kept up to the limit"
                                ),
                            });
                        }
                    }
                    if !stdout.is_empty() {
                        out.write_all(stdout)
                            .map_err(|e| Error::io("cannot write", &out_path, e))?;
                        splitter.push(stdout, |l| observe(&mut facts, l));
                        let now = now_ms();
                        progress.first_output_at_ms.get_or_insert(now);
                        progress.last_output_at_ms = Some(now);
                        progress.output_size += stdout.len() as u64;
                    }
                    if !decoded.stderr.is_empty() {
                        let room = STDERR_KEEP.saturating_sub(stderr_kept) as usize;
                        let keep = &decoded.stderr[..room.min(decoded.stderr.len())];
                        if !keep.is_empty() && errf.write_all(keep).is_ok() {
                            stderr_kept += keep.len() as u64;
                        }
                        keep_tail(&mut stderr_tail, &decoded.stderr, STDERR_TAIL);
                    }
                    // (After the write, so that the message counts what was really kept.)
                    stderr_seen = stderr_seen.saturating_add(decoded.stderr.len() as u64);
                    if limit > 0 && stderr_seen > limit && kill.is_none() {
                        kill = Some(KillReason {
                            kind: ErrorKind::OutputLimit,
                            message: format!(
                                "stderr reached max_output_size ({limit} bytes); kept the first {stderr_kept} bytes"
                            ),
                        });
                    }
                    // The checkpoint only ever covers whole records.
                    progress.log_offset += consumed as u64;
                    dirty = true;
                }
            }

            if exit.is_none() {
                match exit_rx.try_recv() {
                    Ok(r) => exit = Some(r),
                    Err(mpsc::TryRecvError::Disconnected) => {
                        exit = Some(Exit::Waited(Err(crate::runtime::RuntimeError::Parse {
                            bin: String::new(),
                            command: "wait".into(),
                            message: "waiter ended".into(),
                        })))
                    }
                    Err(mpsc::TryRecvError::Empty) => {}
                }
            }

            // A new metrics sample is progress too: `status` reads activity ("processing")
            // from the store, and a busy job may print nothing for minutes.
            let sampled_at = metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or(0, |m| m.sampled_at_ms);
            if sampled_at > metrics_saved_at {
                metrics_saved_at = sampled_at;
                dirty = true;
            }
            if dirty && (last_checkpoint.elapsed() >= CHECKPOINT_EVERY || exit.is_some()) {
                self.checkpoint(&id, &mut out, &out_path, &mut progress, &facts, &metrics)?;
                last_checkpoint = Instant::now();
                dirty = false;
                // Only what a checkpoint covers may go: a new monitor resumes from there.
                if punch_log && progress.log_offset >= punched + PUNCH_EVERY {
                    punched = punch_consumed(&log_path, punched, progress.log_offset);
                }
            }

            if let Some(e) = &exit {
                if matches!(e, Exit::Conmon(_)) && got == 0 {
                    // Everything is in the log: one empty read that began after we knew is
                    // the end.
                    if exited_before_read {
                        break;
                    }
                    continue;
                }
                // Drain: the runtime may still be flushing the last records.
                if got == 0 {
                    quiet_reads_after_exit += 1;
                    if quiet_reads_after_exit >= 3 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(30));
                } else {
                    quiet_reads_after_exit = 0;
                }
                continue;
            }

            // Cancelled elsewhere?
            if last_state_check.elapsed() >= STATE_EVERY {
                last_state_check = Instant::now();
                if let Some(j) = self.store.job(&id)? {
                    state = j.state;
                }
                if state == JobState::Cancelled && !stopped {
                    let _ = self.runtime.stop(container, STOP_GRACE_SECS);
                    stopped = true;
                }
            }

            // Timeouts.
            if kill.is_none() && state.can_finish() {
                let now = now_ms();
                let busy = metrics
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .and_then(|m| m.cpu_percent)
                    .is_some_and(|c| c >= BUSY_CPU_PERCENT);
                match progress.last_output_at_ms {
                    None if spec.startup_timeout > 0
                        && now.saturating_sub(started_ms) > secs_to_ms(spec.startup_timeout) =>
                    {
                        kill = Some(KillReason {
                            kind: ErrorKind::StartupTimeout,
                            message: format!(
                                "no output within startup_timeout ({} s)",
                                spec.startup_timeout
                            ),
                        });
                    }
                    Some(last)
                        if spec.idle_timeout > 0
                            && !busy
                            && now.saturating_sub(last) > secs_to_ms(spec.idle_timeout) =>
                    {
                        kill = Some(KillReason {
                            kind: ErrorKind::IdleTimeout,
                            message: format!(
                                "no output for idle_timeout ({} s) while the container was idle",
                                spec.idle_timeout
                            ),
                        });
                    }
                    _ => {}
                }
            }
            if kill.is_some() && !stopped {
                let _ = self.runtime.stop(container, STOP_GRACE_SECS);
                stopped = true;
            }
            if got == 0 {
                let timeout = if wake.watching() {
                    let mut t = STATE_EVERY.saturating_sub(last_state_check.elapsed());
                    if dirty {
                        t = t.min(CHECKPOINT_EVERY.saturating_sub(last_checkpoint.elapsed()));
                    }
                    t.max(Duration::from_millis(1))
                } else {
                    POLL
                };
                wake.sleep(timeout);
            }
        }
        drop(stop_stats);
        splitter.finish(|l| observe(&mut facts, l));
        if !pending.is_empty() {
            tracing::warn!(job = %id, bytes = pending.len(), "log ended inside a record");
        }
        self.checkpoint(&id, &mut out, &out_path, &mut progress, &facts, &metrics)?;

        // conmon's exit file, else the runtime's record of the container, decides the exit
        // code. Podman 4.3 on cgroup v1 reports OOMKilled=false even for a memcg OOM kill;
        // conmon's `oom` marker file (in its working directory: this job's dir), written
        // before its exit file, is the reliable sign.
        let (exit_code, oom_killed) = match &exit {
            Some(Exit::Conmon(Some(code))) => (Some(*code), false),
            _ => {
                let info = self.runtime.inspect(container).ok().flatten();
                let code = match (&exit, &info) {
                    (_, Some(i)) if !i.running => Some(i.exit_code),
                    (Some(Exit::Waited(Ok(c))), _) => Some(*c),
                    // conmon is gone but the runtime has not noticed yet: ask it the slow way.
                    (Some(Exit::Conmon(None)), Some(_)) => self.runtime.wait(container).ok(),
                    _ => None,
                };
                (code, info.as_ref().is_some_and(|i| i.oom_killed))
            }
        };
        let oom_flag = oom_killed || self.dir.join("oom").exists();
        let stderr_tail = if stderr_seen > stderr_kept {
            String::from_utf8_lossy(&stderr_tail).into_owned()
        } else {
            tail_of_file(&err_path, STDERR_TAIL as u64)
        };
        if punch_log {
            punch_consumed(&log_path, punched, progress.log_offset);
        }
        let error = decide(&spec, kill, oom_flag, exit_code, &facts, &stderr_tail);
        self.finish(error, exit_code)?;
        let _ = self.runtime.remove(container);
        Ok(())
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
        self.tidy_files();
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
        let mut delay = Duration::from_millis(500);
        loop {
            let Some(job) = self.store.job(&id)? else {
                return Ok(());
            };
            if !job.webhook_pending() {
                return Ok(());
            }
            let Some(spec) = job.spec.webhook.clone() else {
                return Ok(());
            };
            self.store.add_webhook_attempt(&id)?;
            let attempt = job.webhook_attempts + 1;
            let body = crate::webhook::body(&job);
            match crate::webhook::post(&spec, &body, &id, crate::webhook::POST_TIMEOUT) {
                crate::webhook::Delivery::Delivered => {
                    self.store.end_webhook(&id, Some(now_ms()))?;
                    return Ok(());
                }
                crate::webhook::Delivery::GiveUp(e) => {
                    tracing::warn!(job = %id, attempt, "webhook refused, not retried: {e}");
                    self.store.end_webhook(&id, None)?;
                    return Ok(());
                }
                crate::webhook::Delivery::Retry(e) => {
                    tracing::warn!(job = %id, attempt, "webhook not delivered: {e}");
                    if attempt >= crate::job::WEBHOOK_MAX_ATTEMPTS {
                        self.store.end_webhook(&id, None)?;
                        return Ok(());
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
            }
        }
    }
}

/// How the waiter learnt that the container ended.
enum Exit {
    /// conmon recorded its exit (with the code, when its exit file could be read), or exited.
    /// Either way the container's last output is in the log.
    Conmon(Option<i64>),
    /// `wait` returned.
    Waited(std::result::Result<i64, crate::runtime::RuntimeError>),
}

/// Waits for the end of the container that conmon `pid` watches over. conmon drains the
/// container's output into the log, then writes the exit code to `<--exit-dir>/<cid>`, then
/// runs podman's cleanup and waits for it (~100 ms) before it exits: the exit file is the
/// earliest sign that everything is in the log, conmon's exit the fallback. `None` when `pid`
/// is not this container's conmon (or there is no pidfd support).
fn wait_conmon(pid: i32, cid: &str) -> Option<Exit> {
    let conmon = crate::watch::Process::open(pid, cid)?;
    let Some(exit_dir) = crate::runtime::podman::conmon_exit_dir(conmon.args()) else {
        conmon.wait();
        return Some(Exit::Conmon(None));
    };
    conmon.wait_for_file_or_exit(&exit_dir, cid);
    Some(Exit::Conmon(crate::runtime::podman::conmon_exit_code(
        &exit_dir, cid,
    )))
}

/// The pid of the container's conmon, from the file podman wrote (`--conmon-pidfile`).
fn conmon_pid(dir: &Path, format: LogFormat) -> Option<i32> {
    if format != LogFormat::K8sFile {
        return None;
    }
    i32::try_from(read_pid_file(&dir.join(CONMON_PIDFILE))?).ok()
}

/// The pid of the container's first process: from podman's `--pidfile`, else `inspect`.
fn container_pid(pidfile: &Path, rt: &dyn ContainerRuntime, container: &str) -> Option<i64> {
    if let Some(pid) = read_pid_file(pidfile) {
        return Some(pid);
    }
    rt.inspect(container)
        .ok()
        .flatten()
        .filter(|i| i.running && i.pid > 0)
        .map(|i| i.pid)
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

/// The final verdict, in order of precedence: what creel stopped it for, the runtime's OOM
/// record (or a SIGKILL under an enforced memory limit that creel did not send), Claude's
/// result event, the exit code.
fn decide(
    spec: &crate::job::JobSpec,
    kill: Option<KillReason>,
    oom_flag: bool,
    exit_code: Option<i64>,
    facts: &StreamFacts,
    stderr_tail: &str,
) -> Option<JobError> {
    if let Some(k) = kill {
        return Some(JobError {
            kind: k.kind,
            message: k.message,
        });
    }
    if oom_flag {
        return Some(JobError {
            kind: ErrorKind::Oom,
            message: format!("killed for memory exhaustion (limit {})", spec.memory),
        });
    }
    if let Some(f) = failure_kind(facts) {
        let kind = match f {
            ResultFailure::MaxTurns => ErrorKind::MaxTurns,
            ResultFailure::Auth => ErrorKind::Auth,
            ResultFailure::RateLimit => ErrorKind::RateLimit,
            ResultFailure::ApiError => ErrorKind::ApiError,
            ResultFailure::Other => ErrorKind::ExitNonzero,
        };
        let message = facts
            .result
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| facts.errors.first().cloned())
            .unwrap_or_else(|| {
                format!(
                    "Claude reported an error ({})",
                    facts.result_subtype.as_deref().unwrap_or("?")
                )
            });
        return Some(JobError {
            kind,
            message: first_line(&message, 500),
        });
    }
    match exit_code {
        Some(0) => None,
        Some(c) => Some(JobError {
            kind: ErrorKind::ExitNonzero,
            message: if stderr_tail.trim().is_empty() {
                format!("claude exited with code {c}")
            } else {
                format!("claude exited with code {c}: {}", stderr_tail.trim())
            },
        }),
        None if facts.saw_result => None,
        None => Some(JobError {
            kind: ErrorKind::Runtime,
            message: "the container's exit code could not be determined".into(),
        }),
    }
}

/// Whether a runtime's `run` failed for want of the image (podman's and docker's words).
fn is_image_missing(text: &str) -> bool {
    text.contains("image not known")
        || text.contains("No such image")
        || text.contains("Unable to find image")
}

/// Seconds as milliseconds, saturating (a huge timeout means "never", not an overflow).
fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// How much of the end of stderr goes into an error message.
const STDERR_TAIL: usize = 600;

/// Keeps the last `max` bytes of everything passed in `tail`.
fn keep_tail(tail: &mut Vec<u8>, more: &[u8], max: usize) {
    if more.len() >= max {
        tail.clear();
        tail.extend_from_slice(&more[more.len() - max..]);
        return;
    }
    tail.extend_from_slice(more);
    if tail.len() > max {
        tail.drain(..tail.len() - max);
    }
}

/// Gives the blocks of the runtime's log between `from` and `to` (rounded down to whole
/// pages) back to the file system; the file keeps its size, so offsets stay valid. Returns
/// how far the log is now punched. Failure (a file system without hole punching) is quiet:
/// the log then just keeps its bytes.
fn punch_consumed(log_path: &Path, from: u64, to: u64) -> u64 {
    let end = to & !4095;
    if end <= from {
        return from;
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(log_path)
    else {
        return from;
    };
    match rustix::fs::fallocate(
        &f,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        from,
        end - from,
    ) {
        Ok(()) => end,
        Err(e) => {
            tracing::debug!("cannot punch the consumed log: {e}");
            from
        }
    }
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    crate::stream::cut_str(line, max).to_string()
}
