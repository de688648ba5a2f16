//! The Kubernetes backend (`runtime = "kubernetes"`): a job is a Pod, its session a
//! PersistentVolumeClaim (the workspace and Claude's config, so a later job resumes the
//! conversation), its prompt and its egress token a Secret mounted read-only (never in argv or
//! env), and a NetworkPolicy lets the pod reach only creel's egress proxy (and the cluster's
//! DNS). The hardening of `runtime::argv` in pod-spec terms: non-root, no privilege
//! escalation, every capability dropped, a read-only root filesystem, the runtime's default
//! seccomp profile, memory, CPU and ephemeral-storage limits, a memory-backed `/tmp`, no
//! service-account token. The API key never enters the pod: Claude's key there is the job's
//! token, which the proxy exchanges for the real key.
//!
//! - `render.rs`: the manifests (also `creel kube render`, for review and GitOps).
//! - `cluster.rs`: the API client (the `kube` crate).
//! - `lifecycle.rs`: `start` and `cancel` on a cluster, and a pod made into a job record.
//! - `watcher.rs`: the namespace's one watch, in one process for all its jobs.
//! - `output.rs`: a pod's output, byte-exact whatever the kubelet's log keeps.
//!
//! The cluster is the source of truth: a job is its pod (labels and annotations say whose it
//! is and what it runs), and any creel front end with the kubeconfig sees and controls every
//! job of the namespace. The store is this front end's mirror of them.

pub(crate) mod cluster;
mod lifecycle;
pub(crate) mod output;
pub mod render;
pub mod watcher;

pub use render::{KubeSettings, Manifests, render};

pub(crate) use lifecycle::is_cluster_session;

use crate::api::StartRequest;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{ConversationMode, JobSpec, UserMode, new_job_id, validate_model};
use crate::session::new_session_id;

/// A job rendered for a cluster: its ids and manifests.
#[derive(Debug, Clone)]
pub struct RenderedJob {
    /// The job id the manifests name.
    pub job_id: String,
    /// The session id.
    pub session_id: String,
    /// The objects.
    pub manifests: Manifests,
}

impl Engine {
    /// The manifests creel would apply on a cluster for `req`: nothing is started or written,
    /// and no container engine is needed. A workspace or repository of this machine cannot
    /// be a pod's: the session's volume is its workspace.
    pub fn kube_render(&self, req: &StartRequest, settings: &KubeSettings) -> Result<RenderedJob> {
        let (session_id, model) = self.kube_check(req, settings)?;
        let job_id = new_job_id();
        let spec = self.kube_spec(
            req,
            model,
            ConversationMode::New(uuid::Uuid::new_v4().to_string()),
        );
        let token = uuid::Uuid::new_v4().simple().to_string();
        let manifests = render(
            &job_id,
            &session_id,
            true,
            &spec,
            &req.prompt,
            &token,
            settings,
        );
        Ok(RenderedJob {
            job_id,
            session_id,
            manifests,
        })
    }

    /// What a job on a cluster must not have: returns its session id (a new one when the
    /// request names none) and model.
    pub(crate) fn kube_check(
        &self,
        req: &StartRequest,
        settings: &KubeSettings,
    ) -> Result<(String, Option<String>)> {
        req.check()?;
        if req.workspace.is_some() || req.repo.is_some() {
            return Err(Error::InvalidRequest(
                "a Kubernetes job's workspace is its session's volume: --workspace and --repo are for jobs on this machine".into(),
            ));
        }
        let model = req.model.clone().or_else(|| self.config.model.clone());
        if let Some(m) = &model {
            validate_model(m).map_err(|m| Error::InvalidRequest(format!("invalid model: {m}")))?;
        }
        let session_id = req.session_id.clone().unwrap_or_else(new_session_id);
        for (what, value) in [
            ("namespace", Some(settings.namespace.clone())),
            ("session", Some(render::session_volume_name(&session_id))),
        ] {
            if let Some(v) = value
                && !is_dns_label(&v)
            {
                return Err(Error::InvalidRequest(format!(
                    "`{v}` cannot be a Kubernetes {what} name (lowercase letters, digits and `-`, at most 63)"
                )));
            }
        }
        if let Some(class) = &settings.storage_class
            && (class.len() > 253 || !class.split('.').all(is_dns_label))
        {
            return Err(Error::InvalidRequest(format!(
                "`{class}` cannot be a storage class name (lowercase DNS labels joined by `.`)"
            )));
        }
        for (what, size) in [
            ("session volume size", &settings.session_storage),
            ("ephemeral-storage limit", &settings.ephemeral_storage),
        ] {
            if size.trim_end().ends_with('m') {
                return Err(Error::InvalidRequest(format!(
                    "the {what} `{size}` is in thousandths of a byte to Kubernetes; write Mi (or Gi)"
                )));
            }
        }
        // What a pod cannot do yet is refused, not dropped: approvals and questions need the
        // steering channel, which pods do not have.
        if self.config.permissions == crate::steer::Permissions::Ask {
            return Err(Error::InvalidRequest(
                "permissions = \"ask\" needs steering, which Kubernetes jobs do not have yet; render with permissions = \"skip\"".into(),
            ));
        }
        Ok((session_id, model))
    }

