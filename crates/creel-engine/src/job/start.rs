//! `start`: validate, record the job, spawn its monitor, return at once.
//!
//! Everything that can refuse the request (bad input, missing runtime, image or login, busy
//! session) is checked before anything is written, so a refused start leaves no trace.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::api::{StartRequest, StartResponse};
use crate::config::NetworkMode;
use crate::engine::{Engine, try_lock_job};
use crate::error::{Error, Result};
use crate::files::{chown, create_private_dir, create_private_dir_all, write_file_atomic};
use crate::host::HostProfile;
use crate::job::{
    ConversationMode, JobRecord, JobSpec, JobState, UserMode, new_job_id, now_ms, validate_model,
};
use crate::runtime::ContainerRuntime;
use crate::session::{SessionRecord, new_session_id, validate_session_id};

/// How long `start` waits for the previous job of a `--repo` session to finish recording its
/// changes (after a cancel) before it calls the session busy.
const RECORDING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest prompt accepted (it travels as a file, so this is about sanity, not argv limits).
pub const MAX_PROMPT: usize = 64 << 20;

/// Where Claude keeps a conversation's transcript inside its config dir, for the fixed
/// workspace path `/workspace`.
pub fn transcript_path(claude_config_dir: &Path, conversation: &str) -> PathBuf {
    claude_config_dir
        .join("projects")
        .join("-workspace")
        .join(format!("{conversation}.jsonl"))
}

