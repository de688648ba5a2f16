//! A pod's output on this machine, byte-exact whatever the kubelet's log keeps.
//!
//! The pod's wrapper (`render::POD_WRAPPER`) writes Claude's output exactly to
//! `out/<job>/output.jsonl` on the session volume, and to the container's log with every line
//! numbered (`N line`). The log is the fast path: the front end appends line `N` only when it
//! has lines `1..N-1`, so its copy (`jobs/<id>/output.jsonl`) is always a true prefix of
//! Claude's output. The kubelet rotates container logs (10 MiB by default) and serves only the
//! newest file, so a front end that was away, or a burst faster than it reads, leaves a gap:
//! then the copy stops growing, and once the pod has ended the rest is read from the volume's
//! file by reader pods (`render::reader`), in pieces smaller than a rotation, and the whole is
//! checked against the size and SHA-256 the wrapper put in the termination message.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::stream::StreamFacts;

/// The longest log line creel takes from the fast path; a longer one is a gap (its bytes
/// come from the volume instead).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// What a reader pod prints at most: under the kubelet's default rotation size (10 MiB), so
/// its whole log is there to read.
pub(crate) const READ_PIECE: u64 = 8 << 20;

/// What the wrapper writes as the termination message.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub(crate) struct Ending {
    /// Claude's exit code.
    pub(crate) exit: i64,
    /// The size of `output.jsonl`.
    pub(crate) bytes: u64,
    /// Its SHA-256, hex.
    pub(crate) sha256: String,
}

impl Ending {
    /// The termination message, if it is the wrapper's.
    pub(crate) fn parse(message: &str) -> Option<Ending> {
        serde_json::from_str(message.trim()).ok()
    }
}

/// The job's copy of its output, appended line by line from numbered log lines.
pub(crate) struct Sink {
    path: PathBuf,
    file: File,
    /// Whole lines in the copy.
    pub(crate) lines: u64,
    /// Bytes in the copy.
    pub(crate) bytes: u64,
    /// Where the copy's last line starts.
    last_line_at: u64,
    /// A line was missed: the copy waits for the volume's file.
    pub(crate) gap: bool,
    /// Facts of the lines so far.
    pub(crate) facts: StreamFacts,
}