    /// The spec of a job on a cluster: the config's image, limits and budget, Claude's
    /// arguments as on this machine, no steering (not in pods yet), the key via the proxy.
    pub(crate) fn kube_spec(
        &self,
        req: &StartRequest,
        model: Option<String>,
        conversation: ConversationMode,
    ) -> JobSpec {
        let uid = self.config.sandbox_uid;
        JobSpec {
            runtime: crate::config::RuntimeKind::Kubernetes,
            runtime_bin: Default::default(),
            image: self.config.image.clone(),
            oci_runtime: None,
            memory: self.config.memory.clone(),
            cpus: self.config.cpus.clone(),
            pids_limit: self.config.pids_limit,
            network: self.config.network,
            apparmor_profile: None,
            tmpfs_size: self.config.tmpfs_size.clone(),
            ulimits: Vec::new(),
            user: UserMode::Plain { uid, gid: uid },
            startup_timeout: self.config.startup_timeout,
            idle_timeout: self.config.idle_timeout,
            max_output_size: self.config.max_output_size,
            claude_path: self.config.claude_path.clone(),
            model,
            // A new session's turn budget caps the job as on this machine.
            max_turns: match (req.max_turns, self.config.max_turns) {
                (Some(own), Some(b)) => Some(own.min(u32::try_from(b).unwrap_or(u32::MAX))),
                (None, Some(b)) => Some(u32::try_from(b).unwrap_or(u32::MAX)),
                (own, None) => own,
            },
            workspace: crate::runtime::argv::WORKSPACE.into(),
            claude_config_dir: crate::runtime::argv::CLAUDE_CONFIG.into(),
            conversation,
            env: Vec::new(),
            api_key: false,
            warnings: Vec::new(),
            webhook: None,
            credentials_file: None,
            egress: None,
            key_via_proxy: true,
            git: None,
            git_base: None,
            // Steering (the inbox, questions, approvals) is not in pods yet.
            steer: None,
            // The session's dollar budget as Claude's own limit, its seconds as the pod's
            // deadline.
            budget: (self.config.max_cost_usd.is_some() || self.config.max_wall_seconds.is_some())
                .then(|| crate::job::JobBudget {
                    cost_usd: self.config.max_cost_usd,
                    turns_from_budget: self.config.max_turns.is_some(),
                    wall_seconds: self.config.max_wall_seconds,
                }),
        }
    }
}

impl KubeSettings {
    /// The settings of the `[kubernetes]` table (`network = "none"`: no egress proxy).
    pub fn from_config(config: &crate::config::Config) -> Result<KubeSettings> {
        let k = &config.kubernetes;
        let egress_proxy = match (k.egress_proxy.as_str(), config.network) {
            (_, crate::config::NetworkMode::None) | ("none", _) => None,
            (p, _) => Some(check_proxy(p)?),
        };
        Ok(KubeSettings {
            namespace: k.namespace.clone(),
            storage_class: k.storage_class.clone(),
            session_storage: k.session_storage.clone(),
            image_pull_policy: k.image_pull_policy.clone(),
            egress_proxy,
            ephemeral_storage: k.ephemeral_storage.clone(),
        })
    }
}

/// An egress proxy's address as pods reach it: `SERVICE:PORT`.
pub fn check_proxy(p: &str) -> Result<String> {
    match p.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0) => {
            Ok(p.to_string())
        }
        _ => Err(Error::InvalidRequest(format!(
            "the egress proxy `{p}` is not SERVICE:PORT (or `none`)"
        ))),
    }
}

