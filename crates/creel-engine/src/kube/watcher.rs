//! The namespace's watcher (`creel __kube-watch`): one process per front end for all its
//! jobs on the cluster, with one list-and-watch of the namespace's pods, instead of a monitor
//! process per job. It mirrors what the pods say into the store: a job of another front end
//! is imported; a running pod's output is followed (one log stream per running pod, as
//! `output.rs` says); an ended or vanished pod's job is settled once (the rest of its output
//! from the session's volume, the verdict, the webhook). It holds `kube-watch.lock` in the
//! home, and leaves once no job of the store is unfinished on the cluster: a `start`, or any
//! front end that finds such a job with the lock free, starts it again.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncBufReadExt, AsyncReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams, WatchEvent, WatchParams};
use tokio::sync::watch;

use super::cluster::{self, Cluster};
use super::lifecycle::ANNOTATION_CANCELLED;
use super::output::{Ending, MAX_FRAME, READ_PIECE, Sink};
use super::render::{self, KubeSettings, LABEL_JOB, LABEL_MANAGED, LABEL_READS};
use crate::config::RuntimeKind;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{ErrorKind, JobError, JobRecord, JobState, now_ms};
use crate::monitor::verdict::{KillReason, decide};
use crate::store::Progress;

/// How long a pending job may have no pod before it counts as gone.
const START_GRACE_MS: i64 = 60_000;
/// How long the watcher stays with nothing to watch before it leaves.
const IDLE_EXIT: Duration = Duration::from_secs(20);
/// How often a followed job's progress is written to the store.
const CHECKPOINT: Duration = Duration::from_millis(500);
/// How long a reader pod may take.
const READER_DEADLINE: Duration = Duration::from_secs(180);

/// Tries to take the watcher's lock. `Ok(None)`: a watcher holds it.
pub(crate) fn try_lock(home: &Path) -> Result<Option<File>> {
    crate::engine::try_lock_file(&home.join("kube-watch.lock"))
}

/// The watcher process's body. `lock`: the watcher's lock, handed over by whoever started it
/// (else taken here; if another watcher has it, there is nothing to do).
pub fn run(engine: Engine, lock: Option<File>) -> Result<()> {
    let mut lock = match lock {
        Some(l) => l,
        None => match try_lock(&engine.home)? {
            Some(l) => l,
            None => return Ok(()),
        },
    };
    let engine = Arc::new(engine);
    raise_open_files();
    // Two threads: a store or file wait in one job's task does not stall every other.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::cluster("start the watcher's runtime", e))?;
    let mut failures = 0u32;
    loop {
        // A cluster that cannot be reached for a while is waited for, not given up on at once.
        if let Err(e) = rt.block_on(watch_namespace(engine.clone())) {
            failures += 1;
            tracing::warn!("the watcher failed ({failures}): {e}");
            if failures < 60 {
                std::thread::sleep(Duration::from_secs(5));
                continue;
            }
            return Err(e);
        }
        // Leaving: the lock goes first, then one more look, so that a job recorded in between
        // (whose `start` found the lock taken) is never left without a watcher.
        drop(lock);
        if unfinished(&engine)?.is_empty() {
            return Ok(());
        }
        lock = match try_lock(&engine.home)? {
            Some(l) => l,
            None => return Ok(()),
        };
    }
}

/// A log stream per running pod is a connection each: the soft limit on open files goes up
/// to the hard one (a thousand running jobs need more than the usual 1024).
pub fn raise_open_files() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::debug!("cannot raise the open-files limit: {e}");
        }
    }
}

