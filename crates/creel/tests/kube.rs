//! `creel kube render`: the manifests of a job, run for real with `podman kube play` (no
//! Kubernetes API server can run here). podman 4.3.1 cannot mount a `kind: Secret` from the
//! same YAML (it crashes in `VolumeFromSecret`), so the test hands the Secret's data over as
//! a ConfigMap; it does not enforce NetworkPolicies, so the policy is checked as data; and it
//! ignores `subPath`, so the session volume's root is mounted at both of its places; and it
//! applies no `fsGroup`, so the test makes the volume as a cluster would (the group's, 2775).
//! Everything else is the rendered Pod as it is: the hardening is checked from inside.

use std::process::Command;

use serde_norway::Value;

use crate::util::{TEST_IMAGE, TestEnv};

pub(crate) fn docs(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .collect()
}

/// The containers.conf `kube play` (and `creel fake-kube`'s kubelet) needs on these hosts:
/// they have no --ulimit or --runtime, and on these hosts (see host.rs) runc and rlimits root
/// may set come from a containers.conf.
pub(crate) fn containers_conf() -> std::path::PathBuf {
    let conf = std::env::temp_dir().join("creel-kube-play-containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    conf
}

/// podman with the containers.conf `kube play` needs on these hosts.
pub(crate) fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(args)
        .output()
        .expect("podman")
}

/// The rendered manifests as podman 4.3.1 can play them, written to `path`: the Secret's data
/// as a ConfigMap mounted the same way (a Secret in the YAML crashes podman), without the
/// NetworkPolicy (podman has none) and the PersistentVolumeClaim (its volume made beforehand,
/// as a cluster would make it), and with `host_network` the pod on the host's network (to
/// reach a stand-in on loopback). Returns the path and the text.
pub(crate) fn for_podman(
    mut docs: Vec<Value>,
    path: &std::path::Path,
    host_network: bool,
) -> (std::path::PathBuf, String) {
    let secret = docs[1].clone();
    let mut cm = serde_norway::Mapping::new();
    cm.insert("apiVersion".into(), "v1".into());
    cm.insert("kind".into(), "ConfigMap".into());
    cm.insert("metadata".into(), secret["metadata"].clone());
    cm.insert("data".into(), secret["stringData"].clone());
    docs[1] = Value::Mapping(cm);
    docs.remove(2);
    // The claim's volume is made beforehand (see `volume_as_a_cluster_makes_it`), and `kube
    // play` refuses a claim whose volume exists: the pod names it.
    assert_eq!(docs[0]["kind"], "PersistentVolumeClaim");
    docs.remove(0);
    let pod = &mut docs[1];
    assert_eq!(pod["kind"], "Pod");
    for v in pod["spec"]["volumes"].as_sequence_mut().unwrap() {
        if let Some(s) = v.get("secret").cloned() {
            let m = v.as_mapping_mut().unwrap();
            m.remove("secret");
            let mut c = serde_norway::Mapping::new();
            c.insert("name".into(), s["secretName"].clone());
            m.insert("configMap".into(), Value::Mapping(c));
        }
    }
    if host_network {
        pod["spec"]
            .as_mapping_mut()
            .unwrap()
            .insert("hostNetwork".into(), true.into());
    }
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_norway::to_string(d).unwrap()))
        .collect();
    std::fs::write(path, &text).unwrap();
    (path.to_path_buf(), text)
}

/// Makes the session's volume as a cluster would hand it to a pod with `fsGroup: gid`: the
/// group's, group-writable (podman applies no `fsGroup`).
pub(crate) fn volume_as_a_cluster_makes_it(name: &str, gid: u32) {
    let _ = podman(&["volume", "rm", "-f", name]);
    let made = podman(&["volume", "create", name]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let inspect = podman(&["volume", "inspect", name, "--format", "{{.Mountpoint}}"]);
    let root = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    std::os::unix::fs::chown(&root, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o2775)).unwrap();
}

