//! Understanding Claude Code's `--output-format stream-json --verbose` output.
//!
//! - [`LineSplitter`] cuts a byte stream into lines with bounded memory.
//! - [`StreamFacts`] gathers what status needs (session, turns, cost, result, retries) line by
//!   line, cheaply: only a handful of top-level fields are decoded, the rest is skipped.
//! - [`Renderer`] / [`render_text`] turn the stream into a plain-text transcript.
//!
//! The stream comes out of a container and is treated as untrusted: nothing here panics on bad
//! input, unexpected field types are ignored, and kept strings are bounded.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Longest `result` text kept in [`StreamFacts::result`].
const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Longest identifier-like string kept (session id, model, subtype, terminal reason).
const MAX_NAME_BYTES: usize = 256;
/// Longest error message kept (retry error, each entry of `errors`).
const MAX_ERROR_BYTES: usize = 2048;
/// Most entries kept from a result's `errors` list.
const MAX_ERRORS: usize = 16;
/// Most strings collected from any JSON array while decoding a line.
const MAX_LIST: usize = 64;

// ---------------------------------------------------------------------------------------------
// Line splitting

/// One line produced by [`LineSplitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A whole line, without its `'\n'`.
    Complete(&'a [u8]),
    /// A line longer than the splitter's limit; its bytes were counted, not kept.
    TooLong {
        /// The line's length in bytes, without its `'\n'`.
        len: u64,
    },
}

/// Splits a byte stream into lines across arbitrary chunk boundaries; lines longer than
/// `max_line` are not buffered whole (their bytes are counted and the line is reported as too
/// long), so memory stays bounded.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    max_line: usize,
    buf: Vec<u8>,
    /// `Some(bytes so far)` while inside a line already known to be too long.
    skipping: Option<u64>,
}

