//! The rendered transcript of a job, kept beside its output so that a page of `--format text`
//! costs what the page and the output added since the last read cost, not a rendering of the
//! whole output each time.
//!
//! `transcript.txt` holds the rendering of the output's first `raw_done` bytes (always whole
//! lines), `transcript.state.json` says how far that is and carries the renderer's state (a
//! digest: a few bytes whatever the output). A reader
//! extends both under `transcript.lock`; the monitor knows nothing of them. Whatever looks
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
    let mut meta: Meta = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
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
    text.set_len(meta.text_len)
        .map_err(|e| Error::io("cannot truncate", &text_path, e))?;
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
        let mut buf = vec![0u8; STEP];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = raw
                .read(&mut buf[..want])
                .map_err(|e| Error::io("cannot read", &raw_path, e))?;
            if n == 0 {
                break;
            }
            left -= n as u64;
            pending.extend_from_slice(&buf[..n]);
            let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let mut out = String::new();
            for line in pending[..end].split(|&b| b == b'\n') {
                renderer.line(line, &mut out);
            }
            text.write_all(out.as_bytes())
                .map_err(|e| Error::io("cannot write", &text_path, e))?;
            meta.raw_done += end as u64 + 1;
            meta.text_len += out.len() as u64;
            pending.drain(..=end);
        }
        meta.last_text = renderer.last_text;
        // The text first, then what it covers (replaced whole by a rename): a crash in between
        // only costs a re-render. No fsync: this is a cache.
        let tmp = dir.join("transcript.state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&meta).unwrap_or_default())
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, &meta_path).map_err(|e| Error::io("cannot rename", &tmp, e))?;
    }
    let reader = File::open(&text_path).map_err(|e| Error::io("cannot open", &text_path, e))?;
    drop(lock);
    Ok((reader, meta.text_len))
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
