//! `start` and `cancel` on a cluster, and a pod made into this front end's job record.
//!
//! A job's pod carries what another front end needs to know it: the job and session labels,
//! and annotations with its spec (without its webhook, which is the starter's) and when it
//! was accepted. `start` records the job here first (so this front end's watcher knows it),
//! then creates its objects: the session's volume (a new session's), the Secret, the
//! NetworkPolicy, and the Pod last. A cancel is an annotation first (so every front end
//! knows why the pod went), then the pod's deletion.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};

use super::cluster::{self, Cluster, block_on};
use super::render::{self, KubeSettings, LABEL_JOB, LABEL_SESSION};
use crate::api::{JobStatus, StartRequest, StartResponse};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{ConversationMode, ErrorKind, JobError, JobRecord, JobSpec, JobState, now_ms};
use crate::session::SessionRecord;

/// The annotation with the job's spec (JSON).
pub(crate) const ANNOTATION_SPEC: &str = "creel.dev/spec";
/// The annotation with when the job was accepted (unix ms).
pub(crate) const ANNOTATION_CREATED: &str = "creel.dev/created-at";
/// The annotation a cancel puts on the pod before deleting it (unix ms).
pub(crate) const ANNOTATION_CANCELLED: &str = "creel.dev/cancelled-at";

/// How long a job's egress token is good for when its session has no wall-clock budget.
const TOKEN_LIFE: u64 = 7 * 24 * 3600;

/// Seconds a cancelled pod has to stop before it is killed.
const CANCEL_GRACE_SECS: u32 = 2;

/// Where a session of a cluster is, as the store's workspace (it has no host directory).
pub(crate) fn session_place(namespace: &str, session: &str) -> PathBuf {
    PathBuf::from(format!(
        "kubernetes:{namespace}/{}",
        render::session_volume_name(session)
    ))
}