impl LineSplitter {
    /// A splitter that reports lines longer than `max_line` bytes as [`Line::TooLong`].
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            buf: Vec::new(),
            skipping: None,
        }
    }

    /// Feeds the next chunk, calling `f` for every line it completes.
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(Line<'_>)) {
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.end_line(&rest[..i], &mut f);
            rest = &rest[i + 1..];
        }
        self.append(rest);
    }

    /// The incomplete last line buffered so far (empty while skipping an over-long line).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Ends the stream: reports the incomplete last line, if any, as if it ended with `'\n'`.
    pub fn finish(&mut self, mut f: impl FnMut(Line<'_>)) {
        if self.skipping.is_some() || !self.buf.is_empty() {
            self.end_line(&[], &mut f);
        }
    }

    fn append(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        if let Some(n) = &mut self.skipping {
            *n = n.saturating_add(part.len() as u64);
        } else if self.buf.len().saturating_add(part.len()) > self.max_line {
            self.skipping = Some((self.buf.len() as u64).saturating_add(part.len() as u64));
            self.buf.clear();
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    fn end_line(&mut self, part: &[u8], f: &mut impl FnMut(Line<'_>)) {
        if let Some(n) = self.skipping.take() {
            f(Line::TooLong {
                len: n.saturating_add(part.len() as u64),
            });
        } else if self.buf.len().saturating_add(part.len()) > self.max_line {
            f(Line::TooLong {
                len: (self.buf.len() as u64).saturating_add(part.len() as u64),
            });
            self.buf.clear();
        } else if self.buf.is_empty() {
            f(Line::Complete(part));
        } else {
            self.buf.extend_from_slice(part);
            f(Line::Complete(&self.buf));
            self.buf.clear();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lenient decoding of top-level fields

/// Any JSON value, decoded without failing on unexpected types and without keeping nested data:
/// objects are skipped, arrays keep only their string elements.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    List(Vec<Cow<'a, str>>),
    Map,
}

impl Scalar<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::U64(n) => Some(n),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(n) => Some(n as f64),
            Scalar::I64(n) => Some(n as f64),
            Scalar::F64(n) => Some(n),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match *self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Scalar<'de>>()? {
            if let Scalar::Str(s) = item
                && items.len() < MAX_LIST
            {
                items.push(s);
            }
        }
        Ok(Scalar::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Map)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// The top-level fields of any stream-json event that creel looks at. Everything else (notably
/// an assistant event's `message`, which can be megabytes) is skipped without being kept.
#[derive(Debug, Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Scalar<'a>>,
    #[serde(borrow)]
    subtype: Option<Scalar<'a>>,
    #[serde(borrow)]
    session_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    is_api_error_message: Option<Scalar<'a>>,
    // system/init
    #[serde(borrow)]
    model: Option<Scalar<'a>>,
    #[serde(borrow)]
    cwd: Option<Scalar<'a>>,
    // system/api_retry
    #[serde(borrow)]
    attempt: Option<Scalar<'a>>,
    #[serde(borrow)]
    max_retries: Option<Scalar<'a>>,
    #[serde(borrow)]
    error: Option<Scalar<'a>>,
    #[serde(borrow)]
    error_status: Option<Scalar<'a>>,
    // result
    #[serde(borrow)]
    num_turns: Option<Scalar<'a>>,
    #[serde(borrow)]
    total_cost_usd: Option<Scalar<'a>>,
    #[serde(borrow)]
    duration_ms: Option<Scalar<'a>>,
    #[serde(borrow)]
    result: Option<Scalar<'a>>,
    #[serde(borrow)]
    is_error: Option<Scalar<'a>>,
    #[serde(borrow)]
    api_error_status: Option<Scalar<'a>>,
    #[serde(borrow)]
    terminal_reason: Option<Scalar<'a>>,
    #[serde(borrow)]
    errors: Option<Scalar<'a>>,
    #[serde(borrow)]
    queued_turn_count: Option<Scalar<'a>>,
}

fn field_str<'s>(v: &'s Option<Scalar<'_>>) -> Option<&'s str> {
    v.as_ref().and_then(Scalar::as_str)
}

fn field_u64(v: &Option<Scalar<'_>>) -> Option<u64> {
    v.as_ref().and_then(Scalar::as_u64)
}

fn field_f64(v: &Option<Scalar<'_>>) -> Option<f64> {
    v.as_ref().and_then(Scalar::as_f64)
}

fn field_bool(v: &Option<Scalar<'_>>) -> Option<bool> {
    v.as_ref().and_then(Scalar::as_bool)
}

fn field_status(v: &Option<Scalar<'_>>) -> Option<u16> {
    field_u64(v).and_then(|n| u16::try_from(n).ok())
}

fn field_list<'s>(v: &'s Option<Scalar<'_>>) -> &'s [Cow<'s, str>] {
    match v {
        Some(Scalar::List(items)) => items,
        _ => &[],
    }
}

fn bounded(s: &str, max_bytes: usize) -> String {
    cut_str(s, max_bytes).to_owned()
}

impl<'a> Event<'a> {
    fn parse(line: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(line).ok()
    }

    fn kind(&self) -> &str {
        field_str(&self.kind).unwrap_or("")
    }

    fn subtype(&self) -> &str {
        field_str(&self.subtype).unwrap_or("")
    }
}

// ---------------------------------------------------------------------------------------------
// Facts

/// Facts about a job gathered from its stream, updated line by line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamFacts {
    /// Claude's own session id (from `system/init`, else from the first event that has one).
    pub claude_session_id: Option<String>,
    /// The model named by `system/init`.
    pub model: Option<String>,
    /// `num_turns` of the last `result` event.
    pub num_turns: Option<u64>,
    /// `total_cost_usd` of the last `result` event.
    pub cost_usd: Option<f64>,
    /// `result` text of the last `result` event, at most 64 KiB.
    pub result: Option<String>,
    /// `subtype` of the last `result` event (`success`, `error_max_turns`, …).
    pub result_subtype: Option<String>,
    /// `is_error` of the last `result` event.
    pub is_error: Option<bool>,
    /// `api_error_status` of the last `result` event (an HTTP status).
    pub api_error_status: Option<u16>,
    /// `terminal_reason` of the last `result` event (`completed`, `max_turns`, `api_error`, …).
    pub terminal_reason: Option<String>,
    /// `errors` of the last `result` event (at most 16, each at most 2 KiB).
    pub errors: Vec<String>,
    /// The last `system/api_retry`, until a real assistant message shows the API answered.
    pub retry: Option<RetryInfo>,
    /// Whether a `system/init` event was seen.
    pub saw_init: bool,
    /// Whether a `result` event was seen.
    pub saw_result: bool,
    /// How many `result` events were seen (a message sent while Claude works joins the
    /// running turn; one sent after a result starts another).
    pub results: u64,
    /// `queued_turn_count` of the last `result` event: user messages Claude has read but not
    /// yet started on.
    pub queued_turns: u64,
    /// How many `assistant` events were seen (one per content block).
    pub assistant_messages: u64,
}

/// An API retry Claude reported (`system/api_retry`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryInfo {
    /// Which retry this is, from 1.
    pub attempt: u64,
    /// How many retries Claude will make.
    pub max_retries: u64,
    /// The error that caused the retry (`server_error`, …), at most 2 KiB.
    pub error: String,
    /// The HTTP status of the failed request, when there was one.
    pub status: Option<u16>,
}

/// Sets `*slot` to `value`, returning whether it changed.
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

impl StreamFacts {
    /// Updates the facts from one stream-json line (without its `'\n'`). Returns true when
    /// something changed. Lines that are not JSON objects, and unknown events, change nothing.
    pub fn observe(&mut self, line: &[u8]) -> bool {
        // Fast path: an ordinary assistant event (the bulk of a stream) only counts.
        if self.claude_session_id.is_some()
            && line.starts_with(b"{\"type\":\"assistant\"")
            && memchr::memmem::find(line, b"\"is_api_error_message\"").is_none()
        {
            self.assistant_messages = self.assistant_messages.saturating_add(1);
            self.retry = None;
            return true;
        }
        let Some(ev) = Event::parse(line) else {
            return false;
        };
        let mut changed = false;
        match (ev.kind(), ev.subtype()) {
            ("system", "init") => {
                changed |= set(&mut self.saw_init, true);
                if let Some(id) = field_str(&ev.session_id) {
                    changed |= set(
                        &mut self.claude_session_id,
                        Some(bounded(id, MAX_NAME_BYTES)),
                    );
                }
                if let Some(model) = field_str(&ev.model) {
                    changed |= set(&mut self.model, Some(bounded(model, MAX_NAME_BYTES)));
                }
            }
            ("system", "api_retry") => {
                let retry = RetryInfo {
                    attempt: field_u64(&ev.attempt).unwrap_or(0),
                    max_retries: field_u64(&ev.max_retries).unwrap_or(0),
                    error: bounded(field_str(&ev.error).unwrap_or(""), MAX_ERROR_BYTES),
                    status: field_status(&ev.error_status),
                };
                changed |= set(&mut self.retry, Some(retry));
            }
            ("assistant", _) => {
                self.assistant_messages = self.assistant_messages.saturating_add(1);
                changed = true;
                // Claude reports an exhausted retry as a synthetic assistant message; keep the
                // retry info then, so status can still say what was retried.
                if field_bool(&ev.is_api_error_message) != Some(true) {
                    self.retry = None;
                }
            }
            ("result", _) => {
                self.saw_result = true;
                self.results = self.results.saturating_add(1);
                self.queued_turns = field_u64(&ev.queued_turn_count).unwrap_or(0);
                changed = true;
                changed |= set(&mut self.num_turns, field_u64(&ev.num_turns));
                changed |= set(&mut self.cost_usd, field_f64(&ev.total_cost_usd));
                let result = field_str(&ev.result).map(|s| bounded(s, MAX_RESULT_BYTES));
                changed |= set(&mut self.result, result);
                let subtype = field_str(&ev.subtype).map(|s| bounded(s, MAX_NAME_BYTES));
                changed |= set(&mut self.result_subtype, subtype);
                changed |= set(&mut self.is_error, field_bool(&ev.is_error));
                changed |= set(
                    &mut self.api_error_status,
                    field_status(&ev.api_error_status),
                );
                let reason = field_str(&ev.terminal_reason).map(|s| bounded(s, MAX_NAME_BYTES));
                changed |= set(&mut self.terminal_reason, reason);
                let errors = field_list(&ev.errors)
                    .iter()
                    .take(MAX_ERRORS)
                    .map(|s| bounded(s, MAX_ERROR_BYTES))
                    .collect();
                changed |= set(&mut self.errors, errors);
            }
            _ => {}
        }
        if self.claude_session_id.is_none()
            && let Some(id) = field_str(&ev.session_id)
        {
            self.claude_session_id = Some(bounded(id, MAX_NAME_BYTES));
            changed = true;
        }
        changed
    }
}

/// Why a finished Claude run failed, from its `result` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFailure {
    /// The run hit `--max-turns` (`error_max_turns`).
    MaxTurns,
    /// The run hit `--max-budget-usd` (`error_max_budget_usd`).
    MaxBudget,
    /// The API refused the credentials (HTTP 401 or 403).
    Auth,
    /// The API rate-limited the run (HTTP 429).
    RateLimit,
    /// Any other API error (another HTTP status, or terminal reason `api_error`).
    ApiError,
    /// Failed for another reason.
    Other,
}