/// This store's jobs on the cluster that are not settled: not final, owing a webhook, or
/// cancelled with their output not yet complete.
fn unfinished(engine: &Engine) -> Result<Vec<JobRecord>> {
    let mut ids = engine.store().unfinished_jobs()?;
    let cancelled = engine
        .store()
        .recent_jobs(None, Some(JobState::Cancelled), false, 200)?;
    ids.extend(
        cancelled
            .into_iter()
            .filter(|j| j.spec.runtime == RuntimeKind::Kubernetes && !settled(engine, &j.id))
            .map(|j| j.id),
    );
    let mut out = Vec::new();
    for id in ids {
        let job = engine.store().job(&id)?;
        if let Some(j) = job
            && j.spec.runtime == RuntimeKind::Kubernetes
        {
            out.push(j);
        }
    }
    Ok(out)
}

/// The file that says a job's copy of its output is complete.
const SETTLED: &str = "output.settled";

/// Whether job `id`'s output is complete here.
fn settled(engine: &Engine, id: &str) -> bool {
    engine.job_dir(id).join(SETTLED).exists()
}

/// Marks job `id`'s output complete (a job that never ran has none to wait for).
pub(crate) fn mark_settled(engine: &Engine, id: &str) {
    let path = engine.job_dir(id).join(SETTLED);
    if let Err(e) = std::fs::write(&path, b"") {
        tracing::warn!(job = %id, "cannot write {}: {e}", path.display());
    }
}

/// Whether a job needs nothing more from its pod.
fn done_with(engine: &Engine, r: &JobRecord) -> bool {
    r.state.is_final() && !r.webhook_pending() && settled(engine, &r.id)
}

/// What the watcher knows of a job's pod.
#[derive(Debug, Clone, PartialEq)]
enum PodView {
    /// Not started yet.
    Waiting,
    /// Claude's container runs.
    Running,
    /// Claude's container ended.
    Ended {
        exit: Option<i64>,
        oom: bool,
        message: Option<String>,
        deadline: bool,
    },
    /// The pod cannot start (its image, say).
    Stuck { kind: ErrorKind, why: String },
    /// The pod is gone (deleted, or never made).
    Gone,
}

impl PodView {
    fn of(pod: &Pod) -> PodView {
        let status = pod.status.clone().unwrap_or_default();
        let deadline = status.reason.as_deref() == Some("DeadlineExceeded");
        let claude = status
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == "claude")
            .and_then(|c| c.state.clone());
        if let Some(state) = &claude {
            if let Some(t) = &state.terminated {
                return PodView::Ended {
                    exit: Some(i64::from(t.exit_code)),
                    oom: t.reason.as_deref() == Some("OOMKilled"),
                    message: t.message.clone(),
                    deadline,
                };
            }
            if state.running.is_some() {
                return PodView::Running;
            }
            if let Some(w) = &state.waiting {
                let reason = w.reason.as_deref().unwrap_or_default();
                if matches!(
                    reason,
                    "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName"
                ) {
                    return PodView::Stuck {
                        kind: ErrorKind::ImageMissing,
                        why: format!(
                            "{reason}: {}",
                            w.message.as_deref().unwrap_or("the image cannot be pulled")
                        ),
                    };
                }
                if reason == "CreateContainerConfigError" || reason == "CreateContainerError" {
                    return PodView::Stuck {
                        kind: ErrorKind::Runtime,
                        why: format!("{reason}: {}", w.message.as_deref().unwrap_or_default()),
                    };
                }
            }
        }
        match status.phase.as_deref() {
            Some("Failed") | Some("Succeeded") => PodView::Ended {
                exit: None,
                oom: false,
                message: None,
                deadline,
            },
            _ => PodView::Waiting,
        }
    }
}

/// What every job's task shares.
#[derive(Clone)]
struct Ctx {
    engine: Arc<Engine>,
    cluster: Cluster,
    settings: KubeSettings,
}

