//! `creel fake-kube`: a stand-in for a Kubernetes API server, for the tests of the
//! Kubernetes backend (no cluster can run on the machines creel is tested on). It speaks the
//! real API over HTTP for the objects creel uses — Pods (with their `log` subresource),
//! Secrets, PersistentVolumeClaims, NetworkPolicies — in any namespace: create, get, list and
//! watch by label selector (with resource versions, and `410 Gone` for one too old), merge
//! patches and deletes. Its kubelet (`kubelet.rs`) runs each pod with Podman as a kubelet
//! would run it, and keeps container logs as a kubelet does, rotated at `--rotate-bytes`
//! with only the newest file served. A kubeconfig for it is written with `--kubeconfig`.
//!
//! It is a test tool: no authentication, no admission, nothing persisted.

mod kubelet;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::cli::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct FakeKubeArgs {
    /// Address to listen on; port 0 picks a free port. The base URL is printed on stdout.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where volumes, Secrets' files and termination messages are kept (made if missing)
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Write a kubeconfig for this server here
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Rotate a container's log once it holds this many bytes (the kubelet's default: 10 MiB)
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20)]
    pub rotate_bytes: usize,
    /// The podman binary
    #[arg(long, value_name = "PATH", default_value = "podman")]
    pub podman: PathBuf,
    /// Run pods on paper, without containers: each job's Claude prints this many lines (for
    /// measuring a front end against many jobs; reader pods are served from what they printed)
    #[arg(long, value_name = "LINES")]
    pub paper_lines: Option<u64>,
    /// On paper: milliseconds between a pod's lines
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub paper_interval_ms: u64,
}

/// How many watch events are kept for watches that resume from a resource version.
const HISTORY: usize = 20_000;

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    rv: u64,
    resource: &'static str,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// The API server's objects.
pub(crate) struct Objects {
    rv: u64,
    /// (resource, namespace, name) → object.
    items: BTreeMap<(&'static str, String, String), Value>,
    history: VecDeque<Event>,
}

pub(crate) struct State {
    pub(crate) objects: Mutex<Objects>,
    events: tokio::sync::broadcast::Sender<Event>,
    pub(crate) kubelet: kubelet::Kubelet,
}

/// The resources served: (path segment, kind, apiVersion, API group prefix).
const RESOURCES: &[(&str, &str, &str, &str)] = &[
    ("pods", "Pod", "v1", "/api/v1"),
    ("secrets", "Secret", "v1", "/api/v1"),
    (
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        "v1",
        "/api/v1",
    ),
    (
        "networkpolicies",
        "NetworkPolicy",
        "networking.k8s.io/v1",
        "/apis/networking.k8s.io/v1",
    ),
];

pub fn run(args: FakeKubeArgs) -> anyhow::Result<ExitStatus> {
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("cannot make {}", args.state.display()))?;
    let state_dir = args
        .state
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.state.display()))?;
    creel_engine::kube::watcher::raise_open_files();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr().unwrap_or(args.listen);
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let state = Arc::new(State {
            objects: Mutex::new(Objects {
                rv: 1,
                items: BTreeMap::new(),
                history: VecDeque::new(),
            }),
            events,
            kubelet: kubelet::Kubelet::new(
                state_dir,
                args.podman.clone(),
                args.rotate_bytes,
                args.paper_lines.map(|lines| kubelet::Paper {
                    lines,
                    interval: std::time::Duration::from_millis(args.paper_interval_ms),
                }),
            ),
        });
        if let Some(path) = &args.kubeconfig {
            let config = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{local}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
            );
            std::fs::write(path, config)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        crate::printer::out(format!("http://{local}\n").as_bytes())?;
        crate::http_serve::serve_until_shutdown(listener, None, || {
            let state = state.clone();
            hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(state, req).await) }
            })
        })
        .await;
        state.kubelet.remove_all().await;
        Ok(ExitStatus::Success)
    })
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A `Status` object, as the API server answers an error.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

