//! Incremental decoders for the container runtime's own log file.
//!
//! creel reads the runtime's log file by byte offset and feeds what it read to [`decode`], which
//! consumes only complete records (each ends with `'\n'`) and leaves the rest for the next call.
//! The file is written by the runtime from bytes a container produced, so every record is
//! treated as untrusted: a record that does not parse is skipped and counted, never fatal.

use std::borrow::Cow;

use serde::Deserialize;

/// Which on-disk log format the runtime writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Podman's (conmon's) `k8s-file` driver: `TIMESTAMP STREAM TAG PAYLOAD` per record, where
    /// `TAG` is `F` (a full line) or `P` (a piece of a line, continued by the next record).
    K8sFile,
    /// Docker's `json-file` driver: one `{"log":…,"stream":…,"time":…}` object per record; a
    /// `log` without a trailing newline is a piece of a longer line.
    DockerJson,
}

/// Bytes decoded from complete log records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The container's standard output, with partial records joined.
    pub stdout: Vec<u8>,
    /// The container's standard error, with partial records joined.
    pub stderr: Vec<u8>,
    /// How many records were skipped because they did not parse.
    pub malformed: u64,
}

/// Decodes the complete records at the start of `buf` (a record ends with `'\n'`), appending
/// their payload to `out`, and returns how many bytes of `buf` were consumed (0 if no complete
/// record); the caller keeps the rest for the next call.
///
/// A malformed record is consumed, skipped and counted in [`Decoded::malformed`].
pub fn decode(format: LogFormat, buf: &[u8], out: &mut Decoded) -> usize {
    let mut consumed = 0;
    while let Some(len) = memchr::memchr(b'\n', &buf[consumed..]) {
        let record = &buf[consumed..consumed + len];
        let ok = match format {
            LogFormat::K8sFile => k8s_record(record, out),
            LogFormat::DockerJson => docker_record(record, out),
        };
        if !ok {
            out.malformed = out.malformed.saturating_add(1);
        }
        consumed += len + 1;
    }
    consumed
}

/// Decodes one k8s-file record (without its `'\n'`); false when it is malformed.
fn k8s_record(record: &[u8], out: &mut Decoded) -> bool {
    let mut parts = record.splitn(4, |&b| b == b' ');
    let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    // conmon writes `F ` / `P ` before the payload; tolerate a missing separator for an empty one.
    let payload = parts.next().unwrap_or_default();
    if !time.first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    // CRI log tags are separated by ':'; the first one says full or partial.
    let full = match tag.split(|&b| b == b':').next() {
        Some(b"F") => true,
        Some(b"P") => false,
        _ => return false,
    };
    let target = match stream {
        b"stdout" => &mut out.stdout,
        b"stderr" => &mut out.stderr,
        _ => return false,
    };
    target.extend_from_slice(payload);
    if full {
        target.push(b'\n');
    }
    true
}

/// One record of Docker's json-file log driver (other fields are ignored).
#[derive(Deserialize)]
struct DockerRecord<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
}

