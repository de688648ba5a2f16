//! The monitor of a warm-pool sandbox (see [`crate::pool`]): starts the container and its
//! egress proxy before any prompt exists, then sleeps until a start claims the sandbox (and
//! follows it as any job's monitor), the sandbox is drained or discarded (and takes it down),
//! or the container dies (and takes the sandbox out of the pool).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Monitor;
use crate::error::Result;
use crate::job::{JobRecord, JobSpec, now_ms};
use crate::pool::{record_failure, teardown};
use crate::runtime::{CliRuntime, ContainerRuntime};
use crate::store::{PoolEntry, Store};
use crate::watch::Wakeups;

/// The timed look while a sandbox waits (a claim or a drain rings the job's directory, and the
/// container's end rings the bell; this is the safety net).
const LOOK_EVERY: Duration = Duration::from_secs(60);

/// A sandbox is ready once its container has been idle this many samples in a row …
const IDLE_SAMPLES: u32 = 2;
/// … this far apart …
const IDLE_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// … using less than this share of a core (in percent) …
const IDLE_CPU_PERCENT: f64 = 5.0;
/// … or after this long, whatever it does.
const IDLE_WAIT_MAX: Duration = Duration::from_secs(30);

/// Waits until the container's processes are idle: Claude Code has loaded and waits on its
/// input. Only then is the sandbox ready, or a start that takes it would still wait for
/// Claude's own start (a few hundred ms with the real image). Without the container's cgroup
/// it returns at once.
fn wait_until_idle(rt: &dyn ContainerRuntime, dir: &Path, container: &str) {
    let Some(mut cgroup) = rt
        .container_pid(dir, container)
        .and_then(|pid| crate::cgroup::CgroupStats::of_container(pid, container))
    else {
        return;
    };
    let until = std::time::Instant::now() + IDLE_WAIT_MAX;
    let _ = cgroup.sample();
    let mut quiet = 0;
    while std::time::Instant::now() < until {
        std::thread::sleep(IDLE_SAMPLE_EVERY);
        match cgroup.sample().and_then(|m| m.cpu_percent) {
            Some(p) if p < IDLE_CPU_PERCENT => {
                quiet += 1;
                if quiet >= IDLE_SAMPLES {
                    return;
                }
            }
            Some(_) => quiet = 0,
            None => return,
        }
    }
}

/// What became of a waiting sandbox.
enum Fate {
    /// A start claimed it: the job's record is there.
    Claimed(Box<JobRecord>),
    /// Drained or discarded: its pool row is gone, and no job took it.
    Gone,
}

pub(super) fn run(home: &Path, store: Store, entry: PoolEntry) -> Result<()> {
    let Ok(spec) = serde_json::from_str::<JobSpec>(&entry.spec) else {
        // (Written by creel, so only a store from another version gets here.)
        if store.pool_remove(&entry.job_id)? {
            let _ = std::fs::remove_dir_all(crate::engine::job_dir(home, &entry.job_id));
        }
        return Ok(());
    };
    let give_up = |store: &Store, container: Option<&str>, why: Option<String>| -> Result<()> {
        if let Some(why) = why {
            tracing::warn!(job = %entry.job_id, "a pooled sandbox could not start: {why}");
            record_failure(home, &why);
        }
        if store.pool_remove(&entry.job_id)? || store.job(&entry.job_id)?.is_none() {
            teardown(home, &entry.job_id, &spec, container);
        }
        Ok(())
    };
    let runtime: Arc<dyn ContainerRuntime> =
        match CliRuntime::new(spec.runtime, Some(&spec.runtime_bin)) {
            Ok(rt) => Arc::new(rt),
            Err(e) => return give_up(&store, None, Some(e.to_string())),
        };
    let job = JobRecord::pending(
        entry.job_id.clone(),
        entry.session_id.clone(),
        spec.clone(),
        entry.created_at_ms,
        Vec::new(),
    );
    let mut m = Monitor::new(home, store, job, runtime);
    let mut wake = Wakeups::new();
    let watched = wake.watch_dir(&m.dir);
    let look_every = if watched {
        LOOK_EVERY
    } else {
        super::STATE_EVERY_UNWATCHED
    };

    // Not before its time (a start that topped the pool up goes first).
    loop {
        let wait = entry.start_after_ms.saturating_sub(now_ms());
        if wait <= 0 {
            break;
        }
        if m.store.pool_entry(&entry.job_id)?.is_none() {
            return give_up(&m.store, None, None);
        }
        wake.sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(look_every));
    }

    let container = match m.run_container() {
        Ok((cid, _warnings)) => cid,
        Err(e) => return give_up(&m.store, None, Some(e.to_string())),
    };
    if spec.egress.is_some()
        && let Err(e) = m.start_egress(&container)
    {
        return give_up(
            &m.store,
            Some(&container),
            Some(format!("the egress proxy could not start: {e}")),
        );
    }
    wait_until_idle(m.runtime.as_ref(), &m.dir, &container);
    if !m.store.pool_ready(&entry.job_id, &container)? {
        return give_up(&m.store, Some(&container), None);
    }
    tracing::debug!(job = %entry.job_id, "pooled sandbox ready");

    // The container's end rings the sleeper.
    let exit_rx = m.wait_exit_in_thread(&container, wake.bell());
    let fate = loop {
        if let Some(fate) = fate(&m.store, &entry.job_id)? {
            break fate;
        }
        if exit_rx.try_recv().is_ok() {
            // Dead before anyone claimed it (unless a claim comes first).
            if m.store.pool_remove(&entry.job_id)? {
                tracing::info!(job = %entry.job_id, "a pooled sandbox's container ended before it was used");
                teardown(home, &entry.job_id, &spec, Some(&container));
                return Ok(());
            }
            continue;
        }
        wake.sleep(look_every);
    };
    match fate {
        Fate::Gone => {
            teardown(home, &entry.job_id, &spec, Some(&container));
            Ok(())
        }
        Fate::Claimed(job) => {
            m.job = *job;
            let result = m.follow(&container);
            m.conclude(result)
        }
    }
}

/// Whether the sandbox was claimed or taken away; `None` while it waits in the pool. (A claim
/// removes the pool row and inserts the job in one transaction: with the row gone, the job is
/// there now or never will be.)
fn fate(store: &Store, job_id: &str) -> Result<Option<Fate>> {
    if store.pool_entry(job_id)?.is_some() {
        return Ok(None);
    }
    Ok(Some(match store.job(job_id)? {
        Some(job) => Fate::Claimed(Box::new(job)),
        None => Fate::Gone,
    }))
}
