//! The rendered transcript of a job, kept beside its output so that a page of `--format text`
//! costs what the page and the output added since the last read cost, not a rendering of the
//! whole output each time.
//!
//! `transcript.txt` holds the rendering of the output's first `raw_done` bytes (always whole
//! lines), `transcript.state.json` says how far that is and carries the renderer's state (a
//! digest: a few bytes whatever the output). Both are extended under `transcript.lock`: by
//! the job's monitor as output arrives ([`keep_up`], in a low-priority thread, so that the
//! first page read costs the page, not a rendering of everything), and by a reader for what
//! the monitor has not rendered yet (a running job's newest lines, or a job whose monitor
//! predates this). Whatever looks
//! inconsistent (a shorter output after a monitor's restart, a cut file) is rendered again from
//! the start, so the cache can only be slow, never wrong.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stream::Renderer;

/// How much output is rendered per step (whole lines; a longer line is read whole).
const STEP: usize = 4 << 20;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Meta {
    /// Output bytes rendered (up to and including a newline).
    raw_done: u64,
    /// Bytes of `transcript.txt` they made.
    text_len: u64,
    /// The renderer's state after them.
    last_text: String,
}

/// Brings the job's transcript up to date with its output and returns it, opened for reading,
/// with its length.
pub(crate) fn up_to_date(dir: &Path) -> Result<(File, u64)> {
    let (text_len, _) = extend(dir, u64::MAX)?;
    let text_path = dir.join("transcript.txt");
    // (Later renderings only append: the first `text_len` bytes stay what they are.)
    let reader = File::open(&text_path).map_err(|e| Error::io("cannot open", &text_path, e))?;
    Ok((reader, text_len))
}

/// Renders what the output has that the transcript lacks, in steps of at most [`KEEP_UP_STEP`]
/// output bytes (the lock is let go between them, so that a reader never waits for more than
/// one), until it has caught up. The monitor calls it as output arrives (see
/// `monitor::follow`), so that a reader finds the transcript (nearly) complete and pays for
/// its page, not for the whole output.
pub(crate) fn keep_up(dir: &Path) -> Result<()> {
    while !extend(dir, KEEP_UP_STEP)?.1 {}
    Ok(())
}

/// The most output one step of [`keep_up`] renders (whole lines: a longer line is done whole).
const KEEP_UP_STEP: u64 = 64 << 20;

/// A low-priority thread of the monitor that keeps a job's transcript up to date as its output
/// grows ([`keep_up`] on each nudge). It runs at `SCHED_IDLE`, so that it takes only CPU time
/// nothing else wants: capturing the output always comes first.
pub(crate) struct Keeper {
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    pub(crate) fn spawn(dir: std::path::PathBuf) -> Keeper {
        // One nudge waiting is enough: each rendering takes everything there is.
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("transcript".into())
            .spawn(move || {
                let idle = libc::sched_param { sched_priority: 0 };
                // SAFETY: sets the calling thread's policy (pid 0); the struct outlives the call.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
                while rx.recv().is_ok() {
                    if let Err(e) = keep_up(&dir) {
                        tracing::debug!("the transcript could not be kept up: {e}");
                    }
                }
            })
            .ok();
        Keeper {
            tx: Some(tx),
            thread,
        }
    }