/// Decodes one json-file record (without its `'\n'`); false when it is malformed.
fn docker_record(record: &[u8], out: &mut Decoded) -> bool {
    let Ok(rec) = serde_json::from_slice::<DockerRecord<'_>>(record) else {
        return false;
    };
    let target = match rec.stream.as_ref() {
        "stdout" => &mut out.stdout,
        "stderr" => &mut out.stderr,
        _ => return false,
    };
    target.extend_from_slice(rec.log.as_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-25T19:37:26.228848631+00:00";

    fn k8s(buf: &[u8]) -> (Decoded, usize) {
        let mut out = Decoded::default();
        let n = decode(LogFormat::K8sFile, buf, &mut out);
        (out, n)
    }

    #[test]
    fn k8s_full_and_partial_lines_join() {
        let buf =
            format!("{TS} stdout F 1\n{TS} stdout P ab\n{TS} stdout P cd\n{TS} stdout F ef\n");
        let (out, n) = k8s(buf.as_bytes());
        assert_eq!(n, buf.len());
        assert_eq!(out.stdout, b"1\nabcdef\n");
        assert!(out.stderr.is_empty());
        assert_eq!(out.malformed, 0);
    }

    #[test]
    fn k8s_stderr_is_separate() {
        let buf = format!("{TS} stdout P out-\n{TS} stderr F err\n{TS} stdout F more\n");
        let (out, _) = k8s(buf.as_bytes());
        assert_eq!(out.stdout, b"out-more\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn k8s_payload_with_spaces_and_binary() {
        let mut buf = format!("{TS} stdout F  two  spaces \n").into_bytes();
        buf.extend_from_slice(format!("{TS} stdout F ").as_bytes());
        buf.extend_from_slice(&[0xff, 0xfe, b' ', 0x00, 0xc3]);
        buf.push(b'\n');
        let (out, n) = k8s(&buf);
        assert_eq!(n, buf.len());
        let mut want = b" two  spaces \n".to_vec();
        want.extend_from_slice(&[0xff, 0xfe, b' ', 0x00, 0xc3, b'\n']);
        assert_eq!(out.stdout, want);
    }

    #[test]
    fn k8s_empty_payload() {
        let buf = format!("{TS} stdout F \n{TS} stdout F\n{TS} stdout P \n{TS} stdout F x\n");
        let (out, n) = k8s(buf.as_bytes());
        assert_eq!(n, buf.len());
        assert_eq!(out.stdout, b"\n\nx\n");
        assert_eq!(out.malformed, 0);
    }

    #[test]
    fn k8s_record_split_across_calls() {
        let buf = format!("{TS} stdout F first\n{TS} stdout F second line\n");
        let cut = buf.len() - 7;
        let mut out = Decoded::default();
        let n = decode(LogFormat::K8sFile, &buf.as_bytes()[..cut], &mut out);
        assert_eq!(n, TS.len() + " stdout F first\n".len());
        assert_eq!(out.stdout, b"first\n");
        // The caller keeps the unconsumed rest and appends what it reads next.
        let rest = &buf.as_bytes()[n..];
        let m = decode(LogFormat::K8sFile, rest, &mut out);
        assert_eq!(m, rest.len());
        assert_eq!(out.stdout, b"first\nsecond line\n");
    }

    #[test]
    fn no_complete_record_consumes_nothing() {
        let (out, n) = k8s(format!("{TS} stdout F no newline yet").as_bytes());
        assert_eq!(n, 0);
        assert_eq!(out, Decoded::default());
        let mut out = Decoded::default();
        assert_eq!(decode(LogFormat::DockerJson, br#"{"log":"x"#, &mut out), 0);
        assert_eq!(decode(LogFormat::K8sFile, b"", &mut out), 0);
    }

    #[test]
    fn k8s_malformed_records_are_skipped() {
        let buf = format!(
            "\ngarbage\n{TS} stdin F x\n{TS} stdout X x\n{TS} stdout\nnot-a-time stdout F x\n{TS} stdout F ok\n"
        );
        let (out, n) = k8s(buf.as_bytes());
        assert_eq!(n, buf.len());
        assert_eq!(out.stdout, b"ok\n");
        assert_eq!(out.malformed, 6);
    }

    #[test]
    fn k8s_tag_with_extra_flags() {
        let buf = format!("{TS} stdout P:x a\n{TS} stdout F:y b\n");
        let (out, _) = k8s(buf.as_bytes());
        assert_eq!(out.stdout, b"ab\n");
    }

    #[test]
    fn docker_lines_partials_and_streams() {
        let buf = concat!(
            r#"{"log":"hello\n","stream":"stdout","time":"2026-11-25T19:37:26.2Z"}"#,
            "\n",
            r#"{"log":"part one ","stream":"stdout","time":"t"}"#,
            "\n",
            r#"{"log":"oops\n","stream":"stderr","time":"t"}"#,
            "\n",
            r#"{"log":"part two \u00e9\n","stream":"stdout","time":"t"}"#,
            "\n",
        );
        let mut out = Decoded::default();
        let n = decode(LogFormat::DockerJson, buf.as_bytes(), &mut out);
        assert_eq!(n, buf.len());
        assert_eq!(out.stdout, "hello\npart one part two é\n".as_bytes());
        assert_eq!(out.stderr, b"oops\n");
        assert_eq!(out.malformed, 0);
    }

    #[test]
    fn docker_malformed_records_are_skipped() {
        let buf = concat!(
            "not json\n",
            r#"{"log":"x\n","stream":"stdin"}"#,
            "\n",
            r#"{"stream":"stdout"}"#,
            "\n",
            r#"{"log":1,"stream":"stdout"}"#,
            "\n",
            r#"{"log":"trunc"#,
            "\n",
            r#"{"log":"ok\n","stream":"stdout"}"#,
            "\n",
            r#"{"log":"rest"#,
        );
        let mut out = Decoded::default();
        let n = decode(LogFormat::DockerJson, buf.as_bytes(), &mut out);
        assert_eq!(n, buf.len() - r#"{"log":"rest"#.len());
        assert_eq!(out.stdout, b"ok\n");
        assert_eq!(out.malformed, 5);
    }

    #[test]
    fn docker_record_split_across_calls() {
        let buf = concat!(
            r#"{"log":"a\n","stream":"stdout","time":"t"}"#,
            "\n",
            r#"{"log":"b\n","stream":"stdout","time":"t"}"#,
            "\n"
        )
        .as_bytes();
        let mut out = Decoded::default();
        let n = decode(LogFormat::DockerJson, &buf[..buf.len() / 2 + 5], &mut out);
        assert_eq!(out.stdout, b"a\n");
        let m = decode(LogFormat::DockerJson, &buf[n..], &mut out);
        assert_eq!(n + m, buf.len());
        assert_eq!(out.stdout, b"a\nb\n");
    }
}
