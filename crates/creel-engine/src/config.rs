//! Configuration: a TOML file, overridden by `CREEL_*` environment variables, overridden by flags.
//!
//! Keys are the seed plugin's options in snake_case (`startupTimeout` → `startup_timeout`).
//! Unknown keys and bad values are errors that name the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration error, naming the offending key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The config file (or an environment override) has a bad key or value.
    #[error("invalid configuration in {origin}: {message}")]
    Invalid {
        /// `config file `…``, or `environment variable CREEL_…`.
        origin: String,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("invalid value for `{key}`: {message}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// Which container engine runs the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Podman (the default; rootless first).
    Podman,
    /// Docker.
    Docker,
    /// A Kubernetes cluster (the `[kubernetes]` table): pods instead of containers.
    Kubernetes,
}

impl RuntimeKind {
    /// The name of the command-line binary.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Podman => "podman",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Kubernetes => "kubernetes",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "podman" => Ok(RuntimeKind::Podman),
            "docker" => Ok(RuntimeKind::Docker),
            "kubernetes" => Ok(RuntimeKind::Kubernetes),
            _ => Err(format!(
                "unknown runtime `{s}` (expected `podman`, `docker` or `kubernetes`)"
            )),
        }
    }
}

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// No network at all.
    None,
    /// The runtime's default bridge (rootless podman: slirp4netns).
    Bridge,
    /// The host's network: exposes host services to the agent. Only when asked for.
    Host,
    /// No route out; only an HTTP(S) proxy run by creel that admits allowlisted hosts.
    Allowlist,
}

impl NetworkMode {
    /// The value passed to `--network`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::Allowlist => "allowlist",
        }
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "bridge" => Ok(NetworkMode::Bridge),
            "host" => Ok(NetworkMode::Host),
            "allowlist" => Ok(NetworkMode::Allowlist),
            _ => Err(format!(
                "unknown network `{s}` (expected allowlist, none, bridge or host)"
            )),
        }
    }
}

/// The largest timeout a setting may name, in seconds (ten years); 0 turns a timeout off.
pub const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 24 * 3600;

/// The default image: the sandbox image `creel image build` makes.
pub const DEFAULT_IMAGE: &str = "localhost/creel-claude:latest";

/// Whether Claude asks before using tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permissions {
    /// `--dangerously-skip-permissions`: the container is the only wall (the default).
    #[default]
    Skip,
    /// Every permission request becomes `needs_approval`, unless a rule decides it.
    Ask,
}

impl Permissions {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permissions::Skip => "skip",
            Permissions::Ask => "ask",
        }
    }
}

impl std::str::FromStr for Permissions {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "skip" => Ok(Permissions::Skip),
            "ask" => Ok(Permissions::Ask),
            _ => Err(format!("unknown permissions `{s}` (expected skip or ask)")),
        }
    }
}