/// A streamed body from a channel of chunks.
pub(crate) fn streamed(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/version" {
        return full(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-creel-fake-kube",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "", "compiler": "", "platform": "linux/amd64",
            }),
        );
    }
    let Some((resource, rest)) = RESOURCES.iter().find_map(|r| {
        path.strip_prefix(r.3)
            .and_then(|p| p.strip_prefix("/namespaces/"))
            .and_then(|p| {
                let mut parts = p.splitn(4, '/');
                let ns = parts.next()?;
                let res = parts.next()?;
                (res == r.0).then(|| {
                    (
                        *r,
                        (
                            ns.to_string(),
                            parts.next().map(str::to_string),
                            parts.next().map(str::to_string),
                        ),
                    )
                })
            })
    }) else {
        return status(
            404,
            "NotFound",
            &format!("the stand-in does not serve {path}"),
        );
    };
    let (ns, name, sub) = rest;
    let q = query(&req);
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return status(400, "BadRequest", &format!("cannot read the body: {e}")),
    };
    match (method, name, sub.as_deref()) {
        (Method::GET, None, None) => {
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                watch(state, resource, ns, &q)
            } else {
                list(&state, resource, &ns, &q)
            }
        }
        (Method::POST, None, None) => create(state, resource, &ns, &body).await,
        (Method::GET, Some(name), None) => {
            let objects = state.objects.lock().expect("objects lock");
            match objects.items.get(&(resource.0, ns, name.clone())) {
                Some(o) => full(StatusCode::OK, o),
                None => not_found(resource.0, &name),
            }
        }
        (Method::PATCH, Some(name), None) => patch(&state, resource, &ns, &name, &body),
        (Method::DELETE, Some(name), None) => delete(state, resource, &ns, &name, &body),
        (Method::GET, Some(name), Some("log")) if resource.0 == "pods" => {
            state.kubelet.logs(&ns, &name, &q)
        }
        (m, _, _) => status(
            405,
            "MethodNotAllowed",
            &format!("the stand-in does not do {m} {path}"),
        ),
    }
}

fn not_found(resource: &str, name: &str) -> Response<Body> {
    status(404, "NotFound", &format!("{resource} \"{name}\" not found"))
}

/// Whether `labels` satisfy a label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, joined by `,`).
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(term).is_some()
        }
    })
}

fn list(
    state: &State,
    resource: (&'static str, &'static str, &'static str, &'static str),
    ns: &str,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let objects = state.objects.lock().expect("objects lock");
    let items: Vec<Value> = objects
        .items
        .iter()
        .filter(|((r, n, _), o)| {
            *r == resource.0 && n == ns && selects(&selector, &o["metadata"]["labels"])
        })
        .map(|(_, o)| o.clone())
        .collect();
    full(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", resource.1), "apiVersion": resource.2,
            "metadata": {"resourceVersion": objects.rv.to_string()},
            "items": items,
        }),
    )
}

fn watch(
    state: Arc<State>,
    resource: (&'static str, &'static str, &'static str, &'static str),
    ns: String,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300)
        .min(600);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    // The live feed is subscribed to under the same lock the history is read under: no
    // change falls between them.
    let (past, mut live, expired) = {
        let objects = state.objects.lock().expect("objects lock");
        let oldest = objects.history.front().map_or(objects.rv, |e| e.rv);
        let expired = from != 0 && from + 1 < oldest && objects.history.len() >= HISTORY;
        let past: Vec<Event> = objects
            .history
            .iter()
            .filter(|e| e.rv > from)
            .cloned()
            .collect();
        (past, state.events.subscribe(), expired)
    };
    let line =
        |e: &Event| Bytes::from(format!("{}\n", json!({"type": e.kind, "object": e.object})));
    tokio::spawn(async move {
        if expired {
            let gone = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version", "reason": "Expired", "code": 410}});
            let _ = tx.send(Bytes::from(format!("{gone}\n"))).await;
            return;
        }
        let wanted = |e: &Event| {
            e.resource == resource.0
                && e.namespace == ns
                && selects(&selector, &e.object["metadata"]["labels"])
        };
        let mut last = from;
        for e in past.iter().filter(|e| wanted(e)) {
            last = last.max(e.rv);
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                got = live.recv() => match got {
                    Ok(e) if e.rv > last && wanted(&e) => {
                        last = e.rv;
                        if tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Too slow: the client lists again.
                    Err(_) => return,
                }
            }
        }
    });
    streamed(rx, "application/json")
}

impl State {
    /// Stores `object` (new or changed) and tells the watches.
    pub(crate) fn put(
        &self,
        resource: &'static str,
        ns: &str,
        mut object: Value,
        kind: &'static str,
    ) -> Value {
        let mut objects = self.objects.lock().expect("objects lock");
        objects.rv += 1;
        let rv = objects.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if kind == "DELETED" {
            objects.items.remove(&(resource, ns.to_string(), name));
        } else {
            objects
                .items
                .insert((resource, ns.to_string(), name), object.clone());
        }
        let e = Event {
            rv,
            resource,
            namespace: ns.to_string(),
            kind,
            object: object.clone(),
        };
        objects.history.push_back(e.clone());
        while objects.history.len() > HISTORY {
            objects.history.pop_front();
        }
        let _ = self.events.send(e);
        object
    }

