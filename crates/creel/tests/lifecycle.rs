//! Jobs through the CLI on real Podman containers: start, status, output, wait, run, cancel,
//! sessions and resume, limits and timeouts, crash recovery.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::lines_of;
use crate::util::{TestEnv, eventually, podman_containers};

#[test]
fn start_returns_pending_and_the_job_completes_with_facts() {
    let env = TestEnv::new();
    let begun = Instant::now();
    let v = env.json(&[
        "start",
        "--json",
        "say hello world\nwrite hello.txt hi there\nbash echo ran",
    ]);
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "start must return at once"
    );
    assert_eq!(v["status"], "pending");
    let job = v["jobId"].as_str().unwrap();
    let session = v["sessionId"].as_str().unwrap();
    let s = env.wait(job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["exitCode"], 0);
    assert_eq!(s["sessionId"], session);
    assert_eq!(s["numTurns"], 4);
    assert!(s["costUsd"].as_f64().unwrap() > 0.0);
    assert!(s["claudeSessionId"].as_str().unwrap().len() == 36);
    assert_eq!(s["result"], "hello world");
    assert!(s["error"].is_null());
    assert!(s["tailOutput"].as_str().unwrap().contains("✔ done"), "{s}");
    assert!(s["outputSize"].as_u64().unwrap() > 0);
    // The file the agent wrote is on the host, owned by the uid the agent ran as (never root).
    let ws = env.home.join("workspaces").join(session);
    let f = ws.join("hello.txt");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hi there\n");
    assert_ne!(std::fs::metadata(&f).unwrap().uid(), 0);
    // Raw output is Claude's stream-json, byte for byte.
    let raw = env.raw_output(job);
    let events = lines_of(&raw);
    assert_eq!(events[0]["type"], "system");
    assert_eq!(events.last().unwrap()["type"], "result");
    assert_eq!(env.paged_output(job, 1000, "raw").as_bytes(), &raw[..]);
    // The monitor rendered the transcript before it went, so that no reader has to render
    // the whole output: its state covers all of it before anything has read a text page.
    crate::util::wait_monitor_exit(&env, job);
    let dir = env.home.join("jobs").join(job);
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("transcript.state.json")).unwrap()).unwrap();
    assert_eq!(
        state["raw_done"].as_u64(),
        Some(raw.len() as u64),
        "{state}"
    );
    let rendered = std::fs::read_to_string(dir.join("transcript.txt")).unwrap();
    let text = env.paged_output(job, 64 * 1024, "text");
    assert_eq!(rendered, text, "the page is the monitor's rendering");
    assert!(text.contains("→ Write(/workspace/hello.txt"), "{text}");
    assert!(text.contains("→ Bash(echo ran)"), "{text}");
    // The container is removed once the job is final.
    assert!(podman_containers(&format!("io.creel.job={job}")).is_empty());
}

