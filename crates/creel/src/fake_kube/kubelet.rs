//! The stand-in's kubelet: runs a pod's containers with Podman as a kubelet runs them through
//! its container runtime — init containers one after another, then the container — with the
//! pod's security context, limits, volumes (a claim is a directory of the stand-in's state;
//! `subPath` and `fsGroup` applied as a kubelet applies them; a Secret's keys as files; a
//! memory `emptyDir` as a tmpfs) and a termination-message file at `/dev/termination-log`.
//! It has no pod network: a pod that a NetworkPolicy lets reach nothing gets none at all,
//! any other the host's. Logs are kept as a kubelet keeps them: rotated once the current file
//! holds `rotate` bytes, and only the current file is served to a new reader; a reader that
//! follows keeps reading across rotations (as a kubelet's holds its open file) unless it falls
//! five files behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Response;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{Body, State, now_rfc3339, status, streamed};

/// How many rotated files a follower may fall behind before it loses lines.
const KEPT_FILES: usize = 5;

pub(crate) struct Kubelet {
    dir: PathBuf,
    podman: PathBuf,
    rotate: usize,
    /// Pods run on paper (no containers), for measuring a front end against many jobs.
    paper: Option<Paper>,
    instance: String,
    logs: Mutex<HashMap<(String, String, String), Arc<LogBuf>>>,
}

struct LogBuf {
    inner: Mutex<LogInner>,
    more: tokio::sync::Notify,
}

struct LogInner {
    /// The offset of `data[0]` in the container's whole log.
    base: u64,
    data: Vec<u8>,
    /// Where the current (newest) log file starts.
    current: u64,
    done: bool,
}

impl LogBuf {
    fn new() -> LogBuf {
        LogBuf {
            inner: Mutex::new(LogInner {
                base: 0,
                data: Vec::new(),
                current: 0,
                done: false,
            }),
            more: tokio::sync::Notify::new(),
        }
    }

    fn append(&self, chunk: &[u8], rotate: usize) {
        {
            let mut l = self.inner.lock().expect("log lock");
            for piece in chunk.split_inclusive(|&b| b == b'\n') {
                l.data.extend_from_slice(piece);
                let end = l.base + l.data.len() as u64;
                if piece.ends_with(b"\n") && end - l.current >= rotate as u64 {
                    l.current = end;
                }
            }
            let keep = rotate.saturating_mul(KEPT_FILES).max(1 << 20);
            if l.data.len() > keep {
                let drop = l.data.len() - keep;
                l.data.drain(..drop);
                l.base += drop as u64;
            }
        }
        self.more.notify_waiters();
    }

    fn finish(&self) {
        self.inner.lock().expect("log lock").done = true;
        self.more.notify_waiters();
    }
}

fn fail(why: impl Into<String>) -> String {
    why.into()
}

/// What the stand-in cannot run is refused when the pod is created, not ignored.
pub(crate) fn check(pod: &Value) -> Result<(), String> {
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.len() != 1 {
        return Err(fail("exactly one container (and any init containers)"));
    }
    if spec["restartPolicy"].as_str().unwrap_or("Always") != "Never" {
        return Err(fail("restartPolicy Never only"));
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let known = ["persistentVolumeClaim", "secret", "emptyDir"]
            .iter()
            .any(|k| v.get(k).is_some());
        if !known {
            return Err(format!(
                "volume {}: only persistentVolumeClaim, secret and emptyDir",
                v["name"]
            ));
        }
    }
    for c in containers
        .iter()
        .chain(spec["initContainers"].as_array().into_iter().flatten())
    {
        if c["securityContext"]["privileged"] == json!(true) {
            return Err(fail("privileged containers"));
        }
        for e in c["env"].as_array().into_iter().flatten() {
            if e.get("valueFrom").is_some() {
                return Err(fail("env valueFrom"));
            }
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let sub = m["subPath"].as_str().unwrap_or_default();
            if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                return Err(format!("subPath {sub:?}"));
            }
        }
    }
    Ok(())
}