    /// An object, if it exists.
    pub(crate) fn get(&self, resource: &'static str, ns: &str, name: &str) -> Option<Value> {
        let objects = self.objects.lock().expect("objects lock");
        objects
            .items
            .get(&(resource, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Changes a stored object with `f` (nothing if it is gone); returns it.
    pub(crate) fn update(
        &self,
        resource: &'static str,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut o = self.get(resource, ns, name)?;
        f(&mut o);
        Some(self.put(resource, ns, o, "MODIFIED"))
    }

    /// The NetworkPolicies of `ns`.
    pub(crate) fn policies(&self, ns: &str) -> Vec<Value> {
        let objects = self.objects.lock().expect("objects lock");
        objects
            .items
            .iter()
            .filter(|((r, n, _), _)| *r == "networkpolicies" && n == ns)
            .map(|(_, o)| o.clone())
            .collect()
    }
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

async fn create(
    state: Arc<State>,
    resource: (&'static str, &'static str, &'static str, &'static str),
    ns: &str,
    body: &[u8],
) -> Response<Body> {
    let mut object: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return status(400, "BadRequest", "the body is not a JSON object"),
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            422,
            "Invalid",
            "metadata.name: required (the stand-in has no generateName)",
        );
    };
    if state.get(resource.0, ns, &name).is_some() {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", resource.0),
        );
    }
    object["apiVersion"] = json!(resource.2);
    object["kind"] = json!(resource.1);
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["creationTimestamp"] = json!(now_rfc3339());
    match resource.0 {
        "secrets" => {
            use base64::Engine as _;
            let mut data = object["data"].as_object().cloned().unwrap_or_default();
            if let Some(sd) = object.get("stringData").and_then(Value::as_object) {
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or_default();
                    data.insert(
                        k.clone(),
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
            if let Some(m) = object.as_object_mut() {
                m.remove("stringData");
            }
            object["data"] = Value::Object(data);
        }
        "persistentvolumeclaims" => {
            if let Err(e) = state.kubelet.make_volume(ns, &name) {
                return status(
                    500,
                    "InternalError",
                    &format!("cannot make the volume: {e}"),
                );
            }
            object["status"] = json!({"phase": "Bound"});
        }
        "pods" => {
            if let Err(why) = kubelet::check(&object) {
                return status(
                    422,
                    "Invalid",
                    &format!("the stand-in cannot run this pod: {why}"),
                );
            }
            object["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
    let stored = state.put(resource.0, ns, object, "ADDED");
    if resource.0 == "pods" {
        let s = state.clone();
        let ns = ns.to_string();
        tokio::spawn(async move { kubelet::run_pod(s, ns, name).await });
    }
    full(StatusCode::CREATED, &stored)
}

/// RFC 7386: `patch` merged into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn patch(
    state: &State,
    resource: (&'static str, &'static str, &'static str, &'static str),
    ns: &str,
    name: &str,
    body: &[u8],
) -> Response<Body> {
    let Ok(p) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the patch is not JSON");
    };
    // Only what a merge patch may change of metadata and spec: status is the kubelet's.
    let mut p = p;
    if let Some(m) = p.as_object_mut() {
        m.remove("status");
    }
    match state.update(resource.0, ns, name, |o| merge(o, &p)) {
        Some(o) => full(StatusCode::OK, &o),
        None => not_found(resource.0, name),
    }
}

fn delete(
    state: Arc<State>,
    resource: (&'static str, &'static str, &'static str, &'static str),
    ns: &str,
    name: &str,
    body: &[u8],
) -> Response<Body> {
    let Some(object) = state.get(resource.0, ns, name) else {
        return not_found(resource.0, name);
    };
    match resource.0 {
        "pods" => {
            if object["metadata"]["deletionTimestamp"].is_string() {
                return full(StatusCode::OK, &object);
            }
            let grace = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|b| b["gracePeriodSeconds"].as_u64())
                .unwrap_or(30);
            let marked = state
                .update("pods", ns, name, |o| {
                    o["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                    o["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                })
                .unwrap_or(object);
            let s = state.clone();
            let (ns, name) = (ns.to_string(), name.to_string());
            tokio::spawn(async move { kubelet::delete_pod(s, ns, name, grace).await });
            full(StatusCode::OK, &marked)
        }
        "persistentvolumeclaims" => {
            state.kubelet.remove_volume(ns, name);
            let o = state.put(resource.0, ns, object, "DELETED");
            full(StatusCode::OK, &o)
        }
        _ => {
            let o = state.put(resource.0, ns, object, "DELETED");
            full(StatusCode::OK, &o)
        }
    }
}