    /// More output is there.
    pub(crate) fn nudge(&self) {
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

fn read_meta(dir: &Path) -> Meta {
    std::fs::read(dir.join("transcript.state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Renders at least the output's next `budget` bytes (whole lines) that are not in the
/// transcript yet. Returns the transcript's length and whether it has caught up.
fn extend(dir: &Path, budget: u64) -> Result<(u64, bool)> {
    let lock = crate::files::lock_exclusive(&dir.join("transcript.lock"))?;
    let text_path = dir.join("transcript.txt");
    // (`.state.json`: the state's meaning changed once; an older `transcript.json` is ignored
    // and the transcript rendered again.)
    let meta_path = dir.join("transcript.state.json");
    let raw_path = dir.join("output.jsonl");
    let mut text = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&text_path)
        .map_err(|e| Error::io("cannot open", &text_path, e))?;
    let mut meta = read_meta(dir);
    let raw_len = match std::fs::metadata(&raw_path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("cannot stat", &raw_path, e)),
    };
    let text_len = text
        .metadata()
        .map_err(|e| Error::io("cannot stat", &text_path, e))?
        .len();
    if meta.raw_done > raw_len || meta.text_len > text_len {
        meta = Meta::default();
    }
    if text_len != meta.text_len {
        text.set_len(meta.text_len)
            .map_err(|e| Error::io("cannot truncate", &text_path, e))?;
    }
    let mut caught_up = true;
    if meta.raw_done < raw_len {
        let mut raw = File::open(&raw_path).map_err(|e| Error::io("cannot open", &raw_path, e))?;
        raw.seek(SeekFrom::Start(meta.raw_done))
            .map_err(|e| Error::io("cannot seek", &raw_path, e))?;
        text.seek(SeekFrom::Start(meta.text_len))
            .map_err(|e| Error::io("cannot seek", &text_path, e))?;
        let mut renderer = Renderer {
            last_text: std::mem::take(&mut meta.last_text),
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut left = raw_len - meta.raw_done;
        let mut rendered = 0u64;
        let mut buf = vec![0u8; STEP];
        while left > 0 && rendered < budget {
            let want = buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX))
                .min(usize::try_from(budget - rendered).unwrap_or(usize::MAX));
            let n = raw
                .read(&mut buf[..want])
                .map_err(|e| Error::io("cannot read", &raw_path, e))?;
            if n == 0 {
                break;
            }
            left -= n as u64;
            // Only the new bytes are searched: a long line costs its length, not its square.
            let Some(last_nl) = buf[..n].iter().rposition(|&b| b == b'\n') else {
                pending.extend_from_slice(&buf[..n]);
                continue;
            };
            pending.extend_from_slice(&buf[..n]);
            let end = pending.len() - n + last_nl;
            let mut out = String::new();
            for line in pending[..end].split(|&b| b == b'\n') {
                renderer.line(line, &mut out);
            }
            text.write_all(out.as_bytes())
                .map_err(|e| Error::io("cannot write", &text_path, e))?;
            meta.raw_done += end as u64 + 1;
            meta.text_len += out.len() as u64;
            rendered += end as u64 + 1;
            pending.drain(..=end);
        }
        // Stopped by the budget with output left to read (else only a partial line is left).
        caught_up = left == 0 || rendered < budget;
        meta.last_text = renderer.last_text;
        // The text first, then what it covers (replaced whole by a rename): a crash in between
        // only costs a re-render. No fsync: this is a cache.
        let tmp = dir.join("transcript.state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&meta).unwrap_or_default())
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, &meta_path).map_err(|e| Error::io("cannot rename", &tmp, e))?;
    }
    drop(lock);
    Ok((meta.text_len, caught_up))
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
    fn rendering_in_small_steps_gives_the_same_transcript() {
        let raw: Vec<u8> = [SAMPLE, MAX_TURNS, b"not json at all\n", SAMPLE, b"partial"].concat();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("output.jsonl"), &raw).unwrap();
        let mut steps = 0;
        loop {
            let (_, caught_up) = extend(dir.path(), 100).unwrap();
            steps += 1;
            if caught_up {
                break;
            }
            assert!(steps < 10_000, "never caught up");
        }
        assert!(steps > 3, "{steps} steps of 100 bytes");
        assert_eq!(read_all(dir.path()), render_text(&raw));
        // Caught up means nothing more to do, and keep_up agrees.
        assert!(extend(dir.path(), 100).unwrap().1);
        keep_up(dir.path()).unwrap();
        assert_eq!(read_all(dir.path()), render_text(&raw));
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