#[test]
fn nonzero_exit_is_a_failure_and_wait_says_so() {
    let env = TestEnv::new();
    let (job, _) = env.start("say partial\nstderr something broke\nexit 3", &[]);
    let out = env.run(&["wait", &job, "--json"]);
    env.expect_code(&out, 1, &["wait"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["status"], "failed");
    assert_eq!(s["exitCode"], 3);
    assert_eq!(s["error"]["kind"], "exit_nonzero");
    assert!(
        s["error"]["message"]
            .as_str()
            .unwrap()
            .contains("something broke"),
        "{s}"
    );
}

#[test]
fn result_events_with_is_error_fail_with_the_right_kind() {
    let env = TestEnv::new();
    let cases = [
        ("api500", "api_error"),
        ("max_turns", "max_turns"),
        ("auth", "auth"),
        ("rate_limit", "rate_limit"),
    ];
    let jobs: Vec<(String, &str)> = cases
        .iter()
        .map(|(d, k)| (env.start(&format!("say trying\nfail {d}"), &[]).0, *k))
        .collect();
    for (job, kind) in jobs {
        let s = env.wait(&job);
        assert_eq!(s["status"], "failed", "{s}");
        assert_eq!(s["error"]["kind"], kind, "{s}");
    }
}

#[test]
fn a_burst_of_100000_lines_is_captured_byte_exact_in_order_once() {
    let env = TestEnv::new();
    let (job, _) = env.start("lines 100000\nnoeol last words without newline", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let raw = env.raw_output(&job);
    assert!(raw.ends_with(b"last words without newline"), "tail lost");
    let body = &raw[..raw.len() - b"last words without newline".len()];
    let events = lines_of(body);
    assert_eq!(events.len(), 100_001, "init + 100000 lines");
    for (i, e) in events[1..].iter().enumerate() {
        assert_eq!(
            e["message"]["content"][0]["text"],
            format!("line {}", i + 1)
        );
    }
    assert_eq!(s["outputSize"].as_u64().unwrap(), raw.len() as u64);
    // Pages reassemble to the same bytes.
    assert_eq!(env.paged_output(&job, 1 << 20, "raw").as_bytes(), &raw[..]);
}

#[test]
fn output_pages_never_split_a_utf8_character() {
    let env = TestEnv::new();
    let (job, _) = env.start("say héllo wörld — 😀 ✓ 日本語", &[]);
    env.wait(&job);
    let raw = String::from_utf8(env.raw_output(&job)).unwrap();
    for limit in [1u64, 2, 3, 5, 7] {
        assert_eq!(env.paged_output(&job, limit, "raw"), raw, "limit {limit}");
    }
    let text = env.paged_output(&job, 3, "text");
    assert!(text.contains("héllo wörld — 😀 ✓ 日本語"), "{text}");
}

#[test]
fn cancel_stops_the_job_and_is_idempotent() {
    let env = TestEnv::new();
    let (job, _) = env.start("say working\nsleep 60", &[]);
    eventually(Duration::from_secs(30), "job running", || {
        let s = env.json(&["status", &job, "--json"]);
        (s["status"] == "running" && s["outputSize"].as_u64() > Some(0)).then_some(())
    });
    let c = env.json(&["cancel", &job, "--json"]);
    assert_eq!(c["status"], "cancelled");
    let again = env.json(&["cancel", &job, "--json"]);
    assert_eq!(again["status"], "cancelled");
    let out = env.run(&["wait", &job, "--timeout", "30"]);
    env.expect_code(&out, 1, &["wait"]);
    eventually(Duration::from_secs(30), "container removed", || {
        podman_containers(&format!("io.creel.job={job}"))
            .is_empty()
            .then_some(())
    });
    let s = env.json(&["status", &job, "--json"]);
    assert_eq!(
        s["status"], "cancelled",
        "a cancelled job stays cancelled: {s}"
    );
    assert!(env.paged_output(&job, 65536, "text").contains("working"));
}

#[test]
fn run_renders_for_people_and_passes_json_through() {
    let env = TestEnv::new();
    let out = env.run(&["run", "say hi from run\nbash echo tool-output"]);
    env.expect_code(&out, 0, &["run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hi from run"), "{stdout}");
    assert!(stdout.contains("→ Bash(echo tool-output)"), "{stdout}");
    assert!(stdout.contains("✔ done · 3 turns"), "{stdout}");
    let out = env.run(&["run", "--json", "say raw"]);
    env.expect_code(&out, 0, &["run", "--json"]);
    let events = lines_of(&out.stdout);
    assert_eq!(events[0]["subtype"], "init");
    assert_eq!(events.last().unwrap()["type"], "result");
    let out = env.run(&["run", "say bad\nexit 2"]);
    env.expect_code(&out, 1, &["run"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exit_nonzero"));
}

#[test]
fn a_large_prompt_from_stdin_arrives_intact_and_never_in_argv() {
    let env = TestEnv::new();
    let mut prompt = String::from("say got it\nsleep 2\n");
    let marker = "PROMPT-MARKER-7f3a";
    while prompt.len() < 1_000_000 {
        prompt.push_str(marker);
        prompt.push_str(" filler text for a large prompt\n");
    }
    let out = env.run_stdin(&["start", "--json", "-"], prompt.as_bytes());
    env.expect_code(&out, 0, &["start", "-"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = v["jobId"].as_str().unwrap();
    let session = v["sessionId"].as_str().unwrap();
    let cid = eventually(Duration::from_secs(30), "container", || {
        podman_containers(&format!("io.creel.job={job}"))
            .into_iter()
            .next()
    });
    let inspect = std::process::Command::new("podman")
        .args(["inspect", &cid])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        !inspect.contains(marker),
        "prompt visible in podman inspect"
    );
    assert!(
        !inspect.contains("sk-test-key-0123456789"),
        "API key visible in podman inspect"
    );
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.contains(marker) && !ps.contains("sk-test-key"),
        "prompt or key in ps"
    );
    let s = env.wait(job);
    assert_eq!(s["status"], "completed", "{s}");
    // The stand-in recorded the prompt it read on stdin in its transcript.
    let dir = env
        .home
        .join("sessions")
        .join(session)
        .join("claude/projects/-workspace");
    let transcript = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let t = std::fs::read_to_string(transcript).unwrap();
    assert_eq!(t.matches(marker).count(), prompt.matches(marker).count());
}

#[test]
fn a_second_job_resumes_the_sessions_conversation() {
    let env = TestEnv::new();
    let (j1, session) = env.start("say first task", &["--session", "resume-me"]);
    assert_eq!(session, "resume-me");
    let s1 = env.wait(&j1);
    assert_eq!(s1["status"], "completed");
    let (j2, _) = env.start("say second task", &["--session", "resume-me"]);
    let s2 = env.wait(&j2);
    assert_eq!(s2["status"], "completed", "{s2}");
    assert_eq!(s1["claudeSessionId"], s2["claudeSessionId"]);
    let text = env.paged_output(&j2, 65536, "text");
    assert!(text.contains("resumed: say first task"), "{text}");
    let sessions = env.json(&["sessions", "--json"]);
    let s = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == "resume-me")
        .unwrap();
    assert_eq!(s["jobCount"], 2);
    assert!(s["activeJobId"].is_null());
    assert_eq!(s["claudeSessionId"], s1["claudeSessionId"]);
}

#[test]
fn a_session_whose_first_job_died_early_starts_fresh_and_says_so() {
    let env = TestEnv::new();
    // The stand-in writes no transcript when it exits before reading its prompt... so make the
    // first job fail at startup: a claude_path that does not exist.
    let mut broken = TestEnv::with_config("claude_path = \"/nonexistent/claude\"\n");
    broken.home = env.home.clone();
    let (j1, _) = broken.start("say lost", &["--session", "fresh"]);
    let s1 = broken.wait(&j1);
    assert_eq!(s1["status"], "failed", "{s1}");
    let (j2, _) = env.start("say again", &["--session", "fresh"]);
    let s2 = env.wait(&j2);
    assert_eq!(s2["status"], "completed", "{s2}");
    assert!(
        s2["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("not resuming")),
        "{s2}"
    );
    assert!(!env.paged_output(&j2, 65536, "text").contains("resumed:"));
}

#[test]
fn a_busy_session_refuses_a_second_job_naming_the_active_one() {
    let env = TestEnv::new();
    let (j1, _) = env.start("say busy\nsleep 30", &["--session", "busy"]);
    let out = env.run(&["start", "say no", "--session", "busy"]);
    env.expect_code(&out, 2, &["start"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&j1) && err.starts_with("error: "), "{err}");
    let sessions = env.json(&["sessions", "--json"]);
    assert_eq!(
        sessions[0]["jobCount"], 1,
        "nothing stored for the refused start"
    );
    env.json(&["cancel", &j1, "--json"]);
}

#[test]
fn the_agent_writes_files_as_the_workspace_owner() {
    let env = TestEnv::new();
    let ws = env.dir.path().join("my-ws");
    std::fs::create_dir(&ws).unwrap();
    std::os::unix::fs::chown(&ws, Some(4242), Some(4343)).unwrap();
    let (job, _) = env.start(
        "write made-by-agent.txt content",
        &["--workspace", ws.to_str().unwrap()],
    );
    assert_eq!(env.wait(&job)["status"], "completed");
    let m = std::fs::metadata(ws.join("made-by-agent.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (4242, 4343));
}

#[test]
fn startup_timeout_fails_a_silent_job() {
    let env = TestEnv::with_config("startup_timeout = 2\n");
    let (job, _) = env.start("quiet 30\nsay never", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "startup_timeout");
    assert!(s["elapsedSeconds"].as_f64().unwrap() < 20.0);
}

#[test]
fn idle_timeout_fails_a_job_that_goes_quiet() {
    let env = TestEnv::with_config("idle_timeout = 2\n");
    let (job, _) = env.start("say started\nsleep 60", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "idle_timeout");
    assert!(s["elapsedSeconds"].as_f64().unwrap() < 30.0);
    assert!(env.paged_output(&job, 65536, "text").contains("started"));
}

#[test]
fn output_limit_stops_the_job_and_keeps_output_up_to_the_limit() {
    let env = TestEnv::with_config("max_output_size = 100000\n");
    let (job, _) = env.start("lines 100000\nsleep 30", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "output_limit");
    assert_eq!(s["outputSize"], 100000);
    assert_eq!(env.raw_output(&job).len(), 100000);
}

#[test]
fn the_output_limit_covers_stderr_and_the_runtimes_log() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::with_config("max_output_size = 1048576\n");
    // 64 MiB of stderr (and a little stdout) against a 1 MiB limit.
    let (job, _) = env.start("say hi\nerrflood 67108864\nsleep 30\nsay bye", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "output_limit", "{s}");
    assert!(
        s["error"]["message"].as_str().unwrap().contains("stderr"),
        "{s}"
    );
    let dir = env.home.join("jobs").join(&job);
    let kept = std::fs::metadata(dir.join("stderr.log")).unwrap().len();
    assert!(kept <= 1 << 20, "stderr.log kept {kept} bytes");
    // The runtime's log may keep its length, but not its blocks: what creel consumed is
    // given back to the file system.
    let log = std::fs::metadata(dir.join("container.log")).unwrap();
    let on_disk = log.blocks() * 512;
    assert!(
        on_disk <= 8 << 20,
        "container.log holds {on_disk} bytes on disk (length {})",
        log.len()
    );
}

#[test]
fn memory_exhaustion_ends_as_oom() {
    let env = TestEnv::with_config("memory = \"64m\"\n");
    let (job, _) = env.start("say eating memory\noom", &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "oom", "{s}");
}

#[test]
fn killing_the_monitor_mid_burst_loses_nothing() {
    let env = TestEnv::new();
    // Two bursts of 30,000 lines, each spread over about two seconds (ten chunks), so that a
    // kill aimed at a burst lands inside it.
    let burst = "lines 3000\nsleep 0.2\n".repeat(10);
    let (job, _) = env.start(&format!("{burst}sleep 2\n{burst}say end"), &[]);
    // Kill the monitor (SIGKILL) once the first burst is flowing, and the next one once the
    // second burst is: each time on the condition itself, not after a fixed delay.
    let lines_out = |env: &TestEnv| {
        let raw = env.raw_output(&job);
        String::from_utf8_lossy(&raw).matches("\"line ").count()
    };
    let mut kills = 0;
    for (from, to) in [(1, 30_000), (30_001, 60_000)] {
        let seen = eventually(Duration::from_secs(60), "the burst flowing", || {
            let s = env.json(&["status", &job, "--json"]);
            let n = lines_out(&env);
            (s["status"] == "running" && n >= from).then_some(n)
        });
        assert!(
            seen < to,
            "the burst was over ({seen} lines) before the kill could land in it"
        );
        // Kill whichever monitor runs now (looked up again right before the kill, so a pid
        // seen earlier that has since been replaced is not what we aim at).
        eventually(Duration::from_secs(10), "a monitor to kill", || {
            let pid = crate::util::monitor_pid(&job)?;
            std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap()
                .success()
                .then_some(())
        });
        kills += 1;
        // `kill` returns before the process is gone, and the job's lock outlives even the
        // main thread's exit until the last thread has torn down (an inotify instance takes
        // the kernel a while): until then a monitor counts as alive and none is started.
        let lock = env.home.join("jobs").join(&job).join("monitor.lock");
        eventually(Duration::from_secs(10), "the killed monitor's lock", || {
            let f = std::fs::OpenOptions::new().write(true).open(&lock).unwrap();
            f.try_lock().ok()
        });
        // Any creel command notices the dead monitor and starts a new one.
        let s = env.json(&["status", &job, "--json"]);
        assert_eq!(
            s["status"], "running",
            "the job should outlive the monitor: {s}"
        );
    }
    assert_eq!(kills, 2);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let events = lines_of(&env.raw_output(&job));
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"]["content"][0]["text"].as_str())
        .collect();
    let expected: Vec<String> = (0..20)
        .flat_map(|_| 1..=3000)
        .map(|i| format!("line {i}"))
        .chain(["end".to_string()])
        .collect();
    assert_eq!(texts.len(), expected.len(), "lost or duplicated lines");
    assert!(
        texts.iter().zip(expected.iter()).all(|(a, b)| a == b),
        "out of order"
    );
    assert_eq!(events.last().unwrap()["type"], "result");
}

#[test]
fn activity_shows_processing_while_busy_and_busy_jobs_are_not_idle_killed() {
    let env = TestEnv::with_config("idle_timeout = 3\n");
    let (job, _) = env.start(
        "say start\nbash timeout 16 sh -c 'while :; do :; done'\nsay finished",
        &[],
    );
    let s = eventually(Duration::from_secs(40), "processing", || {
        let s = env.json(&["status", &job, "--json"]);
        assert_ne!(
            s["status"], "failed",
            "a busy job must not hit the idle timeout: {s}"
        );
        (s["activityState"] == "processing").then_some(s)
    });
    assert!(s["metrics"]["cpuPercent"].as_f64().unwrap() > 5.0, "{s}");
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
}

#[test]
fn an_api_retry_shows_in_status_while_it_waits() {
    let env = TestEnv::new();
    let (job, _) = env.start("retry\nsleep 5\nsay recovered", &[]);
    let s = eventually(Duration::from_secs(20), "retry", || {
        let s = env.json(&["status", &job, "--json"]);
        (!s["retry"].is_null()).then_some(s)
    });
    assert_eq!(s["retry"]["attempt"], 1);
    assert_eq!(s["activityState"], "active");
    let s = env.wait(&job);
    assert!(
        s["retry"].is_null(),
        "retry cleared once the API answered: {s}"
    );
}

#[test]
fn killing_the_front_end_leaves_the_job_running() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new();
    // Ctrl-C in a terminal: SIGINT to the whole foreground process group of `creel run`.
    let mut child = env
        .cmd(&["run", "say from run\nsleep 3\nsay after"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let job = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "run ended early: {seen}"
        );
        seen.push_str(&line);
        if let Some(id) = line.split_whitespace().skip_while(|w| *w != "job").nth(1) {
            break id
                .trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string();
        }
    };
    eventually(Duration::from_secs(30), "the job running", || {
        (env.json(&["status", &job, "--json"])["status"] == "running").then_some(())
    });
    // SAFETY: kill(2) with the process group the child leads.
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert!(!status.success(), "run must stop following: {status:?}");
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert!(env.paged_output(&job, 65536, "text").contains("after"));
}

#[test]
fn a_running_job_costs_no_helper_processes_and_its_metrics_come_from_its_cgroup() {
    // The monitor waits on conmon's pidfd (not `podman wait`) and reads the container's cgroup
    // (not `podman stats`): while the job runs, the monitor has no child process at all.
    let env = TestEnv::new();
    let (job, _) = env.start("say up\nsleep 8\nsay down", &[]);
    let s = eventually(Duration::from_secs(30), "output and metrics", || {
        let s = env.json(&["status", &job, "--json"]);
        (s["status"] == "running" && s["outputSize"].as_u64() > Some(0) && s["metrics"].is_object())
            .then_some(s)
    });
    let m = &s["metrics"];
    assert!(m["memoryBytes"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(m["memoryLimitBytes"].as_u64(), Some(512 << 20), "{s}");
    assert!(m["pids"].as_u64().unwrap() >= 1, "{s}");
    let pid: i32 = crate::util::monitor_pid(&job).unwrap().parse().unwrap();
    // Longer than one metrics interval (2 s), so a `podman stats` would be seen.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let kids = crate::util::children_of(pid);
        assert!(kids.is_empty(), "the monitor runs {kids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second sample has a CPU figure (an average since the first).
    let s = eventually(Duration::from_secs(10), "a CPU figure", || {
        let s = env.json(&["status", &job, "--json"]);
        s["metrics"]["cpuPercent"].as_f64().map(|_| s)
    });
    assert!(
        s["metrics"]["cpuPercent"].as_f64().unwrap() < 50.0,
        "sleeping: {s}"
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["exitCode"], 0);
    assert!(s["tailOutput"].as_str().unwrap().contains("down"), "{s}");
}

#[test]
fn a_container_removed_behind_creels_back_ends_the_job_as_failed() {
    let env = TestEnv::new();
    let (job, _) = env.start("say before\nsleep 60\nsay after", &[]);
    let cid = eventually(Duration::from_secs(30), "the job's container", || {
        let s = env.json(&["status", &job, "--json"]);
        (s["status"] == "running" && s["outputSize"].as_u64() > Some(0)).then_some(())?;
        crate::util::podman_containers(&format!("io.creel.job={job}"))
            .into_iter()
            .next()
    });
    let rm = std::process::Command::new("podman")
        .args(["rm", "-f", "-t", "0", &cid])
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        !env.paged_output(&job, 65536, "text").contains("after"),
        "the job cannot have gone on"
    );
    // What it printed before stays.
    assert!(env.paged_output(&job, 65536, "text").contains("before"));
}

#[test]
fn output_follow_prints_everything_once_and_ends_with_the_job() {
    let env = TestEnv::new();
    let (job, _) = env.start("lines 500\nsleep 1\nlines 500\nsleep 1\nsay end", &[]);
    // Started while the job runs: it must print what came before and what comes after.
    let out = env.run(&["output", &job, "--follow"]);
    env.expect_code(&out, 0, &["output", &job, "--follow"]);
    let s = env.json(&["status", &job, "--json"]);
    assert_eq!(
        s["status"], "completed",
        "--follow ended before the job: {s}"
    );
    assert_eq!(out.stdout, env.raw_output(&job), "followed output differs");
}

#[test]
fn network_host_reaches_the_hosts_loopback_and_none_does_not() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            use std::io::Write;
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 14\r\n\r\nfrom the host\n");
        }
    });
    let probe = format!(
        "bash timeout 5 wget -q -O- http://127.0.0.1:{port}/ 2>&1 | sed 's/^/[reach] /' || true"
    );
    for (network, reaches) in [("host", true), ("none", false)] {
        let env = TestEnv::with_config(&format!("network = \"{network}\"\n"));
        let (job, _) = env.start(&probe, &[]);
        let s = env.wait(&job);
        assert_eq!(s["status"], "completed", "{network}: {s}");
        let text = env.paged_output(&job, 65536, "text");
        assert_eq!(
            text.contains("[reach] from the host"),
            reaches,
            "network = {network}: {text}"
        );
    }
}

#[test]
fn output_prints_all_of_it_and_a_limit_says_where_it_cut() {
    let env = TestEnv::new();
    // Far more than one 64 KiB page.
    let (job, _) = env.start("lines 5000", &[]);
    env.wait(&job);
    let raw = env.raw_output(&job);
    assert!(raw.len() > 256 * 1024);
    let out = env.run(&["output", &job]);
    env.expect_code(&out, 0, &["output", &job]);
    assert_eq!(out.stdout, raw, "`creel output JOB` prints all of it");
    assert!(out.stderr.is_empty());
    // A limit cuts, and says where and how to get the rest.
    let args = ["output", &job, "--limit", "1000"];
    let out = env.run(&args);
    env.expect_code(&out, 0, &args);
    assert_eq!(out.stdout, raw[..1000]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut at byte 1000")
            && err.contains(&format!("creel output {job} --offset 1000")),
        "{err}"
    );
    let rest = env.run(&["output", &job, "--offset", "1000"]);
    assert_eq!(rest.stdout, raw[1000..]);
}

#[test]
fn an_image_that_vanishes_before_the_container_starts_fails_the_job_as_image_missing() {
    // A tag of the test image that goes away between `start` (which checked it) and the
    // monitor's `podman run`: creel's runtime is podman behind a wrapper that removes the tag
    // just before it passes a `run` on.
    let tag = format!("localhost/creel-vanishing:{}", std::process::id());
    let tagged = std::process::Command::new("podman")
        .args(["tag", crate::util::TEST_IMAGE, &tag])
        .status()
        .unwrap();
    assert!(tagged.success());
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("podman");
    // (`rmi` of one of an image's names removes only that name.)
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = run ]; then podman rmi {tag} >/dev/null || exit 99; fi\nexec podman \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let env = TestEnv::with_config(&format!(
        "image = \"{tag}\"\nruntime_path = \"{}\"\n",
        wrapper.display()
    ));
    let (job, _) = env.start("say never", &[]);
    let s = env.wait(&job);
    let _ = std::process::Command::new("podman")
        .args(["rmi", &tag])
        .stderr(std::process::Stdio::null())
        .status();
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "image_missing", "{s}");
}