impl Sink {
    /// The copy in `job_dir` (made if missing), not yet read, and a second handle to read it.
    fn opened(job_dir: &Path) -> Result<(Sink, File)> {
        let path = job_dir.join("output.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        let reader = file
            .try_clone()
            .map_err(|e| Error::io("cannot open", &path, e))?;
        Ok((
            Sink {
                path,
                file,
                lines: 0,
                bytes: 0,
                last_line_at: 0,
                gap: false,
                facts: StreamFacts::default(),
            },
            reader,
        ))
    }

    /// Opens (or makes) the copy in `job_dir`. A line cut short by a front end that died while
    /// writing it is dropped (it comes again); the rest is counted and read for its facts.
    pub(crate) fn open(job_dir: &Path) -> Result<Sink> {
        let (mut sink, mut reader) = Self::opened(job_dir)?;
        let whole = sink.scan(&mut reader)?;
        if whole < sink.file_len()? {
            sink.file
                .set_len(whole)
                .map_err(|e| Error::io("cannot truncate", &sink.path, e))?;
        }
        sink.file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot seek", &sink.path, e))?;
        Ok(sink)
    }

    /// Opens the copy as it is (a settled one, whose last line may rightly have no newline),
    /// counted and read for its facts, for a final look.
    pub(crate) fn open_as_is(job_dir: &Path) -> Result<Sink> {
        let (mut sink, mut reader) = Self::opened(job_dir)?;
        sink.scan(&mut reader)?;
        sink.bytes = sink.file_len()?;
        Ok(sink)
    }

    fn file_len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("cannot stat", &self.path, e))?
            .len())
    }

    /// Counts the whole lines of `file` (read from its start, a piece at a time) and their
    /// facts; returns where the last whole line ends. A line longer than [`MAX_FRAME`] is
    /// counted but not read for facts.
    fn scan(&mut self, file: &mut File) -> Result<u64> {
        self.lines = 0;
        self.last_line_at = 0;
        self.facts = StreamFacts::default();
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("cannot seek", &self.path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut line: Vec<u8> = Vec::new();
        let mut long = false;
        let mut at = 0u64;
        let mut line_start = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io("cannot read", &self.path, e))?;
            if n == 0 {
                break;
            }
            for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
                at += piece.len() as u64;
                let ends = piece.ends_with(b"\n");
                let body = piece.strip_suffix(b"\n").unwrap_or(piece);
                if !long && line.len() + body.len() <= MAX_FRAME {
                    line.extend_from_slice(body);
                } else {
                    long = true;
                    line.clear();
                }
                if ends {
                    if !long {
                        self.facts.observe(&line);
                    }
                    self.lines += 1;
                    self.last_line_at = line_start;
                    line_start = at;
                    line.clear();
                    long = false;
                }
            }
        }
        self.bytes = line_start;
        Ok(line_start)
    }

    /// One log line (without its newline): `N line`. Appends the line when it is the next one;
    /// an earlier one is a repeat (skipped), a later one a gap. Returns whether it appended.
    pub(crate) fn frame(&mut self, log_line: &[u8]) -> Result<bool> {
        if self.gap {
            return Ok(false);
        }
        let Some(sp) = memchr::memchr(b' ', log_line) else {
            return Ok(false);
        };
        let Some(n) = std::str::from_utf8(&log_line[..sp])
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok())
        else {
            // Not the wrapper's (a shell's complaint, say): not output.
            return Ok(false);
        };
        if n <= self.lines {
            return Ok(false);
        }
        if n != self.lines + 1 {
            self.gap = true;
            return Ok(false);
        }
        let line = &log_line[sp + 1..];
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.file
            .write_all(&buf)
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        self.last_line_at = self.bytes;
        self.bytes += buf.len() as u64;
        self.lines += 1;
        self.facts.observe(line);
        Ok(true)
    }

    /// Whether the copy is the pod's file, by size and SHA-256.
    pub(crate) fn matches(&mut self, ending: &Ending) -> Result<bool> {
        if self.bytes != ending.bytes {
            return Ok(false);
        }
        Ok(self.sha256()? == ending.sha256)
    }

    fn sha256(&mut self) -> Result<String> {
        let mut f = File::open(&self.path).map_err(|e| Error::io("cannot open", &self.path, e))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Error::io("cannot read", &self.path, e))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Where a repair starts: the copy's last line may be one the numbering made whole (the
    /// file's last line may have no newline), so it is read again.
    pub(crate) fn repair_from(&self) -> u64 {
        self.last_line_at
    }

    /// Cuts the copy back to `len` bytes.
    pub(crate) fn truncate(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io("cannot truncate", &self.path, e))?;
        self.file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot seek", &self.path, e))?;
        self.bytes = len;
        Ok(())
    }

    /// How many of `bytes` are the copy's own bytes from `offset` on.
    pub(crate) fn same_at(&mut self, offset: u64, bytes: &[u8]) -> Result<usize> {
        let mut f = File::open(&self.path).map_err(|e| Error::io("cannot open", &self.path, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("cannot seek", &self.path, e))?;
        let mut mine = Vec::with_capacity(bytes.len());
        f.take(bytes.len() as u64)
            .read_to_end(&mut mine)
            .map_err(|e| Error::io("cannot read", &self.path, e))?;
        Ok(mine.iter().zip(bytes).take_while(|(a, b)| a == b).count())
    }

    /// Takes `piece`, the volume file's bytes from `offset` (at most the copy's end): what the
    /// copy has already is compared, not written again, so the copy never shrinks while it
    /// agrees; from the first difference on (only ever the last line, whose newline the
    /// numbering added), the file's bytes replace the copy's.
    pub(crate) fn merge(&mut self, offset: u64, piece: &[u8]) -> Result<()> {
        if offset > self.bytes {
            return Err(Error::cluster(
                "complete the output",
                format!(
                    "a piece at {offset} is past the copy's end ({})",
                    self.bytes
                ),
            ));
        }
        let overlap = ((self.bytes - offset) as usize).min(piece.len());
        let same = self.same_at(offset, &piece[..overlap])?;
        if same < overlap {
            self.truncate(offset + same as u64)?;
            return self.append(&piece[same..]);
        }
        // Agreeing over the overlap: only what is past the copy's end is new.
        self.append(&piece[overlap..])
    }

    /// Appends bytes read from the volume's file (at the copy's end).
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Counts the copy again (after a repair) and makes it durable. A copy that does not end
    /// with a newline keeps its last bytes (the file's own last line).
    pub(crate) fn settle(&mut self) -> Result<()> {
        let mut f = File::open(&self.path).map_err(|e| Error::io("cannot open", &self.path, e))?;
        let len = self.file_len()?;
        self.scan(&mut f)?;
        self.bytes = len;
        self.gap = false;
        self.file
            .sync_data()
            .map_err(|e| Error::io("cannot sync", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_make_a_true_prefix_and_a_gap_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sink::open(dir.path()).unwrap();
        assert!(s.frame(b"1 {\"a\":1}").unwrap());
        assert!(!s.frame(b"1 {\"a\":1}").unwrap(), "a repeat");
        assert!(!s.frame(b"sh: oops").unwrap(), "not a frame");
        assert!(s.frame(b"2 two words").unwrap());
        assert!(!s.frame(b"4 four").unwrap(), "a gap");
        assert!(s.gap);
        assert!(
            !s.frame(b"3 three").unwrap(),
            "after a gap, the file decides"
        );
        let text = std::fs::read_to_string(dir.path().join("output.jsonl")).unwrap();
        assert_eq!(text, "{\"a\":1}\ntwo words\n");
        assert_eq!(s.repair_from(), 8);
        // A front end that comes back counts what it has and drops a torn line.
        std::fs::write(dir.path().join("output.jsonl"), "x\ny\nz").unwrap();
        let s = Sink::open(dir.path()).unwrap();
        assert_eq!((s.lines, s.bytes), (2, 4));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("output.jsonl")).unwrap(),
            "x\ny\n"
        );
    }

    #[test]
    fn the_copy_is_checked_by_size_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sink::open(dir.path()).unwrap();
        s.frame(b"1 abc").unwrap();
        // printf 'abc\n' | sha256sum
        let good = Ending {
            exit: 0,
            bytes: 4,
            sha256: "edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb".into(),
        };
        assert!(s.matches(&good).unwrap());
        let short = Ending {
            bytes: 3,
            ..good.clone()
        };
        assert!(!s.matches(&short).unwrap());
        assert_eq!(
            Ending::parse("{\"exit\":3,\"bytes\":4,\"sha256\":\"ab\"}\n"),
            Some(Ending {
                exit: 3,
                bytes: 4,
                sha256: "ab".into()
            })
        );
        assert_eq!(Ending::parse("Error: OOMKilled"), None);
    }
}