/// One pass of the watcher: list, then watch, until nothing is left to watch (`Ok`), or the
/// cluster cannot be reached for long (`Err`).
async fn watch_namespace(engine: Arc<Engine>) -> Result<()> {
    let settings = KubeSettings::from_config(&engine.config)?;
    let cluster = Cluster::connect(&engine.config.kubernetes).await?;
    let ctx = Ctx {
        engine: engine.clone(),
        cluster: cluster.clone(),
        settings,
    };
    let mut jobs: HashMap<String, (watch::Sender<PodView>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let selector = format!("{}={},!{LABEL_READS}", LABEL_MANAGED.0, LABEL_MANAGED.1);
    let mut failures = 0u32;
    let mut idle_since: Option<tokio::time::Instant> = None;
    'list: loop {
        let listed = match cluster
            .pods()
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => {
                failures = 0;
                l
            }
            Err(e) => {
                failures += 1;
                tracing::warn!("cannot list the namespace's pods: {e}");
                if failures >= 30 {
                    return Err(Error::cluster("list the namespace's pods", e));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let mut rv = listed.metadata.resource_version.clone().unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        for pod in &listed.items {
            if let Some(id) = on_pod(&ctx, &mut jobs, pod) {
                seen.insert(id);
            }
        }
        // This store's unsettled jobs whose pod is not there: gone (a pending one only after
        // a while: its `start` records it before it makes the pod).
        for job in unfinished(&engine)? {
            let young = job.state == JobState::Pending
                && now_ms().saturating_sub(job.created_at_ms) < START_GRACE_MS;
            if !seen.contains(&job.id) && !young {
                update(&ctx, &mut jobs, &job.id, PodView::Gone);
            }
        }
        let mut stream = match cluster
            .pods()
            .watch(&WatchParams::default().labels(&selector).timeout(290), &rv)
            .await
        {
            Ok(s) => s.boxed(),
            Err(e) => {
                tracing::warn!("cannot watch the namespace's pods: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await;
            match next {
                Ok(Ok(Some(ev))) => match ev {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                        rv = p.metadata.resource_version.clone().unwrap_or(rv);
                        on_pod(&ctx, &mut jobs, &p);
                    }
                    WatchEvent::Deleted(p) => {
                        rv = p.metadata.resource_version.clone().unwrap_or(rv);
                        if let Some(id) = job_of(&p) {
                            // A cancel (from any front end) is known by its annotation.
                            note_cancel(&ctx, &id, &p);
                            // A pod deleted after it ended still says how it ended.
                            let view = match PodView::of(&p) {
                                v @ PodView::Ended { .. } => v,
                                _ => PodView::Gone,
                            };
                            update(&ctx, &mut jobs, &id, view);
                        }
                    }
                    WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                    WatchEvent::Error(e) => {
                        tracing::debug!("watch ended: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue 'list;
                    }
                },
                // The watch's time is up: list again.
                Ok(Ok(None)) => continue 'list,
                Ok(Err(e)) => {
                    tracing::debug!("watch broke: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue 'list;
                }
                Err(_) => {}
            }
            jobs.retain(|_, (_, h)| !h.is_finished());
            if jobs.is_empty() && unfinished(&engine)?.is_empty() {
                let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= IDLE_EXIT {
                    return Ok(());
                }
            } else {
                idle_since = None;
            }
        }
    }
}

/// The job a pod is, by its label.
fn job_of(pod: &Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref()?;
    if labels.contains_key(LABEL_READS) {
        return None;
    }
    labels
        .get(LABEL_JOB)
        .filter(|j| crate::job::looks_like_job_id(j))
        .cloned()
}

/// A pod as listed or changed: its job imported if new to this store, its task told.
fn on_pod(
    ctx: &Ctx,
    jobs: &mut HashMap<String, (watch::Sender<PodView>, tokio::task::JoinHandle<()>)>,
    pod: &Pod,
) -> Option<String> {
    let id = job_of(pod)?;
    let record = match ctx.engine.kube_import(pod, ctx.cluster.namespace()) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(job = %id, "cannot record the job: {e}");
            return None;
        }
    };
    note_cancel(ctx, &id, pod);
    if done_with(&ctx.engine, &record) && !jobs.contains_key(&id) {
        return Some(id);
    }
    update(ctx, jobs, &id, PodView::of(pod));
    Some(id)
}

/// A pod marked cancelled makes its job cancelled here too.
fn note_cancel(ctx: &Ctx, id: &str, pod: &Pod) {
    let cancelled = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_CANCELLED));
    if cancelled {
        let done = ctx
            .engine
            .store()
            .finish(id, JobState::Cancelled, None, None, now_ms());
        if matches!(done, Ok(true)) {
            crate::engine::ring_job_dir(&ctx.engine.job_dir(id));
        }
    }
}

/// Tells job `id`'s task what its pod is now, starting the task if it has none.
fn update(
    ctx: &Ctx,
    jobs: &mut HashMap<String, (watch::Sender<PodView>, tokio::task::JoinHandle<()>)>,
    id: &str,
    view: PodView,
) {
    if let Some((tx, h)) = jobs.get(id)
        && !h.is_finished()
    {
        // How a pod ended is never forgotten for its later deletion.
        let ended = matches!(*tx.borrow(), PodView::Ended { .. });
        if !(ended && view == PodView::Gone) {
            tx.send_replace(view);
        }
        return;
    }
    let done = ctx
        .engine
        .store()
        .job(id)
        .ok()
        .flatten()
        .is_none_or(|r| done_with(&ctx.engine, &r));
    if done {
        return;
    }
    let (tx, rx) = watch::channel(view);
    let task = tokio::spawn(job_task(ctx.clone(), id.to_string(), rx));
    jobs.insert(id.to_string(), (tx, task));
}

/// A job's task: follows its output while the pod runs, then settles it.
async fn job_task(ctx: Ctx, id: String, mut pod: watch::Receiver<PodView>) {
    // Once a line was missed, the log is of no more use: the volume's file completes the
    // copy when the pod has ended.
    let mut gapped = settled(&ctx.engine, &id);
    let view = loop {
        let view = pod.borrow_and_update().clone();
        match view {
            PodView::Waiting => {
                if pod.changed().await.is_err() {
                    return;
                }
            }
            PodView::Running => {
                mark_running(&ctx, &id);
                if !gapped {
                    match follow(&ctx, &id).await {
                        Ok(gap) => gapped = gap,
                        Err(e) => tracing::warn!(job = %id, "following the output: {e}"),
                    }
                    // The log ended: the container did, or the connection broke (then the
                    // next look follows again, numbered lines telling what is new).
                    let _ = tokio::time::timeout(Duration::from_secs(2), pod.changed()).await;
                } else if pod.changed().await.is_err() {
                    return;
                }
            }
            PodView::Ended { .. } => {
                // What the log still holds (all of it, when it was not rotated) spares
                // reader pods.
                if !gapped && let Err(e) = follow(&ctx, &id).await {
                    tracing::debug!(job = %id, "reading the ended pod's log: {e}");
                }
                break view;
            }
            PodView::Stuck { .. } | PodView::Gone => break view,
        }
    };
    // Settling is safe to repeat (the copy is merged, the verdict recorded once): a reader
    // pod that failed, or an API call, is tried again a few times before the next list.
    for attempt in 1..=SETTLE_ATTEMPTS {
        match settle(&ctx, &id, view.clone()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(job = %id, "cannot settle the job (attempt {attempt}): {}", super::error_text(&e));
                tokio::time::sleep(Duration::from_secs(2 * u64::from(attempt))).await;
            }
        }
    }
}

