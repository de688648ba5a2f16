//! The whole monitor (start, follow, timeouts, cap, cancel, OOM, re-attach) against a fake
//! container runtime: a scripted "container" that writes Podman's k8s-file log into the job's
//! directory from a thread, exits with a chosen code (or hangs until stopped), and tells the
//! monitor of its end the way conmon does. No container engine is needed.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::drive_with;
use crate::job::{ErrorKind, JobRecord, JobSpec, JobState, Metrics};
use crate::logfile::LogFormat;
use crate::runtime::{ContainerInfo, ContainerRuntime, Exit, RuntimeError};
use crate::session::SessionRecord;
use crate::store::{Progress, Store};

const TS: &str = "2026-12-02T10:00:00.000000000+00:00";
const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"conv-1"}"#;
const DONE: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","num_turns":1,"session_id":"conv-1"}"#;

/// What the fake container does.
#[derive(Clone, Default)]
struct Script {
    /// Lines it prints on stdout.
    lines: Vec<String>,
    /// Its exit code.
    exit: i64,
    /// Never exits on its own (until stopped).
    hang: bool,
    /// Dies for memory, as conmon reports it (its `oom` file) with code 137.
    oom: bool,
}

#[derive(Default)]
struct State {
    created: Vec<String>,
    removed: Vec<String>,
    exited: Option<i64>,
    stops: u32,
}

struct Fake {
    dir: PathBuf,
    script: Script,
    state: Mutex<State>,
    ended: Condvar,
}

impl Fake {
    fn new(dir: &Path, script: Script) -> Arc<Fake> {
        Arc::new(Fake {
            dir: dir.to_path_buf(),
            script,
            state: Mutex::default(),
            ended: Condvar::new(),
        })
    }

    fn end(&self, code: i64) {
        let mut s = self.state.lock().unwrap();
        if s.exited.is_none() {
            s.exited = Some(code);
        }
        self.ended.notify_all();
    }

    fn stops(&self) -> u32 {
        self.state.lock().unwrap().stops
    }

    fn removed(&self) -> Vec<String> {
        self.state.lock().unwrap().removed.clone()
    }

    fn wait_end(&self) -> i64 {
        let mut s = self.state.lock().unwrap();
        loop {
            if let Some(code) = s.exited {
                return code;
            }
            s = self.ended.wait(s).unwrap();
        }
    }
}

/// Appends stdout lines to a k8s-file log, as conmon writes them.
fn log_lines(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{TS} stdout F {l}").unwrap();
    }
}

impl ContainerRuntime for Arc<Fake> {
    fn kind(&self) -> crate::config::RuntimeKind {
        crate::config::RuntimeKind::Podman
    }
    fn binary(&self) -> &Path {
        Path::new("fake")
    }
    fn version(&self) -> Result<String, RuntimeError> {
        Ok("fake".into())
    }
    fn image_exists(&self, _: &str) -> Result<bool, RuntimeError> {
        Ok(true)
    }
    fn run(&self, _args: &[OsString]) -> Result<(String, Vec<String>), RuntimeError> {
        let id = format!("fake-{}", self.state.lock().unwrap().created.len() + 1);
        self.state.lock().unwrap().created.push(id.clone());
        let me = self.clone();
        std::thread::spawn(move || {
            log_lines(&me.dir.join("container.log"), &me.script.lines);
            if me.script.oom {
                std::fs::write(me.dir.join("oom"), "").unwrap();
                me.end(137);
            } else if !me.script.hang {
                me.end(me.script.exit);
            }
        });
        Ok((id, Vec::new()))
    }
    fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        let s = self.state.lock().unwrap();
        if !s.created.iter().any(|c| c == id) || s.removed.iter().any(|c| c == id) {
            return Ok(None);
        }
        Ok(Some(ContainerInfo {
            id: id.into(),
            status: if s.exited.is_some() {
                "exited"
            } else {
                "running"
            }
            .into(),
            running: s.exited.is_none(),
            exit_code: s.exited.unwrap_or(0),
            oom_killed: false,
            pid: 0,
            log_path: None,
        }))
    }
    fn wait(&self, _: &str) -> Result<i64, RuntimeError> {
        Ok(self.wait_end())
    }
    fn wait_exit(&self, _: &Path, _: &str) -> Exit {
        // Like conmon's exit file: written once everything is in the log.
        Exit::Conmon(Some(self.wait_end()))
    }
    fn stop(&self, _: &str, _: u64) -> Result<(), RuntimeError> {
        self.state.lock().unwrap().stops += 1;
        self.end(143);
        Ok(())
    }
    fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.state.lock().unwrap().removed.push(id.into());
        Ok(())
    }
    fn stats(&self, _: &str) -> Result<Option<Metrics>, RuntimeError> {
        Ok(None)
    }
    fn containers_with_label(
        &self,
        _: &Path,
        _: &str,
        _: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        let s = self.state.lock().unwrap();
        Ok(s.created
            .iter()
            .filter(|c| !s.removed.contains(c))
            .cloned()
            .collect())
    }
    fn log_format(&self) -> LogFormat {
        LogFormat::K8sFile
    }
    fn log_path(&self, job_dir: &Path, _: &str) -> Result<PathBuf, RuntimeError> {
        Ok(job_dir.join("container.log"))
    }
}