/// The Secret that holds the signing key of job tokens (key [`SIGNING_KEY`]), shared by the
/// front ends (which mint a token per job) and creel's egress proxy (which checks them).
pub const EGRESS_SECRET: &str = "creel-egress";
/// The key of the signing key in [`EGRESS_SECRET`].
pub const SIGNING_KEY: &str = "signing-key";

/// What `creel egress-proxy` serves with.
#[derive(Debug, Clone)]
pub struct SharedProxy {
    /// The job tokens' signing key.
    pub signing_key: Vec<u8>,
    /// The API key added to jobs' API calls.
    pub api_key: String,
    /// Where API calls go.
    pub api_base_url: String,
    /// Hosts jobs may reach besides the API (as `egress_allow`).
    pub allow: Vec<String>,
}

/// Serves creel's egress proxy for a cluster's jobs on `listener` (blocks): each request
/// needs its job's token; API calls get the real key. Refusals are logged.
pub fn serve_egress_proxy(
    listener: std::net::TcpListener,
    opts: &SharedProxy,
) -> std::result::Result<(), String> {
    let config = crate::egress::ProxyConfig::shared(
        &opts.signing_key,
        opts.api_key.clone(),
        &opts.api_base_url,
        &opts.allow,
    )?;
    let sink: crate::egress::DenialSink = std::sync::Arc::new(|d: &crate::egress::Denial| {
        tracing::info!(host = %d.host, "egress refused: {}", d.reason);
    });
    crate::egress::serve(listener, std::sync::Arc::new(config), sink);
    Ok(())
}

/// What `creel doctor` learns of the cluster.
pub(crate) struct Probe {
    /// The API server's version.
    pub(crate) version: Result<String>,
    /// How many of creel's pods the namespace has.
    pub(crate) pods: Result<usize>,
    /// Whether NetworkPolicies can be listed (how many).
    pub(crate) policies: Result<usize>,
    /// The egress proxy's Service, and whether it exists (`None`: no proxy configured).
    pub(crate) proxy: Option<(String, Result<bool>)>,
}

impl Engine {
    pub(crate) fn kube_probe(&self) -> Probe {
        let k = self.config.kubernetes.clone();
        let proxy = KubeSettings::from_config(&self.config)
            .ok()
            .and_then(|s| s.egress_proxy)
            .and_then(|p| {
                p.rsplit_once(':')
                    .map(|(h, _)| h.split('.').next().unwrap_or(h).to_string())
            });
        let probed = cluster::block_on(async move {
            let c = match cluster::Cluster::connect(&k).await {
                Ok(c) => c,
                Err(e) => {
                    return Probe {
                        version: Err(e),
                        pods: Ok(0),
                        policies: Ok(0),
                        proxy: None,
                    };
                }
            };
            let version = c.version().await;
            if version.is_err() {
                return Probe {
                    version,
                    pods: Ok(0),
                    policies: Ok(0),
                    proxy: None,
                };
            }
            let selector = format!("{}={}", render::LABEL_MANAGED.0, render::LABEL_MANAGED.1);
            let lp = kube::api::ListParams::default().labels(&selector);
            let pods = c
                .pods()
                .list(&lp)
                .await
                .map(|l| l.items.len())
                .map_err(|e| Error::cluster("list the namespace's pods", e));
            let policies = c
                .policies()
                .list(&lp)
                .await
                .map(|l| l.items.len())
                .map_err(|e| Error::cluster("list the namespace's NetworkPolicies", e));
            let proxy = match proxy {
                Some(name) => {
                    let services: kube::Api<k8s_openapi::api::core::v1::Service> = c.services();
                    let found = services
                        .get_opt(&name)
                        .await
                        .map(|s| s.is_some())
                        .map_err(|e| Error::cluster(format!("look up the Service `{name}`"), e));
                    Some((name, found))
                }
                None => None,
            };
            Probe {
                version,
                pods,
                policies,
                proxy,
            }
        });
        probed.unwrap_or_else(|e| Probe {
            version: Err(e),
            pods: Ok(0),
            policies: Ok(0),
            proxy: None,
        })
    }
}

/// An error with its causes, on one line.
pub(crate) fn error_text(e: &Error) -> String {
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// An RFC 1123 label: what namespaces and most object names must be.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
