//! `creel doctor`: what creel found out about this host, and what to do about it.

use crate::engine::Engine;
use crate::host::{CgroupLayout, HostProfile};
use crate::remedy::Remedy;

impl Engine {
    /// Host checks: runtime, OCI runtime, cgroups, rlimits, rootless limits, networking,
    /// image and login.
    pub fn doctor(&self) -> Vec<DoctorFinding> {
        run(self)
    }
}

/// One line of `creel doctor`.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorFinding {
    /// What was checked.
    pub check: String,
    /// Verdict.
    pub level: DoctorLevel,
    /// What was found.
    pub message: String,
    /// What to do, if anything, in words.
    pub hint: Option<String>,
    /// What to do, as data, for the face to phrase (when `hint` is `None`).
    pub remedy: Option<Remedy>,
}

/// A doctor verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoctorLevel {
    /// Fine.
    Ok,
    /// Works, with a caveat.
    Warn,
    /// Jobs will fail until fixed.
    Error,
}

/// `runtime = "kubernetes"`: what creel can check of the cluster from here.
fn cluster(engine: &Engine, f: &mut Findings) {
    let p = engine.kube_probe();
    let ns = &engine.config().kubernetes.namespace;
    match &p.version {
        Ok(v) => f.add("cluster", DoctorLevel::Ok, format!("API server {v}"), None),
        Err(e) => {
            f.add(
                "cluster",
                DoctorLevel::Error,
                crate::kube::error_text(e),
                Some("check [kubernetes] kubeconfig and context (or $KUBECONFIG), and that the API server answers"),
            );
            return;
        }
    }
    match &p.pods {
        Ok(n) => f.add(
            "namespace",
            DoctorLevel::Ok,
            format!("`{ns}`: {n} pods of creel's"),
            None,
        ),
        Err(e) => f.add(
            "namespace",
            DoctorLevel::Error,
            crate::kube::error_text(e),
            Some("creel needs to list, create, patch and delete pods, Secrets, PersistentVolumeClaims and NetworkPolicies in the namespace"),
        ),
    }
    match &p.policies {
        Ok(_) => f.add(
            "network policy",
            DoctorLevel::Warn,
            "creel can make NetworkPolicies here, but cannot see from the API whether the cluster's network plugin enforces them".into(),
            Some("use a CNI that enforces NetworkPolicy (Calico, Cilium, or k3s's built-in policy controller); without one a job's pod can reach anything"),
        ),
        Err(e) => f.add(
            "network policy",
            DoctorLevel::Error,
            crate::kube::error_text(e),
            Some("creel needs to create NetworkPolicies (networking.k8s.io/v1) in the namespace"),
        ),
    }
    match &p.proxy {
        None => f.add(
            "egress",
            DoctorLevel::Ok,
            "no egress proxy (egress_proxy = \"none\" or network = \"none\"): jobs reach nothing".into(),
            None,
        ),
        Some((name, Ok(true))) => f.add(
            "egress",
            DoctorLevel::Ok,
            format!("the egress proxy's Service `{name}` exists"),
            None,
        ),
        Some((name, Ok(false))) => f.add(
            "egress",
            DoctorLevel::Error,
            format!("no Service `{name}` in `{ns}`: jobs cannot reach the model"),
            Some("deploy creel's egress proxy (see the README's Kubernetes section), or set [kubernetes] egress_proxy"),
        ),
        Some((_, Err(e))) => f.add(
            "egress",
            DoctorLevel::Warn,
            crate::kube::error_text(e),
            None,
        ),
    }
}

/// The findings so far.
struct Findings(Vec<DoctorFinding>);

impl Findings {
    /// A finding with advice in words.
    fn add(&mut self, check: &str, level: DoctorLevel, message: String, hint: Option<&str>) {
        self.0.push(DoctorFinding {
            check: check.into(),
            level,
            message,
            hint: hint.map(String::from),
            remedy: None,
        });
    }

    /// A finding with a remedy for the face to phrase.
    fn advise(&mut self, check: &str, level: DoctorLevel, message: String, remedy: Option<Remedy>) {
        self.0.push(DoctorFinding {
            check: check.into(),
            level,
            message,
            hint: None,
            remedy,
        });
    }
}

