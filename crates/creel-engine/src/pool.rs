//! The warm pool (`pool = N`): sandboxes made before their prompt is known, so that a start
//! only has to hand one its prompt.
//!
//! A pooled sandbox is everything a default job of a new session needs that does not depend
//! on the prompt: a job id and session id, the job's directory (steering files, an empty
//! prompt file for the mount, the API key), the session's workspace and Claude directory, and
//! a monitor that has started the container (Claude waiting on its input, which is the
//! inbox) and the job's egress proxy in the container's network namespace. The entry is a row
//! of the store's `pool` table until a start claims it.
//!
//! **Invariants:**
//! - A sandbox is used at most once: a claim deletes its pool row and inserts its job and
//!   session in one transaction, so two starts cannot both have it, and a drained sandbox
//!   cannot be claimed. Only after the claim does the prompt go into its inbox.
//! - Nothing is shared between sessions: each sandbox has its own ids, directories, container
//!   and network namespace, and its session is new.
//! - A sandbox is claimed only when the job's spec (with the sandbox's own workspace, Claude
//!   directory and conversation put in) is the one its container was made from, and the login
//!   and image are unchanged ([`fingerprint`]); otherwise it is discarded. So a pooled job
//!   runs exactly as the same start without a pool would have.
//! - Only starts that would make a new session with a workspace of creel's own (no session
//!   id, workspace or repository given) use the pool.
//!
//! No daemon keeps the pool filled. A start tops it up behind the job it started (the new
//! sandboxes' monitors wait a moment before starting their containers), as does `creel pool
//! fill`. Sandboxes persist, as detached monitors with their containers, until claimed,
//! drained (`creel pool drain`, `creel cleanup`), found stale by a later start, or ended
//! (their container died, the machine restarted).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::api::{StartRequest, StartResponse};
use crate::engine::{Engine, monitor_alive, ring_job_dir, try_lock_job};
use crate::error::{Error, Result};
use crate::files::{chown, create_private_dir, create_private_dir_all};
use crate::job::start::Plan;
use crate::job::{ConversationMode, JobRecord, JobSpec, JobState, new_job_id, now_ms};
use crate::runtime::ContainerRuntime;
use crate::session::{SessionRecord, new_session_id};
use crate::store::PoolEntry;

/// How long the monitor of a sandbox a start made waits before starting its container, so
/// that the job the start launched gets the machine first.
const TOP_UP_DELAY: Duration = Duration::from_millis(1500);
/// After a pooled sandbox failed to start, starts do not top the pool up for this long
/// (`creel pool fill` still does).
const FAILED_PAUSE: Duration = Duration::from_secs(300);
/// How long a drain waits for the sandboxes' monitors to take their containers down.
const DRAIN_WAIT: Duration = Duration::from_secs(15);
/// The file that records why the last pooled sandbox could not start.
const FAILED_FILE: &str = "pool-failed";

/// The pool as `creel pool` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// How many sandboxes the config asks for (`pool`).
    pub size: u32,
    /// The sandboxes there are, oldest first.
    pub sandboxes: Vec<PoolSandbox>,
    /// Why the last sandbox that failed could not start, while that is recent.
    pub last_failure: Option<String>,
}

impl PoolStatus {
    /// How many sandboxes wait for a prompt.
    pub fn ready(&self) -> usize {
        self.sandboxes.iter().filter(|s| s.ready).count()
    }
}

/// One pooled sandbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSandbox {
    /// The job id a start that claims it gets.
    pub job_id: String,
    /// The session id a start that claims it gets.
    pub session_id: String,
    /// When it was made (ms since the epoch).
    pub created_at_ms: i64,
    /// Whether its container waits for a prompt (false: still being made).
    pub ready: bool,
    /// Whether its monitor is alive (a sandbox without one is discarded).
    pub monitor_alive: bool,
}

