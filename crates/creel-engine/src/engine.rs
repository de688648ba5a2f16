//! [`Engine`]: the one API every face calls.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::api::{CleanupReport, JobSummary, JobsRequest, Login, WaitOutcome};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::create_private_dir_all;
use crate::host::HostProfile;
use crate::job::{JobRecord, JobSpec, now_ms};
use crate::runtime::{CliRuntime, ContainerRuntime, RuntimeError};
use crate::session::SessionSummary;
use crate::store::Store;
use crate::watch::JobWatch;

/// How old a job directory without a job record must be before `cleanup` removes it (a
/// `start` in progress writes the files a moment before the record).
pub const ORPHAN_AGE: Duration = Duration::from_secs(10 * 60);

/// How to start a job's monitor process: the program and its leading arguments; the engine
/// appends the job id and sets `CREEL_HOME`.
#[derive(Debug, Clone)]
pub struct MonitorLauncher {
    /// The program (normally the `creel` binary itself).
    pub program: PathBuf,
    /// Arguments before the job id (e.g. `["__monitor"]`).
    pub args: Vec<OsString>,
}

/// Everything an [`Engine`] is made from.
pub struct EngineOptions {
    /// State root (`$CREEL_HOME`).
    pub home: PathBuf,
    /// Effective configuration.
    pub config: Config,
    /// The runtime for new jobs, or why there is none.
    pub runtime: std::result::Result<Arc<dyn ContainerRuntime>, RuntimeError>,
    /// How to launch monitors. `None`: jobs are accepted but nobody runs them (tests only).
    pub monitor: Option<MonitorLauncher>,
    /// The API key from the environment (`ANTHROPIC_API_KEY`).
    pub api_key: Option<String>,
    /// `ANTHROPIC_BASE_URL` from the environment (config `api_base_url` wins).
    pub api_base_url: Option<String>,
    /// The invoking user's home directory (for `~/.claude`, `~/.openclaw`).
    pub user_home: Option<PathBuf>,
}