/// Every option creel reads. Field docs are the user documentation of the TOML keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Container image with Claude Code on its PATH.
    pub image: String,
    /// `podman` or `docker`.
    pub runtime: RuntimeKind,
    /// Path of the runtime binary (default: found on PATH).
    pub runtime_path: Option<PathBuf>,
    /// OCI runtime below podman/docker: `auto` (runc on hybrid/v1 cgroups when installed), `runc`, `crun`, or `default`.
    pub oci_runtime: String,
    /// Seconds to wait for the container's first output.
    pub startup_timeout: u64,
    /// Seconds without output (while the container is not busy) before the job is stopped.
    pub idle_timeout: u64,
    /// Memory limit, e.g. `512m`.
    pub memory: String,
    /// CPU limit, e.g. `1.0`.
    pub cpus: String,
    /// Maximum number of processes in the container.
    pub pids_limit: u64,
    /// `allowlist` (default: no route out but creel's filtering proxy), `none`, `bridge` or `host`.
    pub network: NetworkMode,
    /// Hosts the `allowlist` proxy admits: exact names or `*.suffix` wildcards.
    /// `api.anthropic.com` is always admitted.
    pub egress_allow: Vec<String>,
    /// Fixed name → IP answers for the proxy's lookups (like curl's `--resolve`), e.g. for a
    /// host without DNS. The private-range rule applies to these answers too.
    pub egress_resolve: std::collections::BTreeMap<String, String>,
    /// Where per-session state (Claude's config dir) lives. Default `$CREEL_HOME/sessions`.
    pub sessions_dir: Option<PathBuf>,
    /// Where creel creates session workspaces. Default `$CREEL_HOME/workspaces`.
    pub workspaces_dir: Option<PathBuf>,
    /// Seconds after which an idle session is cleaned up.
    pub session_idle_timeout: u64,
    /// AppArmor profile name (empty: none).
    pub apparmor_profile: String,
    /// Maximum output in bytes (0: unlimited). A job that writes more is stopped.
    pub max_output_size: u64,
    /// Where completion webhooks go (default OpenClaw's `http://127.0.0.1:18789/hooks/agent`).
    pub notify_webhook_url: Option<String>,
    /// Bearer token for the webhook (default: `hooks.token` of `~/.openclaw/openclaw.json`).
    pub hooks_token: Option<String>,
    /// Base URL of the Anthropic API, passed to Claude as `ANTHROPIC_BASE_URL`.
    pub api_base_url: Option<String>,
    /// File holding the API key (instead of `ANTHROPIC_API_KEY`).
    pub api_key_file: Option<PathBuf>,
    /// OAuth credentials file (default `~/.claude/.credentials.json`).
    pub credentials_file: Option<PathBuf>,
    /// The `claude` command inside the image.
    pub claude_path: String,
    /// Size of the container's `/tmp` tmpfs.
    pub tmpfs_size: String,
    /// The uid (and gid) the agent runs as in rootful mode when the workspace belongs to root.
    pub sandbox_uid: u32,
    /// Default model (`--model`), empty for Claude's default.
    pub model: Option<String>,
    /// `skip` (default: Claude runs with `--dangerously-skip-permissions`; the container is the
    /// wall) or `ask` (each permission request waits for `creel approve`, unless a rule decides).
    pub permissions: Permissions,
    /// With `permissions = "ask"`: requests approved without asking, in Claude Code's rule
    /// syntax, e.g. `["Bash(git *)", "Edit"]`.
    pub permissions_allow: Vec<String>,
    /// With `permissions = "ask"`: requests denied without asking (they win over the allow
    /// rules), e.g. `["Bash(curl *)"]`.
    pub permissions_deny: Vec<String>,
    /// Seconds a question or permission request waits for an answer; then creel answers it
    /// (a question: "decide yourself"; a permission: denied). 0 waits forever. The idle
    /// timeout does not run while a job waits.
    pub input_timeout: u64,
    /// A new session's budget in dollars, for all its jobs together (as Claude reports cost).
    pub max_cost_usd: Option<f64>,
    /// A new session's budget in agent turns, for all its jobs together.
    pub max_turns: Option<u64>,
    /// A new session's budget in seconds of running jobs, for all its jobs together.
    pub max_wall_seconds: Option<u64>,
    /// `creel acp`: when a client's working directory is a git repository, run the session on
    /// its own branch `creel/<session>` (as `start --repo` does) instead of in the directory.
    pub acp_repo: bool,
    /// The `[kubernetes]` table: where and how jobs run on a cluster (`creel kube render`).
    pub kubernetes: KubernetesConfig,
    /// The warm pool: how many sandboxes are kept prepared (container started, proxy
    /// listening, waiting for a prompt) for new sessions of default jobs. 0: none.
    pub pool: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            image: DEFAULT_IMAGE.into(),
            runtime: RuntimeKind::Podman,
            runtime_path: None,
            oci_runtime: "auto".into(),
            startup_timeout: 30,
            idle_timeout: 120,
            memory: "512m".into(),
            cpus: "1.0".into(),
            pids_limit: 256,
            network: NetworkMode::Allowlist,
            egress_allow: Vec::new(),
            egress_resolve: Default::default(),
            sessions_dir: None,
            workspaces_dir: None,
            session_idle_timeout: 3600,
            apparmor_profile: String::new(),
            max_output_size: 10 * 1024 * 1024,
            notify_webhook_url: None,
            hooks_token: None,
            api_base_url: None,
            api_key_file: None,
            credentials_file: None,
            claude_path: "claude".into(),
            tmpfs_size: "512m".into(),
            sandbox_uid: 1000,
            model: None,
            permissions: Permissions::Skip,
            permissions_allow: Vec::new(),
            permissions_deny: Vec::new(),
            input_timeout: 3600,
            max_cost_usd: None,
            max_turns: None,
            max_wall_seconds: None,
            acp_repo: false,
            pool: 0,
            kubernetes: KubernetesConfig::default(),
        }
    }
}