/// Plays the rendered job `job` (its session volume `volume` made first, as a cluster makes
/// it) and waits for its Claude to exit 0; returns the container's log, and what takes it all
/// down when dropped.
pub(crate) fn play(
    docs: Vec<Value>,
    path: &std::path::Path,
    host_network: bool,
    volume: &str,
    job: &str,
) -> (String, Down) {
    let (played, text) = for_podman(docs, path, host_network);
    volume_as_a_cluster_makes_it(volume, 1000);
    let down = Down(played.clone(), [volume.to_string(), format!("creel-{job}")]);
    let play = podman(&["kube", "play", played.to_str().unwrap()]);
    assert!(
        play.status.success(),
        "podman kube play: {}\n{text}",
        String::from_utf8_lossy(&play.stderr)
    );
    let container = format!("creel-{job}-claude");
    let waited = podman(&["wait", &container]);
    let logs = podman(&["logs", &container]);
    let log = String::from_utf8_lossy(&logs.stdout).to_string();
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "0",
        "{log}\n{}{}",
        String::from_utf8_lossy(&waited.stderr),
        String::from_utf8_lossy(&logs.stderr)
    );
    (log, down)
}

/// Takes a played job down however the test ends: the pod, and the volumes `kube down` leaves
/// (the session's, and the one made for the ConfigMap).
pub(crate) struct Down(pub std::path::PathBuf, pub [String; 2]);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = podman(&["kube", "down", self.0.to_str().unwrap()]);
        for v in &self.1 {
            let _ = podman(&["volume", "rm", "-f", v]);
        }
    }
}

