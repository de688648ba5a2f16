//! `creel kube`: the Kubernetes backend's commands: `render` (a job's manifests) and `proxy`
//! (the egress proxy a cluster's jobs share).

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
    /// Serve the egress proxy a cluster's jobs share: it admits a request only with its job's
    /// token and adds the real API key to API calls
    ///
    /// Job pods reach nothing else (their NetworkPolicy). Run it in the cluster, in the jobs'
    /// namespace, in pods labelled `app.kubernetes.io/name: creel-egress` behind a Service
    /// whose name and port are [kubernetes] egress_proxy. The signing key is the namespace's
    /// Secret `creel-egress` (key `signing-key`, at least 32 bytes), which the front ends read to
    /// mint each job's token:
    ///
    ///   head -c 48 /dev/urandom | base64 > signing-key
    ///   kubectl -n creel create secret generic creel-egress --from-file=signing-key \
    ///       --from-literal=api-key="$ANTHROPIC_API_KEY"
    ///   creel kube proxy --signing-key-file /etc/creel/signing-key --api-key-file /etc/creel/api-key
    Proxy(ProxyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:3128")]
    pub listen: std::net::SocketAddr,
    /// The file with the job tokens' signing key (the Secret creel-egress, key signing-key)
    #[arg(long, value_name = "FILE")]
    pub signing_key_file: std::path::PathBuf,
    /// The file with the API key the proxy adds to jobs' API calls
    #[arg(long, value_name = "FILE")]
    pub api_key_file: std::path::PathBuf,
    /// Where jobs' API calls go
    #[arg(long, value_name = "URL", default_value = "https://api.anthropic.com")]
    pub api_base_url: String,
    /// A host jobs may reach besides the API, as in egress_allow (repeatable)
    #[arg(long = "allow", value_name = "HOST")]
    pub allow: Vec<String>,
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

/// `creel kube proxy`: needs no engine (no home, no store).
pub fn run_proxy(a: ProxyArgs) -> anyhow::Result<ExitStatus> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let opts = creel_engine::kube::SharedProxy {
        signing_key: read(&a.signing_key_file)?,
        api_key: String::from_utf8(read(&a.api_key_file)?)
            .context("the API key file is not text")?,
        api_base_url: a.api_base_url,
        allow: a.allow,
    };
    let listener = std::net::TcpListener::bind(a.listen)
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let local = listener.local_addr().unwrap_or(a.listen);
    // The address is the one line of data: tests and scripts read it.
    printer::out(format!("{local}\n").as_bytes())?;
    creel_engine::kube::serve_egress_proxy(listener, &opts)
        .map_err(|e| crate::exit::InvalidInput(format!("cannot serve the egress proxy: {e}")))?;
    Ok(ExitStatus::Success)
}

pub fn run(engine: &Engine, cmd: KubeCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        KubeCommand::Proxy(a) => run_proxy(a),
        KubeCommand::Render(a) => {
            let mut settings = KubeSettings::from_config(engine.config())?;
            if let Some(p) = a.egress_proxy {
                settings.egress_proxy = match p.as_str() {
                    "none" => None,
                    p => Some(creel_engine::kube::check_proxy(p)?),
                };
            }
            if let Some(n) = a.namespace {
                settings.namespace = n;
            }
            if let Some(c) = a.storage_class {
                settings.storage_class = Some(c);
            }
            if let Some(s) = a.session_storage {
                settings.session_storage = s;
            }
            if let Some(p) = a.pull_policy {
                settings.image_pull_policy = p;
            }
            if let Some(e) = a.ephemeral_storage {
                settings.ephemeral_storage = e;
            }
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
            Ok(ExitStatus::Success)
        }
    }
}
