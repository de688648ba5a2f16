//! `runtime = "kubernetes"` end to end, against `creel fake-kube`: a stand-in API server (no
//! cluster can run here) that speaks the real API to creel's client (the `kube` crate) and
//! runs each pod with Podman as a kubelet would, keeping container logs as a kubelet keeps
//! them (rotated, only the newest file served). Two front ends (two creel homes with the same
//! kubeconfig) see and control the same jobs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use crate::util::{TEST_IMAGE, TestEnv, eventually};

pub(crate) const NAMESPACE: &str = "creel-test";

/// A running `creel fake-kube`, taken down (with its containers) when dropped.
pub(crate) struct FakeKube {
    child: Child,
    pub(crate) url: String,
    state: PathBuf,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeKube {
    pub(crate) fn start() -> FakeKube {
        crate::util::ensure_image();
        let dir = tempfile::Builder::new()
            .prefix("creel-fake-kube-")
            .tempdir()
            .unwrap();
        let state = dir.path().join("state");
        let kubeconfig = dir.path().join("kubeconfig");
        // What `kube play` needs on these hosts is what the stand-in's podman needs too.
        let conf = crate::kube::containers_conf();
        let (child, url) = crate::util::spawn_reading_line(
            Command::new(env!("CARGO_BIN_EXE_creel"))
                .args(["fake-kube", "--state"])
                .arg(&state)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .env("CONTAINERS_CONF", &conf),
        );
        assert!(url.starts_with("http://"), "fake-kube printed {url:?}");
        FakeKube {
            child,
            url,
            state,
            kubeconfig,
            _dir: dir,
        }
    }

    /// A front end: a creel home of its own, with this server as its cluster.
    fn front_end(&self) -> TestEnv {
        self.front_end_with(TEST_IMAGE, "", "egress_proxy = \"none\"\n")
    }

    /// A front end running `image`, with more top-level keys and more of the `[kubernetes]`
    /// table.
    pub(crate) fn front_end_with(&self, image: &str, top: &str, kube: &str) -> TestEnv {
        let env = TestEnv::with_config("");
        std::fs::write(
            &env.config,
            format!(
                "runtime = \"kubernetes\"\nimage = \"{image}\"\nsession_idle_timeout = 0\n{top}\
                 [kubernetes]\nnamespace = \"{NAMESPACE}\"\nkubeconfig = \"{}\"\n{kube}",
                self.kubeconfig.display()
            ),
        )
        .unwrap();
        env
    }

    fn get(&self, path: &str) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::get(format!("{}{path}", self.url))
            .and_then(|r| r.text())
            .expect("GET from the stand-in")
    }

    /// Creates an object (`path`: its collection).
    pub(crate) fn create(&self, path: &str, object: &Value) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.url))
            .json(object)
            .send()
            .expect("POST to the stand-in");
        assert!(r.status().is_success(), "{path}: {:?}", r.text());
    }

    fn list(&self, group: &str, resource: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.get(&format!(
            "{group}/namespaces/{NAMESPACE}/{resource}?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcreel"
        )))
        .unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Job `job`'s output file on its session's volume.
    fn volume_file(&self, session: &str, job: &str) -> PathBuf {
        self.state
            .join("volumes")
            .join(NAMESPACE)
            .join(format!("creel-session-{session}"))
            .join("out")
            .join(job)
            .join("output.jsonl")
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The pid of the process holding `lock` (the front end's watcher).
fn holder_of(lock: &Path) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|p| p == lock) {
                return Some(pid);
            }
        }
    }
    None
}

/// Waits (up to 5 minutes: reader pods are slow on a loaded machine) for a job to end; on a
/// timeout, shows the front end's watcher log.
fn wait_long(env: &TestEnv, job: &str) -> Value {
    let out = env.run(&["wait", job, "--timeout", "300", "--json"]);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}\nthe watcher's log:\n{}",
        env.describe(&["wait", job], &out),
        std::fs::read_to_string(env.home.join("kube-watch.log")).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kill_watcher(env: &TestEnv) {
    let lock = env.home.join("kube-watch.lock");
    let pid = eventually(Duration::from_secs(20), "the front end's watcher", || {
        holder_of(&lock)
    });
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    eventually(Duration::from_secs(20), "the watcher to be gone", || {
        holder_of(&lock).is_none().then_some(())
    });
}

#[test]
fn a_100000_line_burst_reaches_every_front_end_byte_exact_though_the_kubelet_rotated_the_log() {
    let fk = FakeKube::start();
    let a = fk.front_end();
    let (job, session) = a.start("lines 100000\nsleep 1", &[]);
    // Front end A goes away before the pod has printed anything it could follow.
    kill_watcher(&a);
    let pod = format!("/api/v1/namespaces/{NAMESPACE}/pods/creel-{job}");
    eventually(Duration::from_secs(120), "the pod to end", || {
        let p: Value = serde_json::from_str(&fk.get(&pod)).ok()?;
        (p["status"]["phase"] == "Succeeded").then_some(())
    });
    // The kubelet rotated the log: what its API still has starts far past line 1.
    let log = fk.get(&format!("{pod}/log?container=claude"));
    let first: u64 = log
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("numbered lines");
    assert!(
        first > 1000,
        "the log was not rotated: it starts at line {first}"
    );

    // A comes back (any command finds the job unsettled and starts its watcher again).
    let done = wait_long(&a, &job);
    assert_eq!(done["status"], "completed", "{done}");
    let truth = std::fs::read(fk.volume_file(&session, &job)).unwrap();
    let lines = truth.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines, 100_002, "init, 100,000 lines, result");
    assert!(a.raw_output(&job) == truth, "front end A's copy differs");
    assert_eq!(
        done["outputSize"].as_u64(),
        Some(truth.len() as u64),
        "{done}"
    );

    // Front end B never followed the job: it learns it from the cluster and reads it whole.
    let b = fk.front_end();
    let jobs = b.json(&["jobs", "--json"]);
    assert!(
        jobs.to_string().contains(&job),
        "B does not see the job: {jobs}"
    );
    let seen = wait_long(&b, &job);
    assert_eq!(seen["status"], "completed", "{seen}");
    assert!(b.raw_output(&job) == truth, "front end B's copy differs");
}

