//! The Kubernetes backend, first part: a job rendered as the manifests creel would apply
//! (`creel kube render`), for review and GitOps. Applying them, watching pods and the
//! cluster-side egress proxy are not built yet.
//!
//! A job is a Pod; its session a PersistentVolumeClaim (the workspace and Claude's config, so
//! a later job resumes the conversation); its prompt and its egress token a Secret, mounted
//! read-only (never in argv or env); and a NetworkPolicy lets the pod reach only creel's
//! egress proxy (and the cluster's DNS). The hardening of `runtime::argv` in pod-spec terms:
//! non-root, no privilege escalation, every capability dropped, a read-only root filesystem,
//! the runtime's default seccomp profile, memory, CPU and ephemeral-storage limits, a
//! memory-backed `/tmp`, no service-account token. The API key never enters the pod: Claude's
//! key there is the job's token, which the proxy exchanges for the real key.

pub mod render;

pub use render::{KubeSettings, Manifests, render};

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
        let job_id = new_job_id();
        let uid = self.config.sandbox_uid;
        let spec = JobSpec {
            runtime: self.config.runtime,
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
            conversation: ConversationMode::New(uuid::Uuid::new_v4().to_string()),
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
        };
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