#[test]
fn a_rendered_job_runs_under_podman_kube_play_hardened_and_without_the_key() {
    let env = TestEnv::new();
    let prompt = "bash id -u; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; touch /rootfs-write 2>&1; echo \"key=${ANTHROPIC_API_KEY:-unset}\"; ls /creel/input; pwd\nsay rendered and ran";
    let out = env.run(&[
        "kube",
        "render",
        "--session",
        "kube-one",
        "--namespace",
        "agents",
        "--pull-policy",
        "Never",
        "--egress-proxy",
        "creel-egress:3128",
        prompt,
    ]);
    env.expect_code(&out, 0, &["kube", "render"]);
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        !yaml.contains("sk-test-key-0123456789"),
        "the API key is in no manifest"
    );
    let docs = docs(&yaml);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["PersistentVolumeClaim", "Secret", "NetworkPolicy", "Pod"]
    );
    let pod = docs[3].clone();
    let job = pod["metadata"]["labels"]["creel.dev/job"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(pod["metadata"]["namespace"], "agents");
    let argv = serde_norway::to_string(&pod["spec"]["containers"][0]["command"]).unwrap()
        + &serde_norway::to_string(&pod["spec"]["containers"][0]["args"]).unwrap();
    assert!(
        !argv.contains("rootfs-write"),
        "the prompt is not in argv: {argv}"
    );

    // The policy: nothing in, out only to the proxy's pods on its port, and DNS.
    let policy = &docs[2]["spec"];
    assert_eq!(
        policy["podSelector"]["matchLabels"]["creel.dev/job"],
        job.as_str()
    );
    assert_eq!(policy["ingress"], Value::Sequence(vec![]));
    assert_eq!(
        policy["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "creel-egress"
    );
    assert_eq!(policy["egress"][0]["ports"][0]["port"], 3128);
    assert_eq!(policy["egress"][1]["ports"][0]["port"], 53);
    assert_eq!(policy["egress"].as_sequence().unwrap().len(), 2);

    let token = docs[1]["stringData"]["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 32);
    assert_eq!(docs[3]["spec"]["containers"][0]["image"], TEST_IMAGE);
    let volume = "creel-session-kube-one";
    let (log, _down) = play(
        docs,
        &env.dir.path().join("played.yaml"),
        false,
        volume,
        &job,
    );
    // The tool result is JSON-escaped in the stream: look for the facts in it.
    assert!(log.contains("rendered and ran"), "{log}");
    for fact in [
        r#""1000\n"#,
        r#"CapEff:\t0000000000000000"#,
        r#"NoNewPrivs:\t1"#,
        "/rootfs-write: Read-only file system",
    ] {
        assert!(
            log.contains(fact),
            "non-root, no capabilities, no new privileges, a read-only root: {fact} in {log}"
        );
    }
    // Claude's key in the pod is the job's token (the proxy trades it for the real one).
    assert!(log.contains(&format!("key={token}")), "{log}");
    assert!(!log.contains("sk-test-key"), "{log}");
    assert!(log.contains(r#"prompt\ntoken\n/workspace"#), "{log}");
    // The session's volume keeps Claude's transcript for the next job.
    let inspect = podman(&["volume", "inspect", volume, "--format", "{{.Mountpoint}}"]);
    let mountpoint = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    // (On a cluster under `claude/`; podman mounts the volume's root there.)
    let projects = std::path::Path::new(&mountpoint).join("projects/-workspace");
    assert!(
        std::fs::read_dir(&projects).is_ok_and(|mut d| d.next().is_some()),
        "no transcript in {}",
        projects.display()
    );
}

#[test]
fn render_refuses_what_a_pod_cannot_have() {
    let env = TestEnv::without_image("");
    for (args, says) in [
        (
            vec!["kube", "render", "--session", "Has_Upper", "hi"],
            "cannot be a Kubernetes session name",
        ),
        (
            vec!["kube", "render", "--namespace=-bad", "hi"],
            "cannot be a Kubernetes namespace name",
        ),
        (
            vec!["kube", "render", "--egress-proxy", "nocolon", "hi"],
            "is not SERVICE:PORT",
        ),
        (vec!["kube", "render", "   "], "the prompt is empty"),
        (
            vec!["kube", "render", "--session-storage", "512m", "hi"],
            "thousandths of a byte",
        ),
        (
            vec!["kube", "render", "--storage-class", "Fast_SSD", "hi"],
            "cannot be a storage class name",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{}", env.describe(&args, &out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn render_takes_its_defaults_from_the_kubernetes_table_and_flags_win() {
    let env = TestEnv::without_image("");
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str("[kubernetes]\nnamespace = \"from-config\"\nstorage_class = \"fast\"\negress_proxy = \"none\"\n");
    std::fs::write(&env.config, config).unwrap();
    let yaml = |args: &[&str]| {
        let out = env.run(args);
        env.expect_code(&out, 0, args);
        docs(&String::from_utf8(out.stdout).unwrap())
    };
    let d = yaml(&["kube", "render", "say hi"]);
    assert_eq!(d[0]["metadata"]["namespace"], "from-config");
    assert_eq!(d[0]["spec"]["storageClassName"], "fast");
    assert_eq!(
        d[2]["spec"]["egress"],
        Value::Sequence(vec![]),
        "no proxy: nothing out"
    );
    let d = yaml(&["kube", "render", "--namespace", "flag", "say hi"]);
    assert_eq!(d[3]["metadata"]["namespace"], "flag");
    // Words a YAML 1.1 reader (kubectl's) takes for booleans stay strings.
    let d = yaml(&[
        "kube",
        "render",
        "--session",
        "on",
        "--storage-class",
        "fast.ssd",
        "yes",
    ]);
    assert_eq!(d[1]["stringData"]["prompt"], "yes");
    assert_eq!(d[3]["metadata"]["labels"]["creel.dev/session"], "on");
    assert_eq!(d[0]["spec"]["storageClassName"], "fast.ssd");

    // A config render refuses (exit 2), naming why.
    let refused_with = |config: String, says: &str| {
        std::fs::write(&env.config, config).unwrap();
        let out = env.run(&["kube", "render", "say hi"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            env.describe(&["kube"], &out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{says}"
        );
    };
    let root = std::fs::read_to_string(&env.config).unwrap();
    // What pods cannot do yet is refused, not dropped.
    refused_with(format!("permissions = \"ask\"\n{root}"), "steering");
    // network = "none": a policy that lets nothing out, whatever the table says.
    let without_table_proxy = root.replace("egress_proxy = \"none\"\n", "");
    std::fs::write(
        &env.config,
        format!("network = \"none\"\n{without_table_proxy}"),
    )
    .unwrap();
    let d = yaml(&["kube", "render", "say hi"]);
    assert_eq!(d[2]["spec"]["egress"], Value::Sequence(vec![]));
    refused_with(
        format!("{root}image_pull_policy = \"Sometimes\"\n"),
        "kubernetes.image_pull_policy",
    );
}