/// A home with one pending job of `spec`.
struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    job: String,
}

impl Home {
    fn new(spec: JobSpec) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        let job = "job-1".to_string();
        std::fs::create_dir_all(home.join("jobs").join(&job)).unwrap();
        let mut store = Store::open(&home.join("creel.db")).unwrap();
        let session = SessionRecord {
            id: "s-1".into(),
            workspace: home.join("ws"),
            created_at_ms: 1,
            last_activity_ms: 1,
            claude_session_id: "conv-1".into(),
            workspace_created: true,
            git: None,
        };
        let record = JobRecord::pending(job.clone(), "s-1".into(), spec, 1, Vec::new());
        store.insert_job(&record, Some(&session)).unwrap().unwrap();
        Home {
            _dir: dir,
            home,
            job,
        }
    }

    fn dir(&self) -> PathBuf {
        self.home.join("jobs").join(&self.job)
    }

    fn store(&self) -> Store {
        Store::open(&self.home.join("creel.db")).unwrap()
    }

    fn record(&self) -> JobRecord {
        self.store().job(&self.job).unwrap().unwrap()
    }

    /// Runs a monitor to the end on `fake`.
    fn monitor(&self, fake: &Arc<Fake>) -> JobRecord {
        let job = self.record();
        drive_with(&self.home, self.store(), job, Arc::new(fake.clone())).unwrap();
        self.record()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir().join("output.jsonl")).unwrap()
    }
}

fn spec() -> JobSpec {
    let mut s = crate::runtime::argv::tests::spec();
    s.webhook = None;
    s.egress = None;
    s
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_job_runs_to_completion_with_its_output_byte_exact_and_its_container_removed() {
    let h = Home::new(spec());
    let fake = Fake::new(
        &h.dir(),
        Script {
            lines: lines(&[INIT, "plain text, not JSON", DONE]),
            ..Script::default()
        },
    );
    let r = h.monitor(&fake);
    assert_eq!(r.state, JobState::Completed, "{:?}", r.error);
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.result.as_deref(), Some("done"));
    assert_eq!(r.claude_session_id.as_deref(), Some("conv-1"));
    assert_eq!(
        h.output(),
        format!("{INIT}\nplain text, not JSON\n{DONE}\n")
    );
    assert_eq!(r.output_size, h.output().len() as u64);
    assert_eq!(fake.removed(), ["fake-1"]);
    assert_eq!(fake.stops(), 0);
}

#[test]
fn a_nonzero_exit_without_a_result_fails_the_job() {
    let h = Home::new(spec());
    let fake = Fake::new(
        &h.dir(),
        Script {
            lines: lines(&[INIT]),
            exit: 2,
            ..Script::default()
        },
    );
    let r = h.monitor(&fake);
    assert_eq!(r.state, JobState::Failed);
    assert_eq!(r.error.unwrap().kind, ErrorKind::ExitNonzero);
    assert_eq!(r.exit_code, Some(2));
}

#[test]
fn the_output_limit_keeps_exactly_the_limit_and_stops_the_container() {
    let mut s = spec();
    s.max_output_size = 100;
    let h = Home::new(s);
    let many: Vec<String> = (0..50).map(|i| format!("{{\"n\":{i}}}")).collect();
    let fake = Fake::new(
        &h.dir(),
        Script {
            lines: many.clone(),
            hang: true,
            ..Script::default()
        },
    );
    let r = h.monitor(&fake);
    assert_eq!(r.state, JobState::Failed);
    assert_eq!(r.error.unwrap().kind, ErrorKind::OutputLimit);
    assert_eq!(r.output_size, 100);
    let all: String = many.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(h.output(), all[..100]);
    assert!(fake.stops() >= 1);
}

