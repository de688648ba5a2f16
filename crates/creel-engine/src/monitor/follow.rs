//! The monitor's follow loop: copies the runtime's log into the job's output by byte offset,
//! keeps the checkpoints, watches for a cancel, feeds [`super::verdict`] and finishes the job
//! once the container has ended and its log is drained.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    CHECKPOINT_EVERY, KillReason, MAX_PARSE_LINE, Monitor, POLL, PUNCH_EVERY, STATE_EVERY,
    STATE_EVERY_UNWATCHED, STATS_EVERY, STDERR_KEEP, STOP_GRACE_SECS, apply_facts, observe,
    verdict,
};
use crate::cgroup::CgroupStats;
use crate::error::{Error, Result};
use crate::files::{open_nofollow, tail_of_file};
use crate::job::{BUSY_CPU_PERCENT, JobState, Metrics, now_ms};
use crate::logfile::{Decoded, LogFormat, decode};
use crate::runtime::Exit;
use crate::store::Progress;
use crate::stream::{LineSplitter, StreamFacts};
use crate::watch::Wakeups;

impl Monitor {
    pub(super) fn follow(&mut self, container: &str) -> Result<()> {
        let id = self.job.id.clone();
        let spec = self.job.spec.clone();
        let format = self.runtime.log_format();
        let log_path = self.runtime.log_path(&self.dir, container)?;
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

        // The transcript (`--format text`) is rendered as output arrives, behind the capture.
        let keeper = crate::job::transcript::Keeper::spawn(self.dir.clone());
        let mut nudged_at = progress.output_size;
        if nudged_at > 0 {
            keeper.nudge(nudged_at);
        }

        // The waiter and metrics threads ring `wake` when they have news; the log's growth
        // rings it too (inotify), so an idle monitor sleeps until something happens.
        let mut wake = Wakeups::new();
        let mut steering = self.steering()?;
        // Stream input: after a result with nothing queued Claude waits for more input; the
        // input is then closed after the messages sent so far, and Claude finishes them.
        let stream_input = spec.steer.as_ref().is_some_and(|s| s.messages);
        let mut input_closed = false;
        let mut results_checked: Option<u64> = None;
        // A cancel rings the job's directory (`engine::ring_job_dir`); the container's
        // questions arrive as files in `asked/`. Both wake the sleeper.
        let state_every = if wake.watch_dir(&self.dir) {
            STATE_EVERY
        } else {
            STATE_EVERY_UNWATCHED
        };
        if steering.is_some() {
            wake.watch_dir(&crate::steer::asked_dir(&self.dir));
        }
        let exit_rx = self.wait_exit_in_thread(container, wake.bell());
        let metrics: Arc<Mutex<Option<Metrics>>> = Arc::new(Mutex::new(None));
        let (stop_stats, stats_stopped) = mpsc::channel::<()>();
        {
            let rt = self.runtime.clone();
            let c = container.to_string();
            let metrics = metrics.clone();
            let dir = self.dir.clone();
            std::thread::spawn(move || {
                let mut cgroup = rt
                    .container_pid(&dir, &c)
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
        // When the job's last open request was answered (the idle timeout counts from there).
        let mut answered_at: Option<i64> = None;
        let mut was_waiting = false;
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
                    let (keep, over) =
                        verdict::cap_output(limit, progress.output_size, decoded.stdout.len());
                    let stdout = &decoded.stdout[..keep];
                    if kill.is_none() {
                        kill = over;
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
                    if kill.is_none() {
                        kill = verdict::cap_stderr(limit, stderr_seen, stderr_kept);
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
                if progress.output_size > nudged_at {
                    nudged_at = progress.output_size;
                    keeper.nudge(nudged_at);
                }
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

            // Cancelled elsewhere? (A cancel rings; news in the directories is looked at.)
            let news = wake.take_dir_news();
            if news || last_state_check.elapsed() >= state_every {
                last_state_check = Instant::now();
                if let Some(j) = self.store.job(&id)? {
                    state = j.state;
                }
                if state == JobState::Cancelled && !stopped {
                    let _ = self.runtime.stop(container, STOP_GRACE_SECS);
                    stopped = true;
                }
            }

            if stream_input && !input_closed && results_checked != Some(facts.results) {
                results_checked = Some(facts.results);
                input_closed = facts.results > 0
                    && facts.queued_turns == 0
                    && self.close_input_when_answered()?;
            }

            // Questions and permission requests.
            if let Some(st) = steering.as_mut()
                && state.can_finish()
                && (news || st.due())
            {
                self.steer(st)?;
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
                // A job waiting for an answer is not idle: its own input timeout applies. Once
                // answered, its quiet time counts from the answer, not from its last output.
                let waiting = steering.as_ref().is_some_and(|s| s.open);
                if was_waiting && !waiting {
                    answered_at = Some(now);
                }
                was_waiting = waiting;
                kill = verdict::timeout(
                    &spec,
                    now,
                    started_ms,
                    progress.last_output_at_ms.max(answered_at),
                    busy || waiting,
                );
            }
            if kill.is_some() && !stopped {
                let _ = self.runtime.stop(container, STOP_GRACE_SECS);
                stopped = true;
            }
            if got == 0 {
                let timeout = if wake.watching() {
                    // Asleep until something rings, or until the next thing due: a checkpoint,
                    // a timeout, an open request's look, the state's safety-net look.
                    let mut t = state_every.saturating_sub(last_state_check.elapsed());
                    if dirty {
                        t = t.min(CHECKPOINT_EVERY.saturating_sub(last_checkpoint.elapsed()));
                    }
                    if let Some(st) = steering.as_ref() {
                        t = t.min(st.next_look());
                    }
                    // (A deadline already past did not fire: the job is busy or waits for an
                    // answer, which the next sample or look changes; no need to spin on it.)
                    let last = progress.last_output_at_ms.max(answered_at);
                    if let Some(at) = verdict::next_deadline(&spec, started_ms, last) {
                        let ms = at.saturating_sub(now_ms());
                        if ms > 0 {
                            t = t.min(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
                        }
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
        keeper.nudge(progress.output_size);
        // What is left of the transcript is rendered after the job is final and announced.
        self.keeper = Some(keeper);

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
        let error = verdict::decide(&spec, kill, oom_flag, exit_code, &facts, &stderr_tail);
        self.finish(error, exit_code)?;
        let _ = self.runtime.remove(container);
        Ok(())
    }
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
