//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz; see RELIABILITY.md). Each takes
//! arbitrary bytes, drives one parser of untrusted input the way creel does, and panics if an
//! invariant breaks, so that the fuzzer reports it as a crash. Not an API: hidden from the docs.

use crate::logfile::{Decoded, LogFormat, decode};
use crate::stream::{Line, LineSplitter, Renderer, StreamFacts};

/// The first byte chooses where to cut the rest in two; the rest is the input.
fn cut(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => ((b as usize * rest.len()) / 255, rest),
        None => (0, data),
    }
}

/// The egress proxy's request-head check (what a job sends its proxy): it never panics, and a
/// head it accepts has CRLF line endings only and parses as one complete HTTP/1 request.
pub fn proxy_head(data: &[u8]) {
    if crate::egress::proxy::check_head(data).is_ok() {
        for (i, &b) in data.iter().enumerate() {
            assert!(
                b != b'\n' || (i > 0 && data[i - 1] == b'\r'),
                "bare LF accepted"
            );
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        assert!(matches!(req.parse(data), Ok(httparse::Status::Complete(n)) if n == data.len()));
    }
}

/// API paths (what Claude sends the proxy): an accepted target stays under `/v1/` with no
/// dot segments, whatever percent-encoding or separators it tries.
pub fn api_target(data: &[u8]) {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = crate::egress::api_target(target) {
        let path = t.split('?').next().unwrap_or_default();
        assert!(path.starts_with("/v1/"));
        assert!(!path.split('/').any(|s| s == ".." || s == "."));
        assert!(!path.to_ascii_lowercase().contains("%2e"));
    }
}

/// Claude's stream-json (what the container prints): split into lines across any chunk
/// boundary, observed for facts and rendered as text, without a panic; the lines and the
/// pending rest add up to the input, byte for byte.
pub fn stream_json(data: &[u8]) {
    let (at, data) = cut(data);
    let mut splitter = LineSplitter::new(4096);
    let mut facts = StreamFacts::default();
    let mut renderer = Renderer::new();
    let mut text = String::new();
    let mut seen = 0u64;
    let mut on_line = |l: Line<'_>| match l {
        Line::Complete(line) => {
            seen += line.len() as u64 + 1;
            facts.observe(line);
            renderer.line(line, &mut text);
        }
        Line::TooLong { len } => seen += len + 1,
    };
    splitter.push(&data[..at], &mut on_line);
    splitter.push(&data[at..], &mut on_line);
    let pending = splitter.pending().len() as u64;
    assert!(seen + pending <= data.len() as u64 + 1);
    if !splitter.pending().is_empty() {
        assert!(
            data.ends_with(splitter.pending()),
            "pending is not the input's tail"
        );
    }
    let _ = crate::stream::failure_kind(&facts);
    let _ = crate::stream::render_text(data);
}

/// The runtimes' log files (what conmon and Docker write for the container): decoding in two
/// chunks, the rest kept for the next call as the monitor does, gives what one call gives.
pub fn log_decode(data: &[u8]) {
    let (at, data) = cut(data);
    for format in [LogFormat::K8sFile, LogFormat::DockerJson] {
        let mut whole = Decoded::default();
        let n = decode(format, data, &mut whole);
        assert!(n <= data.len());
        let mut parts = Decoded::default();
        let first = decode(format, &data[..at], &mut parts);
        let mut pending = data[first..at].to_vec();
        pending.extend_from_slice(&data[at..]);
        let second = decode(format, &pending, &mut parts);
        assert_eq!(first + second, n, "consumed differs when chunked");
        assert_eq!(whole.stdout, parts.stdout);
        assert_eq!(whole.stderr, parts.stderr);
        assert_eq!(whole.malformed, parts.malformed);
    }
}

/// The config file (TOML a user or an agent's host wrote): parsed and validated without a
/// panic; a valid one has timeouts that cannot overflow.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<crate::Config>(text)
        && c.validate().is_ok()
    {
        assert!(c.idle_timeout <= crate::config::MAX_TIMEOUT_SECS);
        assert!(c.startup_timeout <= crate::config::MAX_TIMEOUT_SECS);
        assert!(crate::config::parse_size(&c.memory).is_some());
        for p in &c.egress_allow {
            assert!(crate::egress::validate_pattern(p).is_ok());
        }
    }
}

/// A steering request file (what the container writes into its `asked/` directory): parsed
/// without a panic, and, for a permission request, judged by the approval rules without one.
/// A rule may approve a Bash command only when every part of it is approved: `git *` never
/// approves a command that also runs something else.
pub fn steer_request(data: &[u8]) {
    if let crate::steer::Read::Found(crate::steer::Ask::Approval { tool_name, input }) =
        crate::steer::parse_request(data)
    {
        let allow = ["Bash(git *)".to_string(), "Edit".to_string()];
        let deny = ["Bash(curl *)".to_string()];
        if let Some((true, _)) = crate::approvals::decide(&allow, &deny, &tool_name, &input)
            && tool_name == "Bash"
        {
            let cmd = input["command"].as_str().unwrap_or_default();
            for s in ["$(", "`", "<(", ">("] {
                assert!(!cmd.contains(s), "{cmd:?}");
            }
            for part in cmd.split(['\n', ';', '&', '|']).map(str::trim) {
                assert!(part.is_empty() || part.starts_with("git "), "{cmd:?}");
                assert!(!part.starts_with("curl "), "{cmd:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each target runs on a few inputs here, so that a broken target fails `cargo test`
    /// rather than only a fuzz run.
    #[test]
    fn targets_run() {
        for input in [
            &b""[..],
            b"\x80GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\x10{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false}\n{\"type\":",
            b"\x402026-11-25T19:37:26.2+00:00 stdout F hi\n2026-11-25T19:37:26.2+00:00 stderr P x",
            b"idle_timeout = 5\nmemory = \"1g\"\n",
            b"/v1/messages?beta=true",
        ] {
            proxy_head(input);
            api_target(input);
            stream_json(input);
            log_decode(input);
            config(input);
        }
    }
}
