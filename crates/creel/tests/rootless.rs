//! Rootless Podman as an unprivileged user (`creel-rootless`, made by
//! `scripts/rootless-user.sh`; commands run through `scripts/as-rootless.sh`).

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::Value;

use crate::util::{TEST_IMAGE, eventually, repo_root};

struct Rootless {
    user: String,
    uid: u32,
    dir: std::path::PathBuf,
}

impl Rootless {
    fn new() -> Option<Rootless> {
        let user = match std::env::var("CREEL_TEST_ROOTLESS_USER") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                crate::util::skip_unless_ci(
                    "the rootless tests need CREEL_TEST_ROOTLESS_USER (scripts/rootless-user.sh)",
                );
                return None;
            }
        };
        let out = Command::new("id").args(["-u", &user]).output().unwrap();
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let status = Command::new(repo_root().join("scripts/build-test-image.sh"))
            .args(["--runtime", "podman", "--user", &user])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        // One directory per environment: tests run in parallel in one process.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::path::PathBuf::from(format!(
            "/tmp/creel-rootless-test-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!("image = \"{TEST_IMAGE}\"\nsession_idle_timeout = 0\n"),
        )
        .unwrap();
        Command::new("chown")
            .args(["-R", &user, dir.to_str().unwrap()])
            .status()
            .unwrap();
        Some(Rootless { user, uid, dir })
    }

    fn creel(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(repo_root().join("scripts/as-rootless.sh"));
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CREEL_HOME", self.dir.join("home"))
            .env("CREEL_CONFIG", self.dir.join("config.toml"))
            .env("ANTHROPIC_API_KEY", "sk-rootless-test")
            .current_dir(&self.dir)
            .arg(env!("CARGO_BIN_EXE_creel"))
            .args(args);
        let _ = &self.user;
        c.output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.creel(args);
        assert!(
            out.status.success(),
            "creel {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Rootless {
    /// Polls the job's status until it ends (up to 90 s) and returns it.
    fn wait(&self, job: &str) -> Value {
        eventually(std::time::Duration::from_secs(90), "rootless job", || {
            let s = self.json(&["status", job, "--json"]);
            (s["status"] != "pending" && s["status"] != "running").then_some(s)
        })
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The steering files work with the user namespace's ownership: the job writes its question,
/// creel (as the user) answers, the job reads the answer.
#[test]
fn rootless_a_job_asks_and_gets_its_answer() {
    let Some(r) = Rootless::new() else { return };
    let v = r.json(&[
        "start",
        "--json",
        "ask Rootless question?\nsay after the answer",
    ]);
    let job = v["jobId"].as_str().unwrap().to_string();
    let s = eventually(std::time::Duration::from_secs(90), "the question", || {
        let s = r.json(&["status", &job, "--json"]);
        (s["activityState"] == "needs_input").then_some(s)
    });
    assert_eq!(s["needsInput"]["question"], "Rootless question?", "{s}");
    r.json(&["reply", &job, "rootless answer", "--json"]);
    let s = r.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let raw =
        std::fs::read_to_string(r.dir.join("home/jobs").join(&job).join("output.jsonl")).unwrap();
    assert!(raw.contains(r#""content":"rootless answer""#), "{raw}");
}

#[test]
fn rootless_jobs_run_as_the_invoking_user_and_report_unenforced_limits() {
    let Some(r) = Rootless::new() else { return };
    // A host that this machine does reach (the test internet, checked as it comes up), so that
    // "blocked" from inside the job means something.
    let target = crate::egress::internet();
    assert!(
        std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(2)).is_ok(),
        "the host must reach {target}"
    );
    let probe = format!(
        // The default network is the allowlist: the proxy works rootless too, raw sockets do not.
        "say rootless hello\nwrite owned.txt mine\nbash id -u; timeout 5 nc -w 3 {} {} </dev/null && echo RAW-CONNECTED || echo RAW-BLOCKED; printf 'CONNECT 10.0.0.1:443 HTTP/1.1\\r\\n\\r\\n' | timeout 5 nc 127.0.0.1 3128 | head -n 1",
        target.ip(),
        target.port()
    );
    let v = r.json(&["start", "--json", &probe]);
    let job = v["jobId"].as_str().unwrap().to_string();
    let session = v["sessionId"].as_str().unwrap().to_string();
    let s = r.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let raw =
        std::fs::read_to_string(r.dir.join("home/jobs").join(&job).join("output.jsonl")).unwrap();
    // (In the tool's output, after a line break: the command itself names both words.)
    assert!(
        raw.contains("\\nRAW-BLOCKED") && !raw.contains("\\nRAW-CONNECTED"),
        "{raw}"
    );
    assert!(raw.contains("HTTP/1.1 403 Forbidden"), "{raw}");
    let f = r
        .dir
        .join("home/workspaces")
        .join(&session)
        .join("owned.txt");
    assert_eq!(
        std::fs::metadata(&f).unwrap().uid(),
        r.uid,
        "files belong to the invoking user"
    );
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !cgroup_v2 {
        assert!(
            s["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("NOT enforced")),
            "rootless on cgroup v1 must warn: {s}"
        );
        let out = r.creel(&["doctor"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("rootless") && text.contains("NOT enforced"),
            "{text}"
        );
    }
}

#[test]
fn rootless_repo_sessions_commit_the_user_s_files_and_land_them_as_the_user() {
    let Some(r) = Rootless::new() else { return };
    let as_user = |args: &[&str]| {
        let out = Command::new(repo_root().join("scripts/as-rootless.sh"))
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .current_dir(&r.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let repo = r.dir.join("repo");
    let repo_s = repo.to_str().unwrap();
    as_user(&["git", "init", "-q", "-b", "main", repo_s]);
    std::fs::write(repo.join("a.txt"), "a\n").unwrap();
    Command::new("chown")
        .args(["-R", &r.user, repo_s])
        .status()
        .unwrap();
    let ident = ["-c", "user.name=U", "-c", "user.email=u@example.com"];
    as_user(&[&["git", "-C", repo_s], &ident[..], &["add", "."]].concat());
    as_user(
        &[
            &["git", "-C", repo_s],
            &ident[..],
            &["commit", "-qm", "init"],
        ]
        .concat(),
    );
    let v = r.json(&[
        "start",
        "--json",
        "--repo",
        repo_s,
        "write b.txt rootless work",
    ]);
    let job = v["jobId"].as_str().unwrap().to_string();
    let session = v["sessionId"].as_str().unwrap().to_string();
    let s = r.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["changes"]["files"], 1, "{s}");
    let m = r.json(&["merge", &session, "--json"]);
    assert_eq!(m["fastForward"], true, "{m}");
    assert_eq!(
        std::fs::metadata(repo.join("b.txt")).unwrap().uid(),
        r.uid,
        "landed files belong to the user"
    );
    let log = as_user(&["git", "-C", repo_s, "log", "--format=%s"]);
    assert_eq!(log, "write b.txt rootless work\ninit\n");
    // creel's own session repository is the user's too (no root-owned files in their home).
    let git_dir = r.dir.join("home/git").join(&session);
    assert_eq!(std::fs::metadata(&git_dir).unwrap().uid(), r.uid);
}

/// Puts /dev/net/tun's mode back when dropped (a failed test must not leave it changed).
struct TunMode(u32);

impl Drop for TunMode {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(self.0));
    }
}

#[test]
fn rootless_bridge_without_a_usable_tun_device_is_refused_before_anything_runs() {
    use std::os::unix::fs::PermissionsExt;
    let Some(r) = Rootless::new() else { return };
    std::fs::write(
        r.dir.join("config.toml"),
        format!("image = \"{TEST_IMAGE}\"\nsession_idle_timeout = 0\nnetwork = \"bridge\"\n"),
    )
    .unwrap();
    // As on a host where the device is 0600 (slirp4netns cannot open it as the user). Only a
    // rootless bridge job needs it: no other test's jobs are affected meanwhile.
    let mode = std::fs::metadata("/dev/net/tun")
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    let _restore = TunMode(mode);
    std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = r.creel(&["start", "say hi"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/net/tun"), "{err}");
    assert!(
        !r.dir.join("home/jobs").exists()
            || std::fs::read_dir(r.dir.join("home/jobs")).unwrap().count() == 0,
        "a refused start leaves nothing"
    );
}
