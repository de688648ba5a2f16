//! What is particular to Docker.

use std::path::PathBuf;

/// The json-file log path from `docker inspect` (root-readable; gone with the container).
pub(super) fn log_path(container: &serde_json::Value) -> Option<PathBuf> {
    container["LogPath"]
        .as_str()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}
