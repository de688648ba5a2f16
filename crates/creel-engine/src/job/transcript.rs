//! The rendered transcript of a job, kept beside its output so that a page of `--format text`
//! costs what the page and the output added since the last read cost, not a rendering of the
//! whole output each time.
//!
//! `transcript.txt` holds the rendering of the output's first `raw_done` bytes (always whole
//! lines), `transcript.state.json` says how far that is and carries the renderer's state (a
//! digest: a few bytes whatever the output). Two kinds of writers extend them:
//! - the job's monitor, as output arrives ([`Keeper`]: a `SCHED_IDLE` thread, up to the last
//!   checkpoint only, so that a restarted monitor's shorter output never invalidates it). It
//!   renders a step *without* the lock and takes `transcript.lock` only to append what it
//!   rendered, if nobody moved the transcript meanwhile: a starved idle thread never makes a
//!   reader wait.
//! - a reader ([`up_to_date`]), under the lock, for what the monitor has not rendered yet (a
//!   running job's newest lines, or a job whose monitor predates this).
//!
//! So the first page read of a finished job costs the page, not a rendering of everything.
//! Whatever looks inconsistent (a shorter output after a monitor's restart, a cut file) is
//! rendered again from the start, so the cache can only be slow, never wrong. Lines longer
//! than [`MAX_LINE`] are not buffered: the transcript says how long they were.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stream::{Line, LineSplitter, Renderer};

/// How much output is read at a time.
const STEP: usize = 4 << 20;
/// The longest line rendered; a longer one is counted, not kept (as the monitor's own parsing
/// does), and shows as a note.
pub(crate) const MAX_LINE: usize = crate::stream::MAX_RENDER_LINE;
/// The most output one step of the monitor's rendering covers (whole lines).
const KEEP_UP_STEP: u64 = 4 << 20;

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct Meta {
    /// Output bytes rendered (up to and including a newline).
    raw_done: u64,
    /// Bytes of `transcript.txt` they made.
    text_len: u64,
    /// The renderer's state after them.
    last_text: String,
}

fn read_meta(dir: &Path) -> Meta {
    std::fs::read(dir.join("transcript.state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn output_len(dir: &Path) -> Result<u64> {
    let raw_path = dir.join("output.jsonl");
    match std::fs::metadata(&raw_path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io("cannot stat", &raw_path, e)),
    }
}

/// Brings the job's transcript up to date with its output and returns it, opened for reading,
/// with its length.
pub(crate) fn up_to_date(dir: &Path) -> Result<(File, u64)> {
    let lock = crate::files::lock_exclusive(&dir.join("transcript.lock"))?;
    let (text, mut meta, raw_len) = open_consistent(dir, u64::MAX)?;
    let before = meta.clone();
    let out = render(dir, &mut meta, raw_len, u64::MAX)?;
    commit(dir, text, &before, &meta, &out)?;
    drop(lock);
    let text_path = dir.join("transcript.txt");
    // (Later renderings only append: the first `text_len` bytes stay what they are.)
    let reader = File::open(&text_path).map_err(|e| Error::io("cannot open", &text_path, e))?;
    Ok((reader, meta.text_len))
}

/// Opens the text file (under the lock) and returns it with a state that fits it and the
/// output's first `upto` bytes (the stored one, or the start when they do not fit), and how
/// much of the output that is.
fn open_consistent(dir: &Path, upto: u64) -> Result<(File, Meta, u64)> {
    let text_path = dir.join("transcript.txt");
    let text = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&text_path)
        .map_err(|e| Error::io("cannot open", &text_path, e))?;
    let text_len = text
        .metadata()
        .map_err(|e| Error::io("cannot stat", &text_path, e))?
        .len();
    let meta = read_meta(dir);
    let raw_len = output_len(dir)?.min(upto);
    if meta.raw_done > raw_len || meta.text_len > text_len {
        return Ok((text, Meta::default(), raw_len));
    }
    Ok((text, meta, raw_len))
}

/// Renders the output from `meta.raw_done` up to `raw_len` (whole lines), at least `budget`
/// bytes of it unless it ends first, and advances `meta`. Returns the text. No lock needed:
/// it only reads the output.
fn render(dir: &Path, meta: &mut Meta, raw_len: u64, budget: u64) -> Result<String> {
    let mut out = String::new();
    if meta.raw_done >= raw_len {
        return Ok(out);
    }
    let raw_path = dir.join("output.jsonl");
    let mut raw = File::open(&raw_path).map_err(|e| Error::io("cannot open", &raw_path, e))?;
    raw.seek(SeekFrom::Start(meta.raw_done))
        .map_err(|e| Error::io("cannot seek", &raw_path, e))?;
    let mut renderer = Renderer {
        last_text: std::mem::take(&mut meta.last_text),
    };
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut left = raw_len - meta.raw_done;
    let mut done = 0u64;
    let mut buf = vec![0u8; STEP];
    while left > 0 && done < budget {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = raw
            .read(&mut buf[..want])
            .map_err(|e| Error::io("cannot read", &raw_path, e))?;
        if n == 0 {
            break;
        }
        left -= n as u64;
        splitter.push(&buf[..n], |line| {
            // (Lines after the budget are left for the next step.)
            if done >= budget {
                return;
            }
            match line {
                Line::Complete(l) => {
                    renderer.line(l, &mut out);
                    done += l.len() as u64 + 1;
                }
                Line::TooLong { len } => {
                    renderer.too_long(len, &mut out);
                    done += len + 1;
                }
            }
        });
    }
    // (A partial last line stays in the splitter: it is rendered once it is whole.)
    meta.raw_done += done;
    meta.text_len += out.len() as u64;
    meta.last_text = renderer.last_text;
    Ok(out)
}