/// A Kubernetes quantity in bytes (`512Mi`, `1Gi`, `1000`).
fn bytes_of(q: &str) -> Option<u64> {
    let q = q.trim();
    let i = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (n, unit) = q.split_at(i);
    let n: f64 = n.parse().ok()?;
    let m: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    Some((n * m) as u64)
}

/// CPUs of a quantity (`2`, `500m`).
fn cpus_of(q: &str) -> Option<f64> {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => q.parse().ok(),
    }
}

/// How a pod runs on paper: its Claude prints `lines` assistant lines, one every `interval`,
/// between an init line and a result line, then exits 0, as the pod's wrapper would report it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paper {
    pub(crate) lines: u64,
    pub(crate) interval: Duration,
}

impl Kubelet {
    pub(crate) fn new(
        dir: PathBuf,
        podman: PathBuf,
        rotate: usize,
        paper: Option<Paper>,
    ) -> Kubelet {
        Kubelet {
            dir,
            podman,
            paper,
            rotate: rotate.max(1024),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            logs: Mutex::new(HashMap::new()),
        }
    }

    fn volume_dir(&self, ns: &str, claim: &str) -> PathBuf {
        self.dir.join("volumes").join(ns).join(claim)
    }

    pub(crate) fn make_volume(&self, ns: &str, claim: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.volume_dir(ns, claim))
    }

    pub(crate) fn remove_volume(&self, ns: &str, claim: &str) {
        let _ = std::fs::remove_dir_all(self.volume_dir(ns, claim));
    }

    fn container_name(ns: &str, pod: &str, c: &str) -> String {
        format!("fk-{ns}-{pod}-{c}")
    }

    fn podman(&self) -> Command {
        let mut c = Command::new(&self.podman);
        c.stdin(std::process::Stdio::null());
        c.kill_on_drop(false);
        c
    }

    async fn podman_out(&self, args: &[&str]) -> (bool, String) {
        match self.podman().args(args).output().await {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// Every container this stand-in made, removed (on its way out).
    pub(crate) async fn remove_all(&self) {
        let (_, ids) = self
            .podman_out(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=creel-fake-kube={}", self.instance),
            ])
            .await;
        for id in ids.split_whitespace() {
            let _ = self.podman_out(&["rm", "-f", "-t", "0", id]).await;
        }
    }

    /// `GET …/pods/NAME/log`.
    pub(crate) fn logs(&self, ns: &str, pod: &str, q: &HashMap<String, String>) -> Response<Body> {
        let container = q
            .get("container")
            .cloned()
            .unwrap_or_else(|| "claude".into());
        let buf = self
            .logs
            .lock()
            .expect("logs lock")
            .get(&(ns.to_string(), pod.to_string(), container.clone()))
            .cloned();
        let Some(buf) = buf else {
            return status(
                400,
                "BadRequest",
                &format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                ),
            );
        };
        let follow = matches!(q.get("follow").map(String::as_str), Some("true" | "1"));
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        tokio::spawn(async move {
            let mut pos = buf.inner.lock().expect("log lock").current;
            loop {
                let wait = buf.more.notified();
                tokio::pin!(wait);
                wait.as_mut().enable();
                let (chunk, done) = {
                    let l = buf.inner.lock().expect("log lock");
                    // Fallen further behind than the kept files: those lines are lost.
                    pos = pos.max(l.base);
                    let from = (pos - l.base) as usize;
                    let to = l.data.len().min(from + (64 << 10));
                    (Bytes::copy_from_slice(&l.data[from..to]), l.done)
                };
                if chunk.is_empty() {
                    if done || !follow {
                        return;
                    }
                    wait.await;
                    continue;
                }
                pos += chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        streamed(rx, "text/plain")
    }
}

/// The pod's volumes as Podman mount arguments, by volume name; `Err(None)`: not yet (a
/// claim or Secret that does not exist yet); `Err(Some(why))`: never.
#[derive(Clone)]
enum Source {
    Dir(PathBuf, bool),
    Tmpfs(Option<u64>),
}

fn prepare_volumes(
    state: &State,
    ns: &str,
    pod_name: &str,
    pod: &Value,
) -> Result<HashMap<String, Source>, Option<String>> {
    let k = &state.kubelet;
    let fs_group = pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .map(|g| g as u32);
    let mut out = HashMap::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        if let Some(c) = v.get("persistentVolumeClaim") {
            let claim = c["claimName"].as_str().unwrap_or_default();
            state.get("persistentvolumeclaims", ns, claim).ok_or(None)?;
            let dir = k.volume_dir(ns, claim);
            std::fs::create_dir_all(&dir).map_err(|e| Some(e.to_string()))?;
            if let Some(g) = fs_group {
                // What a kubelet does for `fsGroup`: the volume is the group's, setgid.
                let _ = std::os::unix::fs::chown(&dir, Some(0), Some(g));
                let _ = std::fs::set_permissions(
                    &dir,
                    std::os::unix::fs::PermissionsExt::from_mode(0o2775),
                );
            }
            out.insert(name, Source::Dir(dir, c["readOnly"] == json!(true)));
        } else if let Some(s) = v.get("secret") {
            let secret_name = s["secretName"].as_str().unwrap_or_default();
            let secret = state.get("secrets", ns, secret_name).ok_or(None)?;
            let dir = k.dir.join("secrets").join(ns).join(pod_name).join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| Some(e.to_string()))?;
            let mode = s["defaultMode"].as_u64().unwrap_or(0o644) as u32;
            for (key, value) in secret["data"].as_object().into_iter().flatten() {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().unwrap_or_default())
                    .map_err(|e| Some(format!("secret {secret_name}/{key}: {e}")))?;
                let path = dir.join(key);
                std::fs::write(&path, bytes).map_err(|e| Some(e.to_string()))?;
                let _ = std::os::unix::fs::chown(&path, Some(0), fs_group);
                let _ = std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(mode),
                );
            }
            out.insert(name, Source::Dir(dir, true));
        } else if let Some(e) = v.get("emptyDir") {
            if e["medium"].as_str() == Some("Memory") {
                out.insert(
                    name,
                    Source::Tmpfs(e["sizeLimit"].as_str().and_then(bytes_of)),
                );
            } else {
                let dir = k.dir.join("empty").join(ns).join(pod_name).join(&name);
                std::fs::create_dir_all(&dir).map_err(|e| Some(e.to_string()))?;
                let _ = std::fs::set_permissions(
                    &dir,
                    std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                );
                out.insert(name, Source::Dir(dir, false));
            }
        }
    }
    Ok(out)
}