pub(crate) fn run(engine: &Engine) -> Vec<DoctorFinding> {
    let mut f = Findings(Vec::new());
    let config = engine.config();
    if config.runtime == crate::config::RuntimeKind::Kubernetes {
        cluster(engine, &mut f);
        return f.0;
    }
    let runtime = engine.configured_runtime();
    match &runtime {
        Ok(rt) => match rt.version() {
            Ok(v) => f.add(
                "runtime",
                DoctorLevel::Ok,
                format!("{} {v} at `{}`", rt.kind(), rt.binary().display()),
                None,
            ),
            Err(e) => f.add(
                "runtime",
                DoctorLevel::Error,
                format!("{} does not answer: {e}", rt.kind()),
                Some("check the runtime with `podman info` / `docker info`"),
            ),
        },
        Err(e) => f.advise("runtime", DoctorLevel::Error, e.to_string(), e.remedy()),
    }
    let host = HostProfile::detect(config, config.runtime);
    f.add(
        "mode",
        DoctorLevel::Ok,
        if host.rootless {
            format!(
                "rootless (uid {}): the agent runs as you via --userns=keep-id",
                host.euid
            )
        } else if host.euid == 0 {
            format!(
                "rootful: the agent runs as the workspace owner, or uid {} for workspaces creel creates",
                config.sandbox_uid
            )
        } else {
            format!("uid {} with {}", host.euid, config.runtime)
        },
        None,
    );
    f.add(
        "cgroups",
        DoctorLevel::Ok,
        host.cgroup.as_str().to_string(),
        None,
    );
    let oci_level = if host.cgroup != CgroupLayout::V2
        && host.oci_runtime.is_none()
        && config.runtime == crate::config::RuntimeKind::Podman
    {
        DoctorLevel::Warn
    } else {
        DoctorLevel::Ok
    };
    f.add(
        "oci runtime",
        oci_level,
        format!(
            "{} ({})",
            host.oci_runtime.as_deref().unwrap_or("runtime default"),
            host.oci_reason
        ),
        (oci_level == DoctorLevel::Warn).then_some("apt-get install runc, or set oci_runtime"),
    );
    let ulimits = host
        .ulimits()
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    f.add(
        "rlimits",
        DoctorLevel::Ok,
        format!(
            "host hard limits nofile={} nproc={}; containers get --ulimit {ulimits} (never above the hard limit: runc fails with \"error setting rlimit\" otherwise)",
            fmt_limit(host.nofile_hard),
            fmt_limit(host.nproc_hard)
        ),
        None,
    );
    match host.limits_warning() {
        Some(w) => f.add(
            "resource limits",
            DoctorLevel::Warn,
            w,
            Some("run creel as root, or use a cgroup v2 host, to enforce memory/CPU/pids limits"),
        ),
        None => f.add(
            "resource limits",
            DoctorLevel::Ok,
            format!(
                "enforced: memory {}, cpus {}, pids {}",
                config.memory, config.cpus, config.pids_limit
            ),
            None,
        ),
    }
    if host.rootless && config.network == crate::config::NetworkMode::Bridge {
        if host.tun_usable {
            f.add(
                "network",
                DoctorLevel::Ok,
                "rootless bridge networking via slirp4netns (/dev/net/tun usable)".into(),
                None,
            );
        } else {
            f.add(
                "network",
                DoctorLevel::Error,
                "rootless networking (slirp4netns) needs /dev/net/tun, which this user cannot open; jobs with network = \"bridge\" are refused".into(),
                Some("as root: chmod 666 /dev/net/tun (it is 0666 on stock distributions), or set network = \"none\""),
            );
        }
    } else if config.network == crate::config::NetworkMode::Allowlist {
        let mut hosts = vec![crate::egress::ANTHROPIC_API_HOST.to_string()];
        hosts.extend(config.egress_allow.iter().cloned());
        f.add(
            "network",
            DoctorLevel::Ok,
            format!(
                "allowlist: no route out; each job's proxy admits {} (and never private or link-local addresses); the API key stays on the host",
                hosts.join(", ")
            ),
            None,
        );
    } else {
        f.add(
            "network",
            DoctorLevel::Ok,
            format!("network = \"{}\"", config.network.as_str()),
            None,
        );
    }
    if let Ok(rt) = &runtime {
        match rt.image_exists(&config.image) {
            Ok(true) => f.add(
                "image",
                DoctorLevel::Ok,
                format!("`{}` present", config.image),
                None,
            ),
            Ok(false) => f.advise(
                "image",
                DoctorLevel::Error,
                format!("`{}` not found", config.image),
                Some(Remedy::missing_image(
                    &config.image,
                    rt.kind() == crate::config::RuntimeKind::Docker,
                )),
            ),
            Err(e) => f.add("image", DoctorLevel::Error, e.to_string(), None),
        }
    }
    // `--repo` sessions run git on the host.
    match crate::git::Git::find().and_then(|g| {
        let mut c = g.trusted(std::path::Path::new("/nonexistent"), None);
        c.arg("--version");
        crate::git::run(c)
    }) {
        Ok(out) => f.add(
            "git",
            DoctorLevel::Ok,
            format!("{} (for --repo sessions)", out.stdout.trim()),
            None,
        ),
        Err(e) => f.add(
            "git",
            DoctorLevel::Warn,
            format!("{e}"),
            Some("install git to start sessions on a repository (--repo); everything else works without it"),
        ),
    }
    // Where Claude's API requests go: the configured upstream, else Anthropic's API.
    let upstream = config
        .api_base_url
        .clone()
        .or_else(|| engine.api_base_url.clone());
    let local_upstream = upstream.as_deref().is_some_and(|u| {
        ["http://127.", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| u.starts_with(p))
    });
    f.add(
        "api",
        DoctorLevel::Ok,
        match &upstream {
            Some(u) if local_upstream => format!(
                "Claude's API requests go to `{u}` on this host (a gateway or `creel fake-model`), not to Anthropic"
            ),
            Some(u) => {
                format!("Claude's API requests go to `{u}` (api_base_url), not to Anthropic's API")
            }
            None => {
                "Claude's API requests go to Anthropic's API (https://api.anthropic.com)".into()
            }
        },
        None,
    );
    match engine.login() {
        Some(crate::api::Login::ApiKey) => f.add("login", DoctorLevel::Ok, "API key".into(), None),
        Some(crate::api::Login::OAuth(c)) => f.add(
            "login",
            DoctorLevel::Ok,
            format!("OAuth credentials `{}`", c.display()),
            None,
        ),
        None if local_upstream => f.add(
            "login",
            DoctorLevel::Error,
            "no API key and no OAuth credentials".into(),
            Some(
                "a local stand-in such as `creel fake-model` takes any key: export ANTHROPIC_API_KEY=stand-in",
            ),
        ),
        None => f.add(
            "login",
            DoctorLevel::Error,
            "no API key and no OAuth credentials".into(),
            Some("export ANTHROPIC_API_KEY=..., or log in with `claude` on this host; for a dry run without a key, `creel fake-model` prints what to export"),
        ),
    }
    f.add(
        "store",
        DoctorLevel::Ok,
        format!("`{}`", engine.home().join("creel.db").display()),
        None,
    );
    if let Ok(pool) = engine.pool_status()
        && (pool.size > 0 || !pool.sandboxes.is_empty())
    {
        let summary = format!("{} of {} sandboxes ready", pool.ready(), pool.size);
        match (&pool.last_failure, pool.size) {
            (Some(why), _) => f.add(
                "pool",
                DoctorLevel::Warn,
                format!("{summary}; the last one failed to start: {why}"),
                Some("fix the cause, then `creel pool fill` (starts leave the pool alone for five minutes after a failure)"),
            ),
            (None, 0) => f.add(
                "pool",
                DoctorLevel::Warn,
                format!("the pool is off (pool = 0) but {} sandboxes are left", pool.sandboxes.len()),
                Some("`creel pool drain` (or the next start) takes them down"),
            ),
            (None, _) if pool.ready() < pool.size as usize => f.add(
                "pool",
                DoctorLevel::Ok,
                summary,
                Some("`creel pool fill` fills it now; starts top it up behind them"),
            ),
            (None, _) => f.add("pool", DoctorLevel::Ok, summary, None),
        }
    }
    f.0
}

fn fmt_limit(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}