impl StartRequest {
    /// Checks what the request itself says (prompt, session id, model, turns), before anything
    /// else is looked at: what any face can refuse without a store or a container engine.
    pub fn check(&self) -> Result<()> {
        if self.prompt.trim().is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        if self.prompt.len() > MAX_PROMPT {
            return Err(Error::InvalidRequest(format!(
                "the prompt is {} bytes; the limit is {MAX_PROMPT}",
                self.prompt.len()
            )));
        }
        if let Some(id) = &self.session_id {
            validate_session_id(id)?;
        }
        if let Some(m) = &self.model {
            validate_model(m).map_err(|m| Error::InvalidRequest(format!("invalid model: {m}")))?;
        }
        if self.repo.is_none() && (self.git_ref.is_some() || self.include_uncommitted) {
            return Err(Error::InvalidRequest(
                "a ref and --include-uncommitted need a repository (--repo)".into(),
            ));
        }
        if self.repo.is_some() && self.workspace.is_some() {
            return Err(Error::InvalidRequest(
                "give a repository or a workspace, not both: with a repository the session's workspace is its checkout".into(),
            ));
        }
        if self.max_turns == Some(0) {
            return Err(Error::InvalidRequest(
                "the turn limit (max turns) must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Engine {
    /// Starts a job: validates the request, records it, launches its monitor and returns at
    /// once with the job pending.
    ///
    /// # Example
    /// ```no_run
    /// # use creel_engine::{Engine, StartRequest};
    /// # fn f(engine: &Engine) -> creel_engine::Result<()> {
    /// let r = engine.start(StartRequest { prompt: "fix the tests".into(), session_id: Some("repo-1".into()), ..Default::default() })?;
    /// assert_eq!(r.session_id, "repo-1");
    /// # Ok(()) }
    /// ```
    pub fn start(&self, req: StartRequest) -> Result<StartResponse> {
        if self.config.runtime == crate::config::RuntimeKind::Kubernetes {
            return self.kube_start(&req);
        }
        let plan = self.plan(&req)?;
        let pooled = self.pool_eligible(&req, &plan);
        let claimed = match pooled {
            true => self.claim_pooled(&req, &plan)?,
            false => None,
        };
        let response = match claimed {
            Some(r) => r,
            None => self.launch(&req, plan)?,
        };
        if pooled {
            // The pool is topped up behind the job (its monitors wait a moment before they
            // start their containers, so as not to slow this job's start).
            self.top_up_pool();
        } else {
            self.discard_pool_if_off();
        }
        self.auto_cleanup();
        Ok(response)
    }

    /// Steps 1 to 3 of a start: everything that can refuse the request, and the job's spec.
    /// Nothing is written.
    pub(crate) fn plan(&self, req: &StartRequest) -> Result<Plan> {
        // 1. Input.
        req.check()?;
        let model = req.model.clone().or_else(|| self.config.model.clone());
        if let Some(m) = &model {
            validate_model(m).map_err(|m| Error::InvalidRequest(format!("invalid model: {m}")))?;
        }
        let existing = match &req.session_id {
            Some(id) => self.store().session(id)?,
            None => None,
        };
        if let Some(id) = &req.session_id
            && existing.is_none()
            && self.store().pool_has_session(id)?
        {
            return Err(Error::InvalidRequest(format!(
                "session id `{id}` belongs to a sandbox of the warm pool; choose another"
            )));
        }
        if let (Some(s), Some(_)) = (&existing, &req.workspace) {
            return Err(Error::InvalidRequest(format!(
                "session `{}` already exists with workspace `{}`; a workspace is only for a new session",
                s.id,
                s.workspace.display()
            )));
        }
        if let (Some(s), Some(_)) = (&existing, &req.repo) {
            return Err(Error::InvalidRequest(format!(
                "session `{}` already exists; a repository is only for a new session (its later jobs continue on its branch)",
                s.id
            )));
        }
        req.budget.check()?;
        let budget = match &existing {
            Some(s) => self
                .store()
                .budget(&s.id)?
                .unwrap_or_default()
                .overlaid(&req.budget),
            None => crate::api::Budget {
                max_cost_usd: self.config.max_cost_usd,
                max_turns: self.config.max_turns,
                max_wall_seconds: self.config.max_wall_seconds,
            }
            .overlaid(&req.budget),
        };
        let budget_now = match &existing {
            Some(s) if !budget.is_empty() => {
                let spent = self.store().spent(&s.id, now_ms())?;
                let st = crate::job::budget::status_of(&s.id, budget.clone(), spent);
                if let Some(why) = &st.exhausted {
                    // A raise given with this start is kept even though the job is refused.
                    if !req.budget.is_empty() {
                        self.store().set_budget(&s.id, &budget)?;
                    }
                    return Err(Error::BudgetSpent {
                        session: s.id.clone(),
                        why: why.clone(),
                    });
                }
                Some(st)
            }
            None if !budget.is_empty() => Some(crate::job::budget::status_of(
                "",
                budget.clone(),
                Default::default(),
            )),
            _ => None,
        };
        if let Some(s) = &existing
            && let Some((job, state)) = self.store().active_job(&s.id)?
        {
            return Err(Error::SessionBusy {
                session: s.id.clone(),
                job,
                state: state.to_string(),
            });
        }
        // A `--repo` session's last job may have ended (a cancel marks it final at once) while
        // its monitor still records its changes in the checkout: the next job waits for that
        // (a few seconds at most), since both would write the checkout's `.git`.
        if let Some(s) = existing.as_ref().filter(|s| s.git.is_some())
            && let Some(last) = self.store().jobs_of_session(&s.id)?.pop()
            && last.changes.is_none()
        {
            let until = std::time::Instant::now() + RECORDING_WAIT;
            while crate::engine::monitor_alive(&self.home, &last.id) {
                if std::time::Instant::now() >= until {
                    return Err(Error::SessionBusy {
                        session: s.id.clone(),
                        job: last.id,
                        state: format!("{} (its changes are still being recorded)", last.state),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        // A `--repo` session id used before (its record removed by a cleanup that kept the
        // checkout) must not take over what is left: its branch may hold unlanded work.
        if existing.is_none() && req.repo.is_some() {
            let id = req.session_id.clone().unwrap_or_default();
            let leftover = self.git_dir(&id);
            if !id.is_empty() && leftover.exists() {
                return Err(Error::InvalidRequest(format!(
                    "session `{id}` was used before and its repository is still at `{}`; choose another session id, or remove it with `creel cleanup --delete-workspaces`",
                    leftover.display()
                )));
            }
        }
        let user_workspace = match &req.workspace {
            Some(w) => Some(check_user_workspace(w)?),
            None => None,
        };
        let git = match (&req.repo, existing.as_ref().and_then(|s| s.git.as_ref())) {
            (Some(_), _) | (_, Some(_)) => Some(crate::git::Git::find()?),
            _ => None,
        };
        let user_repo = match (&req.repo, &git) {
            (Some(repo), Some(git)) => Some(crate::git::session::inspect(
                git,
                repo,
                req.git_ref.as_deref(),
            )?),
            _ => None,
        };

        // 2. Environment.
        let runtime = self.configured_runtime()?;
        let host = HostProfile::detect(&self.config, runtime.kind());
        let api_key = self.api_key()?;
        let credentials = self.credentials_file();
        if api_key.is_none() && !credentials.as_ref().is_some_and(|c| c.is_file()) {
            return Err(Error::NoLogin {
                credentials: credentials
                    .unwrap_or_else(|| PathBuf::from("~/.claude/.credentials.json")),
            });
        }
        if host.rootless && self.config.network == NetworkMode::Bridge && !host.tun_usable {
            // (allowlist mode needs no tun device: the container has no network of its own.)
            return Err(Error::Runtime(crate::runtime::RuntimeError::failed(
                "podman",
                "run",
                "not started",
                "rootless networking (slirp4netns) needs /dev/net/tun, which this user cannot open",
            )));
        }
        if !image_present(&self.home, runtime.as_ref(), &self.config.image)? {
            return Err(Error::ImageMissing {
                image: self.config.image.clone(),
                runtime: runtime.kind().to_string(),
            });
        }

        // 3. Session, user and conversation.
        let session_id = req.session_id.clone().unwrap_or_else(new_session_id);
        let now = now_ms();
        let (workspace, workspace_created) = match (&existing, user_workspace) {
            (Some(s), _) => (s.workspace.clone(), s.workspace_created),
            (None, Some(w)) => (w, false),
            (None, None) => (self.workspaces_dir().join(&session_id), true),
        };
        let user = choose_user(
            &host,
            &workspace,
            workspace_created,
            self.config.sandbox_uid,
        )?;
        let claude_config_dir = self.sessions_dir().join(&session_id).join("claude");
        let mut warnings = Vec::new();
        if let Some(w) = host.limits_warning() {
            warnings.push(w);
        }
        if let Some(u) = &user_repo {
            warnings.extend(u.warnings.iter().cloned());
        }
        let previous = existing.as_ref().map(|s| s.claude_session_id.clone());
        let conversation = match &previous {
            Some(id) if transcript_path(&claude_config_dir, id).is_file() => {
                ConversationMode::Resume(id.clone())
            }
            Some(id) => {
                let had_jobs = !self.store().jobs_of_session(&session_id)?.is_empty();
                if had_jobs {
                    warnings.push(format!(
                        "not resuming: Claude conversation {id} has no transcript (its job ended before Claude wrote one); starting a new conversation"
                    ));
                    ConversationMode::New(uuid::Uuid::new_v4().to_string())
                } else {
                    ConversationMode::New(id.clone())
                }
            }
            None => ConversationMode::New(uuid::Uuid::new_v4().to_string()),
        };
        let mut env = Vec::new();
        let base_url = self
            .config
            .api_base_url
            .clone()
            .or_else(|| self.api_base_url.clone());
        let mut egress = None;
        let mut key_via_proxy = false;
        if self.config.network == NetworkMode::Allowlist {
            let proxy = format!("http://127.0.0.1:{}", crate::egress::PROXY_PORT);
            for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
                env.push((k.to_string(), proxy.clone()));
            }
            for k in ["NO_PROXY", "no_proxy"] {
                env.push((k.to_string(), "127.0.0.1,localhost".to_string()));
            }
            let mut allow = self.config.egress_allow.clone();
            if api_key.is_none() {
                allow.extend(crate::egress::OAUTH_HOSTS.iter().map(|h| h.to_string()));
            }
            let api_upstream = match (&api_key, base_url) {
                (_, Some(url)) => Some(url),
                (Some(_), None) => Some("https://api.anthropic.com".to_string()),
                (None, None) => None,
            };
            if let Some(url) = &api_upstream {
                crate::egress::ApiUpstream::parse(url, None)
                    .map_err(|e| Error::InvalidRequest(format!("api_base_url: {e}")))?;
                env.push(("ANTHROPIC_BASE_URL".to_string(), proxy.clone()));
            }
            if api_key.is_some() {
                key_via_proxy = true;
                // Claude wants a key to be set; the proxy replaces it with the real one.
                env.push((
                    "ANTHROPIC_API_KEY".to_string(),
                    "creel-proxy-adds-the-real-key".to_string(),
                ));
            }
            egress = Some(crate::egress::EgressSpec {
                allow,
                resolve: self.config.egress_resolve.clone(),
                api_upstream,
            });
        } else if let Some(url) = base_url {
            env.push(("ANTHROPIC_BASE_URL".to_string(), url));
        }
        // How often Claude retries a failed API call (its default, 10, can mean minutes of
        // backoff): passed through from creel's environment when it is a number.
        if let Some(n) = std::env::var("CLAUDE_CODE_MAX_RETRIES")
            .ok()
            .filter(|v| v.parse::<u32>().is_ok())
        {
            env.push(("CLAUDE_CODE_MAX_RETRIES".to_string(), n));
        }
        let spec = JobSpec {
            runtime: runtime.kind(),
            runtime_bin: runtime.binary().to_path_buf(),
            image: self.config.image.clone(),
            oci_runtime: host.oci_runtime.clone(),
            memory: self.config.memory.clone(),
            cpus: self.config.cpus.clone(),
            pids_limit: self.config.pids_limit,
            network: self.config.network,
            apparmor_profile: Some(self.config.apparmor_profile.clone()).filter(|p| !p.is_empty()),
            tmpfs_size: self.config.tmpfs_size.clone(),
            ulimits: host.ulimits(),
            user: user.clone(),
            startup_timeout: self.config.startup_timeout,
            idle_timeout: self.config.idle_timeout,
            max_output_size: self.config.max_output_size,
            claude_path: self.config.claude_path.clone(),
            model,
            max_turns: match (
                req.max_turns,
                budget_now.as_ref().and_then(|b| b.turns_left()),
            ) {
                (Some(own), Some(left)) => Some(own.min(u32::try_from(left).unwrap_or(u32::MAX))),
                (own, None) => own,
                (None, Some(left)) => Some(u32::try_from(left).unwrap_or(u32::MAX)),
            },
            workspace: workspace.clone(),
            claude_config_dir: claude_config_dir.clone(),
            conversation,
            env,
            api_key: api_key.is_some(),
            warnings: warnings.clone(),
            webhook: crate::webhook::resolve(
                &self.config,
                self.user_home.as_deref(),
                req.from_agent,
            ),
            egress,
            key_via_proxy,
            git: None,
            git_base: None,
            steer: Some(crate::steer::SteerSpec {
                messages: true,
                permissions: req.permissions.unwrap_or(self.config.permissions),
                allow: self.config.permissions_allow.clone(),
                deny: self.config.permissions_deny.clone(),
                input_timeout: self.config.input_timeout,
            }),
            budget: budget_now.as_ref().map(|b| crate::job::JobBudget {
                cost_usd: b.cost_left(),
                turns_from_budget: b
                    .turns_left()
                    .is_some_and(|left| req.max_turns.is_none_or(|own| u64::from(own) >= left)),
                wall_seconds: b.wall_seconds_left(),
            }),
            credentials_file: if api_key.is_none() {
                credentials.clone()
            } else {
                None
            },
        };
        Ok(Plan {
            existing,
            budget,
            session_id,
            now,
            workspace,
            workspace_created,
            user,
            euid: host.euid,
            api_key,
            credentials,
            key_via_proxy,
            git,
            user_repo,
            spec,
            warnings,
        })
    }

    /// Steps 4 and 5 of a start: the job's files, its record, its monitor.
    fn launch(&self, req: &StartRequest, plan: Plan) -> Result<StartResponse> {
        let claude_config_dir = plan.spec.claude_config_dir.clone();
        let chown_to = plan.owner();
        let Plan {
            existing,
            budget,
            session_id,
            now,
            workspace,
            workspace_created,
            user: _,
            euid: _,
            api_key,
            credentials,
            key_via_proxy,
            git,
            user_repo,
            spec,
            warnings,
        } = plan;
        // 4. Files: job dir, prompt, key, workspace and Claude dir. Undone on failure.
        let job_id = new_job_id();
        let job_dir = self.job_dir(&job_id);
        let mut session_git = existing.as_ref().and_then(|s| s.git.clone());
        let mut git_base = None;
        // The job's files are synced together once its monitor is on its way (below).
        let mut files = crate::files::Unsynced::default();
        let prepared = (|| -> Result<()> {
            create_private_dir(&job_dir)?;
            files.write(
                &job_dir.join("prompt"),
                req.prompt.as_bytes(),
                0o400,
                chown_to,
            )?;
            if let Some(steer) = &spec.steer {
                crate::steer::prepare_unsynced(&job_dir, steer, chown_to, &mut files)?;
                if steer.messages {
                    // Held until the monitor's proxy listens in the job's namespace (allowlist).
                    let held = spec.egress.is_some();
                    crate::steer::write_first_message(
                        &job_dir,
                        &req.prompt,
                        chown_to,
                        held,
                        &mut files,
                    )?;
                }
            }
            if let Some(key) = &api_key {
                // With the proxy adding the key, only creel's monitor reads this file: it stays
                // creel's own, and is never mounted.
                let owner = if key_via_proxy { None } else { chown_to };
                files.write(&job_dir.join("api-key"), key.as_bytes(), 0o400, owner)?;
            }
            if workspace_created && existing.is_none() {
                create_private_dir_all(&workspace)?;
                chown(&workspace, chown_to)?;
            }
            if let (Some(git), Some(u)) = (&git, &user_repo) {
                session_git = Some(crate::git::session::create(
                    git,
                    &self.git_dir(&session_id),
                    u,
                    &session_id,
                    &workspace,
                    req.include_uncommitted,
                    chown_to,
                )?);
            }
            if let (Some(git), Some(sg)) = (&git, &session_git) {
                git_base = Some(crate::git::session::prepare_job(
                    git, sg, &workspace, chown_to,
                )?);
            }
            if !claude_config_dir.is_dir() {
                create_private_dir_all(&claude_config_dir)?;
                chown(&claude_config_dir, chown_to)?;
            }
            if api_key.is_none()
                && let Some(creds) = &credentials
            {
                crate::login::copy_credentials_in(creds, &claude_config_dir, chown_to)?;
            }
            Ok(())
        })();
        // What a refused start made goes again: the job's directory, and a new `--repo`
        // session's checkout and repository.
        let undo = || {
            let _ = std::fs::remove_dir_all(&job_dir);
            if user_repo.is_some() {
                let _ = std::fs::remove_dir_all(self.git_dir(&session_id));
                let _ = std::fs::remove_dir_all(&workspace);
            }
        };
        if let Err(e) = prepared {
            undo();
            return Err(e);
        }

        // 5. Record (the busy check again, atomically) and launch.
        let spec = JobSpec {
            git: session_git,
            git_base,
            ..spec
        };
        let record = JobRecord::pending(job_id.clone(), session_id.clone(), spec, now, warnings);
        let new_session = existing.is_none().then(|| SessionRecord {
            id: session_id.clone(),
            created_at_ms: now,
            last_activity_ms: now,
            workspace: workspace.clone(),
            workspace_created,
            claude_session_id: record.spec.conversation.id().to_string(),
            git: record.spec.git.clone(),
        });
        let lock = try_lock_job(&self.home, &job_id)?;
        if let Err((active, state)) = self.store().insert_job(&record, new_session.as_ref())? {
            undo();
            return Err(Error::SessionBusy {
                session: session_id,
                job: active,
                state: state.to_string(),
            });
        }
        if !budget.is_empty() {
            self.store().set_budget(&session_id, &budget)?;
        }
        if let Some(lock) = lock {
            self.spawn_monitor(&job_id, lock)?;
        }
        // The monitor reads the files from the page cache meanwhile; the job is reported
        // accepted only once they are on disk. (Should the disk fail now, the job runs on:
        // its files are there until the machine stops, and the error is logged.)
        if let Err(e) = files.sync() {
            tracing::warn!(job = %job_id, "the job's files could not be synced: {e}");
        }
        Ok(StartResponse {
            job_id,
            session_id,
            state: JobState::Pending,
            workspace,
            branch: record.spec.git.as_ref().map(|g| g.branch.clone()),
            warnings: record.warnings.clone(),
        })
    }

    fn api_key(&self) -> Result<Option<String>> {
        if let Some(k) = &self.api_key {
            return Ok(Some(k.clone()));
        }
        if let Some(path) = &self.config.api_key_file {
            let key = std::fs::read_to_string(path)
                .map_err(|e| Error::io("cannot read the API key file", path, e))?;
            let key = key.trim().to_string();
            if key.is_empty() {
                return Err(Error::InvalidRequest(format!(
                    "the API key file `{}` is empty",
                    path.display()
                )));
            }
            return Ok(Some(key));
        }
        Ok(None)
    }

    pub(crate) fn credentials_file(&self) -> Option<PathBuf> {
        self.config.credentials_file.clone().or_else(|| {
            self.user_home
                .as_ref()
                .map(|h| h.join(".claude").join(".credentials.json"))
        })
    }
}

/// Whether `image` is in the runtime's storage. A positive answer from Podman is remembered
/// together with the identity of Podman's image index file (`images.json`: path, inode, size,
/// mtime), which every tag, pull or removal rewrites; while that file is unchanged the next
/// start skips the runtime call (BENCHMARKS F4). An image that vanishes later still fails the
/// job as `image_missing` in the monitor.
fn image_present(home: &Path, runtime: &dyn ContainerRuntime, image: &str) -> Result<bool> {
    let cache_path = home.join("image-check.json");
    let cached: Option<ImageCheck> = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if runtime.kind() == crate::config::RuntimeKind::Podman
        && let Some(c) = &cached
        && c.image == image
        && c.runtime_bin == runtime.binary()
        && file_identity(&c.index_file).as_ref() == Some(&c.identity)
    {
        return Ok(true);
    }
    let present = runtime.image_exists(image)?;
    if present
        && runtime.kind() == crate::config::RuntimeKind::Podman
        && let Some(index_file) = crate::runtime::podman_image_index(runtime.binary())
        && let Some(identity) = file_identity(&index_file)
    {
        let check = ImageCheck {
            image: image.to_string(),
            runtime_bin: runtime.binary().to_path_buf(),
            index_file,
            identity,
        };
        if let Ok(bytes) = serde_json::to_vec(&check) {
            let _ = write_file_atomic(&cache_path, &bytes, 0o600, None);
        }
    }
    Ok(present)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ImageCheck {
    image: String,
    runtime_bin: PathBuf,
    index_file: PathBuf,
    identity: (u64, u64, i64, i64),
}

/// The identity of Podman's image index as the last image check of `image` saw it (see
/// [`image_present`]), if that check is still current.
pub(crate) fn image_index_identity(home: &Path, image: &str) -> Option<(u64, u64, i64, i64)> {
    let cached: ImageCheck =
        serde_json::from_slice(&std::fs::read(home.join("image-check.json")).ok()?).ok()?;
    (cached.image == image).then_some(cached.identity)
}

/// Inode, size and mtime (s, ns) of a file.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// What [`Engine::plan`] decided for a start: the job's spec and what its files are made from.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) existing: Option<SessionRecord>,
    pub(crate) budget: crate::api::Budget,
    pub(crate) session_id: String,
    pub(crate) now: i64,
    pub(crate) workspace: PathBuf,
    pub(crate) workspace_created: bool,
    pub(crate) user: UserMode,
    pub(crate) euid: u32,
    pub(crate) api_key: Option<String>,
    pub(crate) credentials: Option<PathBuf>,
    pub(crate) key_via_proxy: bool,
    pub(crate) git: Option<crate::git::Git>,
    pub(crate) user_repo: Option<crate::git::session::UserRepo>,
    pub(crate) spec: JobSpec,
    pub(crate) warnings: Vec<String>,
}

impl Plan {
    /// Who owns the job's files where creel runs as root (the agent's user); `None` otherwise.
    pub(crate) fn owner(&self) -> Option<(u32, u32)> {
        let (uid, gid) = match self.user {
            UserMode::KeepId { uid, gid } | UserMode::Plain { uid, gid } => (uid, gid),
        };
        (self.euid == 0).then_some((uid, gid))
    }
}

fn check_user_workspace(w: &Path) -> Result<PathBuf> {
    let err = |reason: String| Error::Workspace {
        path: w.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(w).map_err(|e| err(format!("cannot use it: {e}")))?;
    if !meta.is_dir() {
        return Err(err("not a directory".into()));
    }
    let canonical = w
        .canonicalize()
        .map_err(|e| err(format!("cannot resolve it: {e}")))?;
    if canonical.to_str().is_none() {
        return Err(err("the path is not valid UTF-8".into()));
    }
    if canonical.as_os_str().as_encoded_bytes().contains(&b':')
        || canonical.as_os_str().as_encoded_bytes().contains(&b',')
    {
        return Err(err(
            "paths with `:` or `,` cannot be mounted into a container".into(),
        ));
    }
    Ok(canonical)
}

/// Who the agent runs as: rootless, the invoking user (keep-id); rootful, the workspace's
/// owner, or `sandbox_uid` for a workspace creel creates. Never root.
fn choose_user(
    host: &HostProfile,
    workspace: &Path,
    created: bool,
    sandbox_uid: u32,
) -> Result<UserMode> {
    if host.rootless {
        return Ok(UserMode::KeepId {
            uid: host.euid,
            gid: host.egid,
        });
    }
    if host.euid != 0 {
        // Docker used by a non-root member of the docker group.
        return Ok(UserMode::Plain {
            uid: host.euid,
            gid: host.egid,
        });
    }
    match std::fs::metadata(workspace) {
        Ok(m) if m.uid() != 0 => Ok(UserMode::Plain { uid: m.uid(), gid: m.gid() }),
        Ok(_) if !created => Err(Error::Workspace {
            path: workspace.to_path_buf(),
            reason: "it belongs to root, and the agent never runs as root; chown it to the user who should own the agent's files".into(),
        }),
        _ => Ok(UserMode::Plain { uid: sandbox_uid, gid: sandbox_uid }),
    }
}