/// Whether the pod may reach anything: no NetworkPolicy selecting it for egress, or one that
/// allows some.
fn network(state: &State, ns: &str, pod: &Value) -> &'static str {
    if pod["spec"]["hostNetwork"] == json!(true) {
        return "host";
    }
    let labels = &pod["metadata"]["labels"];
    let mut selected = false;
    let mut allowed = false;
    for p in state.policies(ns) {
        let spec = &p["spec"];
        let egress_type = spec["policyTypes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "Egress"));
        let sel = spec["podSelector"]["matchLabels"]
            .as_object()
            .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
        if egress_type && sel {
            selected = true;
            allowed |= spec["egress"].as_array().is_some_and(|e| !e.is_empty());
        }
    }
    if selected && !allowed { "none" } else { "host" }
}

/// `podman run` arguments for container `c` of the pod.
fn run_args(
    k: &Kubelet,
    pod: &Value,
    c: &Value,
    volumes: &HashMap<String, Source>,
    net: &str,
    term: &Path,
) -> Result<Vec<String>, String> {
    let cname = c["name"].as_str().unwrap_or_default();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let psc = &pod["spec"]["securityContext"];
    let sc = &c["securityContext"];
    let pick = |k: &str| sc[k].as_u64().or_else(|| psc[k].as_u64());
    let mut a: Vec<String> = vec![
        "run".into(),
        "--name".into(),
        Kubelet::container_name(ns, pod_name, cname),
        "--label".into(),
        format!("creel-fake-kube={}", k.instance),
        "--network".into(),
        net.into(),
        "--pull".into(),
        "never".into(),
    ];
    let uid = pick("runAsUser");
    let non_root = sc["runAsNonRoot"] == json!(true) || psc["runAsNonRoot"] == json!(true);
    if non_root && uid.unwrap_or(0) == 0 {
        return Err(
            "runAsNonRoot, but the user is root (the stand-in does not read the image's user)"
                .into(),
        );
    }
    if let Some(u) = uid {
        a.push("--user".into());
        a.push(match pick("runAsGroup") {
            Some(g) => format!("{u}:{g}"),
            None => u.to_string(),
        });
    }
    if let Some(g) = psc["fsGroup"].as_u64() {
        a.push("--group-add".into());
        a.push(g.to_string());
    }
    if sc["readOnlyRootFilesystem"] == json!(true) {
        a.push("--read-only".into());
        a.push("--read-only-tmpfs=false".into());
    }
    if sc["allowPrivilegeEscalation"] == json!(false) {
        a.push("--security-opt".into());
        a.push("no-new-privileges".into());
    }
    for cap in sc["capabilities"]["drop"].as_array().into_iter().flatten() {
        a.push("--cap-drop".into());
        a.push(cap.as_str().unwrap_or_default().into());
    }
    for cap in sc["capabilities"]["add"].as_array().into_iter().flatten() {
        a.push("--cap-add".into());
        a.push(cap.as_str().unwrap_or_default().into());
    }
    let limits = &c["resources"]["limits"];
    if let Some(m) = limits["memory"].as_str().and_then(bytes_of) {
        a.push("--memory".into());
        a.push(m.to_string());
    }
    if let Some(cpus) = limits["cpu"].as_str().and_then(cpus_of) {
        a.push("--cpus".into());
        a.push(cpus.to_string());
    }
    for e in c["env"].as_array().into_iter().flatten() {
        a.push("--env".into());
        a.push(format!(
            "{}={}",
            e["name"].as_str().unwrap_or_default(),
            e["value"].as_str().unwrap_or_default()
        ));
    }
    if let Some(w) = c["workingDir"].as_str() {
        a.push("--workdir".into());
        a.push(w.into());
    }
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().unwrap_or_default();
        let path = m["mountPath"].as_str().unwrap_or_default();
        let ro = m["readOnly"] == json!(true);
        match volumes.get(vname) {
            Some(Source::Dir(dir, vro)) => {
                let mut host = dir.clone();
                if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
                    host = dir.join(sub);
                    if !host.exists() {
                        // A kubelet makes a missing subPath as root.
                        std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
                    }
                }
                a.push("-v".into());
                a.push(format!(
                    "{}:{path}{}",
                    host.display(),
                    if ro || *vro { ":ro" } else { "" }
                ));
            }
            Some(Source::Tmpfs(size)) => {
                a.push("--tmpfs".into());
                a.push(match size {
                    Some(s) => format!("{path}:rw,size={s},mode=1777"),
                    None => format!("{path}:rw,mode=1777"),
                });
            }
            None => return Err(format!("volume mount {vname}: no such volume")),
        }
    }
    a.push("-v".into());
    a.push(format!("{}:/dev/termination-log", term.display()));
    if let Some(cmd) = c["command"].as_array() {
        a.push("--entrypoint".into());
        a.push(Value::Array(cmd.clone()).to_string());
    }
    a.push(c["image"].as_str().unwrap_or_default().into());
    for arg in c["args"].as_array().into_iter().flatten() {
        a.push(arg.as_str().unwrap_or_default().into());
    }
    Ok(a)
}

