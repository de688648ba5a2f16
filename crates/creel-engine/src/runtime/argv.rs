//! The container command line, built here and only here.
//!
//! **Invariant:** every job container gets the hardening flags below; no job field can remove
//! them. User data (prompt, API key) never appears in argv: the prompt and key are files
//! mounted read-only and read by a fixed wrapper script that carries no user data.

use std::ffi::OsString;
use std::path::Path;

use crate::config::{NetworkMode, RuntimeKind};
use crate::job::{ConversationMode, JobSpec, UserMode};
use crate::steer::Permissions;

/// Where the session's workspace is mounted (and Claude's working directory). Fixed, because
/// Claude keys conversations by working directory.
pub const WORKSPACE: &str = "/workspace";
/// Where the session's Claude config dir is mounted (`CLAUDE_CONFIG_DIR`).
pub const CLAUDE_CONFIG: &str = "/creel/claude";
/// The read-only prompt file.
pub const PROMPT: &str = "/creel/prompt";
/// The read-only API key file, when an API key is used.
pub const API_KEY: &str = "/creel/api-key";

/// The fixed wrapper: reads the key (if mounted) into the environment and starts Claude with
/// the prompt on standard input. `$0` is Claude's path and `$@` its arguments.
pub const WRAPPER: &str = "if [ -r /creel/api-key ]; then IFS= read -r ANTHROPIC_API_KEY < /creel/api-key; export ANTHROPIC_API_KEY; fi; exec \"$0\" \"$@\" < /creel/prompt";

/// The wrapper for a job that reads its messages as stream-json: a feeder in the background
/// passes the inbox's messages (`1.json`, `2.json`, …; the prompt is the first) to Claude's
/// standard input through a FIFO in `/tmp`, sleeping on the doorbell FIFO between them, and
/// ends the input once `close` says how many there are. Like [`WRAPPER`] it carries no user
/// data; `$0` is Claude's path and `$@` its arguments.
pub const WRAPPER_STREAM: &str = concat!(
    "if [ -r /creel/api-key ]; then IFS= read -r ANTHROPIC_API_KEY < /creel/api-key; export ANTHROPIC_API_KEY; fi; ",
    "mkfifo /tmp/.creel-input || exit 125; ",
    "( exec 4<>/creel/steer/doorbell; n=1; while :; do ",
    "if [ -e /creel/steer/inbox/$n.json ]; then cat /creel/steer/inbox/$n.json || exit 0; n=$((n + 1)); ",
    "elif [ -e /creel/steer/inbox/close ] && [ \"$(cat /creel/steer/inbox/close)\" -lt \"$n\" ]; then exit 0; ",
    "else read -r _ <&4 || exit 0; fi; done ) > /tmp/.creel-input & ",
    "exec \"$0\" \"$@\" < /tmp/.creel-input"
);

/// Labels that mark a container as creel's.
pub const LABEL_JOB: &str = "io.creel.job";
/// The session label.
pub const LABEL_SESSION: &str = "io.creel.session";
/// The state root label.
pub const LABEL_HOME: &str = "io.creel.home";

/// The file in the job's directory the runtime logs the container's output to (Podman writes
/// it where it is told; Docker keeps its own, which `inspect` names).
pub const CONTAINER_LOG: &str = "container.log";
/// Podman only: the file in the job's directory (beside the log) that receives conmon's pid,
/// which the monitor waits on instead of running `podman wait`.
pub const CONMON_PIDFILE: &str = "conmon.pid";
/// Podman only: the file beside the log that receives the container's first pid, whose cgroup
/// the monitor samples instead of running `podman stats`.
pub const CONTAINER_PIDFILE: &str = "container.pid";

/// Host-side facts for one job's container.
#[derive(Debug, Clone)]
pub struct ContainerArgs<'a> {
    /// The job id.
    pub job_id: &'a str,
    /// The session id.
    pub session_id: &'a str,
    /// `$CREEL_HOME`.
    pub home: &'a Path,
    /// The spec.
    pub spec: &'a JobSpec,
    /// The job's directory (its steering files are mounted from there).
    pub job_dir: &'a Path,
    /// Where podman writes the k8s-file log.
    pub log_path: &'a Path,
    /// Host path of the prompt file.
    pub prompt_path: &'a Path,
    /// Host path of the API key file, if one is mounted.
    pub api_key_path: Option<&'a Path>,
}

fn mount(host: &Path, container: &str, opts: &str) -> OsString {
    let mut s = OsString::from(host.as_os_str());
    s.push(":");
    s.push(container);
    s.push(":");
    s.push(opts);
    s
}

