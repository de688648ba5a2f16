//! What is particular to Podman.

use std::path::PathBuf;

/// The k8s-file log path from `podman inspect`.
pub(super) fn log_path(container: &serde_json::Value) -> Option<PathBuf> {
    container["HostConfig"]["LogConfig"]["Path"]
        .as_str()
        .or_else(|| container["LogPath"].as_str())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}
