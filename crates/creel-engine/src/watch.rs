//! How the monitor sleeps: until the runtime's log grows (inotify), one of its own threads rings
//! (an eventfd), or a timeout passes; and how it waits for conmon to finish (a pidfd, and an
//! inotify watch for its exit file). No polling loop, no helper process.
//!
//! And how everyone else waits for a job ([`JobWatch`]): `run`, `output --follow`,
//! [`crate::Engine::wait`] and the MCP server's waits and resource updates all sleep on an
//! inotify watch of the job's directory, where the monitor writes the output and closes its
//! lock when it ends.
//!
//! Everything here degrades instead of failing: without inotify the monitor falls back to a
//! short timed poll, and without a pidfd to `podman wait`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

/// Sleeps until the watched log is written to, the [`Bell`] rings, or a timeout passes.
pub struct Wakeups {
    inotify: Option<OwnedFd>,
    watching: bool,
    bell: Bell,
    /// Directories watched apart from the log (the job's own, for a cancel's doorbell; its
    /// steering requests), all on one inotify instance.
    dir: Option<OwnedFd>,
    dir_woke: bool,
}

/// Wakes a [`Wakeups`] from another thread. Cheap to clone.
#[derive(Clone)]
pub struct Bell(Option<Arc<OwnedFd>>);

impl Bell {
    /// Wakes the sleeper (now, or at its next sleep if it is awake).
    pub fn ring(&self) {
        if let Some(fd) = &self.0 {
            // A full counter (2^64 - 2 rings) is still a ring: the error does not matter.
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }
}

impl Wakeups {
    /// Creates the sleeper. Never fails: what the kernel refuses is replaced by timed polls.
    pub fn new() -> Wakeups {
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| tracing::debug!("inotify unavailable, polling the log instead: {e}"))
            .ok();
        let bell = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| tracing::debug!("eventfd unavailable: {e}"))
            .ok()
            .map(Arc::new);
        Wakeups {
            inotify,
            watching: false,
            bell: Bell(bell),
            dir: None,
            dir_woke: false,
        }
    }

    /// Also wakes when a file is created or renamed into `dir`; [`Wakeups::take_dir_news`]
    /// says whether that happened. Returns false when the directory cannot be watched (the
    /// caller then looks at it on a timer).
    /// Can be called for several directories: news from any of them counts.
    pub fn watch_dir(&mut self, dir: &Path) -> bool {
        let fd = match self.dir.take() {
            Some(fd) => fd,
            None => {
                match inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
                {
                    Ok(fd) => fd,
                    Err(_) => return false,
                }
            }
        };
        let flags = inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::CREATE;
        let added = inotify::add_watch(&fd, dir, flags).is_ok();
        self.dir = Some(fd);
        if !added {
            return false;
        }
        // Whatever is there already is news to the first look.
        self.dir_woke = true;
        true
    }

    /// Whether the watched directory changed since the last call.
    pub fn take_dir_news(&mut self) -> bool {
        std::mem::take(&mut self.dir_woke)
    }

    /// A handle other threads ring to wake this sleeper.
    pub fn bell(&self) -> Bell {
        self.bell.clone()
    }

    /// Starts watching `path` for writes. Returns whether writes to it now wake the sleeper;
    /// false when the file does not exist yet or inotify is unavailable (call again later).
    /// Call it before reading the file, so that no write between the read and the sleep is
    /// missed.
    pub fn watch(&mut self, path: &Path) -> bool {
        if self.watching {
            return true;
        }
        if let Some(fd) = &self.inotify {
            self.watching = inotify::add_watch(fd, path, inotify::WatchFlags::MODIFY).is_ok();
        }
        self.watching
    }

    /// Whether writes to the watched file wake the sleeper (see [`Wakeups::watch`]).
    pub fn watching(&self) -> bool {
        self.watching
    }

    /// Sleeps until a watched write, a ring or `timeout`; then clears what woke it.
    pub fn sleep(&mut self, timeout: Duration) {
        let mut fds = Vec::with_capacity(2);
        if self.watching
            && let Some(fd) = &self.inotify
        {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        if let Some(fd) = &self.bell.0 {
            fds.push(PollFd::new(fd.as_ref(), PollFlags::IN));
        }
        if let Some(fd) = &self.dir {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        let ts = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        // An interrupted poll is an early wake-up, which every caller tolerates.
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        drop(fds);
        let mut buf = [0u8; 4096];
        if self.watching
            && let Some(fd) = &self.inotify
        {
            while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
        }
        if let Some(fd) = &self.bell.0 {
            let _ = rustix::io::read(fd.as_ref(), &mut buf[..8]);
        }
        if let Some(fd) = &self.dir {
            while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {
                self.dir_woke = true;
            }
        }
    }
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups::new()
    }
}

/// Wakes a face when a job may have changed: its output grew, its monitor created a file or
/// ended (it closes its lock as it exits, after writing the final state). Not every change
/// shows in the job's directory (a state written by another process), so a wait also ends after
/// at most [`JobWatch::RECHECK`]: callers read the job again after each wake-up and decide.
///
/// A burst of writes does not become a burst of reads: a wait that begins within
/// [`JobWatch::COALESCE`] of the previous wake-up first lets that much time pass.
pub struct JobWatch {
    inotify: Option<OwnedFd>,
    woke: Option<Instant>,
}