/// The `[kubernetes]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// The namespace of every object.
    pub namespace: String,
    /// The session volumes' storage class (the cluster's default when unset).
    pub storage_class: Option<String>,
    /// A session volume's size (a Kubernetes quantity, e.g. `1Gi`).
    pub session_storage: String,
    /// `imagePullPolicy` of the job's containers: `Always`, `IfNotPresent` or `Never`.
    pub image_pull_policy: String,
    /// creel's egress proxy as job pods reach it (`service:port`), or `none`.
    pub egress_proxy: String,
    /// A pod's ephemeral-storage limit (a Kubernetes quantity).
    pub ephemeral_storage: String,
    /// The kubeconfig file (`runtime = "kubernetes"`); unset: `$KUBECONFIG`, else
    /// `~/.kube/config`, else the pod's own service account when creel runs in the cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (its current context when unset).
    pub context: Option<String>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            namespace: "creel".into(),
            storage_class: None,
            session_storage: "1Gi".into(),
            image_pull_policy: "IfNotPresent".into(),
            egress_proxy: "creel-egress:3128".into(),
            ephemeral_storage: "1Gi".into(),
            kubeconfig: None,
            context: None,
        }
    }
}

/// The largest warm pool (`pool`).
pub const MAX_POOL: u32 = 32;

/// The keys a config file may hold, for env overrides and docs.
pub const KEYS: &[&str] = &[
    "image",
    "runtime",
    "runtime_path",
    "oci_runtime",
    "startup_timeout",
    "idle_timeout",
    "memory",
    "cpus",
    "pids_limit",
    "network",
    "egress_allow",
    "egress_resolve",
    "sessions_dir",
    "workspaces_dir",
    "session_idle_timeout",
    "apparmor_profile",
    "max_output_size",
    "notify_webhook_url",
    "hooks_token",
    "api_base_url",
    "api_key_file",
    "credentials_file",
    "claude_path",
    "tmpfs_size",
    "sandbox_uid",
    "model",
    "permissions",
    "permissions_allow",
    "permissions_deny",
    "input_timeout",
    "max_cost_usd",
    "max_turns",
    "max_wall_seconds",
    "acp_repo",
    "pool",
];

/// `CREEL_*` variables creel reads besides the config keys' `CREEL_<KEY>`.
const OTHER_VARS: &[&str] = &[
    "CREEL_HOME",
    "CREEL_CONFIG",
    "CREEL_LOG",
    "CREEL_MCP_TOKEN",
    "CREEL_CACHE_DIR",
    "CREEL_MONITOR_LOCK_FD",
    "CREEL_FUZZ_TARGET_DIR",
];

/// The `CREEL_*` names in `names` that creel does not read (a misspelt setting would otherwise
/// be ignored without a word), each with the known name it most likely meant. Names starting
/// `CREEL_TEST_` belong to creel's test suite and are left alone.
pub fn unknown_env_vars<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Option<String>)> {
    let known: Vec<String> = KEYS
        .iter()
        .map(|k| format!("CREEL_{}", k.to_ascii_uppercase()))
        .chain(OTHER_VARS.iter().map(|v| v.to_string()))
        .collect();
    names
        .into_iter()
        .filter(|n| n.starts_with("CREEL_") && !n.starts_with("CREEL_TEST_"))
        .filter(|n| !known.iter().any(|k| k == n))
        .map(|n| {
            let guess = known
                .iter()
                .map(|k| (edit_distance(n, k), k))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d)
                .map(|(_, k)| k.clone());
            (n.to_string(), guess)
        })
        .collect()
}