impl Engine {
    /// Starts a job on the cluster.
    pub(crate) fn kube_start(&self, req: &StartRequest) -> Result<StartResponse> {
        let settings = KubeSettings::from_config(&self.config)?;
        let (session_id, model) = self.kube_check(req, &settings)?;
        let existing = self.store().session(&session_id)?;
        if let Some(s) = &existing {
            if !is_cluster_session(s) {
                return Err(Error::InvalidRequest(format!(
                    "session `{}` is one of this machine's; a Kubernetes job needs a session of the cluster",
                    s.id
                )));
            }
            if let Some((job, state)) = self.store().active_job(&s.id)? {
                return Err(Error::SessionBusy {
                    session: s.id.clone(),
                    job,
                    state: state.to_string(),
                });
            }
        }
        // Another front end's job of the session may be running: the cluster says.
        if existing.is_some() {
            self.kube_session_idle(&session_id)?;
        }
        // A session resumes its conversation once a job of it has seen Claude start (its
        // transcript is then on the session's volume).
        let conversation = match &existing {
            Some(s)
                if self
                    .store()
                    .jobs_of_session(&s.id)?
                    .iter()
                    .any(|j| j.claude_session_id.is_some()) =>
            {
                ConversationMode::Resume(s.claude_session_id.clone())
            }
            Some(s) => ConversationMode::New(s.claude_session_id.clone()),
            None => ConversationMode::New(uuid::Uuid::new_v4().to_string()),
        };
        let mut spec = self.kube_spec(req, model, conversation);
        spec.webhook =
            crate::webhook::resolve(&self.config, self.user_home.as_deref(), req.from_agent);
        let job_id = crate::job::new_job_id();
        // With a proxy, the job's token is one it admits (signed with the cluster's key);
        // without one, it opens nothing and is only Claude's placeholder key.
        let token = match &settings.egress_proxy {
            Some(_) => {
                let key = self.kube_signing_key()?;
                let tokens = crate::egress::tokens::JobTokens::new(&key).map_err(|e| {
                    Error::InvalidRequest(format!(
                        "the Secret `{}` in `{}`: {e}",
                        super::EGRESS_SECRET,
                        settings.namespace
                    ))
                })?;
                let life = spec
                    .budget
                    .as_ref()
                    .and_then(|b| b.wall_seconds)
                    .map_or(TOKEN_LIFE, |w| w.saturating_add(3600));
                tokens.mint(
                    &job_id,
                    crate::egress::tokens::now_secs().saturating_add(life),
                )
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        let now = now_ms();
        let mut manifests = render::render(
            &job_id,
            &session_id,
            existing.is_none(),
            &spec,
            &req.prompt,
            &token,
            &settings,
        );
        let shared = JobSpec {
            webhook: None,
            ..spec.clone()
        };
        manifests.pod.metadata.annotations = Some(BTreeMap::from([
            (
                ANNOTATION_SPEC.to_string(),
                serde_json::to_string(&shared)
                    .map_err(|e| Error::cluster("write the job's spec", e))?,
            ),
            (ANNOTATION_CREATED.to_string(), now.to_string()),
        ]));

        // The job's directory (its prompt, and the copy of its output) and its record.
        let dir = self.job_dir(&job_id);
        crate::files::create_private_dir_all(&dir)?;
        crate::files::write_file_atomic(&dir.join("prompt"), req.prompt.as_bytes(), 0o400, None)?;
        let record = JobRecord::pending(
            job_id.clone(),
            session_id.clone(),
            spec.clone(),
            now,
            Vec::new(),
        );
        let new_session = existing.is_none().then(|| SessionRecord {
            id: session_id.clone(),
            created_at_ms: now,
            last_activity_ms: now,
            workspace: session_place(&settings.namespace, &session_id),
            workspace_created: false,
            claude_session_id: spec.conversation.id().to_string(),
            git: None,
        });
        if let Err((active, state)) = self.store().insert_job(&record, new_session.as_ref())? {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::SessionBusy {
                session: session_id,
                job: active,
                state: state.to_string(),
            });
        }

        let k = self.config.kubernetes.clone();
        let applied = block_on(async move {
            let c = Cluster::connect(&k).await?;
            if let Some(v) = &manifests.session_volume {
                match c
                    .claims()
                    .create(&kube::api::PostParams::default(), v)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if cluster::is_conflict(&e) => {
                        return Err(Error::InvalidRequest(format!(
                            "the cluster already has a volume for session `{}` (another front end's session?); run `creel list` to see the cluster's jobs, or choose another session id",
                            manifests.pod.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SESSION)).cloned().unwrap_or_default()
                        )));
                    }
                    Err(e) => return Err(Error::cluster("create the session's volume", e)),
                }
            }
            cluster::create(&c.secrets(), &manifests.input, "the job's Secret").await?;
            cluster::create(&c.policies(), &manifests.policy, "the job's NetworkPolicy").await?;
            cluster::create(&c.pods(), &manifests.pod, "the job's Pod").await?;
            Ok(())
        })
        .and_then(|r| r);
        if let Err(e) = applied {
            if existing.is_none() && matches!(e, Error::InvalidRequest(_)) {
                // The session's name is taken on the cluster: nothing of it stays here.
                let _ = self
                    .store()
                    .finish(&job_id, JobState::Failed, None, None, now_ms());
                let _ = self.store().delete_session(&session_id);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
            let error = JobError {
                kind: ErrorKind::Runtime,
                message: crate::monitor::first_line(&super::error_text(&e), 500),
            };
            self.store()
                .finish(&job_id, JobState::Failed, Some(&error), None, now_ms())?;
            super::watcher::mark_settled(self, &job_id);
            let _ = self.kube_remove_objects(&job_id, None);
            return Err(e);
        }
        self.ensure_kube_watcher()?;
        Ok(StartResponse {
            job_id,
            session_id: session_id.clone(),
            state: JobState::Pending,
            workspace: session_place(&settings.namespace, &session_id),
            branch: None,
            warnings: Vec::new(),
        })
    }

    /// Fails with `SessionBusy` when a pod of session `session` has not ended.
    fn kube_session_idle(&self, session: &str) -> Result<()> {
        let k = self.config.kubernetes.clone();
        let selector = format!("{LABEL_SESSION}={session},!{}", render::LABEL_READS);
        let pods = block_on(async move {
            let c = Cluster::connect(&k).await?;
            c.pods()
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .map_err(|e| Error::cluster("list the session's pods", e))
        })??;
        for p in pods.items {
            let phase = p.status.as_ref().and_then(|s| s.phase.clone());
            let ended = matches!(phase.as_deref(), Some("Succeeded" | "Failed"))
                || p.metadata.deletion_timestamp.is_some();
            if !ended {
                let job = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_JOB))
                    .cloned()
                    .unwrap_or_default();
                return Err(Error::SessionBusy {
                    session: session.to_string(),
                    job,
                    state: phase.unwrap_or_else(|| "pending".into()).to_lowercase(),
                });
            }
        }
        Ok(())
    }

    /// The job tokens' signing key, from the namespace's Secret `creel-egress`.
    fn kube_signing_key(&self) -> Result<Vec<u8>> {
        let k = self.config.kubernetes.clone();
        let ns = k.namespace.clone();
        let secret = block_on(async move {
            let c = Cluster::connect(&k).await?;
            c.secrets()
                .get_opt(super::EGRESS_SECRET)
                .await
                .map_err(|e| Error::cluster("read the egress proxy's Secret", e))
        })??;
        secret
            .and_then(|s| s.data)
            .and_then(|d| d.get(super::SIGNING_KEY).map(|b| b.0.clone()))
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "the namespace `{ns}` has no Secret `{}` with a `{}`: deploy creel's egress proxy first (see the README's Kubernetes section), or set [kubernetes] egress_proxy = \"none\"",
                    super::EGRESS_SECRET,
                    super::SIGNING_KEY
                ))
            })
    }

    /// Cancels a job on the cluster: recorded here at once, then the pod is annotated (so
    /// every front end learns it was a cancel) and deleted. The watcher captures the rest of
    /// its output from the session's volume.
    pub(crate) fn kube_cancel(&self, record: JobRecord) -> Result<JobStatus> {
        let job_id = record.id.clone();
        let k = self.config.kubernetes.clone();
        let name = format!("creel-{job_id}");
        // The mark first, on the pod (so that every front end learns it was a cancel), then
        // this store, then the pod goes; the watcher keeps the output.
        let marked = block_on(async move {
            let c = Cluster::connect(&k).await?;
            let patch = serde_json::json!({
                "metadata": {"annotations": {ANNOTATION_CANCELLED: now_ms().to_string()}}
            });
            match c
                .pods()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if cluster::is_not_found(&e) => {}
                Err(e) => return Err(Error::cluster("mark the pod cancelled", e)),
            }
            cluster::delete(&c.pods(), &name, Some(CANCEL_GRACE_SECS)).await
        })
        .and_then(|r| r);
        if marked.is_ok() {
            self.store()
                .finish(&job_id, JobState::Cancelled, None, None, now_ms())?;
            crate::engine::ring_job_dir(&self.job_dir(&job_id));
        }
        let watcher = self.ensure_kube_watcher();
        marked?;
        watcher?;
        let record = self.load_job(&job_id)?;
        Ok(self.describe(record))
    }

    /// Deletes a job's objects (its pod, Secret and policy, and its reader pods), and
    /// `session`'s volume when given.
    pub(crate) fn kube_remove_objects(&self, job_id: &str, session: Option<&str>) -> Result<()> {
        let k = self.config.kubernetes.clone();
        let name = format!("creel-{job_id}");
        let job = job_id.to_string();
        let claim = session.map(render::session_volume_name);
        block_on(async move {
            let c = Cluster::connect(&k).await?;
            cluster::delete(&c.pods(), &name, Some(0)).await?;
            cluster::delete(&c.secrets(), &name, None).await?;
            cluster::delete(&c.policies(), &name, None).await?;
            let readers = c
                .pods()
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("{}={job}", render::LABEL_READS)),
                )
                .await
                .map_err(|e| Error::cluster("list reader pods", e))?;
            for p in readers {
                if let Some(n) = p.metadata.name {
                    cluster::delete(&c.pods(), &n, Some(0)).await?;
                }
            }
            if let Some(claim) = claim {
                cluster::delete(&c.claims(), &claim, None).await?;
            }
            Ok(())
        })?
    }

    /// Deletes a session's volume.
    pub(crate) fn kube_remove_volume(&self, session: &str) -> Result<()> {
        let k = self.config.kubernetes.clone();
        let claim = render::session_volume_name(session);
        block_on(async move {
            let c = Cluster::connect(&k).await?;
            cluster::delete(&c.claims(), &claim, None).await
        })?
    }

    /// Brings the cluster's jobs into this store (those of other front ends, too), and starts
    /// the watcher if any is unfinished. `jobs` and `sessions` call it: the cluster is the
    /// source of truth.
    pub(crate) fn kube_refresh(&self) -> Result<()> {
        let k = self.config.kubernetes.clone();
        let selector = format!(
            "{}={},!{}",
            render::LABEL_MANAGED.0,
            render::LABEL_MANAGED.1,
            render::LABEL_READS
        );
        let pods = block_on(async move {
            let c = Cluster::connect(&k).await?;
            c.pods()
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .map_err(|e| Error::cluster("list the namespace's pods", e))
        })??;
        let mut unfinished = false;
        for pod in &pods.items {
            if let Some(r) = self.kube_import(pod, &self.config.kubernetes.namespace)? {
                unfinished |= !r.state.is_final() || r.webhook_pending();
            }
        }
        if unfinished {
            self.ensure_kube_watcher()?;
        }
        Ok(())
    }

    /// Job `job_id` from the cluster, when this store does not know it.
    pub(crate) fn kube_find(&self, job_id: &str) -> Result<Option<JobRecord>> {
        let k = self.config.kubernetes.clone();
        let name = format!("creel-{job_id}");
        let pod = block_on(async move {
            let c = Cluster::connect(&k).await?;
            c.pods()
                .get_opt(&name)
                .await
                .map_err(|e| Error::cluster("look up the job's pod", e))
        })??;
        let Some(pod) = pod else {
            return Ok(None);
        };
        let record = self.kube_import(&pod, &self.config.kubernetes.namespace)?;
        if record.is_some() {
            self.ensure_kube_watcher()?;
        }
        Ok(record)
    }

    /// Makes sure this front end's watcher for the namespace runs (it exits once no job of
    /// this store is left unfinished).
    pub(crate) fn ensure_kube_watcher(&self) -> Result<()> {
        let Some(lock) = super::watcher::try_lock(&self.home)? else {
            return Ok(()); // it runs
        };
        self.spawn_helper(&["__kube-watch"], &self.home.join("kube-watch.log"), lock)
    }

    /// The job of pod `pod`, made into a record of this store if it has none yet (a job
    /// another front end started). `None`: not a job's pod, or one without creel's
    /// annotations.
    pub(crate) fn kube_import(&self, pod: &Pod, namespace: &str) -> Result<Option<JobRecord>> {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let (Some(job_id), Some(session_id)) = (labels.get(LABEL_JOB), labels.get(LABEL_SESSION))
        else {
            return Ok(None);
        };
        if !crate::job::looks_like_job_id(job_id) {
            return Ok(None);
        }
        if let Some(r) = self.store().job(job_id)? {
            return Ok(Some(r));
        }
        // A pod on its way out (a cleanup's) is not made a job again.
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let notes = pod.metadata.annotations.clone().unwrap_or_default();
        let Some(spec) = notes
            .get(ANNOTATION_SPEC)
            .and_then(|s| serde_json::from_str::<JobSpec>(s).ok())
            .filter(|s| s.runtime == crate::config::RuntimeKind::Kubernetes)
        else {
            return Ok(None);
        };
        let created = notes
            .get(ANNOTATION_CREATED)
            .and_then(|c| c.parse::<i64>().ok())
            .unwrap_or_else(now_ms);
        crate::session::validate_session_id(session_id)?;
        let dir = self.job_dir(job_id);
        crate::files::create_private_dir_all(&dir)?;
        let existing = self.store().session(session_id)?;
        let new_session = existing.is_none().then(|| SessionRecord {
            id: session_id.clone(),
            created_at_ms: created,
            last_activity_ms: created,
            workspace: session_place(namespace, session_id),
            workspace_created: false,
            claude_session_id: spec.conversation.id().to_string(),
            git: None,
        });
        let record = JobRecord::pending(
            job_id.clone(),
            session_id.clone(),
            spec,
            created,
            Vec::new(),
        );
        // The cluster has decided: the mirror records the job whatever else of the session it
        // holds unsettled. (The store's lock is let go before the block, which takes it again.)
        self.store().mirror_job(&record, new_session.as_ref())?;
        // The prompt, from the job's Secret (for `jobs` and `prompt`).
        let k = self.config.kubernetes.clone();
        let name = format!("creel-{job_id}");
        let secret = block_on(async move {
            let c = Cluster::connect(&k).await?;
            c.secrets()
                .get_opt(&name)
                .await
                .map_err(|e| Error::cluster("read the job's Secret", e))
        })
        .and_then(|r| r);
        match secret {
            Ok(Some(s)) => {
                if let Some(p) = s.data.as_ref().and_then(|d| d.get("prompt")) {
                    crate::files::write_file_atomic(&dir.join("prompt"), &p.0, 0o400, None)?;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %job_id, "the prompt could not be read: {e}"),
        }
        // A pod that has started is a running job until the watcher settles it.
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            });
        if started {
            self.store()
                .set_running(job_id, &format!("creel-{job_id}"), now_ms())?;
        }
        Ok(self.store().job(job_id)?)
    }
}

/// Whether a session is one of a cluster's (its workspace is its volume).
pub(crate) fn is_cluster_session(s: &SessionRecord) -> bool {
    s.workspace.to_string_lossy().starts_with("kubernetes:")
}