#[test]
fn a_silent_container_hits_the_startup_timeout() {
    let mut s = spec();
    s.startup_timeout = 1;
    let h = Home::new(s);
    let fake = Fake::new(
        &h.dir(),
        Script {
            hang: true,
            ..Script::default()
        },
    );
    let r = h.monitor(&fake);
    assert_eq!(r.state, JobState::Failed);
    assert_eq!(r.error.unwrap().kind, ErrorKind::StartupTimeout);
    assert!(fake.stops() >= 1);
}

#[test]
fn a_container_that_goes_quiet_hits_the_idle_timeout() {
    let mut s = spec();
    s.idle_timeout = 1;
    let h = Home::new(s);
    let fake = Fake::new(
        &h.dir(),
        Script {
            lines: lines(&[INIT]),
            hang: true,
            ..Script::default()
        },
    );
    let r = h.monitor(&fake);
    assert_eq!(r.state, JobState::Failed);
    assert_eq!(r.error.unwrap().kind, ErrorKind::IdleTimeout);
    assert_eq!(h.output(), format!("{INIT}\n"));
}

#[test]
fn a_cancel_recorded_elsewhere_stops_the_container_and_stays_cancelled() {
    let h = Home::new(spec());
    let fake = Fake::new(
        &h.dir(),
        Script {
            lines: lines(&[INIT]),
            hang: true,
            ..Script::default()
        },
    );
    let home = h.home.clone();
    let job = h.job.clone();
    let canceller = std::thread::spawn(move || {
        // Once the job runs, cancel it as `creel cancel` records it.
        let store = || Store::open(&home.join("creel.db")).unwrap();
        while store().job(&job).unwrap().unwrap().state != JobState::Running {
            std::thread::sleep(Duration::from_millis(10));
        }
        store()
            .finish(&job, JobState::Cancelled, None, None, 2)
            .unwrap();
        // ... and rings the monitor (without the ring it would see it at its next timed look).
        crate::engine::ring_job_dir(&crate::engine::job_dir(&home, &job));
    });
    let r = h.monitor(&fake);
    canceller.join().unwrap();
    assert_eq!(r.state, JobState::Cancelled);
    assert!(fake.stops() >= 1);
    assert_eq!(h.output(), format!("{INIT}\n"));
    assert_eq!(fake.removed(), ["fake-1"]);
}

#[test]
fn an_oom_kill_is_reported_as_such() {
    let h = Home::new(spec());
    let fake = Fake::new(
        &h.dir(),
        Script {
            lines: lines(&[INIT]),
            oom: true,
            ..Script::default()
        },
    );
    let r = h.monitor(&fake);
    assert_eq!(r.state, JobState::Failed);
    assert_eq!(r.error.unwrap().kind, ErrorKind::Oom);
}

#[test]
fn a_new_monitor_resumes_from_the_checkpoint_of_one_that_died() {
    let h = Home::new(spec());
    let all = lines(&[INIT, r#"{"type":"assistant","n":2}"#, DONE]);
    let fake = Fake::new(&h.dir(), Script::default());
    // The dead monitor's world: the container ran and ended, the log is complete, and the
    // checkpoint covers the first line only, while the output file already holds more (written
    // after the checkpoint, before the death).
    fake.state.lock().unwrap().created.push("fake-1".into());
    fake.end(0);
    log_lines(&h.dir().join("container.log"), &all);
    let first_record = format!("{TS} stdout F {}\n", all[0]);
    std::fs::write(
        h.dir().join("output.jsonl"),
        format!("{}\n{{\"type\":\"assis", all[0]),
    )
    .unwrap();
    let mut store = h.store();
    store.set_running(&h.job, "fake-1", 1).unwrap();
    store
        .set_progress(
            &h.job,
            &Progress {
                output_size: all[0].len() as u64 + 1,
                log_offset: first_record.len() as u64,
                first_output_at_ms: Some(1),
                last_output_at_ms: Some(1),
                ..Progress::default()
            },
        )
        .unwrap();
    let r = h.monitor(&fake);
    assert_eq!(r.state, JobState::Completed, "{:?}", r.error);
    let expected: String = all.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(h.output(), expected, "nothing lost, nothing doubled");
    assert_eq!(r.result.as_deref(), Some("done"));
}
