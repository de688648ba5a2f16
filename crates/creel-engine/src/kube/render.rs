//! A job as Kubernetes manifests: Pod, PersistentVolumeClaim, Secret, NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::job::JobSpec;
use crate::runtime::argv::{CLAUDE_CONFIG, FIXED_ENV, WORKSPACE, claude_args};

/// The label every object creel makes carries.
pub const LABEL_MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "creel");
/// The job label (pods, secrets, policies).
pub const LABEL_JOB: &str = "creel.dev/job";
/// The session label.
pub const LABEL_SESSION: &str = "creel.dev/session";
/// The label of creel's egress proxy pods, the only peer a job pod may reach.
pub const LABEL_EGRESS: (&str, &str) = ("app.kubernetes.io/name", "creel-egress");

/// Where the job's Secret (prompt, token) is mounted, read-only.
pub const INPUT_DIR: &str = "/creel/input";

/// Where the job's own directory of the session volume is mounted: the wrapper writes
/// Claude's standard output there (`output.jsonl`, exactly as printed), its standard error
/// (`stderr`) and its exit code.
pub const OUT_DIR: &str = "/creel/out";
/// The file of Claude's output in a job's directory of the session volume.
pub const OUTPUT_FILE: &str = "output.jsonl";

/// The pod's wrapper: reads the job's token (its credential at creel's egress proxy, which
/// also stands in for the API key) into the environment and starts Claude with the prompt on
/// standard input. Claude's output goes, exact, to `output.jsonl` on the session volume, and
/// to the container's log with each line numbered (`N line`): the log is only the fast way to
/// the front end (the kubelet rotates it and may lose lines), the numbers tell the front end
/// which lines it has, and the file is where a gap is filled from. Its size and SHA-256 end
/// up in the termination message with the exit code. Carries no user data; `$0` is Claude's
/// path and `$@` its arguments.
pub const POD_WRAPPER: &str = concat!(
    "exec 2>>/creel/out/stderr; ",
    "IFS= read -r CREEL_TOKEN < /creel/input/token; [ -n \"$CREEL_TOKEN\" ] || exit 125; ",
    "export ANTHROPIC_API_KEY=\"$CREEL_TOKEN\"; ",
    "if [ -n \"$CREEL_PROXY\" ]; then p=\"http://job:$CREEL_TOKEN@$CREEL_PROXY\"; ",
    "export HTTPS_PROXY=\"$p\" https_proxy=\"$p\" HTTP_PROXY=\"$p\" http_proxy=\"$p\"; fi; ",
    "unset CREEL_TOKEN; ",
    "{ \"$0\" \"$@\" < /creel/input/prompt; echo $? > /creel/out/exit; } ",
    "| tee /creel/out/output.jsonl | awk '{ print NR \" \" $0; fflush() }'; ",
    "rc=$(cat /creel/out/exit) || rc=125; ",
    "printf '{\"exit\":%d,\"bytes\":%d,\"sha256\":\"%s\"}' \"$rc\" \"$(wc -c < /creel/out/output.jsonl)\" ",
    "\"$(sha256sum < /creel/out/output.jsonl | cut -d ' ' -f 1)\" > /dev/termination-log; ",
    "exit \"$rc\""
);

/// A reader pod's command: prints `$2` bytes of job `$0`'s output from byte `$1` (counted
/// from 1), from the session volume mounted read-only at `/session`; nothing else (its
/// errors are not in its log), and it fails when the file is not there.
pub const READER: &str = "exec 2>/dev/null; f=\"/session/out/$0/output.jsonl\"; [ -r \"$f\" ] || exit 3; tail -c +\"$1\" \"$f\" | head -c \"$2\"";

/// The label of a reader pod, naming the job whose output it reads.
pub const LABEL_READS: &str = "creel.dev/reads";

/// Where and how jobs run on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeSettings {
    /// The namespace of every object.
    pub namespace: String,
    /// The sessions' volumes' storage class (the cluster's default when `None`).
    pub storage_class: Option<String>,
    /// A session volume's size.
    pub session_storage: String,
    /// `imagePullPolicy` of the job's containers.
    pub image_pull_policy: String,
    /// creel's egress proxy as the job pods reach it (`service:port`); `None`: no egress at
    /// all (the policy then lets the pod reach nothing).
    pub egress_proxy: Option<String>,
    /// The pod's ephemeral-storage limit (its writable layer and logs).
    pub ephemeral_storage: String,
}