impl ResultFailure {
    /// A stable snake_case name (`max_turns`, `auth`, `rate_limit`, `api_error`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResultFailure::MaxTurns => "max_turns",
            ResultFailure::MaxBudget => "max_budget",
            ResultFailure::Auth => "auth",
            ResultFailure::RateLimit => "rate_limit",
            ResultFailure::ApiError => "api_error",
            ResultFailure::Other => "other",
        }
    }
}

/// Whether a result event reports a failure: `is_error: true` (even with subtype `success`, as
/// after API errors) or a subtype other than `success`.
fn result_failed(is_error: Option<bool>, subtype: Option<&str>) -> bool {
    is_error == Some(true) || subtype.is_some_and(|s| s != "success")
}

/// Why a finished Claude run failed, from its result event (None = success or no result seen).
pub fn failure_kind(facts: &StreamFacts) -> Option<ResultFailure> {
    let subtype = facts.result_subtype.as_deref();
    if !facts.saw_result || !result_failed(facts.is_error, subtype) {
        return None;
    }
    let reason = facts.terminal_reason.as_deref();
    Some(
        if subtype == Some("error_max_turns") || reason == Some("max_turns") {
            ResultFailure::MaxTurns
        } else if subtype == Some("error_max_budget_usd") || reason == Some("budget_exhausted") {
            ResultFailure::MaxBudget
        } else {
            match facts.api_error_status {
                Some(401 | 403) => ResultFailure::Auth,
                Some(429) => ResultFailure::RateLimit,
                Some(_) => ResultFailure::ApiError,
                None if reason == Some("api_error") => ResultFailure::ApiError,
                None => ResultFailure::Other,
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// Longest tool-result first line shown, in characters.
const RESULT_LINE_CHARS: usize = 200;
/// Longest Bash command (first line) shown, in characters.
const COMMAND_CHARS: usize = 200;
/// Longest compact-JSON tool input shown, in characters.
const INPUT_JSON_CHARS: usize = 120;
/// Longest non-JSON line shown, in characters.
const RAW_LINE_CHARS: usize = 2000;
/// Longest tool name shown, in characters.
const NAME_CHARS: usize = 100;

/// Cuts `s` to at most `max_bytes` bytes without splitting a UTF-8 character.
pub(crate) fn cut_str(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to at most `max` bytes (on a character boundary), marked with `…` when cut.
pub(crate) fn cut_marked(s: &str, max: usize) -> String {
    let kept = cut_str(s, max);
    if kept.len() == s.len() {
        s.to_string()
    } else {
        format!("{kept}…")
    }
}

/// Text from a job (a question, a tool's input) made fit for a terminal: control characters
/// and escape sequences replaced, at most `max_bytes` bytes (marked with `…` when cut).
pub fn terminal_text(s: &str, max_bytes: usize) -> String {
    clean(&cut_marked(s, max_bytes)).into_owned()
}

/// Cuts `s` to at most `max_chars` characters.
fn cut_chars(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

/// Makes text safe to print on a terminal: drops `'\r'`, replaces other control characters
/// (escape sequences included) except `'\n'` and `'\t'` with U+FFFD.
fn clean(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.contains(bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .filter(|&c| c != '\r')
            .map(|c| if bad(c) { '\u{FFFD}' } else { c })
            .collect(),
    )
}

/// The first non-blank-led line of `s` cut to `max_chars` (with `…` when cut), and how many
/// lines follow it.
fn first_line(s: &str, max_chars: usize) -> (String, usize) {
    let s = s.trim_matches(|c| c == '\n' || c == '\r');
    let mut lines = s.lines();
    let first = lines.next().unwrap_or("");
    let more = lines.count();
    let cut = cut_chars(first, max_chars);
    let mut line = clean(cut).into_owned();
    if cut.len() < first.len() {
        line.push('…');
    }
    (line, more)
}

/// `" (+N more lines)"`, or nothing for N = 0.
fn more_lines(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " (+1 more line)".to_owned(),
        n => format!(" (+{n} more lines)"),
    }
}

/// An `io::Write` that keeps at most `max` bytes and then fails, to stop serialization early.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.max.saturating_sub(self.buf.len());
        if room == 0 {
            return Err(std::io::Error::other("full"));
        }
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compact JSON of `v`, cut to `max_chars` characters (with `…` when cut).
fn compact_json(v: &Value, max_chars: usize) -> String {
    // A character is at most 4 bytes; stop serializing once enough bytes are out.
    let mut w = Capped {
        buf: Vec::new(),
        max: max_chars.saturating_mul(4).saturating_add(4),
    };
    let complete = serde_json::to_writer(&mut w, v).is_ok();
    let text = match std::str::from_utf8(&w.buf) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&w.buf[..e.valid_up_to()]).unwrap_or(""),
    };
    let cut = cut_chars(text, max_chars);
    let mut out = clean(cut).into_owned();
    if !complete || cut.len() < text.len() {
        out.push('…');
    }
    out
}

/// The most telling part of a tool call's input.
fn tool_summary(name: &str, input: &Value) -> String {
    let field = |k: &str| input.get(k).and_then(Value::as_str);
    match name {
        "Bash" => {
            if let Some(cmd) = field("command") {
                let (line, more) = first_line(cmd, COMMAND_CHARS);
                return if more > 0 {
                    format!("{line} …")
                } else {
                    line
                };
            }
        }
        "Write" => {
            if let Some(path) = field("file_path") {
                let (path, _) = first_line(path, RESULT_LINE_CHARS);
                return match field("content") {
                    Some(content) => format!("{path}, {} bytes", content.len()),
                    None => path,
                };
            }
        }
        "Read" | "Edit" => {
            if let Some(path) = field("file_path") {
                return first_line(path, RESULT_LINE_CHARS).0;
            }
        }
        _ => {}
    }
    compact_json(input, INPUT_JSON_CHARS)
}

/// The text of a tool result's `content`: a string, or a list of blocks.
fn tool_result_text(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        None | Some(Value::Null) => Cow::Borrowed(""),
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Array(blocks)) => {
            let mut parts: Vec<&str> = Vec::new();
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            parts.push(t);
                        }
                    }
                    Some("image") => parts.push("[image]"),
                    _ => {}
                }
            }
            Cow::Owned(parts.join("\n"))
        }
        Some(other) => Cow::Owned(compact_json(other, RESULT_LINE_CHARS)),
    }
}