/// The arguments after `podman run` / `docker run`.
pub fn run_args(a: &ContainerArgs<'_>) -> Vec<OsString> {
    let s = a.spec;
    let mut v: Vec<OsString> = Vec::new();
    let mut push = |x: &str| v.push(OsString::from(x));
    push("-d");
    push("--name");
    push(&format!("creel-{}", a.job_id));
    push("--label");
    push(&format!("{LABEL_JOB}={}", a.job_id));
    push("--label");
    push(&format!("{LABEL_SESSION}={}", a.session_id));
    push("--label");
    push(&format!("{LABEL_HOME}={}", a.home.display()));
    push("--pull");
    push("never");
    // Hardening: always present.
    push("--init");
    push("--cap-drop");
    push("ALL");
    push("--security-opt");
    push("no-new-privileges");
    push("--read-only");
    push("--pids-limit");
    push(&s.pids_limit.to_string());
    push("--memory");
    push(&s.memory);
    push("--memory-swap");
    push(&s.memory);
    push("--cpus");
    push(&s.cpus);
    push("--tmpfs");
    push(&format!("/tmp:rw,nosuid,nodev,exec,size={}", s.tmpfs_size));
    for (name, value) in &s.ulimits {
        push("--ulimit");
        push(&format!("{name}={value}:{value}"));
    }
    if let Some(profile) = &s.apparmor_profile {
        push("--security-opt");
        push(&format!("apparmor={profile}"));
    }
    if let Some(oci) = &s.oci_runtime {
        push("--runtime");
        push(oci);
    }
    match &s.user {
        UserMode::KeepId { uid, gid } => {
            push("--userns");
            push("keep-id");
            push("--user");
            push(&format!("{uid}:{gid}"));
        }
        UserMode::Plain { uid, gid } => {
            push("--user");
            push(&format!("{uid}:{gid}"));
        }
    }
    push("--network");
    let rootless = matches!(s.user, UserMode::KeepId { .. });
    push(match (s.network, rootless) {
        (NetworkMode::Bridge, true) => "slirp4netns",
        // Allowlist: a namespace of its own with only loopback, where the monitor binds the
        // proxy's socket once the container runs. Without the proxy there is no way out.
        (NetworkMode::Allowlist, _) => "none",
        (n, _) => n.as_str(),
    });
    match s.runtime {
        // (A pod's command line is `kube/render.rs`'s: this is never built for one.)
        RuntimeKind::Podman | RuntimeKind::Kubernetes => {
            push("--log-driver");
            push("k8s-file");
            v.push(OsString::from("--log-opt"));
            let mut p = OsString::from("path=");
            p.push(a.log_path.as_os_str());
            v.push(p);
            v.push("--conmon-pidfile".into());
            v.push(a.log_path.with_file_name(CONMON_PIDFILE).into_os_string());
            v.push("--pidfile".into());
            v.push(
                a.log_path
                    .with_file_name(CONTAINER_PIDFILE)
                    .into_os_string(),
            );
        }
        RuntimeKind::Docker => {
            v.push("--log-driver".into());
            v.push("json-file".into());
        }
    }
    let mut push = |x: &str| v.push(OsString::from(x));
    push("--workdir");
    push(WORKSPACE);
    for (k, val) in FIXED_ENV {
        push("--env");
        push(&format!("{k}={val}"));
    }
    for (k, val) in &s.env {
        push("--env");
        push(&format!("{k}={val}"));
    }
    v.push("--volume".into());
    v.push(mount(&s.workspace, WORKSPACE, "rw"));
    v.push("--volume".into());
    v.push(mount(&s.claude_config_dir, CLAUDE_CONFIG, "rw"));
    v.push("--volume".into());
    v.push(mount(a.prompt_path, PROMPT, "ro"));
    if let Some(g) = &s.git {
        // The agent's `.git` borrows the session's objects, which borrow the user's (by their
        // host path, so that one alternates file serves both sides): both read-only.
        v.push("--volume".into());
        v.push(mount(
            &g.session_repo.join("objects"),
            crate::git::session::CONTAINER_OBJECTS,
            "ro",
        ));
        v.push("--volume".into());
        v.push(mount(&g.objects, &g.objects.to_string_lossy(), "ro"));
    }
    if let Some(key) = a.api_key_path {
        v.push("--volume".into());
        v.push(mount(key, API_KEY, "ro"));
    }
    if s.steer.is_some() {
        // The steering server and its answers (read-only), and the one directory the
        // container writes its questions to.
        let job_dir = a.job_dir;
        v.push("--volume".into());
        v.push(mount(
            &crate::steer::steer_dir(job_dir),
            crate::steer::CONTAINER_STEER,
            "ro",
        ));
        v.push("--volume".into());
        v.push(mount(
            &crate::steer::asked_dir(job_dir),
            crate::steer::CONTAINER_ASKED,
            "rw",
        ));
    }
    let mut push = |x: &str| v.push(OsString::from(x));
    push("--entrypoint");
    push("/bin/sh");
    push(&s.image);
    push("-c");
    let stream_input = s.steer.as_ref().is_some_and(|st| st.messages);
    push(if stream_input {
        WRAPPER_STREAM
    } else {
        WRAPPER
    });
    push(&s.claude_path);
    v.extend(claude_args(s).into_iter().map(OsString::from));
    v
}