fn deleting(state: &State, ns: &str, name: &str) -> bool {
    state
        .get("pods", ns, name)
        .is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string())
}

fn set_status(state: &State, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
    state.update("pods", ns, name, |p| {
        if !p["status"].is_object() {
            p["status"] = json!({});
        }
        f(&mut p["status"]);
    });
}

/// Runs pod `name` of `ns` to its end.
pub(crate) async fn run_pod(state: Arc<State>, ns: String, name: String) {
    let k = &state.kubelet;
    // Its volumes (waiting, as a kubelet does, for a claim or Secret made after the pod).
    let volumes = loop {
        let Some(pod) = state.get("pods", &ns, &name) else {
            return;
        };
        if deleting(&state, &ns, &name) {
            return;
        }
        match prepare_volumes(&state, &ns, &name, &pod) {
            Ok(v) => break v,
            Err(None) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(Some(why)) => {
                set_status(&state, &ns, &name, |s| {
                    s["phase"] = json!("Failed");
                    s["reason"] = json!("FailedMount");
                    s["message"] = json!(why);
                });
                return;
            }
        }
    };
    let Some(pod) = state.get("pods", &ns, &name) else {
        return;
    };
    if let Some(paper) = k.paper {
        return run_on_paper(&state, &ns, &name, &pod, paper).await;
    }
    let net = network(&state, &ns, &pod);
    let main = pod["spec"]["containers"][0].clone();
    let cname = main["name"].as_str().unwrap_or_default().to_string();
    let image = main["image"].as_str().unwrap_or_default().to_string();
    if !k.podman_out(&["image", "exists", &image]).await.0 {
        let reason = if main["imagePullPolicy"] == json!("Never") {
            "ErrImageNeverPull"
        } else {
            "ErrImagePull"
        };
        set_status(&state, &ns, &name, |s| {
            s["containerStatuses"] = json!([{"name": cname, "ready": false, "restartCount": 0,
                "image": image, "imageID": "",
                "state": {"waiting": {"reason": reason, "message": format!("image {image} is not present")}}}]);
        });
        return;
    }
    let term_dir = k.dir.join("term").join(&ns).join(&name);
    if let Err(e) = std::fs::create_dir_all(&term_dir) {
        tracing::warn!("cannot make {}: {e}", term_dir.display());
        return;
    }
    let started = now_rfc3339();
    set_status(&state, &ns, &name, |s| s["startTime"] = json!(started));
    // Init containers, one after another.
    for init in pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if deleting(&state, &ns, &name) {
            return;
        }
        let term = term_dir.join(init["name"].as_str().unwrap_or("init"));
        let _ = std::fs::write(&term, b"");
        let _ =
            std::fs::set_permissions(&term, std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let args = match run_args(k, &pod, &init, &volumes, net, &term) {
            Ok(a) => a,
            Err(why) => return config_error(&state, &ns, &name, &cname, &why),
        };
        let (ok, out) = k
            .podman_out(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        let _ = k
            .podman_out(&[
                "rm",
                "-f",
                &Kubelet::container_name(&ns, &name, init["name"].as_str().unwrap_or_default()),
            ])
            .await;
        if !ok {
            set_status(&state, &ns, &name, |s| {
                s["phase"] = json!("Failed");
                s["reason"] = json!("InitFailed");
                s["message"] = json!(out.chars().take(2000).collect::<String>());
            });
            return;
        }
    }
    if deleting(&state, &ns, &name) {
        return;
    }
    let term = term_dir.join(&cname);
    let _ = std::fs::write(&term, b"");
    let _ = std::fs::set_permissions(&term, std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut args = match run_args(k, &pod, &main, &volumes, net, &term) {
        Ok(a) => a,
        Err(why) => return config_error(&state, &ns, &name, &cname, &why),
    };
    args.insert(1, "-d".into());
    let (ok, out) = k
        .podman_out(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    if !ok {
        return config_error(&state, &ns, &name, &cname, out.trim());
    }
    let container = Kubelet::container_name(&ns, &name, &cname);
    let buf = Arc::new(LogBuf::new());
    k.logs
        .lock()
        .expect("logs lock")
        .insert((ns.clone(), name.clone(), cname.clone()), buf.clone());
    let running_at = now_rfc3339();
    set_status(&state, &ns, &name, |s| {
        s["phase"] = json!("Running");
        s["containerStatuses"] = json!([{"name": cname, "ready": true, "restartCount": 0,
            "image": image, "imageID": "", "started": true,
            "state": {"running": {"startedAt": running_at}}}]);
    });
    // The log, as the kubelet keeps it.
    let feeder = {
        let mut child = match k
            .podman()
            .args(["logs", "-f", &container])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return config_error(&state, &ns, &name, &cname, &e.to_string()),
        };
        let rotate = k.rotate;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let b1 = buf.clone();
        let b2 = buf.clone();
        let pump = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, b: Arc<LogBuf>| async move {
            let Some(mut pipe) = pipe else { return };
            let mut chunk = vec![0u8; 64 << 10];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                b.append(&chunk[..n], rotate);
            }
        };
        let o = tokio::spawn(pump(out.map(|p| Box::new(p) as _), b1));
        let e = tokio::spawn(pump(err.map(|p| Box::new(p) as _), b2));
        tokio::spawn(async move {
            let _ = o.await;
            let _ = e.await;
            let _ = child.wait().await;
        })
    };
    // The pod's deadline.
    let deadline_hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(secs) = pod["spec"]["activeDeadlineSeconds"].as_u64() {
        let hit = deadline_hit.clone();
        let podman = k.podman.clone();
        let c = container.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            hit.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = Command::new(podman).args(["kill", &c]).output().await;
        });
    }
    let (_, code) = k.podman_out(&["wait", &container]).await;
    let exit: i32 = code
        .trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(-1);
    let _ = feeder.await;
    buf.finish();
    let (_, oom) = k
        .podman_out(&["inspect", "--format", "{{.State.OOMKilled}}", &container])
        .await;
    let oom = oom.trim() == "true";
    let mut message = std::fs::read(&term).unwrap_or_default();
    message.truncate(4096);
    let message = String::from_utf8_lossy(&message).into_owned();
    let deadline = deadline_hit.load(std::sync::atomic::Ordering::SeqCst);
    let finished = now_rfc3339();
    set_status(&state, &ns, &name, |s| {
        s["phase"] = json!(if exit == 0 && !deadline {
            "Succeeded"
        } else {
            "Failed"
        });
        if deadline {
            s["reason"] = json!("DeadlineExceeded");
            s["message"] = json!("Pod was active on the node longer than the specified deadline");
        }
        let mut t = json!({"exitCode": exit, "startedAt": running_at, "finishedAt": finished,
            "reason": if oom { "OOMKilled" } else if exit == 0 { "Completed" } else { "Error" }});
        if !message.is_empty() {
            t["message"] = json!(message);
        }
        s["containerStatuses"] = json!([{"name": cname, "ready": false, "restartCount": 0,
            "image": image, "imageID": "", "started": false, "state": {"terminated": t}}]);
    });
}

