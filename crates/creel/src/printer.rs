//! stdout/stderr discipline: data on stdout, everything else on stderr; a closed stdout (a
//! pipe into `head`) is not an error.

use std::io::Write;

use serde::Serialize;

/// Prints a value as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    out(s.as_bytes())
}

/// Writes bytes to stdout, flushing; a broken pipe ends quietly.
pub fn out(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|_| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(BrokenPipe)),
        Err(e) => Err(e.into()),
    }
}

/// Marker for a closed stdout; `main` treats it as success.
#[derive(Debug, thiserror::Error)]
#[error("broken pipe")]
pub struct BrokenPipe;

/// A note for the person at the terminal, on stderr (`creel: …`), never mixed into data.
pub fn note(text: &str) {
    eprintln!("creel: {text}");
}

/// An error and all its causes on one line (`a: b: c`), for the servers, which answer through
/// their protocol what the CLI prints one cause per line.
pub(crate) fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

/// A server's engine, or why it has none: a server (`creel mcp`, `creel acp`) starts even when
/// creel's configuration is broken, says so on stderr (`who: error: …` and what it does
/// meanwhile, `then`), and answers every request with the reason, so that the host that
/// started it shows why instead of a closed connection.
pub(crate) fn serve_anyway(
    engine: anyhow::Result<creel_engine::Engine>,
    who: &str,
    then: &str,
) -> Result<std::sync::Arc<creel_engine::Engine>, std::sync::Arc<String>> {
    engine.map(std::sync::Arc::new).map_err(|e| {
        let message = one_line(e.as_ref());
        eprintln!("{who}: error: {message}\n{who}: serving anyway: {then}");
        std::sync::Arc::new(message)
    })
}
