//! Claude logins: an API key (mounted as a read-only file, never in argv or the container's
//! recorded environment) or an OAuth credentials file (Claude Pro/Max) copied into the
//! session's Claude config dir, never the rest of the host's `~/.claude`.

use std::path::Path;

use crate::error::{Error, Result};

/// Name of Claude's OAuth credentials file.
pub const CREDENTIALS_FILE: &str = ".credentials.json";

/// Copies the user's OAuth credentials into a session's Claude config dir (mode 0600, owned
/// by the agent's uid when creel runs as root).
pub fn copy_credentials_in(
    host_file: &Path,
    claude_config_dir: &Path,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let data = std::fs::read(host_file).map_err(|e| Error::io("cannot read", host_file, e))?;
    let dest = claude_config_dir.join(CREDENTIALS_FILE);
    crate::job::start::write_file_atomic(&dest, &data, 0o600, owner)
}

/// After a job: if Claude refreshed the token inside the container (the session's copy is
/// newer than the host file and is valid JSON with an OAuth token), writes it back to the host
/// file atomically, keeping its owner and mode. Write-backs from concurrent jobs are serialised
/// by a lock in `$CREEL_HOME`; the newest copy wins.
pub fn copy_credentials_back(
    home: &Path,
    claude_config_dir: &Path,
    host_file: &Path,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let inner = claude_config_dir.join(CREDENTIALS_FILE);
    let Ok(inner_meta) = std::fs::symlink_metadata(&inner) else {
        return Ok(());
    };
    if !inner_meta.is_file() || inner_meta.len() > 1 << 20 {
        return Ok(()); // not something creel wrote back: never follow links the agent made
    }
    let lock_path = home.join("credentials.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("cannot open", &lock_path, e))?;
    lock.lock()
        .map_err(|e| Error::io("cannot lock", &lock_path, e))?;
    let host_meta =
        std::fs::metadata(host_file).map_err(|e| Error::io("cannot stat", host_file, e))?;
    let newer = inner_meta.modified().ok() > host_meta.modified().ok();
    let data = std::fs::read(&inner).map_err(|e| Error::io("cannot read", &inner, e))?;
    let current = std::fs::read(host_file).map_err(|e| Error::io("cannot read", host_file, e))?;
    if !newer || data == current || !valid_credentials(&data) {
        return Ok(());
    }
    let mode = host_meta.mode() & 0o777;
    crate::job::start::write_file_atomic(
        host_file,
        &data,
        mode,
        Some((host_meta.uid(), host_meta.gid())),
    )?;
    drop(lock);
    Ok(())
}

fn valid_credentials(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| {
            v.get("claudeAiOauth")?
                .get("accessToken")?
                .as_str()
                .map(|t| !t.is_empty())
        })
        .unwrap_or(false)
}
