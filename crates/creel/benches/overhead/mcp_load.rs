//! `mcp-load`: `creel mcp --http` under thousands of MCP session initialisations (RELIABILITY.md).
//! Its resident memory idle, with the most sessions it keeps (512, never closed by their
//! clients), and after they are closed; then 4,000 more opened and closed one after another.
//!
//! Option: `--mcp-sessions N`, the open-and-close initialisations (default 4,000).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Env, rss_kib};
use crate::{Opts, Report, Verdict};

struct Server {
    child: Child,
    authority: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(env: &Env) -> Server {
    let mut child = env
        .cmd(&["mcp", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("creel mcp --http");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("first line");
    let authority = line
        .trim()
        .rsplit_once("http://")
        .map(|(_, u)| u.trim_end_matches("/mcp").to_string())
        .expect("address in the first line");
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    Server { child, authority }
}

fn request(authority: &str, head: &str, body: &str) -> (u16, Option<String>) {
    let mut s = std::net::TcpStream::connect(authority).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let req = format!(
        "{head}\r\nHost: {authority}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut r = BufReader::new(s);
    let mut status = String::new();
    let _ = r.read_line(&mut status);
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut session = None;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("mcp-session-id")
        {
            session = Some(v.trim().to_string());
        }
    }
    (code, session)
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"load","version":"1"}}}"#;

fn open(authority: &str) -> (u16, Option<String>) {
    request(authority, "POST /mcp HTTP/1.1", INIT)
}

fn close(authority: &str, id: &str) -> u16 {
    request(
        authority,
        &format!("DELETE /mcp HTTP/1.1\r\nMcp-Session-Id: {id}"),
        "",
    )
    .0
}

pub fn run(opts: &Opts, report: &mut Report) {
    let env = Env::new(&opts.base, "mcp-load", "", opts.keep);
    env.run_ok(&["sessions"]);
    let server = start(&env);
    let pid = server.child.id() as i32;
    let a = server.authority.clone();
    // Warm up: the first sessions allocate what every later one reuses.
    for _ in 0..20 {
        if let (200, Some(id)) = open(&a) {
            close(&a, &id);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid).unwrap_or(0);

    // Clients that never close: the server keeps at most 512.
    let t = Instant::now();
    let (mut kept, mut refused) = (Vec::new(), 0);
    for _ in 0..1000 {
        match open(&a) {
            (200, Some(id)) => kept.push(id),
            (503, _) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let full = rss_kib(pid).unwrap_or(0);
    let open_ms = t.elapsed().as_secs_f64() * 1000.0 / 1000.0;
    for id in &kept {
        close(&a, id);
    }
    std::thread::sleep(Duration::from_secs(1));
    let after_close = rss_kib(pid).unwrap_or(0);

    // Then many more, each opened and closed.
    let n = opts.mcp_sessions;
    let t = Instant::now();
    let mut failed = 0;
    for _ in 0..n {
        match open(&a) {
            (200, Some(id)) => {
                if close(&a, &id) != 202 {
                    failed += 1;
                }
            }
            _ => failed += 1,
        }
    }
    let cycle_ms = t.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64;
    std::thread::sleep(Duration::from_secs(1));
    let after_many = rss_kib(pid).unwrap_or(0);

    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    report.row(
        "RSS idle (after 20 warm-up sessions)",
        mib(idle),
        "",
        "",
        "",
        Verdict::Info,
    );
    report.row(
        "1,000 initialisations never closed: kept / refused (503)",
        format!("{} / {refused}", kept.len()),
        "",
        format!("{open_ms:.2} ms each"),
        "at most 512 kept",
        if kept.len() <= 512 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    report.row(
        "RSS with 512 open sessions",
        mib(full),
        "",
        format!("+{}", mib(full.saturating_sub(idle))),
        "bounded",
        Verdict::Info,
    );
    report.row(
        "RSS after closing them",
        mib(after_close),
        "",
        format!("+{}", mib(after_close.saturating_sub(idle))),
        "",
        Verdict::Info,
    );
    report.row(
        format!("RSS after {n} more opened and closed"),
        mib(after_many),
        "",
        format!("{cycle_ms:.2} ms per open+close, {failed} failed"),
        "back near idle (within 16 MiB of after-closing)",
        if after_many <= after_close + 16 * 1024 && failed == 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
}