/// Levenshtein distance (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Config {
    /// Loads the file at `path` (a missing file is fine unless `required`), then applies
    /// `CREEL_<KEY>` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        required: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        let mut origin = "defaults".to_string();
        let mut text = String::new();
        if let Some(path) = path {
            match std::fs::read_to_string(path) {
                Ok(t) => {
                    text = t;
                    origin = format!("config file `{}`", path.display());
                    table = text
                        .parse::<toml::Table>()
                        .map_err(|e| ConfigError::Invalid {
                            origin: origin.clone(),
                            message: e.to_string().trim().replace('\n', " "),
                        })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        // Validate the file alone first, so its errors name the file.
        let mut config: Config =
            toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Invalid {
                origin: origin.clone(),
                message: with_location(&text, &e),
            })?;
        let mut overrides = BTreeMap::new();
        for key in KEYS {
            let var = format!("CREEL_{}", key.to_ascii_uppercase());
            if let Some(value) = env(&var) {
                overrides.insert(*key, (var, value));
            }
        }
        for (key, (var, value)) in overrides {
            let mut t = table.clone();
            t.insert(key.to_string(), env_value(&value));
            config = t
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: format!("environment variable {var}"),
                    message: format!("`{key}`: {}", e.message()),
                })?;
            table = t;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.image.trim().is_empty() {
            return Err(ConfigError::BadValue {
                key: "image",
                message: "must not be empty".into(),
            });
        }
        if let Some(c) = self
            .image
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@+".contains(*c)))
        {
            return Err(ConfigError::BadValue {
                key: "image",
                message: format!(
                    "`{}` is not an image reference (like `localhost/creel-claude:latest`): {c:?} cannot appear in one",
                    self.image
                ),
            });
        }
        if parse_size(&self.memory).is_none() {
            return Err(ConfigError::BadValue {
                key: "memory",
                message: format!("`{}` is not a size like `512m` or `2g`", self.memory),
            });
        }
        if parse_size(&self.tmpfs_size).is_none() {
            return Err(ConfigError::BadValue {
                key: "tmpfs_size",
                message: format!("`{}` is not a size like `512m`", self.tmpfs_size),
            });
        }
        match self.cpus.parse::<f64>() {
            Ok(c) if c > 0.0 && c.is_finite() => {}
            _ => {
                return Err(ConfigError::BadValue {
                    key: "cpus",
                    message: format!("`{}` is not a positive number", self.cpus),
                });
            }
        }
        for (key, value) in [
            ("startup_timeout", self.startup_timeout),
            ("idle_timeout", self.idle_timeout),
            ("session_idle_timeout", self.session_idle_timeout),
            ("input_timeout", self.input_timeout),
        ] {
            if value > MAX_TIMEOUT_SECS {
                return Err(ConfigError::BadValue {
                    key,
                    message: format!(
                        "{value} seconds is more than the largest timeout, {MAX_TIMEOUT_SECS} (ten years); 0 turns it off"
                    ),
                });
            }
        }
        for (key, rules) in [
            ("permissions_allow", &self.permissions_allow),
            ("permissions_deny", &self.permissions_deny),
        ] {
            for rule in rules {
                crate::approvals::check(rule)
                    .map_err(|message| ConfigError::BadValue { key, message })?;
            }
        }
        if let Some(c) = self.max_cost_usd
            && !(c > 0.0 && c.is_finite())
        {
            return Err(ConfigError::BadValue {
                key: "max_cost_usd",
                message: format!("{c} is not a positive number of dollars"),
            });
        }
        for (key, value) in [
            ("max_turns", self.max_turns),
            ("max_wall_seconds", self.max_wall_seconds),
        ] {
            if value == Some(0) {
                return Err(ConfigError::BadValue {
                    key,
                    message: "0 allows nothing; leave it out for no limit".into(),
                });
            }
        }
        if self.pool > MAX_POOL {
            return Err(ConfigError::BadValue {
                key: "pool",
                message: format!(
                    "{} sandboxes is more than the pool holds ({MAX_POOL}); each is a running container",
                    self.pool
                ),
            });
        }
        if !matches!(
            self.kubernetes.image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(ConfigError::BadValue {
                key: "kubernetes.image_pull_policy",
                message: format!(
                    "`{}` is not Always, IfNotPresent or Never",
                    self.kubernetes.image_pull_policy
                ),
            });
        }
        if self.pids_limit == 0 {
            return Err(ConfigError::BadValue {
                key: "pids_limit",
                message: "must be at least 1".into(),
            });
        }
        if !matches!(
            self.oci_runtime.as_str(),
            "auto" | "runc" | "crun" | "default"
        ) {
            return Err(ConfigError::BadValue {
                key: "oci_runtime",
                message: format!(
                    "`{}` is not one of auto, runc, crun, default",
                    self.oci_runtime
                ),
            });
        }
        if self.sandbox_uid == 0 {
            return Err(ConfigError::BadValue {
                key: "sandbox_uid",
                message: "the agent never runs as root".into(),
            });
        }
        for pattern in &self.egress_allow {
            crate::egress::validate_pattern(pattern).map_err(|message| ConfigError::BadValue {
                key: "egress_allow",
                message,
            })?;
        }
        for (name, ip) in &self.egress_resolve {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::BadValue {
                    key: "egress_resolve",
                    message: format!("`{name}` maps to `{ip}`, which is not an IP address"),
                });
            }
        }
        if self.claude_path.is_empty() {
            return Err(ConfigError::BadValue {
                key: "claude_path",
                message: "must not be empty".into(),
            });
        }
        if let Some(model) = &self.model {
            validate_model(model).map_err(|message| ConfigError::BadValue {
                key: "model",
                message,
            })?;
        }
        Ok(())
    }
}

