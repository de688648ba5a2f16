//! How the monitor sleeps: until the runtime's log grows (inotify), one of its own threads rings
//! (an eventfd), or a timeout passes; and how it waits for conmon to finish (a pidfd, and an
//! inotify watch for its exit file). No polling loop, no helper process.
//!
//! Everything here degrades instead of failing: without inotify the monitor falls back to a
//! short timed poll, and without a pidfd to `podman wait`.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

/// Sleeps until the watched log is written to, the [`Bell`] rings, or a timeout passes.
pub struct Wakeups {
    inotify: Option<OwnedFd>,
    watching: bool,
    bell: Bell,
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
        }
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
    }
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups::new()
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