/// What, besides its spec, a sandbox depends on: the API key, the identity of the OAuth
/// credentials file, and (Podman) the identity of the image index as the image check last saw
/// it (it changes when any image is built, tagged or removed). A SHA-256, hex.
pub(crate) fn fingerprint(home: &Path, spec: &JobSpec, api_key: Option<&str>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"key\0");
    ctx.update(api_key.unwrap_or_default().as_bytes());
    ctx.update(b"\0credentials\0");
    if let Some(c) = &spec.credentials_file {
        ctx.update(format!("{:?}", crate::job::start::file_identity(c)).as_bytes());
    }
    ctx.update(b"\0image\0");
    if let Some(identity) = crate::job::start::image_index_identity(home, &spec.image) {
        ctx.update(format!("{identity:?}").as_bytes());
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A spec (as its JSON) with what differs between sandboxes, and what never reaches the
/// container, left out: two specs equal after this make the same container. Compared as JSON
/// read back from text on both sides, so a number that went through the store compares equal
/// to the one it was written from.
fn comparable(spec_json: &str) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(spec_json).ok()?;
    let fields = v.as_object_mut()?;
    for per_sandbox in [
        "workspace",
        "claude_config_dir",
        "conversation",
        "warnings",
        "webhook",
    ] {
        fields.remove(per_sandbox);
    }
    Some(v)
}

/// [`comparable`] of a spec in memory.
fn comparable_spec(spec: &JobSpec) -> Option<serde_json::Value> {
    comparable(&serde_json::to_string(spec).ok()?)
}

/// Takes a sandbox's container and files away (its pool row already gone). Idempotent: the
/// engine and the sandbox's monitor may both do it.
pub(crate) fn teardown(home: &Path, job_id: &str, spec: &JobSpec, container: Option<&str>) {
    if let Ok(rt) = crate::runtime::CliRuntime::new(spec.runtime, Some(&spec.runtime_bin)) {
        remove_containers(&rt, home, job_id, container);
    }
    let _ = std::fs::remove_dir_all(crate::engine::job_dir(home, job_id));
    let _ = std::fs::remove_dir_all(&spec.workspace);
    if let Some(session_dir) = spec.claude_config_dir.parent() {
        let _ = std::fs::remove_dir_all(session_dir);
    }
}

/// Removes a sandbox's container: `container` if known, and any other with its job label.
fn remove_containers(
    rt: &dyn ContainerRuntime,
    home: &Path,
    job_id: &str,
    container: Option<&str>,
) {
    let mut ids: Vec<String> = container.into_iter().map(str::to_string).collect();
    if let Ok(found) = rt.containers_with_label(home, crate::runtime::argv::LABEL_JOB, job_id) {
        ids.extend(found.into_iter().filter(|c| Some(c.as_str()) != container));
    }
    for c in ids {
        let _ = rt.remove(&c);
    }
}

/// Records why a sandbox could not start (starts then leave the pool alone for a while).
pub(crate) fn record_failure(home: &Path, why: &str) {
    let _ = std::fs::write(home.join(FAILED_FILE), why);
}