/// The parser's message, with the offending line when the error has a location.
fn with_location(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    if line.is_empty() {
        msg
    } else {
        format!("line {line_no} `{line}`: {msg}")
    }
}

fn env_value(value: &str) -> toml::Value {
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    toml::Value::String(value.to_string())
}

/// Checks a `--model` value: it goes into argv, so only plain model-name characters.
pub fn validate_model(model: &str) -> Result<(), String> {
    if model.is_empty() || model.len() > 128 {
        return Err("must be 1-128 characters".into());
    }
    if model.starts_with('-') {
        return Err(format!("`{model}` must not start with `-`"));
    }
    if !model
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:[]/@".contains(&b))
    {
        return Err(format!("`{model}` has characters a model name never has"));
    }
    Ok(())
}

/// Parses `512m`, `2g`, `1024k`, `1048576` into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        c if c.is_ascii_digit() => (s, 1),
        _ => return None,
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).filter(|&b| b >= 4 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(&path), true, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.startup_timeout, 30);
        assert_eq!(c.idle_timeout, 120);
        assert_eq!(c.memory, "512m");
        assert_eq!(c.network, NetworkMode::Allowlist);
        assert_eq!(c.max_output_size, 10485760);
        assert_eq!(c.session_idle_timeout, 3600);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("idle_timout = 5\n", &[]).unwrap_err().to_string();
        assert!(e.contains("idle_timout"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = load("idle_timeout = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_timeout") || e.contains("integer"), "{e}");
        let e = load("network = \"wide\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("wide"), "{e}");
        let e = load("memory = \"lots\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("memory"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "idle_timeout = 5\nmemory = \"1g\"\n",
            &[("CREEL_IDLE_TIMEOUT", "7")],
        )
        .unwrap();
        assert_eq!(c.idle_timeout, 7);
        assert_eq!(c.memory, "1g");
        let e = load("", &[("CREEL_IMAGE", "Bad Image!!")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an image reference"), "{e}");
        assert!(
            load(
                "",
                &[(
                    "CREEL_IMAGE",
                    "registry.example:5000/a/b_c-d:v1.2@sha256:00"
                )]
            )
            .is_ok()
        );
        let e = load("", &[("CREEL_IDLE_TIMEOUT", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CREEL_IDLE_TIMEOUT"), "{e}");
    }

    #[test]
    fn huge_timeouts_are_refused_not_overflowed() {
        let e = load("", &[("CREEL_IDLE_TIMEOUT", "9223372036854775807")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_timeout") && e.contains("ten years"), "{e}");
        let e = load("startup_timeout = 9223372036854775807\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("startup_timeout"), "{e}");
        let e = load("", &[("CREEL_IDLE_TIMEOUT", "18446744073709551616")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CREEL_IDLE_TIMEOUT"), "{e}");
        assert_eq!(
            load("", &[("CREEL_IDLE_TIMEOUT", "0")])
                .unwrap()
                .idle_timeout,
            0
        );
        assert!(load("", &[("CREEL_IDLE_TIMEOUT", "315360000")]).is_ok());
    }

    #[test]
    fn misspelt_variables_are_named_with_a_guess() {
        let found = unknown_env_vars([
            "CREEL_IDLE_TIMOUT",
            "CREEL_IDLE_TIMEOUT",
            "CREEL_HOME",
            "CREEL_TEST_DOCKER_HOST",
            "CREEL_WHATEVER_ELSE",
            "PATH",
        ]);
        assert_eq!(
            found,
            vec![
                (
                    "CREEL_IDLE_TIMOUT".to_string(),
                    Some("CREEL_IDLE_TIMEOUT".to_string())
                ),
                ("CREEL_WHATEVER_ELSE".to_string(), None),
            ]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1mb"), None); // too small to run anything
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }
}