impl EngineOptions {
    /// Options from the process environment, with the runtime the config names.
    pub fn from_env(home: PathBuf, config: Config) -> EngineOptions {
        let runtime = CliRuntime::new(config.runtime, config.runtime_path.as_deref())
            .map(|r| Arc::new(r) as Arc<dyn ContainerRuntime>);
        EngineOptions {
            home,
            runtime,
            monitor: None,
            api_key: std::env::var("ANTHROPIC_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            api_base_url: std::env::var("ANTHROPIC_BASE_URL")
                .ok()
                .filter(|k| !k.is_empty()),
            user_home: std::env::var_os("HOME").map(PathBuf::from),
            config,
        }
    }
}

/// The engine: jobs, sessions and the store behind them.
pub struct Engine {
    pub(crate) home: PathBuf,
    pub(crate) config: Config,
    pub(crate) store: Mutex<Store>,
    pub(crate) runtime: std::result::Result<Arc<dyn ContainerRuntime>, RuntimeError>,
    pub(crate) monitor: Option<MonitorLauncher>,
    pub(crate) api_key: Option<String>,
    pub(crate) api_base_url: Option<String>,
    pub(crate) user_home: Option<PathBuf>,
}

impl Engine {
    /// Opens the engine: creates `$CREEL_HOME` and the store if needed.
    pub fn open(opts: EngineOptions) -> Result<Engine> {
        // Private from the start when creel makes it; an existing directory keeps its mode
        // (it may be shared, like a 1777 one): what creel puts in it is private itself.
        create_private_dir_all(&opts.home)?;
        // One spelling of the home for every process and label (monitors run elsewhere).
        let home = opts
            .home
            .canonicalize()
            .map_err(|e| Error::io("cannot resolve", &opts.home, e))?;
        let db = home.join("creel.db");
        // SQLite gives its -wal and -shm files the database file's mode.
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&db)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(Error::io("cannot create", &db, e));
        }
        let store = Store::open(&db)?;
        Ok(Engine {
            home,
            config: opts.config,
            store: Mutex::new(store),
            runtime: opts.runtime,
            monitor: opts.monitor,
            api_key: opts.api_key,
            api_base_url: opts.api_base_url,
            user_home: opts.user_home,
        })
    }

    /// The state root.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn configured_runtime(&self) -> Result<Arc<dyn ContainerRuntime>> {
        match &self.runtime {
            Ok(r) => Ok(r.clone()),
            Err(e) => Err(Error::Runtime(clone_runtime_error(e))),
        }
    }

    /// The runtime a job was started with.
    pub(crate) fn runtime_for(&self, spec: &JobSpec) -> Result<Arc<dyn ContainerRuntime>> {
        if let Ok(r) = &self.runtime
            && r.kind() == spec.runtime
            && r.binary() == spec.runtime_bin
        {
            return Ok(r.clone());
        }
        Ok(Arc::new(CliRuntime::new(
            spec.runtime,
            Some(&spec.runtime_bin),
        )?))
    }

    /// Directory of a job's files.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        job_dir(&self.home, job_id)
    }

    pub(crate) fn sessions_dir(&self) -> PathBuf {
        self.config
            .sessions_dir
            .clone()
            .unwrap_or_else(|| self.home.join("sessions"))
    }

    /// Where a session's git repository and index live (`--repo` sessions).
    pub(crate) fn git_dir(&self, session: &str) -> PathBuf {
        self.home.join("git").join(session)
    }

    pub(crate) fn workspaces_dir(&self) -> PathBuf {
        self.config
            .workspaces_dir
            .clone()
            .unwrap_or_else(|| self.home.join("workspaces"))
    }

    /// Loads a job or fails with `UnknownJob`. On a cluster, a job this store does not know
    /// yet (another front end's) is looked up there.
    pub(crate) fn load_job(&self, job_id: &str) -> Result<JobRecord> {
        if !crate::job::looks_like_job_id(job_id) {
            return Err(Error::UnknownJob(job_id.to_string()));
        }
        let found = self.store().job(job_id)?;
        match found {
            Some(j) => Ok(j),
            None if self.config.runtime == crate::config::RuntimeKind::Kubernetes => self
                .kube_find(job_id)?
                .ok_or_else(|| Error::UnknownJob(job_id.to_string())),
            None => Err(Error::UnknownJob(job_id.to_string())),
        }
    }

    /// If a job is not final and no monitor holds its lock, starts one (which re-attaches to
    /// the container or finalises the job from the runtime's record). Returns whether it did.
    pub(crate) fn reconcile(&self, job: &JobRecord) -> Result<bool> {
        if job.state.is_final() && !job.webhook_pending() {
            return Ok(false);
        }
        if job.spec.runtime == crate::config::RuntimeKind::Kubernetes {
            // The namespace's watcher settles it (one for all of this store's pods).
            let Some(lock) = crate::kube::watcher::try_lock(&self.home)? else {
                return Ok(false);
            };
            self.spawn_helper(&["__kube-watch"], &self.home.join("kube-watch.log"), lock)?;
            return Ok(true);
        }
        let Some(lock) = try_lock_job(&self.home, &job.id)? else {
            return Ok(false); // a monitor is alive
        };
        self.spawn_monitor(&job.id, lock)?;
        Ok(true)
    }

    /// Starts the monitor for a job, handing it the job's lock (already held) as fd 3, so that
    /// no second monitor can start in between.
    pub(crate) fn spawn_monitor(&self, job_id: &str, lock: File) -> Result<()> {
        let dir = self.job_dir(job_id);
        // conmon (started by podman from the monitor) drops an `oom` marker in its working
        // directory when the kernel OOM-kills the container: keep it in the job's dir.
        self.spawn_launcher(&[job_id], &dir.join("monitor.log"), &dir, lock)
    }

    /// Starts a helper process of creel's (the launcher's program with `args`, where a
    /// monitor's are `__monitor JOB`), detached, logging to `log`, with `lock` (held) as fd 3.
    pub(crate) fn spawn_helper(&self, args: &[&str], log: &Path, lock: File) -> Result<()> {
        let Some(launcher) = &self.monitor else {
            return Ok(());
        };
        let launcher = MonitorLauncher {
            program: launcher.program.clone(),
            args: Vec::new(),
        };
        self.spawn_with(&launcher, args, log, &self.home, lock)
    }

    fn spawn_launcher(&self, args: &[&str], log: &Path, cwd: &Path, lock: File) -> Result<()> {
        let Some(launcher) = &self.monitor else {
            return Ok(());
        };
        self.spawn_with(launcher, args, log, cwd, lock)
    }

    fn spawn_with(
        &self,
        launcher: &MonitorLauncher,
        args: &[&str],
        log_path: &Path,
        cwd: &Path,
        lock: File,
    ) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| Error::io("cannot open", log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("cannot open", log_path, e))?;
        let mut cmd = std::process::Command::new(&launcher.program);
        cmd.args(&launcher.args)
            .args(args)
            .env("CREEL_HOME", &self.home)
            .env("CREEL_MONITOR_LOCK_FD", "3")
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        use std::os::fd::AsRawFd;
        let fd = lock.as_raw_fd();
        // SAFETY: only async-signal-safe calls (setsid, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if fd == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("cannot start the job monitor", &launcher.program, e))?;
        drop(lock);
        // Reap it when it ends (it is in its own session; this thread dies with a short-lived CLI).
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    /// Crash recovery for every job: starts a monitor for each unfinished job (or final job
    /// owing its webhook) whose monitor has died. Returns how many were started.
    pub fn reconcile_all(&self) -> Result<usize> {
        let ids = self.store().unfinished_jobs()?;
        let mut started = 0;
        for id in ids {
            if let Some(job) = self.store().job(&id)?
                && self.reconcile(&job)?
            {
                started += 1;
            }
        }
        Ok(started)
    }

    /// How Claude will log in for this engine's jobs, when it can.
    pub fn login(&self) -> Option<Login> {
        if self.api_key.is_some()
            || self
                .config
                .api_key_file
                .as_ref()
                .is_some_and(|f| f.is_file())
        {
            return Some(Login::ApiKey);
        }
        self.credentials_file()
            .filter(|c| c.is_file())
            .map(Login::OAuth)
    }

    /// One session's record, if the store has it (no cleanup runs).
    pub fn session(&self, id: &str) -> Result<Option<crate::session::SessionRecord>> {
        Ok(self.store().session(id)?)
    }

    /// Lists sessions (after automatic cleanup of idle ones).
    pub fn sessions(&self) -> Result<Vec<SessionSummary>> {
        self.refresh_from_cluster();
        self.auto_cleanup();
        let mut list = self.store().sessions()?;
        for s in &mut list {
            s.budget = self.budget_status(&s.record.id)?;
        }
        Ok(list)
    }

    /// Jobs, newest first, as `req` selects them, each with the first line of its prompt.
    pub fn jobs(&self, req: &JobsRequest) -> Result<Vec<JobSummary>> {
        self.refresh_from_cluster();
        let records =
            self.store()
                .recent_jobs(req.session.as_deref(), req.state, req.active, req.limit)?;
        Ok(records
            .into_iter()
            .map(|record| JobSummary {
                prompt_head: prompt_head(&job_dir(&self.home, &record.id).join("prompt")),
                record,
            })
            .collect())
    }

    /// On a cluster, brings its jobs into the store first (a cluster that cannot be reached
    /// leaves the store as it is, with a warning).
    fn refresh_from_cluster(&self) {
        if self.config.runtime == crate::config::RuntimeKind::Kubernetes
            && let Err(e) = self.kube_refresh()
        {
            tracing::warn!("the cluster's jobs could not be listed: {e}");
        }
    }

    /// Runs the automatic cleanup of sessions idle past `session_idle_timeout`, never
    /// deleting workspaces and never a `--repo` session (its branch may hold work not yet
    /// landed; only an explicit cleanup removes it). Errors are logged, not returned.
    pub fn auto_cleanup(&self) {
        if self.config.session_idle_timeout == 0 {
            return;
        }
        if let Err(e) = self.remove_idle_sessions(self.config.session_idle_timeout, false) {
            tracing::warn!("automatic cleanup failed: {e}");
        }
    }

    /// Removes sessions idle for more than `idle_seconds` (containers, records, Claude state;
    /// workspaces only with `delete_workspaces` and only those creel created, including those
    /// an earlier cleanup left without a session), and job directories a killed `start` left
    /// behind. Sessions with a live job are never removed.
    pub fn cleanup(&self, idle_seconds: u64, delete_workspaces: bool) -> Result<CleanupReport> {
        // Pooled sandboxes first: their directories have no job or session record.
        let drained_pool = self.drain_pool()?;
        let mut report = self.remove_idle_sessions(idle_seconds, delete_workspaces)?;
        report.drained_pool = drained_pool;
        // Only here, not in the automatic cleanup every `start` runs: the sweeps look at every
        // job directory and workspace.
        self.remove_orphan_job_dirs();
        if delete_workspaces {
            report
                .deleted_workspaces
                .extend(self.remove_orphan_workspaces());
        }
        Ok(report)
    }

    /// The idle threshold a cleanup uses when none is given: `session_idle_timeout`. When that
    /// is 0 (automatic cleanup off) there is none, and an explicit cleanup must say how idle
    /// a session must be, rather than take 0 as "every idle session".
    pub fn default_idle_threshold(&self) -> Result<u64> {
        match self.config.session_idle_timeout {
            0 => Err(Error::InvalidRequest(
                "no idle threshold given, and session_idle_timeout = 0 (automatic cleanup off) \
                 sets none: give one in seconds (0 removes every idle session)"
                    .into(),
            )),
            t => Ok(t),
        }
    }

    /// Workspaces creel made whose session is gone (removed by an earlier cleanup without
    /// `delete_workspaces`): only in creel's own `workspaces` directory under its home (a
    /// configured `workspaces_dir` may hold other directories), only named like a session, and
    /// only when untouched for [`ORPHAN_AGE`] (a session being created right now has its
    /// workspace before its record).
    fn remove_orphan_workspaces(&self) -> Vec<PathBuf> {
        // Session repositories (`--repo`) are always creel's own.
        self.remove_sessionless_dirs(&self.home.join("git"));
        if self.config.workspaces_dir.is_some() {
            return Vec::new();
        }
        self.remove_sessionless_dirs(&self.home.join("workspaces"))
    }

    /// Removes the directories in `dir` named like a session that no session record owns
    /// (old enough, see [`old_dirs`]); returns those removed.
    fn remove_sessionless_dirs(&self, dir: &Path) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for (id, path) in old_dirs(dir) {
            if crate::session::validate_session_id(&id).is_ok()
                && matches!(self.store().session(&id), Ok(None))
            {
                tracing::info!("removing {}, whose session is gone", path.display());
                if std::fs::remove_dir_all(&path).is_ok() {
                    removed.push(path);
                }
            }
        }
        removed
    }

    fn remove_idle_sessions(
        &self,
        idle_seconds: u64,
        delete_workspaces: bool,
    ) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let now = now_ms();
        let cutoff = now.saturating_sub((idle_seconds as i64).saturating_mul(1000));
        let sessions = self.store().sessions_idle_since(cutoff)?;
        for s in sessions {
            if s.active_job_id.is_some() {
                report.skipped_active.push(s.record.id.clone());
                continue;
            }
            // A `--repo` session goes only with its checkout: its branch may hold work not yet
            // landed, and without it nothing could land that work.
            if !delete_workspaces && s.record.git.is_some() {
                report.kept_branches.push(s.record.id.clone());
                continue;
            }
            let jobs = self.store().jobs_of_session(&s.record.id)?;
            if crate::kube::is_cluster_session(&s.record) {
                // A session of a cluster: its jobs' objects go first (so that no watcher
                // makes them jobs again), then its records; its volume (its workspace and
                // Claude's state) only when workspaces are to be deleted.
                for job in &jobs {
                    if let Err(e) = self.kube_remove_objects(&job.id, None) {
                        tracing::warn!(job = %job.id, "cannot remove the job's objects: {e}");
                    }
                }
                if !self.store().delete_session(&s.record.id)? {
                    report.skipped_active.push(s.record.id.clone());
                    continue;
                }
                for job in &jobs {
                    let _ = std::fs::remove_dir_all(self.job_dir(&job.id));
                }
                if delete_workspaces {
                    match self.kube_remove_volume(&s.record.id) {
                        Ok(()) => report.deleted_workspaces.push(s.record.workspace.clone()),
                        Err(e) => {
                            tracing::warn!(session = %s.record.id, "cannot remove the session's volume: {e}")
                        }
                    }
                }
                report.removed_sessions.push(s.record.id);
                continue;
            }
            if !self.store().delete_session(&s.record.id)? {
                report.skipped_active.push(s.record.id.clone());
                continue;
            }
            if let Ok(rt) = self.configured_runtime()
                && let Ok(ids) = rt.containers_with_label(
                    &self.home,
                    crate::runtime::argv::LABEL_SESSION,
                    &s.record.id,
                )
            {
                for id in ids {
                    let _ = rt.remove(&id);
                }
            }
            for job in &jobs {
                if let Some(cid) = &job.container_id
                    && let Ok(rt) = self.runtime_for(&job.spec)
                {
                    let _ = rt.remove(cid);
                }
                let _ = std::fs::remove_dir_all(self.job_dir(&job.id));
            }
            let claude_dir = self.sessions_dir().join(&s.record.id);
            let _ = std::fs::remove_dir_all(&claude_dir);
            if delete_workspaces && s.record.workspace_created {
                let ws = &s.record.workspace;
                let inside = ws.parent() == Some(self.workspaces_dir().as_path());
                let is_real_dir = std::fs::symlink_metadata(ws)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                if inside && is_real_dir && std::fs::remove_dir_all(ws).is_ok() {
                    report.deleted_workspaces.push(ws.clone());
                }
                // A `--repo` session's own repository goes with its checkout: never the
                // user's repository, never a branch `creel branch` fetched into it.
                if s.record.git.is_some() {
                    let _ = std::fs::remove_dir_all(self.git_dir(&s.record.id));
                }
            }
            report.removed_sessions.push(s.record.id);
        }
        Ok(report)
    }

    /// Removes job directories that no job record owns, older than [`ORPHAN_AGE`]: a
    /// `creel start` killed between writing a job's files and recording the job leaves one
    /// (with the prompt, and maybe the API key) that nothing else would ever remove.
    fn remove_orphan_job_dirs(&self) {
        for (id, path) in old_dirs(&self.home.join("jobs")) {
            if crate::job::looks_like_job_id(&id)
                && matches!(self.store().job(&id), Ok(None))
                && matches!(self.store().pool_entry(&id), Ok(None))
            {
                tracing::info!("removing job directory {id}, which no job record owns");
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }

    /// Waits until the job is final or `timeout` expires, reconciling a dead monitor.
    pub fn wait(&self, job_id: &str, timeout: Option<Duration>) -> Result<WaitOutcome> {
        let started = Instant::now();
        let mut watch = self.watch_job(job_id)?;
        loop {
            let status = self.status(job_id)?;
            if status.record.state.is_final() {
                return Ok(WaitOutcome::Finished(status));
            }
            if status.waiting_on.is_some() {
                return Ok(WaitOutcome::NeedsAnswer(status));
            }
            let left = match timeout {
                Some(t) if started.elapsed() >= t => return Ok(WaitOutcome::TimedOut(status)),
                Some(t) => t.saturating_sub(started.elapsed()),
                None => JobWatch::RECHECK,
            };
            watch.wait(left);
        }
    }

    /// A watch on job `job_id`: how every face waits for a job to write output or change
    /// state (see [`JobWatch`]). Take it before reading the job, so that nothing written
    /// between the read and the wait is missed.
    pub fn watch_job(&self, job_id: &str) -> Result<JobWatch> {
        if self.store().job(job_id)?.is_none() {
            return Err(Error::UnknownJob(job_id.to_string()));
        }
        Ok(JobWatch::new(&job_dir(&self.home, job_id)))
    }

    /// One watch on several jobs (unknown ones are left out): wakes when any of them changes.
    pub fn watch_jobs(&self, job_ids: &[&str]) -> Result<JobWatch> {
        let mut watch: Option<JobWatch> = None;
        for id in job_ids {
            if self.store().job(id)?.is_none() {
                continue;
            }
            let dir = job_dir(&self.home, id);
            match &mut watch {
                Some(w) => w.add(&dir),
                None => watch = Some(JobWatch::new(&dir)),
            }
        }
        // Nothing to watch: a watch that only ever times out.
        Ok(watch.unwrap_or_else(|| JobWatch::new(&self.home.join("jobs"))))
    }

    /// The host profile for new jobs.
    pub fn host_profile(&self) -> HostProfile {
        HostProfile::detect(&self.config, self.config.runtime)
    }
}

/// The first non-empty line of a prompt file, at most 100 characters ("…" when cut), read
/// from at most its first 4 KiB; empty when it cannot be read.
/// The first non-empty line of the prompt file at `path`, trimmed, from its first 4 KiB; and
/// whether the file holds more than was read.
pub(crate) fn prompt_first_line(path: &Path) -> (String, bool) {
    use std::io::Read;
    const HEAD: usize = 4096;
    let mut buf = Vec::new();
    if let Ok(f) = crate::files::open_nofollow(path, false) {
        let _ = f.take(HEAD as u64).read_to_end(&mut buf);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    (line.to_string(), buf.len() == HEAD)
}

fn prompt_head(path: &Path) -> String {
    let (line, more) = prompt_first_line(path);
    let short = crate::stream::cut_str(&line, 100);
    if short.len() < line.len() || (line.is_empty() && more) {
        format!("{short}…")
    } else {
        short.to_string()
    }
}

/// The directories (not symlinks) directly in `dir` untouched for more than [`ORPHAN_AGE`],
/// with their names: the candidates of the orphan sweeps.
fn old_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = std::time::SystemTime::now();
    entries
        .flatten()
        .filter(|entry| {
            // (DirEntry::metadata does not follow a symlink.)
            entry.metadata().is_ok_and(|meta| {
                meta.is_dir()
                    && meta
                        .modified()
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .is_some_and(|age| age > ORPHAN_AGE)
            })
        })
        .filter_map(|entry| Some((entry.file_name().to_str()?.to_string(), entry.path())))
        .collect()
}

pub(crate) fn job_dir(home: &Path, job_id: &str) -> PathBuf {
    home.join("jobs").join(job_id)
}

/// Rings everyone watching a job's directory (its monitor, `creel wait`, MCP waits and
/// subscriptions, ACP turns, dashboard pages), so they look at the job again now rather than
/// at their next timed look: a request came or was answered, or the job was cancelled.
pub(crate) fn ring_job_dir(job_dir: &Path) {
    // A wake-up, not data: written in place (closing it is the event), without the sync of an
    // atomic write.
    let path = job_dir.join("changed.stamp");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string();
    if let Err(e) = std::fs::write(&path, stamp) {
        tracing::debug!("cannot ring {}: {e}", path.display());
    }
}

/// Tries to take a job's monitor lock. `Ok(None)`: a monitor holds it.
pub(crate) fn try_lock_job(home: &Path, job_id: &str) -> Result<Option<File>> {
    try_lock_file(&job_dir(home, job_id).join("monitor.lock"))
}

/// Tries to take the lock file `path` (making it if need be). `Ok(None)`: another process
/// holds it.
pub(crate) fn try_lock_file(path: &Path) -> Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", path, e)),
    }
}

/// Whether job `job_id`'s monitor is alive (holds its lock), without taking the lock.
pub(crate) fn monitor_alive(home: &Path, job_id: &str) -> bool {
    let path = job_dir(home, job_id).join("monitor.lock");
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

fn clone_runtime_error(e: &RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::Missing { bin } => RuntimeError::Missing { bin: bin.clone() },
        other => RuntimeError::Parse {
            bin: String::new(),
            command: String::new(),
            message: other.to_string(),
        },
    }
}