/// Appends `out` (what `before` became `after` with) and records `after`. The text first,
/// then what it covers (replaced whole by a rename): a crash in between only costs a
/// re-render. No fsync: this is a cache. Called under the lock.
fn commit(dir: &Path, mut text: File, before: &Meta, after: &Meta, out: &str) -> Result<()> {
    let text_path = dir.join("transcript.txt");
    if after == before {
        return Ok(());
    }
    text.set_len(before.text_len)
        .map_err(|e| Error::io("cannot truncate", &text_path, e))?;
    text.seek(SeekFrom::Start(before.text_len))
        .map_err(|e| Error::io("cannot seek", &text_path, e))?;
    text.write_all(out.as_bytes())
        .map_err(|e| Error::io("cannot write", &text_path, e))?;
    let tmp = dir.join("transcript.state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(after).unwrap_or_default())
        .map_err(|e| Error::io("cannot write", &tmp, e))?;
    let meta_path = dir.join("transcript.state.json");
    std::fs::rename(&tmp, &meta_path).map_err(|e| Error::io("cannot rename", &tmp, e))?;
    Ok(())
}

/// One step of the monitor's rendering, up to the output's first `upto` bytes: renders
/// without the lock, then appends under it if the transcript is still where it was. Returns
/// whether there is more to do: false once the transcript covers everything up to `upto` (a
/// partial last line aside), or when a reader moved it meanwhile (a reader renders all there
/// is).
fn step(dir: &Path, upto: u64, budget: u64) -> Result<bool> {
    let raw_len = output_len(dir)?.min(upto);
    let before = read_meta(dir);
    if before.raw_done > raw_len {
        // The output shrank under the transcript (a restarted monitor): a reader's full
        // rendering sorts it out; the monitor waits for the output to grow back.
        return Ok(false);
    }
    let mut after = before.clone();
    let out = render(dir, &mut after, raw_len, budget)?;
    if after == before {
        return Ok(false);
    }
    let lock = crate::files::lock_exclusive(&dir.join("transcript.lock"))?;
    let (text, now, _) = open_consistent(dir, upto)?;
    let moved = now != before;
    if !moved {
        commit(dir, text, &before, &after, &out)?;
    }
    drop(lock);
    Ok(!moved && after.raw_done < raw_len)
}

/// Renders, step by step, what the output's first `upto` bytes have that the transcript
/// lacks.
pub(crate) fn keep_up(dir: &Path, upto: u64) -> Result<()> {
    while step(dir, upto, KEEP_UP_STEP)? {}
    Ok(())
}

/// A low-priority thread of the monitor that keeps a job's transcript up to date as its output
/// grows ([`keep_up`] to the last checkpointed size on each nudge). It runs at `SCHED_IDLE`,
/// so that it takes only CPU time nothing else wants: capturing the output always comes
/// first; and it holds the transcript's lock only to append.
pub(crate) struct Keeper {
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    upto: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    pub(crate) fn spawn(dir: std::path::PathBuf) -> Keeper {
        // One nudge waiting is enough: each rendering takes everything there is.
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let upto = Arc::new(AtomicU64::new(0));
        let target = upto.clone();
        let thread = std::thread::Builder::new()
            .name("transcript".into())
            .spawn(move || {
                let idle = libc::sched_param { sched_priority: 0 };
                // SAFETY: sets the calling thread's policy (pid 0); the struct outlives the call.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
                while rx.recv().is_ok() {
                    if let Err(e) = keep_up(&dir, target.load(Ordering::Acquire)) {
                        tracing::debug!("the transcript could not be kept up: {e}");
                    }
                }
            })
            .ok();
        Keeper {
            tx: Some(tx),
            upto,
            thread,
        }
    }

    /// The output's first `checkpointed` bytes are safe to render (a new monitor resumes from
    /// its last checkpoint, never below).
    pub(crate) fn nudge(&self, checkpointed: u64) {
        self.upto.fetch_max(checkpointed, Ordering::AcqRel);
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(());
        }
    }

    /// Renders what is left and waits for it.
    pub(crate) fn finish(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::render_text;

    const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/sample-stream.jsonl");
    const MAX_TURNS: &[u8] = include_bytes!("../../tests/fixtures/error-max-turns.jsonl");

    fn read_all(dir: &Path) -> String {
        let (mut f, len) = up_to_date(dir).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s.len() as u64, len);
        s
    }

    #[test]
    fn growing_output_renders_exactly_as_a_whole_rendering_would() {
        let raw: Vec<u8> = [SAMPLE, MAX_TURNS, b"not json at all\n", SAMPLE].concat();
        for cut in [1usize, 7, 100, 4096] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("output.jsonl");
            let mut f = File::create(&out).unwrap();
            for chunk in raw.chunks(cut) {
                f.write_all(chunk).unwrap();
                let written = std::fs::metadata(&out).unwrap().len() as usize;
                if written % (cut * 97) < cut {
                    assert_eq!(
                        read_all(dir.path()),
                        render_text(&raw[..written]),
                        "cut {cut}"
                    );
                }
            }
            assert_eq!(read_all(dir.path()), render_text(&raw));
        }
    }

    #[test]
    fn the_monitors_steps_give_the_same_transcript_and_stop_at_the_checkpoint() {
        let mut raw: Vec<u8> = Vec::new();
        while raw.len() < 64 << 10 {
            raw.extend_from_slice(&[SAMPLE, MAX_TURNS, b"not json at all\n"].concat());
        }
        let whole = raw.len() as u64;
        raw.extend_from_slice(b"partial");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("output.jsonl"), &raw).unwrap();
        // Only up to a checkpoint in the middle: the transcript stops at the line before it.
        let half = whole / 2;
        keep_up(dir.path(), half).unwrap();
        let done = read_meta(dir.path()).raw_done;
        assert!(done <= half && done > half - 4096, "{done} of {half}");
        // Small steps, each committed under the lock, give what one rendering gives.
        let mut steps = 0;
        while step(dir.path(), u64::MAX, 100).unwrap() {
            steps += 1;
            assert!(steps < 100_000, "never caught up");
        }
        assert!(steps > 3, "{steps} steps of 100 bytes");
        assert_eq!(read_meta(dir.path()).raw_done, whole);
        assert_eq!(read_all(dir.path()), render_text(&raw));
        // A reader's rendering meanwhile (the transcript moved) makes a step throw its own away.
        keep_up(dir.path(), u64::MAX).unwrap();
        assert_eq!(read_all(dir.path()), render_text(&raw));
    }

    #[test]
    fn a_line_too_long_to_render_is_counted_not_kept() {
        let long = vec![b'x'; MAX_LINE + 10];
        let raw = [SAMPLE, &long, b"\n", MAX_TURNS].concat();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("output.jsonl"), &raw).unwrap();
        let text = read_all(dir.path());
        assert_eq!(text, render_text(&raw));
        assert!(
            text.contains(&format!("a line of {} bytes", MAX_LINE + 10)),
            "{text}"
        );
        assert!(text.len() < 64 << 10);
    }

    #[test]
    fn a_cache_that_does_not_fit_the_output_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output.jsonl");
        std::fs::write(&out, SAMPLE).unwrap();
        assert_eq!(read_all(dir.path()), render_text(SAMPLE));
        // The output shrank (a monitor restarted from its checkpoint), then grew back with the
        // same bytes (as a resumed monitor writes them).
        let half = SAMPLE[..SAMPLE.len() / 2]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap();
        std::fs::write(&out, &SAMPLE[..half]).unwrap();
        assert_eq!(read_all(dir.path()), render_text(&SAMPLE[..half]));
        std::fs::write(&out, SAMPLE).unwrap();
        assert_eq!(read_all(dir.path()), render_text(SAMPLE));
        // The text file was cut behind the cache's back.
        std::fs::write(dir.path().join("transcript.txt"), "").unwrap();
        std::fs::write(&out, SAMPLE).unwrap();
        assert_eq!(read_all(dir.path()), render_text(SAMPLE));
        // No output at all.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_all(empty.path()), "");
    }

    #[test]
    fn the_state_stays_small_however_long_the_last_text() {
        // One assistant text of 8 MiB, then its result (the same text: not printed twice).
        let big = format!("TEXT-START {}", "x".repeat(8 << 20));
        let assistant = serde_json::json!({"type": "assistant", "message": {"content": [{"type": "text", "text": big}]}});
        let result = serde_json::json!({"type": "result", "subtype": "success", "is_error": false, "num_turns": 1, "result": big});
        let raw = format!("{assistant}\n{result}\n");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("output.jsonl"), &raw).unwrap();
        let text = read_all(dir.path());
        assert_eq!(text, render_text(raw.as_bytes()));
        assert_eq!(
            text.matches("TEXT-START").count(),
            1,
            "the result text is not repeated"
        );
        let state = std::fs::metadata(dir.path().join("transcript.state.json")).unwrap();
        assert!(state.len() < 1024, "state of {} bytes", state.len());
    }
}