/// How often a job's settling is tried before the next list of the namespace tries again.
const SETTLE_ATTEMPTS: u32 = 5;

fn mark_running(ctx: &Ctx, id: &str) {
    let ok = ctx
        .engine
        .store()
        .set_running(id, &format!("creel-{id}"), now_ms());
    if matches!(ok, Ok(true)) {
        crate::engine::ring_job_dir(&ctx.engine.job_dir(id));
    }
}

/// Follows the running pod's log into the job's copy, until the log ends. Returns whether a
/// line was missed (a gap: the rest comes from the volume).
async fn follow(ctx: &Ctx, id: &str) -> Result<bool> {
    let dir = ctx.engine.job_dir(id);
    let mut sink = Sink::open(&dir)?;
    let params = LogParams {
        container: Some("claude".into()),
        follow: true,
        ..Default::default()
    };
    let stream = ctx
        .cluster
        .pods()
        .log_stream(&format!("creel-{id}"), &params)
        .await
        .map_err(|e| Error::cluster("follow the pod's log", e))?;
    let mut stream = Box::pin(stream);
    let mut line = Vec::new();
    let mut last = tokio::time::Instant::now();
    let mut dirty = false;
    let mut first_at = None;
    loop {
        // A pause in the output still checkpoints what came before it. (What a read cut
        // short by the timer took stays in `line`: it is continued, not lost.)
        let wait = if dirty {
            CHECKPOINT.saturating_sub(last.elapsed())
        } else {
            Duration::from_secs(3600)
        };
        let read = tokio::time::timeout(
            wait,
            (&mut stream)
                .take(MAX_FRAME as u64 + 64)
                .read_until(b'\n', &mut line),
        )
        .await;
        let n = match read {
            Err(_) => {
                checkpoint(ctx, id, &sink, first_at);
                dirty = false;
                last = tokio::time::Instant::now();
                continue;
            }
            Ok(r) => r.map_err(|e| Error::cluster("read the pod's log", e))?,
        };
        if n == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            if line.len() <= MAX_FRAME {
                continue; // the rest of the line is on its way
            }
            // Longer than any line creel takes from the log: the volume has it.
            sink.gap = true;
            break;
        }
        line.pop();
        if sink.frame(&line)? {
            dirty = true;
            first_at.get_or_insert_with(now_ms);
        }
        line.clear();
        if sink.gap {
            break;
        }
        if dirty && last.elapsed() >= CHECKPOINT {
            checkpoint(ctx, id, &sink, first_at);
            dirty = false;
            last = tokio::time::Instant::now();
        }
    }
    if dirty {
        checkpoint(ctx, id, &sink, first_at);
    }
    Ok(sink.gap)
}