impl JobWatch {
    /// The longest a wait lasts before the caller looks again.
    pub const RECHECK: Duration = Duration::from_secs(1);
    /// The shortest time between two wake-ups.
    pub const COALESCE: Duration = Duration::from_millis(25);
    /// Without inotify: how often to look.
    const POLL: Duration = Duration::from_millis(100);

    /// Watches `job_dir`. Never fails: without inotify (or the directory) waits become short
    /// timed polls.
    pub(crate) fn new(job_dir: &Path) -> JobWatch {
        let mut watch = JobWatch {
            inotify: inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
                .ok(),
            woke: None,
        };
        watch.add(job_dir);
        watch
    }

    /// Watches another job's directory too.
    pub(crate) fn add(&mut self, job_dir: &Path) {
        let flags = inotify::WatchFlags::MODIFY
            | inotify::WatchFlags::CREATE
            | inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::DELETE_SELF;
        let added = self
            .inotify
            .as_ref()
            .is_some_and(|fd| inotify::add_watch(fd, job_dir, flags).is_ok());
        if !added {
            // One directory that cannot be watched makes the whole watch a poll.
            tracing::debug!(
                "cannot watch {} with inotify: polling it",
                job_dir.display()
            );
            self.inotify = None;
        }
    }

    /// Blocks until the job's directory changes (at once if it changed since the last wait) or
    /// `timeout` passes, but never longer than [`JobWatch::RECHECK`]. Returns whether a change
    /// woke it.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let timeout = timeout.min(Self::RECHECK);
        let started = Instant::now();
        if let Some(woke) = self.woke {
            let pause = Self::COALESCE.saturating_sub(woke.elapsed()).min(timeout);
            std::thread::sleep(pause);
        }
        let Some(fd) = &self.inotify else {
            std::thread::sleep(timeout.saturating_sub(started.elapsed()).min(Self::POLL));
            return false;
        };
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let ts = Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            // An interrupted poll is an early wake-up, which every caller tolerates.
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            let ready = !fds[0].revents().is_empty();
            if ready && self.clear() {
                self.woke = Some(Instant::now());
                return true;
            }
            // Nothing, or only readers' own files: wait on, unless the time is up.
            if !ready || started.elapsed() >= timeout {
                return false;
            }
        }
    }

    /// The descriptor that becomes readable on a change, for async callers (who then call
    /// [`JobWatch::clear`]); `None` when there is none and they must poll.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inotify.as_ref().map(|fd| fd.as_fd())
    }

    /// Forgets the changes seen so far; says whether one of them was the job's (not a reader's
    /// own cache, `transcript.*`, which readers write into the job's directory).
    pub fn clear(&self) -> bool {
        let Some(fd) = &self.inotify else {
            return false;
        };
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        let mut relevant = false;
        // Until the queue is empty (EAGAIN) or unreadable.
        while let Ok(event) = reader.next() {
            let name = event.file_name().map(|n| n.to_bytes()).unwrap_or_default();
            relevant |= !name.starts_with(b"transcript.");
        }
        relevant
    }
}

/// A process whose exit can be waited for without polling (a pidfd), checked to be the one
/// meant: a pid read from a file may have been reused since.
pub struct Process {
    pidfd: OwnedFd,
    cmdline: Vec<u8>,
}

impl Process {
    /// Process `pid`, if its command line contains `marker`. `None` when it cannot tell: no
    /// such process, another process, or no pidfd support. The identity check is made after
    /// the pidfd is open, so the process waited for is the one checked.
    pub fn open(pid: i32, marker: &str) -> Option<Process> {
        let p = rustix::process::Pid::from_raw(pid)?;
        let pidfd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        memchr::memmem::find(&cmdline, marker.as_bytes())?;
        Some(Process { pidfd, cmdline })
    }