#[test]
fn jobs_lists_newest_first_with_filters_and_sessions_name_the_last_job() {
    let env = TestEnv::new();
    let (first, s1) = env.start(
        "say one\nmore lines of the prompt",
        &["--session", "list-a"],
    );
    env.wait(&first);
    let (second, _) = env.start("say two", &["--session", "list-b"]);
    env.wait(&second);
    let (live, _) = env.start("say live\nsleep 60", &["--session", "list-c"]);
    eventually(Duration::from_secs(20), "running", || {
        (env.json(&["status", &live, "--json"])["status"] == "running").then_some(())
    });

    let all = env.json(&["jobs", "--json"]);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [live.as_str(), second.as_str(), first.as_str()]);
    assert_eq!(all[2]["prompt"], "say one");
    assert_eq!(all[2]["sessionId"], s1.as_str());
    assert_eq!(all[2]["status"], "completed");
    assert!(all[2]["finishedAt"].is_string());
    let active = env.json(&["jobs", "--state", "active", "--json"]);
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");
    assert_eq!(active[0]["jobId"], live.as_str());
    let of_a = env.json(&["jobs", "--session", "list-a", "--json"]);
    assert_eq!(of_a.as_array().unwrap().len(), 1);
    let one = env.run(&["jobs", "--limit", "1"]);
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(text.starts_with("JOB ") && text.contains(&live), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        String::from_utf8_lossy(&one.stderr).contains("--limit 0 lists all"),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    // A finished job is found from its session.
    let sessions = env.json(&["sessions", "--json"]);
    let a = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == "list-a")
        .unwrap();
    assert_eq!(a["lastJobId"], first.as_str());
    assert_eq!(a["lastJobStatus"], "completed");
    assert!(a["activeJobId"].is_null());
    env.run(&["cancel", &live]);
}