/// Writes what the copy holds to the store and rings the job's watchers.
fn checkpoint(ctx: &Ctx, id: &str, sink: &Sink, first_at: Option<i64>) {
    let f = &sink.facts;
    let now = now_ms();
    let previous = ctx.engine.store().job(id).ok().flatten();
    let progress = Progress {
        output_size: sink.bytes,
        log_offset: sink.lines,
        first_output_at_ms: previous
            .as_ref()
            .and_then(|p| p.first_output_at_ms)
            .or(first_at)
            .or((sink.bytes > 0).then_some(now)),
        last_output_at_ms: (sink.bytes > 0).then_some(now),
        claude_session_id: f.claude_session_id.clone(),
        num_turns: f.num_turns,
        cost_usd: f.cost_usd,
        result: f.result.clone(),
        retry: None,
        metrics: None,
        egress_denied: Default::default(),
    };
    if let Err(e) = ctx.engine.store().set_progress(id, &progress) {
        tracing::warn!(job = %id, "cannot record progress: {e}");
    }
    crate::engine::ring_job_dir(&ctx.engine.job_dir(id));
}

/// Settles an ended (or vanished, or stuck) job once: the rest of its output from the
/// session's volume, checked; its verdict; its webhook.
async fn settle(ctx: &Ctx, id: &str, view: PodView) -> Result<()> {
    let Some(record) = ctx.engine.store().job(id)? else {
        return Ok(());
    };
    if matches!(view, PodView::Waiting | PodView::Running) {
        return Ok(());
    }
    let stuck = matches!(view, PodView::Stuck { .. });
    if stuck {
        // The kubelet would keep trying: the job is over.
        cluster::delete(&ctx.cluster.pods(), &format!("creel-{id}"), Some(0)).await?;
    }
    // (A job settled before, owing only its webhook, has its output already; one that never
    // ran has none.)
    let ran = matches!(view, PodView::Ended { .. }) || record.started_at_ms.is_some();
    if matches!(view, PodView::Ended { .. }) && record.started_at_ms.is_none() {
        // It ran while no watcher of this front end looked.
        mark_running(ctx, id);
    }
    if !stuck && ran && !settled(&ctx.engine, id) {
        complete_output(ctx, &record, &view).await?;
    }
    mark_settled(&ctx.engine, id);
    let dir = ctx.engine.job_dir(id);
    let sink = Sink::open_as_is(&dir)?;
    checkpoint(ctx, id, &sink, None);
    if !record.state.is_final() {
        let (error, exit) = match &view {
            PodView::Stuck { kind, why } => (
                Some(JobError {
                    kind: *kind,
                    message: crate::monitor::first_line(why, 500),
                }),
                None,
            ),
            PodView::Gone => (
                decide(
                    &record.spec,
                    Some(KillReason {
                        kind: ErrorKind::Runtime,
                        message: "the job's pod was deleted before it ended".into(),
                    })
                    .filter(|_| !sink.facts.saw_result),
                    false,
                    None,
                    &sink.facts,
                    "",
                ),
                None,
            ),
            PodView::Ended {
                exit,
                oom,
                message,
                deadline,
            } => {
                let exit = message
                    .as_deref()
                    .and_then(Ending::parse)
                    .map(|e| e.exit)
                    .or(*exit);
                let kill = deadline.then(|| KillReason {
                    kind: ErrorKind::Budget,
                    message: "the session's max_wall_seconds budget is spent (the pod's deadline)"
                        .into(),
                });
                (
                    decide(&record.spec, kill, *oom, exit, &sink.facts, ""),
                    exit,
                )
            }
            PodView::Waiting | PodView::Running => (None, None),
        };
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Completed
        };
        ctx.engine
            .store()
            .finish(id, state, error.as_ref(), exit, now_ms())?;
    }
    crate::engine::ring_job_dir(&dir);
    let db = ctx.engine.home.join("creel.db");
    let job = id.to_string();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut store = crate::store::Store::open(&db)?;
        crate::monitor::send_webhook(&mut store, &job)
    })
    .await
    .map_err(|e| Error::cluster("send the webhook", e))??;
    Ok(())
}