impl Default for KubeSettings {
    fn default() -> Self {
        KubeSettings {
            namespace: "creel".into(),
            storage_class: None,
            session_storage: "1Gi".into(),
            image_pull_policy: "IfNotPresent".into(),
            egress_proxy: Some("creel-egress:3128".into()),
            ephemeral_storage: "1Gi".into(),
        }
    }
}

/// One job's manifests.
#[derive(Debug, Clone)]
pub struct Manifests {
    /// The session's volume, for a new session (an existing one has it already).
    pub session_volume: Option<PersistentVolumeClaim>,
    /// The job's prompt and token.
    pub input: Secret,
    /// Who the job's pod may talk to.
    pub policy: NetworkPolicy,
    /// The job.
    pub pod: Pod,
}

impl Manifests {
    /// The manifests as a multi-document YAML stream, in the order they are applied. Each
    /// document is written in YAML's JSON form (indented): every string is quoted, so no
    /// prompt, session id or model (`yes`, `on`, `1_000`) is read back by a YAML 1.1 reader,
    /// such as kubectl's, as a boolean or a number.
    pub fn to_yaml(&self) -> Result<String, serde_json::Error> {
        let mut docs = Vec::new();
        if let Some(v) = &self.session_volume {
            docs.push(typed(v, "v1", "PersistentVolumeClaim")?);
        }
        docs.push(typed(&self.input, "v1", "Secret")?);
        docs.push(typed(
            &self.policy,
            "networking.k8s.io/v1",
            "NetworkPolicy",
        )?);
        docs.push(typed(&self.pod, "v1", "Pod")?);
        Ok(docs.iter().map(|d| format!("---\n{d}\n")).collect())
    }
}

/// An object as one document, with its `apiVersion` and `kind` (the keys come out sorted,
/// which puts those two first).
fn typed<T: serde::Serialize>(
    object: &T,
    api_version: &str,
    kind: &str,
) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    if let serde_json::Value::Object(m) = &mut value {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    serde_json::to_string_pretty(&value)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A size as creel's config writes it (Podman's and Docker's units: `512m` is 512 MiB) as a
/// Kubernetes quantity (where `512m` would be 0.512 bytes): `512Mi`.
pub fn quantity(size: &str) -> Quantity {
    let s = size.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let unit = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => "",
        "k" | "kb" | "kib" => "Ki",
        "m" | "mb" | "mib" => "Mi",
        "g" | "gb" | "gib" => "Gi",
        "t" | "tb" | "tib" => "Ti",
        // Not a size creel's config accepts; passed on for the API server to judge.
        _ => return Quantity(s.to_string()),
    };
    Quantity(format!("{num}{unit}"))
}

/// Every container's security context, the init one's too, as the "restricted" Pod Security
/// Standard asks.
fn hardened() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

