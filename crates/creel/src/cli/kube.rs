//! `creel kube`: the Kubernetes backend's commands (so far: `render`).

use anyhow::Context;
use creel_engine::Engine;
use creel_engine::kube::KubeSettings;

use super::ExitStatus;
use crate::printer;

#[derive(Debug, clap::Subcommand)]
pub enum KubeCommand {
    /// Print the manifests creel would apply for a job, as multi-document YAML
    ///
    /// A PersistentVolumeClaim for the session (its workspace and Claude's config), a Secret
    /// with the prompt and the job's egress token (mounted read-only), a NetworkPolicy that
    /// lets the pod reach only creel's egress proxy and DNS, and the Pod: the same image, the
    /// same Claude Code arguments and the same hardening as a container on this machine.
    /// Nothing is applied or started. Review them, or commit them for GitOps:
    ///
    ///   creel kube render --namespace agents 'fix the failing test' > job.yaml
    Render(RenderArgs),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The prompt
    pub prompt: String,
    /// The session id (default: a new one)
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Claude model
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Stop after this many agent turns
    #[arg(long, value_name = "N")]
    pub max_turns: Option<u32>,
    /// The namespace of every object [default: [kubernetes] namespace, or creel]
    #[arg(long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// The session volume's storage class [default: [kubernetes] storage_class, or the cluster's]
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,
    /// The session volume's size [default: [kubernetes] session_storage, or 1Gi]
    #[arg(long, value_name = "QUANTITY")]
    pub session_storage: Option<String>,
    /// The containers' imagePullPolicy [default: [kubernetes] image_pull_policy, or IfNotPresent]
    #[arg(long, value_name = "POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub pull_policy: Option<String>,
    /// creel's egress proxy as pods reach it (SERVICE:PORT), or `none` for no way out at all
    /// [default: [kubernetes] egress_proxy, or creel-egress:3128]
    #[arg(long, value_name = "SERVICE:PORT")]
    pub egress_proxy: Option<String>,
    /// The pod's ephemeral-storage limit [default: [kubernetes] ephemeral_storage, or 1Gi]
    #[arg(long, value_name = "QUANTITY")]
    pub ephemeral_storage: Option<String>,
}

pub fn run(engine: &Engine, cmd: KubeCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        KubeCommand::Render(a) => {
            let k = &engine.config().kubernetes;
            // `network = "none"` means no way out, on a cluster too.
            let egress = match (a.egress_proxy, engine.config().network) {
                (Some(p), _) => p,
                (None, creel_engine::config::NetworkMode::None) => "none".to_string(),
                (None, _) => k.egress_proxy.clone(),
            };
            let egress_proxy = match egress.as_str() {
                "none" => None,
                p if p.rsplit_once(':').is_some_and(|(h, port)| {
                    !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0)
                }) =>
                {
                    Some(p.to_string())
                }
                p => {
                    return Err(crate::exit::InvalidInput(format!(
                        "the egress proxy `{p}` is not SERVICE:PORT (or `none`)"
                    ))
                    .into());
                }
            };
            let settings = KubeSettings {
                namespace: a.namespace.unwrap_or_else(|| k.namespace.clone()),
                storage_class: a.storage_class.or_else(|| k.storage_class.clone()),
                session_storage: a
                    .session_storage
                    .unwrap_or_else(|| k.session_storage.clone()),
                image_pull_policy: a.pull_policy.unwrap_or_else(|| k.image_pull_policy.clone()),
                egress_proxy,
                ephemeral_storage: a
                    .ephemeral_storage
                    .unwrap_or_else(|| k.ephemeral_storage.clone()),
            };
            let req = creel_engine::StartRequest {
                prompt: a.prompt,
                session_id: a.session,
                model: a.model,
                max_turns: a.max_turns,
                ..Default::default()
            };
            let job = engine
                .kube_render(&req, &settings)
                .context("cannot render the job")?;
            let yaml = job.manifests.to_yaml().context("cannot write YAML")?;
            printer::out(yaml.as_bytes())?;
        }
    }
    Ok(ExitStatus::Success)
}