/// The environment every job's Claude Code gets (a Kubernetes pod's too).
pub const FIXED_ENV: [(&str, &str); 4] = [
    ("HOME", "/tmp"),
    ("CLAUDE_CONFIG_DIR", CLAUDE_CONFIG),
    ("DISABLE_AUTOUPDATER", "1"),
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
];

/// Claude Code's arguments for a job (after its path): the same in a container and a pod.
pub fn claude_args(s: &JobSpec) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut push = |x: &str| v.push(x.to_string());
    let stream_input = s.steer.as_ref().is_some_and(|st| st.messages);
    push("-p");
    if stream_input {
        push("--input-format");
        push("stream-json");
    }
    push("--output-format");
    push("stream-json");
    push("--verbose");
    match s.steer.as_ref().map(|st| st.permissions) {
        Some(Permissions::Ask) => {
            push("--permission-prompt-tool");
            push(crate::steer::APPROVE_TOOL);
            // Asking a question needs no permission.
            push("--allowedTools");
            push(crate::steer::ASK_TOOL);
        }
        _ => push("--dangerously-skip-permissions"),
    }
    if s.steer.is_some() {
        push("--mcp-config");
        push(crate::steer::CONTAINER_MCP_CONFIG);
    }
    match &s.conversation {
        ConversationMode::New(id) => {
            push("--session-id");
            push(id);
        }
        ConversationMode::Resume(id) => {
            push("--resume");
            push(id);
        }
    }
    if let Some(m) = &s.model {
        push("--model");
        push(m);
    }
    if let Some(n) = s.max_turns {
        push("--max-turns");
        push(&n.to_string());
    }
    if let Some(usd) = s.budget.as_ref().and_then(|b| b.cost_usd) {
        push("--max-budget-usd");
        push(&format!("{usd:.6}"));
    }
    v
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(crate) fn spec() -> JobSpec {
        JobSpec {
            runtime: RuntimeKind::Podman,
            runtime_bin: "/usr/bin/podman".into(),
            image: "localhost/creel-test:latest".into(),
            oci_runtime: Some("runc".into()),
            memory: "512m".into(),
            cpus: "1.0".into(),
            pids_limit: 256,
            network: NetworkMode::Bridge,
            apparmor_profile: None,
            tmpfs_size: "512m".into(),
            ulimits: vec![("nofile".into(), 20000), ("nproc".into(), 4096)],
            user: UserMode::Plain {
                uid: 1000,
                gid: 1000,
            },
            startup_timeout: 30,
            idle_timeout: 120,
            max_output_size: 0,
            claude_path: "claude".into(),
            model: None,
            max_turns: None,
            workspace: "/ws".into(),
            claude_config_dir: "/cfg".into(),
            conversation: ConversationMode::New("u-1".into()),
            env: vec![],
            api_key: false,
            warnings: vec![],
            webhook: None,
            credentials_file: None,
            egress: None,
            key_via_proxy: false,
            git: None,
            git_base: None,
            steer: None,
            budget: None,
        }
    }

    fn args(spec: &JobSpec) -> Vec<String> {
        args_with(spec, None)
    }

    fn args_with(spec: &JobSpec, key: Option<&Path>) -> Vec<String> {
        let home = PathBuf::from("/home/x/.local/share/creel");
        let a = ContainerArgs {
            job_id: "0123456789ab",
            session_id: "s1",
            home: &home,
            spec,
            job_dir: Path::new("/j"),
            log_path: Path::new("/j/container.log"),
            prompt_path: Path::new("/j/prompt"),
            api_key_path: key,
        };
        run_args(&a)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn has_pair(v: &[String], flag: &str, value: &str) -> bool {
        v.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn hardening_flags_always_present() {
        let v = args(&spec());
        for f in ["--init", "--read-only", "-d"] {
            assert!(v.iter().any(|a| a == f), "{f} missing: {v:?}");
        }
        assert!(has_pair(&v, "--cap-drop", "ALL"));
        assert!(has_pair(&v, "--security-opt", "no-new-privileges"));
        assert!(has_pair(&v, "--pids-limit", "256"));
        assert!(has_pair(&v, "--memory", "512m"));
        assert!(has_pair(&v, "--cpus", "1.0"));
        assert!(has_pair(
            &v,
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,exec,size=512m"
        ));
        assert!(has_pair(&v, "--user", "1000:1000"));
        assert!(has_pair(&v, "--ulimit", "nofile=20000:20000"));
        assert!(has_pair(&v, "--runtime", "runc"));
        assert!(has_pair(&v, "--label", "io.creel.job=0123456789ab"));
        assert!(has_pair(&v, "--label", "io.creel.session=s1"));
        assert!(has_pair(&v, "--log-opt", "path=/j/container.log"));
        assert!(has_pair(&v, "--conmon-pidfile", "/j/conmon.pid"));
        assert!(has_pair(&v, "--pidfile", "/j/container.pid"));
        assert!(has_pair(&v, "--volume", "/j/prompt:/creel/prompt:ro"));
        assert!(has_pair(&v, "--network", "bridge"));
        assert!(has_pair(&v, "--session-id", "u-1"));
        assert!(!v.iter().any(|a| a == "--privileged"));
    }

    #[test]
    fn rootless_uses_keep_id_and_slirp() {
        let mut s = spec();
        s.user = UserMode::KeepId {
            uid: 1001,
            gid: 1001,
        };
        let v = args(&s);
        assert!(has_pair(&v, "--userns", "keep-id"));
        assert!(has_pair(&v, "--network", "slirp4netns"));
    }

    #[test]
    fn apparmor_profile_is_passed() {
        let mut s = spec();
        s.apparmor_profile = Some("creel-profile".into());
        assert!(has_pair(
            &args(&s),
            "--security-opt",
            "apparmor=creel-profile"
        ));
    }

    #[test]
    fn resume_model_turns() {
        let mut s = spec();
        s.conversation = ConversationMode::Resume("u-2".into());
        s.model = Some("claude-x".into());
        s.max_turns = Some(3);
        let v = args(&s);
        assert!(has_pair(&v, "--resume", "u-2"));
        assert!(!v.iter().any(|a| a == "--session-id"));
        assert!(has_pair(&v, "--model", "claude-x"));
        assert!(has_pair(&v, "--max-turns", "3"));
    }

    #[test]
    fn allowlist_jobs_have_a_namespace_with_only_loopback() {
        let mut s = spec();
        s.network = NetworkMode::Allowlist;
        let v = args(&s);
        assert!(has_pair(&v, "--network", "none"));
        // Rootless too: its own user namespace, never another container's.
        s.user = UserMode::KeepId {
            uid: 1000,
            gid: 1000,
        };
        let v = args(&s);
        assert!(has_pair(&v, "--network", "none"));
        assert!(has_pair(&v, "--userns", "keep-id"));
        assert!(!v.iter().any(|a| a.starts_with("container:")));
    }

    #[test]
    fn steering_and_budget_flags() {
        let mut s = spec();
        let v = args(&s);
        assert!(v.iter().any(|a| a == "--dangerously-skip-permissions"));
        assert!(
            !v.iter()
                .any(|a| a == "--mcp-config" || a == "--max-budget-usd")
        );
        s.steer = Some(crate::steer::SteerSpec {
            permissions: Permissions::Ask,
            ..Default::default()
        });
        s.budget = Some(crate::job::JobBudget {
            cost_usd: Some(0.25),
            ..Default::default()
        });
        let v = args(&s);
        assert!(!v.iter().any(|a| a == "--dangerously-skip-permissions"));
        assert!(has_pair(
            &v,
            "--permission-prompt-tool",
            "mcp__creel__approve"
        ));
        assert!(has_pair(&v, "--allowedTools", "mcp__creel__ask"));
        assert!(has_pair(&v, "--mcp-config", "/creel/steer/mcp.json"));
        assert!(has_pair(&v, "--max-budget-usd", "0.250000"));
        assert!(has_pair(&v, "--volume", "/j/steer:/creel/steer:ro"));
        assert!(has_pair(&v, "--volume", "/j/asked:/creel/asked:rw"));
    }

    #[test]
    fn docker_uses_json_file() {
        let mut s = spec();
        s.runtime = RuntimeKind::Docker;
        let v = args(&s);
        assert!(has_pair(&v, "--log-driver", "json-file"));
        assert!(!v.iter().any(|a| a.starts_with("path=")));
        assert!(
            !v.iter().any(|a| a.ends_with("pidfile")),
            "podman-only flags"
        );
    }

    #[test]
    fn no_user_data_in_the_wrapper_and_key_only_as_a_mount() {
        let mut s = spec();
        s.api_key = true;
        let v = args_with(&s, Some(Path::new("/j/api-key")));
        assert!(has_pair(&v, "--volume", "/j/api-key:/creel/api-key:ro"));
        assert!(!v.iter().any(|a| a.contains("ANTHROPIC_API_KEY=")));
        assert!(has_pair(&v, "-c", WRAPPER));
    }
}