fn recent_failure(home: &Path) -> Option<String> {
    let path = home.join(FAILED_FILE);
    let age = std::fs::metadata(&path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    if age > FAILED_PAUSE {
        return None;
    }
    std::fs::read_to_string(&path).ok()
}

impl Engine {
    /// Whether this start may take a pooled sandbox: the pool is on and the job starts a new
    /// session with a workspace of creel's own.
    pub(crate) fn pool_eligible(&self, req: &StartRequest, plan: &Plan) -> bool {
        self.config.pool > 0
            && req.session_id.is_none()
            && req.workspace.is_none()
            && req.repo.is_none()
            && plan.existing.is_none()
            && plan.spec.git.is_none()
            && self.monitor.is_some()
    }

    /// Hands `req`'s prompt to a ready sandbox made for `plan`'s spec; `None` if there is
    /// none. Sandboxes made for another login or image, or whose monitor is gone, are
    /// discarded; those made for another spec are left for the starts they fit (a fill
    /// discards those the config no longer makes).
    pub(crate) fn claim_pooled(
        &self,
        req: &StartRequest,
        plan: &Plan,
    ) -> Result<Option<StartResponse>> {
        let entries = self.store().pool_entries()?;
        if entries.is_empty() {
            return Ok(None);
        }
        let fingerprint = fingerprint(&self.home, &plan.spec, plan.api_key.as_deref());
        let want = comparable_spec(&plan.spec);
        for e in entries {
            let Some(container) = e.container_id.clone() else {
                continue; // still being made
            };
            let Ok(spec) = serde_json::from_str::<JobSpec>(&e.spec) else {
                self.discard(&e, None);
                continue;
            };
            if e.fingerprint != fingerprint {
                tracing::info!(job = %e.job_id, "discarding a pooled sandbox made for another login or image");
                self.discard(&e, Some(&spec));
                continue;
            }
            if want.is_none() || comparable(&e.spec) != want {
                continue;
            }
            if !monitor_alive(&self.home, &e.job_id) {
                self.discard(&e, Some(&spec));
                continue;
            }
            let now = now_ms();
            let job_spec = JobSpec {
                workspace: spec.workspace.clone(),
                claude_config_dir: spec.claude_config_dir.clone(),
                conversation: spec.conversation.clone(),
                ..plan.spec.clone()
            };
            let mut record = JobRecord::pending(
                e.job_id.clone(),
                e.session_id.clone(),
                job_spec,
                now,
                plan.warnings.clone(),
            );
            record.state = JobState::Running;
            record.container_id = Some(container);
            record.started_at_ms = Some(now);
            let session = SessionRecord {
                id: e.session_id.clone(),
                created_at_ms: now,
                last_activity_ms: now,
                workspace: spec.workspace.clone(),
                workspace_created: true,
                claude_session_id: spec.conversation.id().to_string(),
                git: None,
            };
            let claimed = self.store().claim_pool_job(&record, &session);
            match claimed {
                Ok(true) => {}
                Ok(false) => continue, // another start took it, or it was drained
                Err(err) => {
                    tracing::warn!(job = %e.job_id, "a pooled sandbox could not be claimed: {err}");
                    self.discard(&e, Some(&spec));
                    continue;
                }
            }
            if let Err(e) = self.hand_over(&record, req, plan) {
                // The job is recorded and its container waits for input that will not come:
                // it fails, and its container is stopped (its monitor drains and removes it).
                let _ = self.store().finish(
                    &record.id,
                    JobState::Failed,
                    Some(&crate::job::JobError {
                        kind: crate::job::ErrorKind::Runtime,
                        message: format!("the prompt could not be handed to the job: {e}"),
                    }),
                    None,
                    now_ms(),
                );
                if let (Ok(rt), Some(c)) = (self.runtime_for(&record.spec), &record.container_id) {
                    let _ = rt.stop(c, 0);
                }
                ring_job_dir(&self.job_dir(&record.id));
                return Err(e);
            }
            return Ok(Some(StartResponse {
                job_id: record.id,
                session_id: record.session_id,
                state: JobState::Running,
                workspace: spec.workspace,
                branch: None,
                warnings: record.warnings,
            }));
        }
        Ok(None)
    }

    /// A claimed sandbox's budget and prompt: the prompt file (what creel shows of the job),
    /// then the first message of Claude's input (its proxy listens already). Once that is
    /// written Claude runs: nothing after it can fail the start.
    fn hand_over(&self, record: &JobRecord, req: &StartRequest, plan: &Plan) -> Result<()> {
        if !plan.budget.is_empty() {
            self.store().set_budget(&record.session_id, &plan.budget)?;
        }
        let dir = self.job_dir(&record.id);
        let owner = plan.owner();
        let mut files = crate::files::Unsynced::default();
        files.write(&dir.join("prompt"), req.prompt.as_bytes(), 0o400, owner)?;
        crate::steer::write_first_message(&dir, &req.prompt, owner, false, &mut files)?;
        // The monitor waits on its directory for the claim.
        ring_job_dir(&dir);
        if let Err(e) = files.sync() {
            tracing::warn!(job = %record.id, "the job's files could not be synced: {e}");
        }
        Ok(())
    }

    /// Takes a sandbox out of the pool and lets its monitor take it down (or does so itself
    /// when the monitor is gone).
    fn discard(&self, e: &PoolEntry, spec: Option<&JobSpec>) {
        if !matches!(self.store().pool_remove(&e.job_id), Ok(true)) {
            return;
        }
        if monitor_alive(&self.home, &e.job_id) {
            ring_job_dir(&self.job_dir(&e.job_id));
        } else if let Some(spec) = spec {
            teardown(&self.home, &e.job_id, spec, e.container_id.as_deref());
        } else {
            // (A spec this creel cannot read: the container by its label, and the directory.)
            if let Ok(rt) = self.configured_runtime() {
                remove_containers(
                    rt.as_ref(),
                    &self.home,
                    &e.job_id,
                    e.container_id.as_deref(),
                );
            }
            let _ = std::fs::remove_dir_all(self.job_dir(&e.job_id));
        }
    }

    /// After a start: makes sandboxes for a default job until the pool is full again (a start
    /// with options of its own does not change what the pool holds). Errors are logged.
    pub(crate) fn top_up_pool(&self) {
        if recent_failure(&self.home).is_some() {
            return;
        }
        let filled = self
            .plan(&pool_request())
            .and_then(|plan| self.fill_from(&plan, TOP_UP_DELAY));
        if let Err(e) = filled {
            tracing::warn!("the warm pool could not be topped up: {e}");
        }
    }

    /// With the pool off (`pool = 0`), takes down what an earlier config left in it. A table
    /// lookup when there is nothing.
    pub(crate) fn discard_pool_if_off(&self) {
        if self.config.pool > 0 {
            return;
        }
        let Ok(entries) = self.store().pool_entries() else {
            return;
        };
        for e in entries {
            let spec = serde_json::from_str::<JobSpec>(&e.spec).ok();
            self.discard(&e, spec.as_ref());
        }
    }

    /// The pool's sandboxes.
    pub fn pool_status(&self) -> Result<PoolStatus> {
        let entries = self.store().pool_entries()?;
        Ok(PoolStatus {
            size: self.config.pool,
            sandboxes: entries
                .into_iter()
                .map(|e| PoolSandbox {
                    monitor_alive: monitor_alive(&self.home, &e.job_id),
                    ready: e.container_id.is_some(),
                    job_id: e.job_id,
                    session_id: e.session_id,
                    created_at_ms: e.created_at_ms,
                })
                .collect(),
            last_failure: recent_failure(&self.home),
        })
    }

    /// Fills the pool to `pool` sandboxes now, discarding those that no longer fit the config
    /// (the new sandboxes' containers start in the background; [`Engine::pool_status`] shows
    /// when they are ready). Checks what a start checks: an unusable setup is an error here.
    pub fn fill_pool(&self) -> Result<PoolStatus> {
        if self.config.pool == 0 {
            return Err(Error::InvalidRequest(
                "the warm pool is off (pool = 0); set `pool = N` in the config to keep N sandboxes ready (`creel pool drain` removes what an earlier config left)".into(),
            ));
        }
        if self.monitor.is_none() {
            return Err(Error::InvalidRequest(
                "this creel cannot start monitors, so it cannot fill a pool".into(),
            ));
        }
        let _ = std::fs::remove_file(self.home.join(FAILED_FILE));
        let plan = self.plan(&pool_request())?;
        self.fill_from(&plan, Duration::ZERO)?;
        self.pool_status()
    }

    /// Takes every sandbox out of the pool and down (containers, directories). Returns their
    /// job ids.
    pub fn drain_pool(&self) -> Result<Vec<String>> {
        let mut drained = Vec::new();
        let entries = self.store().pool_entries()?;
        for e in entries {
            if self.store().pool_remove(&e.job_id)? {
                ring_job_dir(&self.job_dir(&e.job_id));
                drained.push(e);
            }
        }
        // The monitors take their containers down; whatever a dead one left goes here.
        let until = Instant::now() + DRAIN_WAIT;
        for e in &drained {
            while monitor_alive(&self.home, &e.job_id) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(spec) = serde_json::from_str::<JobSpec>(&e.spec) {
                teardown(&self.home, &e.job_id, &spec, e.container_id.as_deref());
            }
        }
        Ok(drained.into_iter().map(|e| e.job_id).collect())
    }

    /// Discards the sandboxes that do not fit `plan` (or lost their monitor) and makes new ones
    /// until there are `pool`. One filler at a time (a lock file); another filler running
    /// means there is nothing to do.
    fn fill_from(&self, plan: &Plan, delay: Duration) -> Result<usize> {
        let lock_path = self.home.join("pool.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("cannot open", &lock_path, e))?;
        if lock.try_lock().is_err() {
            return Ok(0);
        }
        let fingerprint = fingerprint(&self.home, &plan.spec, plan.api_key.as_deref());
        let want = comparable_spec(&plan.spec);
        let mut kept = 0u32;
        let entries = self.store().pool_entries()?;
        for e in entries {
            let spec = serde_json::from_str::<JobSpec>(&e.spec).ok();
            let fits = spec.is_some()
                && want.is_some()
                && comparable(&e.spec) == want
                && e.fingerprint == fingerprint;
            if fits && monitor_alive(&self.home, &e.job_id) && kept < self.config.pool {
                kept += 1;
            } else {
                self.discard(&e, spec.as_ref());
            }
        }
        let mut made = 0;
        for _ in kept..self.config.pool {
            self.make_sandbox(plan, &fingerprint, delay)?;
            made += 1;
        }
        Ok(made)
    }

    /// One new sandbox: its files, its pool row, its monitor (which starts the container after
    /// `delay`).
    fn make_sandbox(&self, plan: &Plan, fingerprint: &str, delay: Duration) -> Result<()> {
        let job_id = new_job_id();
        let session_id = new_session_id();
        let spec = JobSpec {
            workspace: self.workspaces_dir().join(&session_id),
            claude_config_dir: self.sessions_dir().join(&session_id).join("claude"),
            conversation: ConversationMode::New(uuid::Uuid::new_v4().to_string()),
            warnings: Vec::new(),
            webhook: None,
            ..plan.spec.clone()
        };
        let dir = self.job_dir(&job_id);
        let owner = plan.owner();
        let mut files = crate::files::Unsynced::default();
        let made = (|| -> Result<()> {
            create_private_dir(&dir)?;
            // The prompt file is mounted, so it must exist; the prompt itself comes with the
            // claim (as the inbox's first message, which is what Claude reads).
            files.write(&dir.join("prompt"), b"", 0o400, owner)?;
            if let Some(steer) = &spec.steer {
                crate::steer::prepare_unsynced(&dir, steer, owner, &mut files)?;
            }
            if let Some(key) = &plan.api_key {
                let key_owner = if plan.key_via_proxy { None } else { owner };
                files.write(&dir.join("api-key"), key.as_bytes(), 0o400, key_owner)?;
            }
            create_private_dir_all(&spec.workspace)?;
            chown(&spec.workspace, owner)?;
            create_private_dir_all(&spec.claude_config_dir)?;
            chown(&spec.claude_config_dir, owner)?;
            if plan.api_key.is_none()
                && let Some(creds) = &plan.credentials
            {
                crate::login::copy_credentials_in(creds, &spec.claude_config_dir, owner)?;
            }
            // Not synced: a sandbox is disposable (after a crash its container is gone too,
            // and the next fill discards it), and this runs on a start's way to its answer.
            drop(files);
            Ok(())
        })();
        if let Err(e) = made {
            teardown(&self.home, &job_id, &spec, None);
            return Err(e);
        }
        let lock = match try_lock_job(&self.home, &job_id) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                teardown(&self.home, &job_id, &spec, None);
                return Ok(());
            }
            Err(e) => {
                teardown(&self.home, &job_id, &spec, None);
                return Err(e);
            }
        };
        let now = now_ms();
        let entry = PoolEntry {
            job_id: job_id.clone(),
            session_id,
            created_at_ms: now,
            spec: serde_json::to_string(&spec).unwrap_or_default(),
            fingerprint: fingerprint.to_string(),
            start_after_ms: now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(0)),
            container_id: None,
        };
        if let Err(e) = self.store().pool_add(&entry) {
            teardown(&self.home, &job_id, &spec, None);
            return Err(e.into());
        }
        if let Err(e) = self.spawn_monitor(&job_id, lock) {
            let _ = self.store().pool_remove(&job_id);
            teardown(&self.home, &job_id, &spec, None);
            return Err(e);
        }
        Ok(())
    }
}