/// The `message.content` of an assistant or user event; the rest of the message is skipped.
#[derive(Deserialize)]
struct MessageEvent {
    message: Option<MessageBody>,
}

#[derive(Deserialize)]
struct MessageBody {
    content: Option<Value>,
}

fn message_content(line: &[u8]) -> Vec<Value> {
    match serde_json::from_slice::<MessageEvent>(line) {
        Ok(MessageEvent {
            message:
                Some(MessageBody {
                    content: Some(Value::Array(blocks)),
                }),
        }) => blocks,
        _ => Vec::new(),
    }
}

/// Renders stream-json lines into a readable transcript.
#[derive(Debug, Clone, Default)]
pub struct Renderer {
    /// A digest of the last assistant text (trimmed), to avoid repeating it as the final
    /// result: a digest, not the text, so that the state kept beside a transcript stays small
    /// whatever the text's size.
    pub(crate) last_text: String,
}

/// The hex SHA-256 of `text` trimmed.
fn text_digest(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.trim().as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Renderer {
    /// A renderer at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The note for a line longer than [`MAX_RENDER_LINE`] (its bytes were not kept).
    pub fn too_long(&mut self, len: u64, out: &mut String) {
        let _ = writeln!(
            out,
            "… (a line of {len} bytes, too long to render here: the raw output has it)"
        );
    }

    /// Renders one stream-json line (a trailing `'\n'` is ignored), appending to `out`.
    pub fn line(&mut self, line: &[u8], out: &mut String) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Some(ev) = Event::parse(line) else {
            if line.first() == Some(&b'{') {
                // An event cut short (the output limit, a killed job): say so rather than
                // print half a JSON object.
                let _ = writeln!(out, "… (an unfinished event of {} bytes)", line.len());
                return;
            }
            let text = String::from_utf8_lossy(line);
            let cut = cut_chars(&text, RAW_LINE_CHARS);
            out.push_str(&clean(cut));
            out.push('\n');
            return;
        };
        match (ev.kind(), ev.subtype()) {
            ("system", "init") => {
                let part = |v: &Option<Scalar<'_>>| {
                    first_line(field_str(v).unwrap_or("?"), MAX_NAME_BYTES).0
                };
                let _ = writeln!(
                    out,
                    "● conversation {} · model {} · {}",
                    part(&ev.session_id),
                    part(&ev.model),
                    part(&ev.cwd)
                );
            }
            ("system", "api_retry") => {
                let status = match field_u64(&ev.error_status) {
                    Some(n) => n.to_string(),
                    None => first_line(field_str(&ev.error).unwrap_or("?"), NAME_CHARS).0,
                };
                let num =
                    |v: &Option<Scalar<'_>>| field_u64(v).map_or("?".into(), |n| n.to_string());
                let _ = writeln!(
                    out,
                    "⟳ API error {status}, retry {}/{}",
                    num(&ev.attempt),
                    num(&ev.max_retries)
                );
            }
            ("assistant", _) => self.assistant(line, out),
            ("user", _) => user(line, out),
            ("result", _) => self.result(&ev, out),
            _ => {}
        }
    }

    fn assistant(&mut self, line: &[u8], out: &mut String) {
        for block in message_content(line) {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let Some(text) = block.get("text").and_then(Value::as_str) else {
                        continue;
                    };
                    if text.trim().is_empty() {
                        continue;
                    }
                    out.push_str(&clean(text));
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                    self.last_text = text_digest(text);
                }
                Some("tool_use") => {
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("?");
                    let (name, _) = first_line(name, NAME_CHARS);
                    let summary = tool_summary(&name, block.get("input").unwrap_or(&Value::Null));
                    let _ = writeln!(out, "→ {name}({summary})");
                }
                _ => {}
            }
        }
    }

    fn result(&mut self, ev: &Event<'_>, out: &mut String) {
        let subtype = field_str(&ev.subtype);
        let result = field_str(&ev.result);
        if result_failed(field_bool(&ev.is_error), subtype) {
            // (An error result may still say `success` as its subtype: never print that.)
            let label = match (field_u64(&ev.api_error_status), subtype) {
                (Some(status), _) => format!("API error {status}"),
                (None, Some(s)) if s != "success" => first_line(s, NAME_CHARS).0,
                (None, _) => "error".to_string(),
            };
            let detail = result
                .filter(|r| !r.trim().is_empty())
                .or_else(|| field_list(&ev.errors).first().map(|e| e.as_ref()));
            match detail {
                Some(d) => {
                    let _ = writeln!(out, "✖ {label} · {}", first_line(d, RESULT_LINE_CHARS).0);
                }
                None => {
                    let _ = writeln!(out, "✖ {label}");
                }
            }
            return;
        }
        out.push_str("✔ done");
        if let Some(n) = field_u64(&ev.num_turns) {
            let _ = write!(out, " · {n} turn{}", if n == 1 { "" } else { "s" });
        }
        if let Some(cost) = field_f64(&ev.total_cost_usd) {
            let _ = write!(out, " · ${cost:.4}");
        }
        // Claude's own time for the run (what `status` counts, from acceptance to the end, is
        // longer by the container's start): named, so that the two are never mistaken.
        if let Some(ms) = field_f64(&ev.duration_ms) {
            let _ = write!(out, " · Claude {:.1}s", ms / 1000.0);
        }
        out.push('\n');
        if let Some(text) = result
            && !text.trim().is_empty()
            && text_digest(text) != self.last_text
        {
            out.push_str(&clean(text));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
}

fn user(line: &[u8], out: &mut String) {
    for block in message_content(line) {
        if block.get("type").and_then(Value::as_str) != Some("tool_result") {
            continue;
        }
        let text = tool_result_text(block.get("content"));
        let (first, more) = first_line(&text, RESULT_LINE_CHARS);
        let is_error = block.get("is_error").and_then(Value::as_bool) == Some(true);
        let prefix = if is_error { "error: " } else { "" };
        let first = if first.is_empty() && !is_error {
            "(no output)".to_owned()
        } else {
            first
        };
        let _ = writeln!(out, "  ← {prefix}{first}{}", more_lines(more));
    }
}

/// The longest line the renderer looks at; a longer one shows as a note of its length.
pub const MAX_RENDER_LINE: usize = 16 << 20;

/// Renders a whole buffer of stream-json (complete lines only; a trailing partial line is
/// ignored).
pub fn render_text(buf: &[u8]) -> String {
    let mut renderer = Renderer::new();
    let mut out = String::new();
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return out;
    };
    let mut splitter = LineSplitter::new(MAX_RENDER_LINE);
    splitter.push(&buf[..=end], |line| match line {
        Line::Complete(l) => renderer.line(l, &mut out),
        Line::TooLong { len } => renderer.too_long(len, &mut out),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/sample-stream.jsonl");
    const API_500: &[u8] = include_bytes!("../tests/fixtures/api-error-500.jsonl");
    const MAX_TURNS: &[u8] = include_bytes!("../tests/fixtures/error-max-turns.jsonl");
    const PARTIAL: &[u8] = include_bytes!("../tests/fixtures/include-partial-messages.jsonl");
    const RESUMED: &[u8] = include_bytes!("../tests/fixtures/resumed-session.jsonl");

    fn facts(buf: &[u8]) -> StreamFacts {
        let mut facts = StreamFacts::default();
        for line in buf.split(|&b| b == b'\n') {
            facts.observe(line);
        }
        facts
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn facts_sample() {
        let f = facts(SAMPLE);
        assert_eq!(
            f.claude_session_id.as_deref(),
            Some("31111111-2222-4333-8444-555555555555")
        );
        assert_eq!(f.model.as_deref(), Some("claude-opus-5-5"));
        assert_eq!(f.num_turns, Some(3));
        assert!(f.cost_usd.is_some_and(|c| (c - 0.0024).abs() < 1e-9));
        assert_eq!(
            f.result.as_deref(),
            Some("All done: wrote and read /workspace/hello.txt.")
        );
        assert_eq!(f.result_subtype.as_deref(), Some("success"));
        assert_eq!(f.is_error, Some(false));
        assert_eq!(f.api_error_status, None);
        assert_eq!(f.terminal_reason.as_deref(), Some("completed"));
        assert!(f.errors.is_empty());
        assert!(f.saw_init && f.saw_result);
        assert_eq!(f.assistant_messages, 4);
        assert_eq!(f.retry, None);
        assert_eq!(failure_kind(&f), None);
    }

    #[test]
    fn facts_api_error_500() {
        let f = facts(API_500);
        assert_eq!(f.is_error, Some(true));
        assert_eq!(f.result_subtype.as_deref(), Some("success"));
        assert_eq!(f.api_error_status, Some(500));
        assert_eq!(f.terminal_reason.as_deref(), Some("api_error"));
        assert_eq!(failure_kind(&f), Some(ResultFailure::ApiError));
        assert_eq!(
            f.retry,
            Some(RetryInfo {
                attempt: 2,
                max_retries: 2,
                error: "server_error".into(),
                status: Some(500),
            })
        );
        assert!(
            f.result
                .as_deref()
                .is_some_and(|r| r.starts_with("API Error: 500"))
        );
    }

    #[test]
    fn retry_is_cleared_by_a_real_assistant_message() {
        let mut f = StreamFacts::default();
        let mut api = API_500.split(|&b| b == b'\n');
        for line in api.by_ref().take(2) {
            f.observe(line);
        }
        assert_eq!(f.retry.as_ref().map(|r| r.attempt), Some(1));
        assert!(f.observe(br#"{"type":"assistant","message":{"content":[]}}"#));
        assert_eq!(f.retry, None);
        assert_eq!(failure_kind(&f), None);
    }

    #[test]
    fn facts_max_turns() {
        let f = facts(MAX_TURNS);
        assert_eq!(f.result_subtype.as_deref(), Some("error_max_turns"));
        assert_eq!(f.num_turns, Some(2));
        assert_eq!(f.result, None);
        assert_eq!(
            f.errors,
            vec!["Reached maximum number of turns (1)".to_owned()]
        );
        assert_eq!(failure_kind(&f), Some(ResultFailure::MaxTurns));
    }

    #[test]
    fn facts_partial_and_resumed() {
        let f = facts(PARTIAL);
        assert_eq!(
            f.claude_session_id.as_deref(),
            Some("d3df62e1-6a21-4586-adc9-ba3d619854f7")
        );
        assert_eq!(f.assistant_messages, 1);
        assert_eq!(f.num_turns, Some(1));
        assert_eq!(failure_kind(&f), None);
        let f = facts(RESUMED);
        assert_eq!(
            f.claude_session_id.as_deref(),
            Some("31111111-2222-4333-8444-555555555555")
        );
        assert_eq!(f.num_turns, Some(3));
        assert_eq!(failure_kind(&f), None);
    }

    #[test]
    fn failure_kinds_from_status() {
        let base = StreamFacts {
            saw_result: true,
            is_error: Some(true),
            result_subtype: Some("success".into()),
            ..StreamFacts::default()
        };
        let with = |status: Option<u16>, reason: Option<&str>| StreamFacts {
            api_error_status: status,
            terminal_reason: reason.map(str::to_owned),
            ..base.clone()
        };
        assert_eq!(
            failure_kind(&with(Some(401), None)),
            Some(ResultFailure::Auth)
        );
        assert_eq!(
            failure_kind(&with(Some(403), None)),
            Some(ResultFailure::Auth)
        );
        assert_eq!(
            failure_kind(&with(Some(429), None)),
            Some(ResultFailure::RateLimit)
        );
        assert_eq!(
            failure_kind(&with(Some(529), None)),
            Some(ResultFailure::ApiError)
        );
        assert_eq!(
            failure_kind(&with(None, Some("api_error"))),
            Some(ResultFailure::ApiError)
        );
        assert_eq!(failure_kind(&with(None, None)), Some(ResultFailure::Other));
        let other_subtype = StreamFacts {
            is_error: None,
            result_subtype: Some("error_during_execution".into()),
            ..base.clone()
        };
        assert_eq!(failure_kind(&other_subtype), Some(ResultFailure::Other));
        assert_eq!(failure_kind(&StreamFacts::default()), None);
        assert_eq!(ResultFailure::RateLimit.as_str(), "rate_limit");
    }

    #[test]
    fn observe_reports_changes() {
        let mut f = StreamFacts::default();
        let init = br#"{"type":"system","subtype":"init","session_id":"s","model":"m"}"#;
        assert!(f.observe(init));
        assert!(!f.observe(init));
        assert!(!f.observe(br#"{"type":"stream_event","event":{}}"#));
        assert!(!f.observe(br#"{"type":"system","subtype":"status"}"#));
    }

    #[test]
    fn observe_garbage_and_odd_types() {
        let mut f = StreamFacts::default();
        for line in [
            &b""[..],
            b"not json",
            b"\xff\xfe\x00",
            b"{",
            b"[1,2",
            b"42",
            b"null",
            br#"{"type":"result","result":"#,
            br#"{"type":7}"#,
            br#"{"type":"system","subtype":"api_retry","attempt":"x","error":{"a":1}}"#,
        ] {
            f.observe(line);
        }
        // The retry with odd field types is still a retry, with defaults.
        assert_eq!(
            f.retry,
            Some(RetryInfo {
                attempt: 0,
                max_retries: 0,
                error: String::new(),
                status: None
            })
        );
        assert!(!f.saw_result);
        // A result whose fields have the wrong types still counts as a result.
        let odd = br#"{"type":"result","subtype":1,"is_error":"yes","num_turns":-1,"total_cost_usd":"1","api_error_status":70000,"errors":[1,"e",{"x":[]}],"result":["x"]}"#;
        assert!(f.observe(odd));
        assert!(f.saw_result);
        assert_eq!(f.num_turns, None);
        assert_eq!(f.api_error_status, None);
        assert_eq!(f.errors, vec!["e".to_owned()]);
        assert_eq!(failure_kind(&f), None);
    }

    #[test]
    fn result_text_is_bounded_on_a_char_boundary() {
        let text = "é".repeat(MAX_RESULT_BYTES); // two bytes each
        let line = serde_json::json!({"type": "result", "subtype": "success", "result": text});
        let mut f = StreamFacts::default();
        f.observe(line.to_string().as_bytes());
        let kept = f.result.unwrap_or_default();
        assert_eq!(kept.len(), MAX_RESULT_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn big_assistant_line_is_counted() {
        let text = "x".repeat(3 << 20);
        let line = serde_json::json!({
            "type": "assistant",
            "message": {"content": [{"type": "text", "text": text}]},
            "session_id": "abc",
        });
        let mut f = StreamFacts::default();
        assert!(f.observe(line.to_string().as_bytes()));
        assert_eq!(f.assistant_messages, 1);
        assert_eq!(f.claude_session_id.as_deref(), Some("abc"));
    }

    #[test]
    fn render_sample() {
        let text = render_text(SAMPLE);
        assert_eq!(
            lines(&text),
            vec![
                "● conversation 31111111-2222-4333-8444-555555555555 · model claude-opus-5-5 · /workspace",
                "Step 1: writing a file.",
                "→ Write(/workspace/hello.txt, 22 bytes)",
                "  ← File created successfully at: /workspace/hello.txt (file state is current in your context — no need to Read it back)",
                "→ Bash(cat /workspace/hello.txt && id -un)",
                "  ← hello from fake model (+1 more line)",
                "All done: wrote and read /workspace/hello.txt.",
                "✔ done · 3 turns · $0.0024 · Claude 0.4s",
            ]
        );
    }

    #[test]
    fn render_resumed() {
        let text = render_text(RESUMED);
        assert!(text.contains("● conversation 31111111-2222-4333-8444-555555555555 · "));
        assert!(text.contains("  ← The file /workspace/hello.txt has been updated successfully."));
        assert!(text.contains("✔ done · 3 turns · $0.0048 · Claude 0.3s\n"));
    }

    #[test]
    fn render_api_error() {
        let text = render_text(API_500);
        let l = lines(&text);
        assert!(l[0].starts_with("● conversation 98018c78-d1ae-4117-8423-747bc5ec6389 · "));
        assert_eq!(l[1], "⟳ API error 500, retry 1/2");
        assert_eq!(l[2], "⟳ API error 500, retry 2/2");
        assert!(l[3].starts_with("API Error: 500 fake 500."));
        assert!(l[4].starts_with("✖ API error 500 · API Error: 500 fake 500."));
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn render_max_turns() {
        let text = render_text(MAX_TURNS);
        assert!(text.contains("\n→ Bash(echo x)\n  ← x\n"));
        assert!(text.ends_with("✖ error_max_turns · Reached maximum number of turns (1)\n"));
    }

    #[test]
    fn render_partial_messages() {
        let text = render_text(PARTIAL);
        let l = lines(&text);
        assert_eq!(l.len(), 3, "{text}");
        assert!(l[1].starts_with("FAKE-REPLY to: th [Claude Code]"));
        assert!(l[2].starts_with("✔ done · 1 turn · $0.0008 · Claude 0.3s"));
    }

    #[test]
    fn render_result_text_when_different() {
        let mut r = Renderer::new();
        let mut out = String::new();
        r.line(
            br#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"total_cost_usd":0.5,"duration_ms":1250,"result":"Final\nanswer"}"#,
            &mut out,
        );
        assert_eq!(
            out,
            "✔ done · 2 turns · $0.5000 · Claude 1.2s\nFinal\nanswer\n"
        );
    }

    #[test]
    fn render_tools_and_results() {
        let mut r = Renderer::new();
        let mut out = String::new();
        let long = "y".repeat(300);
        let lines = [
            serde_json::json!({"type":"assistant","message":{"content":[
                {"type":"tool_use","name":"Read","input":{"file_path":"/a/b.rs"}},
                {"type":"tool_use","name":"Grep","input":{"pattern":"fn main","path":"/src"}},
                {"type":"tool_use","name":"Bash","input":{"command":"set -e\nmake"}},
                {"type":"tool_use","name":"Task","input":{"prompt": long}},
                {"type":"thinking","thinking":"hmm"},
            ]}}),
            serde_json::json!({"type":"user","message":{"content":[
                {"type":"tool_result","content":"boom\nat line 2\nat line 3","is_error":true},
                {"type":"tool_result","content":[{"type":"text","text":"from blocks"},{"type":"image"}]},
                {"type":"tool_result","content":""},
                {"type":"tool_result","content": long},
            ]}}),
            serde_json::json!({"type":"user","message":{"content":"a plain prompt"}}),
            serde_json::json!({"type":"mystery","x":1}),
        ];
        for line in &lines {
            r.line(line.to_string().as_bytes(), &mut out);
        }
        let l: Vec<&str> = out.lines().collect();
        assert_eq!(l[0], "→ Read(/a/b.rs)");
        assert_eq!(l[1], r#"→ Grep({"pattern":"fn main","path":"/src"})"#);
        assert_eq!(l[2], "→ Bash(set -e …)");
        assert!(l[3].starts_with(r#"→ Task({"prompt":"yyy"#));
        assert!(l[3].ends_with("y…)"));
        assert_eq!(l[3].chars().count(), "→ Task()".chars().count() + 121);
        assert_eq!(l[4], "  ← error: boom (+2 more lines)");
        assert_eq!(l[5], "  ← from blocks (+1 more line)");
        assert_eq!(l[6], "  ← (no output)");
        assert_eq!(l[7], format!("  ← {}…", "y".repeat(200)));
        assert_eq!(l.len(), 8);
    }

    #[test]
    fn render_garbage_and_control_characters() {
        let mut out = String::new();
        let mut r = Renderer::new();
        r.line(b"plain \x1b[31mred\x1b[0m text\r", &mut out);
        r.line(b"", &mut out);
        r.line(b"   ", &mut out);
        r.line(b"\xff\xfe broken utf8", &mut out);
        r.line(br#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi\u001b]0;x\u0007"}]}}"#, &mut out);
        r.line(br#"{"type":"assistant","message":"nope"}"#, &mut out);
        r.line(br#"{"type":"system","subtype":"init"}"#, &mut out);
        assert_eq!(
            out,
            "plain \u{FFFD}[31mred\u{FFFD}[0m text\n\u{FFFD}\u{FFFD} broken utf8\nhi\u{FFFD}]0;x\u{FFFD}\n● conversation ? · model ? · ?\n"
        );
        let long = "é".repeat(3000);
        let mut out = String::new();
        r.line(long.as_bytes(), &mut out);
        assert_eq!(out.chars().count(), RAW_LINE_CHARS + 1);
    }

    #[test]
    fn render_text_ignores_trailing_partial_line() {
        let mut buf = SAMPLE.to_vec();
        buf.extend_from_slice(
            br#"{"type":"assistant","message":{"content":[{"type":"text","text":"late"}]}}"#,
        );
        assert_eq!(render_text(&buf), render_text(SAMPLE));
        assert_eq!(render_text(b"no newline"), "");
        assert_eq!(render_text(b""), "");
    }

    #[test]
    fn cut_str_keeps_characters_whole() {
        assert_eq!(cut_str("héllo", 2), "h");
        assert_eq!(cut_str("héllo", 3), "hé");
        assert_eq!(cut_str("héllo", 100), "héllo");
        assert_eq!(cut_str("€", 2), "");
        assert_eq!(cut_str("", 0), "");
    }

    fn split_all(s: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, u64>> {
        let mut got = Vec::new();
        for chunk in chunks {
            s.push(chunk, |line| {
                got.push(match line {
                    Line::Complete(b) => Ok(b.to_vec()),
                    Line::TooLong { len } => Err(len),
                })
            });
        }
        got
    }

    #[test]
    fn splitter_across_chunk_boundaries() {
        let mut s = LineSplitter::new(100);
        let got = split_all(&mut s, &[b"ab", b"c\nde", b"f\n\ng", b"h", b"i\nj"]);
        assert_eq!(
            got,
            vec![
                Ok(b"abc".to_vec()),
                Ok(b"def".to_vec()),
                Ok(vec![]),
                Ok(b"ghi".to_vec())
            ]
        );
        assert_eq!(s.pending(), b"j");
        let mut rest = Vec::new();
        s.finish(|l| rest.push(format!("{l:?}")));
        assert_eq!(rest, vec![format!("{:?}", Line::Complete(b"j"))]);
        assert_eq!(s.pending(), b"");
    }

    #[test]
    fn splitter_every_byte_boundary() {
        let mut whole = Vec::new();
        LineSplitter::new(1 << 20).push(SAMPLE, |l| {
            if let Line::Complete(b) = l {
                whole.push(b.to_vec());
            }
        });
        assert_eq!(whole.len(), 8);
        for cut in 0..SAMPLE.len() {
            let mut s = LineSplitter::new(1 << 20);
            let got = split_all(&mut s, &[&SAMPLE[..cut], &SAMPLE[cut..]]);
            let got: Vec<Vec<u8>> = got.into_iter().flatten().collect();
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn splitter_over_long_lines() {
        let mut s = LineSplitter::new(4);
        let got = split_all(
            &mut s,
            &[b"1234\n12345\nab", b"cdefgh", b"ij\nok\n", b"toolong"],
        );
        assert_eq!(
            got,
            vec![Ok(b"1234".to_vec()), Err(5), Err(10), Ok(b"ok".to_vec())]
        );
        assert_eq!(s.pending(), b"");
        let mut rest = Vec::new();
        s.finish(|l| rest.push(l == Line::TooLong { len: 7 }));
        assert_eq!(rest, vec![true]);
        // Buffered part plus the rest of the line crossing the limit at the newline.
        let got = split_all(&mut s, &[b"abc", b"de\n", b"xy", b"z\n"]);
        assert_eq!(got, vec![Err(5), Ok(b"xyz".to_vec())]);
        assert!(s.buf.capacity() <= 64);
    }

    #[test]
    fn an_error_result_never_reads_success_and_a_cut_event_is_named_not_printed() {
        let failed = br#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: overloaded"}"#;
        let text = render_text(&[&failed[..], b"\n"].concat());
        assert_eq!(text, "\u{2716} error \u{b7} API Error: overloaded\n");
        let cut = br#"{"type":"assistant","mess"#;
        let text = render_text(&[&cut[..], b"\n"].concat());
        assert_eq!(
            text,
            format!("\u{2026} (an unfinished event of {} bytes)\n", cut.len())
        );
        // Text that is not JSON is still shown as it is.
        assert_eq!(render_text(b"plain words\n"), "plain words\n");
    }
}
