//! What is particular to Podman.

use std::path::{Path, PathBuf};

/// The k8s-file log path from `podman inspect`.
pub(super) fn log_path(container: &serde_json::Value) -> Option<PathBuf> {
    container["HostConfig"]["LogConfig"]["Path"]
        .as_str()
        .or_else(|| container["LogPath"].as_str())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Podman's image index file, from `podman info` (asked only after a real image check).
pub(crate) fn podman_image_index(bin: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new(bin)
        .args([
            "info",
            "--format",
            "{{.Store.GraphRoot}}|{{.Store.GraphDriverName}}",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (root, driver) = text.trim().split_once('|')?;
    let path = Path::new(root)
        .join(format!("{driver}-images"))
        .join("images.json");
    path.is_file().then_some(path)
}