/// The request a pooled sandbox is made for: a default job of a new session.
fn pool_request() -> StartRequest {
    StartRequest {
        prompt: "(pooled sandbox)".into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_differing_only_per_sandbox_compare_equal() {
        let mut a: JobSpec = crate::runtime::argv::tests::spec();
        a.budget = Some(crate::job::JobBudget {
            cost_usd: Some(0.1 + 0.2),
            turns_from_budget: false,
            wall_seconds: None,
        });
        let b = JobSpec {
            workspace: "/elsewhere".into(),
            claude_config_dir: "/other/claude".into(),
            conversation: ConversationMode::New("x".into()),
            warnings: vec!["w".into()],
            ..a.clone()
        };
        assert_eq!(comparable_spec(&a), comparable_spec(&b));
        // Through the store (JSON text) and back, a float still compares equal.
        let stored = serde_json::to_string(&b).unwrap();
        assert_eq!(comparable(&stored), comparable_spec(&a));
        let c = JobSpec {
            image: "other".into(),
            ..a.clone()
        };
        assert_ne!(comparable_spec(&a), comparable_spec(&c));
        let d = JobSpec {
            model: Some("claude-other".into()),
            ..a
        };
        assert_ne!(comparable_spec(&b), comparable_spec(&d));
        assert!(comparable_spec(&d).is_some());
    }
}