/// Makes the job's copy of its output whole: checked against the wrapper's size and SHA-256
/// when the pod ended normally; otherwise (killed, deleted, cancelled) read to the end of the
/// volume's file. A copy that still does not match is kept, with a warning on the job.
async fn complete_output(ctx: &Ctx, record: &JobRecord, view: &PodView) -> Result<()> {
    let dir = ctx.engine.job_dir(&record.id);
    let mut sink = Sink::open(&dir)?;
    let ending = match view {
        PodView::Ended { message, .. } => message.as_deref().and_then(Ending::parse),
        _ => None,
    };
    if let Some(e) = &ending
        && !sink.gap
        && sink.matches(e)?
    {
        return Ok(());
    }
    if ctx
        .cluster
        .claims()
        .get_opt(&render::session_volume_name(&record.session_id))
        .await
        .map_err(|e| Error::cluster("look up the session's volume", e))?
        .is_none()
    {
        warn(
            ctx,
            &record.id,
            "the rest of the output is lost: the session's volume is gone",
        );
        return Ok(());
    }
    let total = ending.as_ref().map(|e| e.bytes);
    for from_start in [false, true] {
        let at = if from_start { 0 } else { sink.repair_from() };
        read_rest(ctx, record, &mut sink, at, total).await?;
        sink.settle()?;
        match &ending {
            Some(e) if !sink.matches(e)? => continue,
            _ => return Ok(()),
        }
    }
    warn(
        ctx,
        &record.id,
        "the output read from the session's volume does not match the size and SHA-256 its pod reported",
    );
    Ok(())
}

