//! [`JobChanges`]: the engine's [`JobWatch`] for async faces (MCP, ACP, the dashboard), waiting on its
//! inotify descriptor under tokio instead of on a thread of its own.

use std::time::Duration;

use creel_engine::JobWatch;
use tokio::io::unix::AsyncFd;

/// A watch on some jobs, awaited without a thread per wait.
pub(crate) struct JobChanges {
    fd: Option<AsyncFd<Watched>>,
    woke: Option<std::time::Instant>,
}

/// The watch as tokio's `AsyncFd` wants it; only built when the watch has a descriptor.
struct Watched(JobWatch);

impl std::os::fd::AsRawFd for Watched {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.fd().map_or(-1, |fd| fd.as_raw_fd())
    }
}

impl JobChanges {
    /// Wraps a watch taken (before the first read of its jobs) with `Engine::watch_jobs`.
    /// Must be called inside a tokio runtime.
    pub(crate) fn from_watch(watch: JobWatch) -> JobChanges {
        let fd = match watch.fd() {
            // SAFETY: the descriptor is the watch's own inotify descriptor, which `Watched` owns
            // and keeps open while the `AsyncFd` lives; nothing outside the engine can replace
            // it, so `as_raw_fd` returns the same descriptor every time.
            Some(_) => unsafe {
                AsyncFd::register_with_interest(Watched(watch), tokio::io::Interest::READABLE)
            }
            .ok(),
            None => None,
        };
        JobChanges { fd, woke: None }
    }

    /// Like [`JobWatch::wait`]: until a change, `timeout` or [`JobWatch::RECHECK`].
    pub(crate) async fn wait(&mut self, timeout: Duration) {
        let timeout = timeout.min(JobWatch::RECHECK);
        let started = std::time::Instant::now();
        if let Some(woke) = self.woke {
            tokio::time::sleep(
                JobWatch::COALESCE
                    .saturating_sub(woke.elapsed())
                    .min(timeout),
            )
            .await;
        }
        let Some(fd) = &self.fd else {
            let left = timeout.saturating_sub(started.elapsed());
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
            return;
        };
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let Ok(Ok(mut ready)) = tokio::time::timeout(left, fd.readable()).await else {
                return;
            };
            let relevant = ready.get_inner().0.clear();
            ready.clear_ready();
            if relevant {
                self.woke = Some(std::time::Instant::now());
                return;
            }
            // Only a reader's own cache changed: wait on.
        }
    }
}