/// A pod run on paper: a job's pod prints a made-up stream (numbered, as its wrapper would)
/// and keeps the exact stream on its volume; a reader pod prints the piece its command names.
async fn run_on_paper(state: &State, ns: &str, name: &str, pod: &Value, paper: Paper) {
    let k = &state.kubelet;
    let main = &pod["spec"]["containers"][0];
    let cname = main["name"].as_str().unwrap_or_default().to_string();
    let buf = Arc::new(LogBuf::new());
    k.logs.lock().expect("logs lock").insert(
        (ns.to_string(), name.to_string(), cname.clone()),
        buf.clone(),
    );
    let started = now_rfc3339();
    set_status(state, ns, name, |s| {
        s["phase"] = json!("Running");
        s["containerStatuses"] = json!([{"name": cname, "ready": true, "restartCount": 0,
            "image": "", "imageID": "", "started": true,
            "state": {"running": {"startedAt": started}}}]);
    });
    let claim = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .unwrap_or_default()
        .to_string();
    let command: Vec<String> = main["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let mut message = String::new();
    if cname == "read" {
        // READER's arguments: the job, the first byte (from 1), the length.
        let (job, from, len) = (
            command.get(3).cloned().unwrap_or_default(),
            command
                .get(4)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1),
            command
                .get(5)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0),
        );
        let file = k
            .volume_dir(ns, &claim)
            .join("out")
            .join(job)
            .join("output.jsonl");
        let bytes = std::fs::read(file).unwrap_or_default();
        let start = (from.saturating_sub(1) as usize).min(bytes.len());
        let end = (start + len as usize).min(bytes.len());
        buf.append(&bytes[start..end], k.rotate);
    } else {
        let job = pod["metadata"]["labels"]["creel.dev/job"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dir = k.volume_dir(ns, &claim).join("out").join(&job);
        let _ = std::fs::create_dir_all(&dir);
        let session = uuid::Uuid::new_v4().to_string();
        let mut lines = vec![format!(
            r#"{{"type":"system","subtype":"init","session_id":"{session}","model":"paper"}}"#
        )];
        for i in 1..=paper.lines {
            lines.push(format!(
                r#"{{"type":"assistant","message":{{"content":[{{"type":"text","text":"line {i}"}}]}},"session_id":"{session}"}}"#
            ));
        }
        lines.push(format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"done","session_id":"{session}"}}"#
        ));
        let mut all = Vec::new();
        for (n, line) in lines.iter().enumerate() {
            if n > 0 && n <= paper.lines as usize {
                tokio::time::sleep(paper.interval).await;
            }
            if deleting(state, ns, name) {
                break;
            }
            all.extend_from_slice(line.as_bytes());
            all.push(b'\n');
            buf.append(format!("{} {line}\n", n + 1).as_bytes(), k.rotate);
        }
        let _ = std::fs::write(dir.join("output.jsonl"), &all);
        let digest = ring_free_sha256(&all);
        message = format!(r#"{{"exit":0,"bytes":{},"sha256":"{digest}"}}"#, all.len());
    }
    buf.finish();
    let finished = now_rfc3339();
    set_status(state, ns, name, |s| {
        s["phase"] = json!("Succeeded");
        let mut t = json!({"exitCode": 0, "startedAt": started, "finishedAt": finished,
            "reason": "Completed"});
        if !message.is_empty() {
            t["message"] = json!(message);
        }
        s["containerStatuses"] = json!([{"name": cname, "ready": false, "restartCount": 0,
            "image": "", "imageID": "", "started": false, "state": {"terminated": t}}]);
    });
}

