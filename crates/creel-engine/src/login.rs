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