fn warn(ctx: &Ctx, id: &str, warning: &str) {
    tracing::warn!(job = %id, "{warning}");
    let _ = ctx.engine.store().add_warning(id, warning);
}

/// Brings the volume's file from byte `at` (to `total`, or to its end) into `sink`, a piece
/// per reader pod.
async fn read_rest(
    ctx: &Ctx,
    record: &JobRecord,
    sink: &mut Sink,
    mut at: u64,
    total: Option<u64>,
) -> Result<()> {
    loop {
        let len = match total {
            Some(t) if at >= t => break,
            Some(t) => (t - at).min(READ_PIECE),
            None => READ_PIECE,
        };
        let piece = read_piece(ctx, record, at, len).await?;
        if total.is_some() && (piece.len() as u64) < len {
            return Err(Error::cluster(
                "read the job's output from the session's volume",
                format!("a reader pod printed {} of {len} bytes", piece.len()),
            ));
        }
        sink.merge(at, &piece)?;
        at += piece.len() as u64;
        if (piece.len() as u64) < len {
            break;
        }
    }
    // The file ends here: a copy longer than it (a last line the numbering gave a newline
    // the file does not have) is cut to it.
    if sink.bytes > at {
        sink.truncate(at)?;
    }
    Ok(())
}

/// Runs a reader pod for `len` bytes of the job's file from `at`, and returns its log.
async fn read_piece(ctx: &Ctx, record: &JobRecord, at: u64, len: u64) -> Result<Vec<u8>> {
    let (uid, gid) = match record.spec.user {
        crate::job::UserMode::KeepId { uid, gid } | crate::job::UserMode::Plain { uid, gid } => {
            (i64::from(uid), i64::from(gid))
        }
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let pod = render::reader(
        &record.id,
        &record.session_id,
        &record.spec.image,
        uid,
        gid,
        &ctx.settings,
        at,
        len,
        &nonce,
    );
    let name = render::reader_name(&record.id, at, &nonce);
    let pods = ctx.cluster.pods();
    let until = tokio::time::Instant::now() + READER_DEADLINE;
    pods.create(&Default::default(), &pod)
        .await
        .map_err(|e| Error::cluster("start a reader pod", e))?;
    let mut polls = 0u32;
    let ended = loop {
        let p = pods
            .get_opt(&name)
            .await
            .map_err(|e| Error::cluster("look up a reader pod", e))?;
        let phase = p
            .as_ref()
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone());
        match phase.as_deref() {
            Some("Succeeded") => break true,
            Some("Failed") => break false,
            _ if p.is_none() => break false,
            _ if tokio::time::Instant::now() >= until => break false,
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                // A volume deleted meanwhile (a cleanup) leaves the pod pending for ever.
                polls += 1;
                if polls.is_multiple_of(10)
                    && matches!(
                        ctx.cluster
                            .claims()
                            .get_opt(&render::session_volume_name(&record.session_id))
                            .await,
                        Ok(None)
                    )
                {
                    break false;
                }
            }
        }
    };
    let mut bytes = Vec::new();
    if ended {
        let params = LogParams {
            container: Some("read".into()),
            ..Default::default()
        };
        let log = pods
            .log_stream(&name, &params)
            .await
            .map_err(|e| Error::cluster("read a reader pod's log", e))?;
        let mut log = Box::pin(log);
        (&mut log)
            .take(len)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::cluster("read a reader pod's log", e))?;
    }
    cluster::delete(&pods, &name, Some(0)).await?;
    if !ended {
        return Err(Error::cluster(
            "read the job's output from the session's volume",
            format!("the reader pod {name} did not succeed"),
        ));
    }
    Ok(bytes)
}