#[test]
fn a_cluster_job_runs_hardened_resumes_is_cancelled_from_another_front_end_and_is_cleaned_up() {
    let fk = FakeKube::start();
    // Front end A sends completion webhooks; B, which sees the same jobs, sends none of A's.
    let hooks = crate::util::Receiver::start(vec![200]);
    let a = fk.front_end_with(
        TEST_IMAGE,
        &format!("notify_webhook_url = \"{}\"\n", hooks.url),
        "egress_proxy = \"none\"\n",
    );
    let b = fk.front_end();
    let (first, session) = a.start(
        "say first\nbash id -u; grep CapEff /proc/self/status; touch /probe || echo no-root-write",
        &["--session", "kube-one"],
    );
    assert_eq!(session, "kube-one");
    let done = a.wait(&first);
    assert_eq!(done["status"], "completed", "{done}");
    let text = String::from_utf8_lossy(&a.raw_output(&first)).to_string();
    for seen in ["1000\\n", "CapEff:\\t0000000000000000", "no-root-write"] {
        assert!(text.contains(seen), "{seen} not in {text}");
    }
    // The next job of the session is another pod on the same volume: the conversation resumes.
    let (second, _) = a.start("say second", &["--session", "kube-one"]);
    assert_eq!(a.wait(&second)["status"], "completed");
    let text = String::from_utf8_lossy(&a.raw_output(&second)).to_string();
    assert!(text.contains("resumed: say first"), "{text}");
    // B knows the session (its ended jobs); while A's next job of it runs, the cluster says the
    // session is busy, to B too.
    assert!(b.json(&["jobs", "--json"]).to_string().contains(&second));
    let (third, _) = a.start("say third\nsleep 5", &["--session", "kube-one"]);
    let busy = b.run(&["start", "--session", "kube-one", "say not now"]);
    b.expect_code(&busy, 2, &["start", "--session", "kube-one"]);
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("busy"),
        "{}",
        b.describe(&["start"], &busy)
    );
    assert_eq!(a.wait(&third)["status"], "completed");

    // A long job, cancelled by the other front end: both see it cancelled, its output kept.
    let (slow, _) = a.start("say slow\nsleep 120", &[]);
    eventually(Duration::from_secs(60), "the slow job to run", || {
        let s = a.json(&["status", &slow, "--json"]);
        (s["status"] == "running" && s["outputSize"].as_u64() > Some(0)).then_some(())
    });
    let cancelled = b.json(&["cancel", &slow, "--json"]);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    eventually(Duration::from_secs(30), "A to see the cancel", || {
        let s = a.json(&["status", &slow, "--json"]);
        (s["status"] == "cancelled").then_some(())
    });
    eventually(Duration::from_secs(30), "the pod to go", || {
        fk.list("/api/v1", "pods")
            .iter()
            .all(|p| p["metadata"]["name"] != format!("creel-{slow}"))
            .then_some(())
    });
    // Both copies end complete (the cancelled pod's last lines come from its volume), and
    // say so.
    for env in [&a, &b] {
        let settled = env.home.join("jobs").join(&slow).join("output.settled");
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while !settled.exists() {
            assert!(
                std::time::Instant::now() < until,
                "the cancelled job's output was not settled; the watcher's log:\n{}",
                std::fs::read_to_string(env.home.join("kube-watch.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(String::from_utf8_lossy(&env.raw_output(&slow)).contains("slow"));
    }

    // One completion webhook per job, from the front end that started it.
    eventually(Duration::from_secs(30), "four webhooks", || {
        (hooks.requests().len() >= 4).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let got = hooks.requests();
    assert_eq!(got.len(), 4, "{got:#?}");
    for job in [&first, &second, &third, &slow] {
        assert!(
            got.iter()
                .any(|r| r.body.to_string().contains(job.as_str())),
            "no webhook for {job}: {got:#?}"
        );
    }

    // Cleanup removes every object of A's sessions, their volumes too when asked.
    let out = a.run(&["cleanup", "--idle-seconds", "0", "--delete-workspaces"]);
    a.expect_code(&out, 0, &["cleanup"]);
    eventually(Duration::from_secs(30), "the objects to go", || {
        let left: Vec<String> = [
            ("/api/v1", "pods"),
            ("/api/v1", "secrets"),
            ("/api/v1", "persistentvolumeclaims"),
            ("/apis/networking.k8s.io/v1", "networkpolicies"),
        ]
        .iter()
        .flat_map(|(g, r)| fk.list(g, r))
        .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
        .collect();
        left.is_empty().then_some(()).or_else(|| {
            eprintln!("left: {left:?}");
            None
        })
    });
}
