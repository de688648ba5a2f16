//! `creel ui` in a real browser: Debian's headless Chromium, driven over WebDriver
//! (`chromedriver`) by fantoccini, against real jobs in real containers; and its refusals,
//! spoken to over raw HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::util::TestEnv;

/// A running `creel ui`; killed on drop.
struct Ui {
    child: Child,
    /// The URL it printed (with the token).
    url: String,
    /// `http://127.0.0.1:PORT`.
    base: String,
    token: String,
}

impl Ui {
    fn start(env: &TestEnv) -> Ui {
        let mut child = env
            .cmd(&["ui"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start creel ui");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        let (base, token) = url
            .split_once("/?token=")
            .unwrap_or_else(|| panic!("creel ui printed {line:?}"));
        assert!(base.starts_with("http://127.0.0.1:"), "{url}");
        Ui {
            base: base.to_string(),
            token: token.to_string(),
            url,
            child,
        }
    }

    fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request to the server; returns (status, body).
fn raw(ui: &Ui, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(ui.host()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Option<Driver> {
        let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let Some(bin) = bin else {
            crate::util::skip_unless_ci(
                "the dashboard's browser test needs chromium and chromium-driver (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        crate::util::eventually(Duration::from_secs(20), "chromedriver to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(Driver { child, url })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go (kept as test artifacts).
fn screenshot_dir() -> PathBuf {
    let d = crate::util::repo_root().join("target/ui-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Without the token nothing is served; a page on another host name, a change from another
/// origin or not as JSON are refused; with the cookie the API answers.
#[test]
fn the_dashboard_refuses_requests_without_its_token_or_from_elsewhere() {
    let env = TestEnv::without_image("");
    let ui = Ui::start(&env);
    let host = ui.host().to_string();
    let get = |path: &str, extra: &str| {
        raw(
            &ui,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}{extra}"),
            "",
        )
    };
    assert_eq!(get("/", "").0, 401);
    assert_eq!(get("/api/overview", "").0, 401);
    assert_eq!(get("/?token=wrong", "").0, 401);
    let port = ui.host().rsplit(':').next().unwrap().to_string();
    let cookie = format!("\r\nCookie: creel_ui_{port}={}", ui.token);
    assert_eq!(get("/api/overview", &cookie).0, 200);
    // The token in the URL becomes the cookie, and the URL loses it.
    let (status, _) = get(&format!("/?token={}", ui.token), "");
    assert_eq!(status, 303);
    // ... and never sends the browser elsewhere.
    let mut s = TcpStream::connect(ui.host()).unwrap();
    write!(
        s,
        "GET //evil.example/x?token={} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        ui.token
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.to_ascii_lowercase().contains("\r\nlocation: /\r\n"),
        "{answer}"
    );
    // DNS rebinding: the right cookie under another name is still refused.
    let (status, _) = raw(
        &ui,
        &format!("GET /api/overview HTTP/1.1\r\nHost: evil.example:80{cookie}"),
        "",
    );
    assert_eq!(status, 421);
    // Changes: only from this origin, only JSON.
    let post = |extra: &str| {
        raw(
            &ui,
            &format!("POST /api/jobs/000000000001/cancel HTTP/1.1\r\nHost: {host}{cookie}{extra}"),
            "{}",
        )
        .0
    };
    assert_eq!(post("\r\nContent-Type: application/json"), 403, "no Origin");
    assert_eq!(
        post("\r\nOrigin: http://evil.example\r\nContent-Type: application/json"),
        403
    );
    assert_eq!(
        post(&format!(
            "\r\nOrigin: http://{host}\r\nContent-Type: text/plain"
        )),
        403,
        "a form post is not JSON"
    );
    assert_eq!(
        post(&format!(
            "\r\nOrigin: http://{host}\r\nContent-Type: application/json"
        )),
        404,
        "from the page itself it reaches the engine (which knows no such job)"
    );
    // Every answer forbids framing and inline scripts.
    let mut s = TcpStream::connect(ui.host()).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}{cookie}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
}

/// The whole loop in Chromium: the overview lists a job; its page streams the transcript live
/// (a line printed after the page opened appears without a reload), shows the hostile text a
/// job printed as text (its `<script>` and `onerror` never run), and cancels the job.
#[test]
fn the_dashboard_streams_a_job_live_in_chromium_cancels_it_and_never_runs_what_it_prints() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let env = TestEnv::new();
    let hostile = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;
    let (job, _) = env.start(
        &format!("bash echo FOLDED-RESULT\nsay {hostile}\nsleep 4\nsay SECOND-LINE\nsleep 120"),
        &[],
    );
    let ui = Ui::start(&env);
    let shots = screenshot_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let latency = runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let c = ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session in headless Chromium");
        let wait_for = |what: &'static str, script: String| {
            let c = c.clone();
            async move {
                let until = Instant::now() + Duration::from_secs(30);
                loop {
                    let v = c.execute(&script, vec![]).await.unwrap();
                    if v == serde_json::Value::Bool(true) {
                        return;
                    }
                    assert!(Instant::now() < until, "timed out waiting for {what}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };

        // The overview (the token's URL sets the cookie and lands on /).
        c.goto(&ui.url).await.unwrap();
        wait_for(
            "the job in the overview",
            format!("return !!document.querySelector(\"a[href='/job/{job}']\")"),
        )
        .await;
        std::fs::write(shots.join("overview.png"), c.screenshot().await.unwrap()).unwrap();

        // The job's page, opened before its second line is printed.
        c.goto(&format!("{}/job/{job}", ui.base)).await.unwrap();
        let marker = serde_json::to_string(hostile).unwrap();
        wait_for(
            "the hostile line as text",
            format!(
                "const t = document.getElementById('transcript'); return !!t && t.textContent.includes({marker})"
            ),
        )
        .await;
        let seen = Instant::now();
        wait_for(
            "the line printed after the page opened",
            "const t = document.getElementById('transcript'); return !!t && t.textContent.includes('SECOND-LINE')".into(),
        )
        .await;
        let shown_at = Instant::now();
        let shown_wall = std::time::SystemTime::now();
        assert!(shown_at.duration_since(seen) > Duration::from_secs(1), "the line came later, live");
        // When the monitor captured the line: its store record says so once checkpointed
        // (within a quarter second); nothing is printed after it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ago = env.json(&["status", &job, "--json"])["lastOutputSecondsAgo"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let captured = std::time::SystemTime::now() - Duration::from_secs_f64(ago.max(0.0));
        let latency = match shown_wall.duration_since(captured) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        // Nothing the job printed ran or became an element: the transcript holds only the
        // page's own pieces (runs of text, folded tool calls).
        let safe = c
            .execute(
                "return window.pwned === undefined && [...document.querySelectorAll('#transcript *')].every((e) => ['SPAN', 'DETAILS', 'SUMMARY', 'DIV'].includes(e.tagName) && e.attributes.length <= 1)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(safe, serde_json::Value::Bool(true), "the job's HTML ran or was parsed");
        // The tool call is folded with its result: one line, the result a click away.
        let folded = c
            .execute(
                "const d = document.querySelector('#transcript details.tool'); if (!d) return 'no fold'; \
                 const r = d.querySelector('.tool-result'); \
                 return [d.open, d.querySelector('summary').textContent, r.textContent.includes('FOLDED-RESULT'), r.checkVisibility()]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            folded,
            serde_json::json!([false, "→ Bash(echo FOLDED-RESULT)", true, false]),
            "the tool call folded, its result hidden"
        );
        c.find(Locator::Css("#transcript details.tool summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let opened = c
            .execute(
                "return document.querySelector('#transcript details.tool .tool-result').offsetHeight > 0",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(opened, serde_json::Value::Bool(true), "a click shows the result");
        let facts = c
            .execute("return document.getElementById('facts').textContent", vec![])
            .await
            .unwrap();
        let facts = facts.as_str().unwrap_or_default();
        assert!(facts.starts_with("running") && !facts.contains("null"), "{facts}");
        std::fs::write(shots.join("job.png"), c.screenshot().await.unwrap()).unwrap();

        // Cancel from the page.
        c.find(Locator::Id("cancel")).await.unwrap().click().await.unwrap();
        wait_for(
            "the page to show the job cancelled",
            "const s = document.getElementById('state'); return !!s && s.textContent === 'cancelled'".into(),
        )
        .await;
        // A new job in the session, from the page; it asks, and the page answers.
        c.find(Locator::Id("prompt"))
            .await
            .unwrap()
            .send_keys("ask Which colour?\nsay AFTER-THE-ANSWER")
            .await
            .unwrap();
        c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
        wait_for(
            "the question on the new job's page",
            "const a = document.getElementById('ask'); return !!a && a.textContent.includes('Which colour?')".into(),
        )
        .await;
        c.find(Locator::Id("answer"))
            .await
            .unwrap()
            .send_keys("blue")
            .await
            .unwrap();
        c.find(Locator::Id("reply")).await.unwrap().click().await.unwrap();
        wait_for(
            "the job to go on after the answer",
            "const t = document.getElementById('transcript'); return !!t && t.textContent.includes('AFTER-THE-ANSWER')".into(),
        )
        .await;
        let second = c.current_url().await.unwrap().path().trim_start_matches("/job/").to_string();

        // A 100 MB line and a 12 MB one: the page shows the transcript's tail and stays light.
        // (A line over 16 MiB shows as a note of its length; one of 12 MB is text.)
        let (big, _) = env.start(
            "say BEFORE-BIG\nbigline 100000000\nbigline 12000000\nsay AFTER-BIG",
            &[],
        );
        assert_eq!(env.wait(&big)["status"], "completed");
        let text = env.run(&["output", &big, "--format", "text", "--limit", "1048576"]);
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("too long to render here"),
            "the 100 MB line's note"
        );
        c.goto(&format!("{}/job/{big}", ui.base)).await.unwrap();
        wait_for(
            "the tail after a 100 MB line and a 12 MB one",
            "const t = document.getElementById('transcript'); return !!t && t.textContent.includes('AFTER-BIG')".into(),
        )
        .await;
        let held = c
            .execute(
                "return document.getElementById('transcript').textContent.length",
                vec![],
            )
            .await
            .unwrap();
        let held = held.as_u64().unwrap();
        assert!(held < 1 << 20, "the page holds {held} characters of a 12 MB transcript");
        let earlier = c
            .execute("return !document.getElementById('earlier').hidden", vec![])
            .await
            .unwrap();
        assert_eq!(earlier, serde_json::Value::Bool(true), "earlier output is a click away");
        let _ = c.close().await;
        (latency, second)
    });
    assert_eq!(env.wait(&job)["status"], "cancelled");
    let (latency, second) = latency;
    assert_ne!(second, job);
    let s = env.wait(&second);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["requests"][0]["answer"]["text"], "blue", "{s}");
    // How long after the monitor captured the line the page showed it (the monitor captures
    // it within milliseconds of the print, woken by inotify; the test's 50 ms polling of the
    // page adds up to 50 ms). The dashboard's promise is "within a second"; it is about 0.1 s.
    eprintln!("the page showed the line about {latency:.2} s after it was captured");
    assert!(latency < 1.0, "the page showed the line {latency} s late");
}