    /// Its arguments (as read when it was opened).
    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        self.cmdline.split(|&b| b == 0).filter(|a| !a.is_empty())
    }

    /// Blocks until it exits.
    pub fn wait(&self) {
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        poll_forever(&mut fds);
    }

    /// Blocks until `dir/name` exists or the process exits, whichever comes first.
    pub fn wait_for_file_or_exit(&self, dir: &Path, name: &str) {
        let flags = inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::CREATE;
        let Some(ino) =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
                .ok()
                .filter(|fd| inotify::add_watch(fd, dir, flags).is_ok())
        else {
            return self.wait();
        };
        let path = dir.join(name);
        let mut buf = [0u8; 4096];
        // The watch is in place before each look, so the file cannot appear unseen.
        while !path.exists() {
            let mut fds = [
                PollFd::new(&self.pidfd, PollFlags::IN),
                PollFd::new(&ino, PollFlags::IN),
            ];
            poll_forever(&mut fds);
            if !fds[0].revents().is_empty() {
                return;
            }
            while matches!(rustix::io::read(&ino, &mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// Polls until one of `fds` is ready (or polling fails, which ends the wait too).
fn poll_forever(fds: &mut [PollFd<'_>]) {
    loop {
        match rustix::event::poll(fds, None) {
            Ok(n) if n > 0 => return,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::debug!("poll failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    #[test]
    fn a_write_to_the_watched_file_wakes_the_sleeper_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = Wakeups::new();
        assert!(!w.watch(&path), "a missing file cannot be watched");
        let mut f = std::fs::File::create(&path).unwrap();
        assert!(w.watch(&path));
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            f.write_all(b"x").unwrap();
        });
        let t = Instant::now();
        w.sleep(Duration::from_secs(20));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not woken by the write"
        );
        writer.join().unwrap();
        // The event was consumed: the next sleep runs to its timeout.
        let t = Instant::now();
        w.sleep(Duration::from_millis(200));
        assert!(t.elapsed() >= Duration::from_millis(190));
    }

    #[test]
    fn a_job_watch_wakes_on_output_on_a_closed_lock_and_otherwise_within_its_recheck() {
        let dir = tempfile::tempdir().unwrap();
        let lock = std::fs::File::create(dir.path().join("monitor.lock")).unwrap();
        let mut w = JobWatch::new(dir.path());
        assert!(w.fd().is_some());
        // Nothing happens: the wait ends at its timeout, or at RECHECK for a longer one.
        let t = Instant::now();
        assert!(!w.wait(Duration::from_millis(100)));
        assert!(t.elapsed() >= Duration::from_millis(90));
        let t = Instant::now();
        assert!(!w.wait(Duration::from_secs(3600)));
        assert!(t.elapsed() >= JobWatch::RECHECK - Duration::from_millis(10));
        assert!(t.elapsed() < Duration::from_secs(30));
        // Output written before the wait is not lost.
        std::fs::write(dir.path().join("output.jsonl"), "{}\n").unwrap();
        let t = Instant::now();
        assert!(w.wait(Duration::from_secs(20)));
        assert!(t.elapsed() < Duration::from_secs(10));
        // The monitor ending: its lock (opened for writing) is closed.
        let d = dir.path().to_path_buf();
        let ender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(lock);
            drop(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("monitor.lock")),
            );
        });
        let t = Instant::now();
        assert!(w.wait(Duration::from_secs(20)));
        assert!(t.elapsed() < Duration::from_secs(10));
        ender.join().unwrap();
        // A storm of writes is seen as a few wake-ups, each at least COALESCE apart.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("output.jsonl"))
            .unwrap();
        f.write_all(b"{}\n").unwrap();
        assert!(w.wait(Duration::from_secs(20)));
        f.write_all(b"{}\n").unwrap();
        let t = Instant::now();
        assert!(w.wait(Duration::from_secs(20)));
        assert!(t.elapsed() >= JobWatch::COALESCE - Duration::from_millis(5));
        // A reader's own transcript cache in the job's directory is not a change of the job.
        std::fs::write(dir.path().join("transcript.txt"), "x").unwrap();
        let t = Instant::now();
        assert!(!w.wait(Duration::from_millis(300)));
        assert!(t.elapsed() >= Duration::from_millis(290));
        // Without a directory to watch it polls, and still returns.
        let mut gone = JobWatch::new(&dir.path().join("no-such-dir"));
        assert!(gone.fd().is_none());
        assert!(!gone.wait(Duration::from_secs(5)));
    }

    #[test]
    fn a_ring_before_the_sleep_is_not_lost() {
        let mut w = Wakeups::new();
        w.bell().ring();
        let t = Instant::now();
        w.sleep(Duration::from_secs(20));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn waits_for_the_named_process_only() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Until it has exec'd, the child still carries this test's command line.
        while !std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .starts_with(b"sleep")
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Another process's name: not that one.
        assert!(Process::open(pid, "conmon-of-another-container").is_none());
        let p = Process::open(pid, "0.3").unwrap();
        assert_eq!(p.args().collect::<Vec<_>>(), [&b"sleep"[..], b"0.3"]);
        let t = Instant::now();
        let waiter = std::thread::spawn(move || p.wait());
        // Reap it so that it really goes away.
        child.wait().unwrap();
        waiter.join().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(250));
        assert!(Process::open(i32::MAX, "x").is_none());
    }

    #[test]
    fn a_file_appearing_ends_the_wait_before_the_process_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let p = loop {
            if let Some(p) = Process::open(pid, "30") {
                break p;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let d = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            // Written elsewhere and renamed into place, as conmon writes its exit file.
            std::fs::write(d.join("cid.tmp"), "0").unwrap();
            std::fs::rename(d.join("cid.tmp"), d.join("cid")).unwrap();
        });
        let t = Instant::now();
        p.wait_for_file_or_exit(dir.path(), "cid");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the file did not end the wait"
        );
        assert!(dir.path().join("cid").exists());
        writer.join().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // And the process's exit ends it when no file comes.
        p.wait_for_file_or_exit(dir.path(), "never");
    }
}