/// SHA-256 by `sha256sum`, as the wrapper computes it.
fn ring_free_sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return String::new();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(bytes);
    }
    child
        .wait_with_output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|o| o.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn config_error(state: &State, ns: &str, name: &str, cname: &str, why: &str) {
    let why = why.chars().take(2000).collect::<String>();
    set_status(state, ns, name, |s| {
        s["containerStatuses"] = json!([{"name": cname, "ready": false, "restartCount": 0,
            "image": "", "imageID": "",
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": why}}}]);
    });
}

/// Deletes pod `name`: its containers stopped (`grace` seconds, then killed) and removed,
/// its files, then the object.
pub(crate) async fn delete_pod(state: Arc<State>, ns: String, name: String, grace: u64) {
    let k = &state.kubelet;
    let Some(pod) = state.get("pods", &ns, &name) else {
        return;
    };
    let names: Vec<String> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["containers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .map(|c| Kubelet::container_name(&ns, &name, c))
        .collect();
    for c in &names {
        let _ = k.podman_out(&["stop", "-t", &grace.to_string(), c]).await;
    }
    // The pod's own task records how its container ended.
    for _ in 0..100 {
        let ended = state.get("pods", &ns, &name).is_none_or(|p| {
            let s = &p["status"];
            s["phase"] == json!("Failed")
                || s["phase"] == json!("Succeeded")
                || s["containerStatuses"][0]["state"].get("running").is_none()
        });
        if ended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &names {
        let _ = k.podman_out(&["rm", "-f", "-t", "0", c]).await;
    }
    k.logs
        .lock()
        .expect("logs lock")
        .retain(|(n, p, _), _| !(n == &ns && p == &name));
    let _ = std::fs::remove_dir_all(k.dir.join("secrets").join(&ns).join(&name));
    let _ = std::fs::remove_dir_all(k.dir.join("term").join(&ns).join(&name));
    let _ = std::fs::remove_dir_all(k.dir.join("empty").join(&ns).join(&name));
    if let Some(p) = state.get("pods", &ns, &name) {
        state.put("pods", &ns, p, "DELETED");
    }
}