/// The pod's security context: the agent's user and group (also the volume's `fsGroup`),
/// and the runtime's default seccomp profile.
fn pod_security(uid: i64, gid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(gid),
        fs_group: Some(gid),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The name of a pod that reads job `job_id`'s output from byte `offset` (`nonce` keeps two
/// front ends' readers apart).
pub fn reader_name(job_id: &str, offset: u64, nonce: &str) -> String {
    format!("creel-{job_id}-read-{offset}-{nonce}")
}

/// A pod that prints `len` bytes of job `job_id`'s output from byte `offset`, read from
/// session `session_id`'s volume (read-only), to its log; creel reads that log once the pod
/// has ended. Hardened as the job's pod; no network (it is selected by no policy that lets it
/// out, and needs none); no token or prompt.
#[allow(clippy::too_many_arguments)]
pub fn reader(
    job_id: &str,
    session_id: &str,
    image: &str,
    uid: i64,
    gid: i64,
    settings: &KubeSettings,
    offset: u64,
    len: u64,
    nonce: &str,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(reader_name(job_id, offset, nonce)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels(&[LABEL_MANAGED, (LABEL_READS, job_id)])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(300),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(uid, gid)),
            containers: vec![Container {
                name: "read".into(),
                image: Some(image.into()),
                image_pull_policy: Some(settings.image_pull_policy.clone()),
                command: Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    READER.into(),
                    job_id.into(),
                    (offset + 1).to_string(),
                    len.to_string(),
                ]),
                security_context: Some(hardened()),
                resources: Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([
                        ("memory".to_string(), Quantity("64Mi".into())),
                        ("cpu".to_string(), Quantity("500m".into())),
                    ])),
                    ..Default::default()
                }),
                volume_mounts: Some(vec![VolumeMount {
                    name: "session".into(),
                    mount_path: "/session".into(),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "session".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: session_volume_name(session_id),
                    read_only: Some(true),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The session's volume name.
pub fn session_volume_name(session: &str) -> String {
    format!("creel-session-{session}")
}

/// Renders job `job_id` of session `session_id` (`new_session`: with its volume) running
/// `spec` with `prompt`, and its egress `token`.
pub fn render(
    job_id: &str,
    session_id: &str,
    new_session: bool,
    spec: &JobSpec,
    prompt: &str,
    token: &str,
    settings: &KubeSettings,
) -> Manifests {
    let name = format!("creel-{job_id}");
    let ns = Some(settings.namespace.clone());
    let job_labels = labels(&[
        LABEL_MANAGED,
        (LABEL_JOB, job_id),
        (LABEL_SESSION, session_id),
    ]);
    let (uid, gid) = match spec.user {
        crate::job::UserMode::KeepId { uid, gid } | crate::job::UserMode::Plain { uid, gid } => {
            (i64::from(uid), i64::from(gid))
        }
    };
    let volume_name = session_volume_name(session_id);

    let session_volume = new_session.then(|| PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(volume_name.clone()),
            namespace: ns.clone(),
            labels: Some(labels(&[LABEL_MANAGED, (LABEL_SESSION, session_id)])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: settings.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(settings.session_storage.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });

    let input = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ns.clone(),
            labels: Some(job_labels.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            ("prompt".to_string(), prompt.to_string()),
            ("token".to_string(), token.to_string()),
        ])),
        ..Default::default()
    };

    let proxy_port = settings
        .egress_proxy
        .as_deref()
        .and_then(|p| p.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<i32>().ok());
    let mut egress = Vec::new();
    if let Some(port) = proxy_port {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(labels(&[LABEL_EGRESS])),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ports: Some(vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        });
        // The proxy is named by its Service: the pod needs the cluster's DNS.
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(labels(&[("kubernetes.io/metadata.name", "kube-system")])),
                    ..Default::default()
                }),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(labels(&[("k8s-app", "kube-dns")])),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ports: Some(
                ["UDP", "TCP"]
                    .iter()
                    .map(|p| NetworkPolicyPort {
                        port: Some(IntOrString::Int(53)),
                        protocol: Some(p.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        });
    }
    let policy = NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ns.clone(),
            labels: Some(job_labels.clone()),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels(&[(LABEL_JOB, job_id)])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(Vec::new()),
            egress: Some(egress),
        }),
    };

    let mut env: Vec<EnvVar> = FIXED_ENV
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.to_string(),
            value: Some(v.to_string()),
            ..Default::default()
        })
        .collect();
    if let Some(proxy) = &settings.egress_proxy {
        // API calls go to the proxy directly (with the token as their key), not through it.
        let host = proxy.rsplit_once(':').map_or(proxy.as_str(), |(h, _)| h);
        let no_proxy = format!("127.0.0.1,localhost,{host}");
        for (k, v) in [
            ("CREEL_PROXY", proxy.clone()),
            ("NO_PROXY", no_proxy.clone()),
            ("no_proxy", no_proxy),
            // API requests go to the proxy, which adds the key.
            ("ANTHROPIC_BASE_URL", format!("http://{proxy}")),
        ] {
            env.push(EnvVar {
                name: k.into(),
                value: Some(v),
                ..Default::default()
            });
        }
    }
    let limits = BTreeMap::from([
        ("memory".to_string(), quantity(&spec.memory)),
        ("cpu".to_string(), Quantity(spec.cpus.clone())),
        (
            "ephemeral-storage".to_string(),
            Quantity(settings.ephemeral_storage.clone()),
        ),
    ]);
    let mount = |name: &str, path: &str, sub: Option<&str>, ro: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        sub_path: sub.map(str::to_string),
        read_only: ro.then_some(true),
        ..Default::default()
    };
    // The session volume's two directories, made by the agent's user before the job mounts
    // them by `subPath` (a kubelet would make missing ones as root). The volume is the pod's
    // `fsGroup`'s, group-writable, as Kubernetes makes it.
    let session_dirs = Container {
        name: "session-dirs".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "mkdir -p /session/workspace /session/claude \"/session/out/$0\"".into(),
            job_id.into(),
        ]),
        security_context: Some(hardened()),
        resources: Some(ResourceRequirements {
            limits: Some(limits.clone()),
            ..Default::default()
        }),
        volume_mounts: Some(vec![mount("session", "/session", None, false)]),
        ..Default::default()
    };
    let claude = Container {
        name: "claude".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            POD_WRAPPER.into(),
            spec.claude_path.clone(),
        ]),
        args: Some(claude_args(spec)),
        working_dir: Some(WORKSPACE.into()),
        env: Some(env),
        security_context: Some(hardened()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("memory".to_string(), quantity(&spec.memory)),
                ("cpu".to_string(), Quantity(spec.cpus.clone())),
            ])),
            limits: Some(limits),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("session", WORKSPACE, Some("workspace"), false),
            mount("session", CLAUDE_CONFIG, Some("claude"), false),
            mount("session", OUT_DIR, Some(&format!("out/{job_id}")), false),
            mount("input", INPUT_DIR, None, true),
            mount("tmp", "/tmp", None, false),
        ]),
        ..Default::default()
    };
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ns,
            labels: Some(job_labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: spec
                .budget
                .as_ref()
                .and_then(|b| b.wall_seconds)
                .and_then(|w| i64::try_from(w).ok()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(uid, gid)),
            init_containers: Some(vec![session_dirs]),
            containers: vec![claude],
            volumes: Some(vec![
                Volume {
                    name: "session".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: volume_name,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "input".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(name),
                        default_mode: Some(0o440),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        medium: Some("Memory".into()),
                        size_limit: Some(quantity(&spec.tmpfs_size)),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Manifests {
        session_volume,
        input,
        policy,
        pod,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(egress: Option<&str>) -> Manifests {
        let mut spec = crate::runtime::argv::tests::spec();
        spec.steer = None;
        let settings = KubeSettings {
            egress_proxy: egress.map(str::to_string),
            ..Default::default()
        };
        render("j1", "s1", true, &spec, "do it", "tok", &settings)
    }

    #[test]
    fn the_pod_carries_the_container_s_hardening_and_no_secret() {
        let m = rendered(Some("creel-egress:3128"));
        let spec = m.pod.spec.as_ref().unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let psc = spec.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        let c = &spec.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(sc.capabilities.as_ref().unwrap().add, None);
        // The "restricted" Pod Security Standard, for the init container too.
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(sc.run_as_user, None, "{}", c.name);
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            let caps = sc.capabilities.as_ref().unwrap();
            assert_eq!(caps.drop, Some(vec!["ALL".to_string()]), "{}", c.name);
            assert_eq!(caps.add, None, "{}", c.name);
        }
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        for k in ["memory", "cpu", "ephemeral-storage"] {
            assert!(limits.contains_key(k), "{k}");
        }
        let tmp = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "tmp")
            .unwrap();
        assert_eq!(
            tmp.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
        // The prompt and token only in the Secret; the API key nowhere.
        let yaml = m.to_yaml().unwrap();
        assert_eq!(yaml.matches("do it").count(), 1, "{yaml}");
        assert!(!serde_json::to_string(&m.pod).unwrap().contains("\"tok\""));
        assert!(
            c.args
                .as_ref()
                .unwrap()
                .contains(&"--dangerously-skip-permissions".to_string())
        );
        assert!(
            yaml.starts_with(
                "---\n{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"PersistentVolumeClaim\","
            ),
            "{yaml}"
        );
    }

    #[test]
    fn words_yaml_1_1_reads_as_booleans_stay_strings() {
        let mut spec = crate::runtime::argv::tests::spec();
        spec.steer = None;
        spec.model = Some("on".into());
        let m = render(
            "j1",
            "on",
            true,
            &spec,
            "yes",
            "tok",
            &KubeSettings::default(),
        );
        let yaml = m.to_yaml().unwrap();
        for quoted in [
            "\"prompt\": \"yes\"",
            "\"creel.dev/session\": \"on\"",
            "\"on\"",
        ] {
            assert!(yaml.contains(quoted), "{quoted} in {yaml}");
        }
    }

    #[test]
    fn sizes_become_binary_quantities() {
        for (size, q) in [
            ("512m", "512Mi"),
            ("1g", "1Gi"),
            ("64k", "64Ki"),
            ("1048576", "1048576"),
            ("2GiB", "2Gi"),
        ] {
            assert_eq!(quantity(size).0, q);
        }
    }

    #[test]
    fn without_a_proxy_the_policy_lets_nothing_out() {
        let m = rendered(None);
        let p = m.policy.spec.unwrap();
        assert_eq!(p.egress, Some(Vec::new()));
        assert_eq!(p.ingress, Some(Vec::new()));
        assert_eq!(
            p.policy_types,
            Some(vec!["Ingress".to_string(), "Egress".to_string()])
        );
        let env = m.pod.spec.unwrap().containers[0].env.clone().unwrap();
        assert!(!env.iter().any(|e| e.name == "CREEL_PROXY"));
    }
}
