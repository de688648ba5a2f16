//! `output`: pages of a job's captured output by byte offset, never splitting a character.

use std::io::{Read, Seek, SeekFrom};

use crate::api::{OutputChunk, OutputFormat, OutputRequest};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The largest page served at once.
pub const MAX_PAGE: u64 = 16 << 20;

impl Engine {
    /// A job's prompt, as it was given (at most `max_bytes`, cut at a character boundary;
    /// the flag says whether it was cut). A job whose prompt file is gone has an empty one.
    pub fn prompt(&self, job_id: &str, max_bytes: usize) -> Result<(String, bool)> {
        self.load_job(job_id)?;
        let path = self.job_dir(job_id).join("prompt");
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((String::new(), false));
            }
            Err(e) => return Err(Error::io("cannot open", &path, e)),
        };
        let mut buf = Vec::new();
        f.take(max_bytes as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("cannot read", &path, e))?;
        let cut = buf.len() > max_bytes;
        buf.truncate(max_bytes);
        let text = String::from_utf8_lossy(&buf);
        let text = if cut {
            crate::stream::cut_str(&text, max_bytes).to_string()
        } else {
            text.into_owned()
        };
        Ok((text, cut))
    }

    /// Reads a page of a job's output. Raw offsets are byte offsets into Claude's stream-json;
    /// text offsets are byte offsets into the rendered transcript.
    pub fn output(&self, job_id: &str, req: OutputRequest) -> Result<OutputChunk> {
        let record = self.load_job(job_id)?;
        self.reconcile(&record)?;
        let limit = req.limit.clamp(1, MAX_PAGE);
        let path = self.job_dir(job_id).join("output.jsonl");
        let (bytes, offset, total) = match req.format {
            OutputFormat::Raw => {
                let mut f = match std::fs::File::open(&path) {
                    Ok(f) => Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(Error::io("cannot open", &path, e)),
                };
                let total = match &f {
                    Some(f) => f
                        .metadata()
                        .map_err(|e| Error::io("cannot stat", &path, e))?
                        .len(),
                    None => 0,
                };
                let offset = req.offset.min(total);
                let bytes = match f.as_mut() {
                    Some(f) => read_page(f, &path, offset, limit)?,
                    None => (offset, Vec::new()),
                };
                (bytes, offset, total)
            }
            OutputFormat::Text => {
                // The transcript kept beside the output: O(page) once it is up to date.
                let (mut f, total) = super::transcript::up_to_date(&self.job_dir(job_id))?;
                let offset = req.offset.min(total);
                let text_path = self.job_dir(job_id).join("transcript.txt");
                (read_page(&mut f, &text_path, offset, limit)?, offset, total)
            }
        };
        let (content_start, content) = bytes;
        let _ = offset;
        let next_offset = content_start + content.len() as u64;
        Ok(OutputChunk {
            job_id: job_id.to_string(),
            state: record.state,
            offset: content_start,
            next_offset,
            total_size: total,
            has_more: next_offset < total,
            content: String::from_utf8_lossy(&content).into_owned(),
        })
    }
}

/// The page of at most `limit` bytes at `offset` of `f` (the file at `path`), on character
/// boundaries: `(where it starts, its bytes)`.
fn read_page(
    f: &mut std::fs::File,
    path: &std::path::Path,
    offset: u64,
    limit: u64,
) -> Result<(u64, Vec<u8>)> {
    // Read a few bytes around the page to find character boundaries.
    let start = offset.saturating_sub(3);
    let want = (offset - start) + limit + 3;
    let mut buf = Vec::new();
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io("cannot seek", path, e))?;
    f.take(want)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("cannot read", path, e))?;
    Ok(page(&buf, start, offset, limit))
}

/// From `buf` (which starts at file offset `buf_start`), the bytes of the page that starts at
/// `offset` (moved forward past continuation bytes) and holds at most `limit` bytes, cut back
/// to a character boundary (or forward, if one character is larger than the limit).
/// Returns the page's real start offset and its bytes.
fn page(buf: &[u8], buf_start: u64, offset: u64, limit: u64) -> (u64, Vec<u8>) {
    let mut s = (offset - buf_start) as usize;
    while s < buf.len() && is_continuation(buf[s]) && s - ((offset - buf_start) as usize) < 3 {
        s += 1;
    }
    let avail = buf.len() - s.min(buf.len());
    let mut len = (limit as usize).min(avail);
    let end_ok = |e: usize| e >= buf.len() || !is_continuation(buf[e]);
    let mut e = s + len;
    let mut back = 0;
    while !end_ok(e) && back < 3 && e > s {
        e -= 1;
        back += 1;
    }
    if e == s && len > 0 {
        // A single character wider than the limit: serve it whole.
        e = s + len;
        while !end_ok(e) && e < buf.len() {
            e += 1;
        }
    }
    len = e - s;
    (buf_start + s as u64, buf[s..s + len].to_vec())
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_never_split_characters() {
        let text = "aé€😀b".as_bytes(); // 1 + 2 + 3 + 4 + 1 bytes
        for limit in 1..=12u64 {
            let mut off = 0u64;
            let mut joined = Vec::new();
            while off < text.len() as u64 {
                let (start, bytes) = page(text, 0, off, limit);
                assert_eq!(start, off);
                assert!(
                    std::str::from_utf8(&bytes).is_ok(),
                    "limit {limit} off {off}: {bytes:?}"
                );
                assert!(!bytes.is_empty());
                joined.extend_from_slice(&bytes);
                off += bytes.len() as u64;
            }
            assert_eq!(joined, text);
        }
    }

    #[test]
    fn offset_inside_a_character_moves_forward() {
        let text = "é€".as_bytes();
        let (start, bytes) = page(text, 0, 1, 10);
        assert_eq!(start, 2);
        assert_eq!(bytes, "€".as_bytes());
    }
}
