//! `cancel`: idempotent; a cancelled job stays cancelled.

use crate::api::JobStatus;
use crate::engine::Engine;
use crate::error::Result;
use crate::job::{JobState, now_ms};
use crate::runtime::argv::LABEL_JOB;

/// Seconds between SIGTERM and SIGKILL when cancelling.
const CANCEL_GRACE_SECS: u64 = 2;

impl Engine {
    /// Cancels a job: records `cancelled` (unless it already ended: then nothing changes) and
    /// stops its container. The monitor, or a reconciling one, captures the rest of the output
    /// and removes the container.
    pub fn cancel(&self, job_id: &str) -> Result<JobStatus> {
        let record = self.load_job(job_id)?;
        if !record.state.can_cancel() {
            return Ok(self.describe(record));
        }
        if record.spec.runtime == crate::config::RuntimeKind::Kubernetes {
            return self.kube_cancel(record);
        }
        self.store()
            .finish(job_id, JobState::Cancelled, None, None, now_ms())?;
        // The job's monitor (and every face waiting on the job) sees it at once.
        crate::engine::ring_job_dir(&self.job_dir(job_id));
        let runtime = self.runtime_for(&record.spec)?;
        let mut ids: Vec<String> = record.container_id.iter().cloned().collect();
        if ids.is_empty() {
            ids = runtime
                .containers_with_label(&self.home, LABEL_JOB, job_id)
                .unwrap_or_default();
        }
        for id in ids {
            runtime.stop(&id, CANCEL_GRACE_SECS)?;
        }
        let record = self.load_job(job_id)?;
        // Let a monitor (alive or new) finish capturing output and remove the container.
        if let Some(lock) = crate::engine::try_lock_job(&self.home, job_id)? {
            self.spawn_monitor(job_id, lock)?;
        }
        Ok(self.describe(record))
    }
}