/// A session's running-time budget: the job that spends it ends `budget` while it runs, the
/// session refuses the next job (exit 2, with the command that raises it), and once raised
/// the next job runs with what is left.
#[test]
fn a_wall_budget_ends_the_job_and_holds_the_session_until_raised() {
    let env = TestEnv::new();
    let (job, session) = env.start(
        "say working\nsleep 30\nsay never",
        &["--session", "walled", "--max-wall-seconds", "3"],
    );
    let s = env.wait(&job);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "budget", "{s}");
    assert!(
        s["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_wall_seconds"),
        "{s}"
    );
    assert!(s["elapsedSeconds"].as_f64().unwrap() < 20.0, "{s}");
    assert!(s["budget"]["exhausted"].is_string(), "{s}");
    let refused = env.run(&["start", "--session", &session, "say again"]);
    env.expect_code(&refused, 2, &["start", "--session", &session]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("has spent its budget") && err.contains("creel budget walled --max-cost-usd"),
        "{err}"
    );
    let b = env.json(&["budget", &session, "--max-wall-seconds", "60", "--json"]);
    assert_eq!(b["limits"]["wallSeconds"], 60.0, "{b}");
    assert!(
        b["remaining"]["wallSeconds"].as_f64().unwrap() > 50.0,
        "{b}"
    );
    assert!(b.get("exhausted").is_none(), "{b}");
    let (again, _) = env.start("say resumed", &["--session", &session]);
    assert_eq!(env.wait(&again)["status"], "completed");
    let listed = env.json(&["sessions", "--json"]);
    let spent = listed[0]["budget"]["spent"]["wallSeconds"]
        .as_f64()
        .unwrap();
    assert!(spent >= 3.0, "{listed}");
    // Bad budgets are refused before anything runs.
    for bad in [["--max-cost-usd", "-1"], ["--max-session-turns", "0"]] {
        let mut args = vec!["start", "say x"];
        args.extend(bad);
        env.expect_code(&env.run(&args), 2, &args);
    }
    env.expect_code(&env.run(&["budget", "nope"]), 2, &["budget", "nope"]);
}
