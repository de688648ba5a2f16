//! Claude logins: an API key (mounted as a read-only file, never in argv or the container's
//! recorded environment) or an OAuth credentials file (Claude Pro/Max) copied into the
//! session's Claude config dir, never the rest of the host's `~/.claude`.

use std::path::Path;

use crate::error::{Error, Result};

/// The largest credentials file written back (a real one is well under 1 KiB).
const MAX_CREDENTIALS: u64 = 1 << 20;

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
    crate::files::write_file_atomic(&dest, &data, 0o600, owner)
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
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let inner = claude_config_dir.join(CREDENTIALS_FILE);
    // The session's copy is the agent's to write: never follow a link it made, and read what
    // was checked (the open file), not the name again.
    let Ok(file) = crate::files::open_nofollow(&inner, false) else {
        return Ok(());
    };
    let Ok(inner_meta) = file.metadata() else {
        return Ok(());
    };
    if inner_meta.len() > MAX_CREDENTIALS {
        return Ok(());
    }
    let mut data = Vec::new();
    if file
        .take(MAX_CREDENTIALS + 1)
        .read_to_end(&mut data)
        .is_err()
        || data.len() as u64 > MAX_CREDENTIALS
    {
        return Ok(());
    }
    let lock = crate::files::lock_exclusive(&home.join("credentials.lock"))?;
    let host_meta =
        std::fs::metadata(host_file).map_err(|e| Error::io("cannot stat", host_file, e))?;
    let newer = inner_meta.modified().ok() > host_meta.modified().ok();
    let current = std::fs::read(host_file).map_err(|e| Error::io("cannot read", host_file, e))?;
    if !newer || data == current || !valid_credentials(&data) {
        return Ok(());
    }
    let mode = host_meta.mode() & 0o777;
    crate::files::write_file_atomic(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const OLD: &str = r#"{"claudeAiOauth":{"accessToken":"old","refreshToken":"r","expiresAt":1}}"#;
    const NEW: &str =
        r#"{"claudeAiOauth":{"accessToken":"new","refreshToken":"r2","expiresAt":2}}"#;

    /// A host credentials file (mode 0640), a session copy written by `agent` a second later,
    /// then the write-back: what the host file holds afterwards.
    fn after_write_back(agent: impl FnOnce(&Path)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host.json");
        std::fs::write(&host, OLD).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o640)).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&host)
            .unwrap()
            .set_modified(past)
            .unwrap();
        let claude = dir.path().join("claude");
        std::fs::create_dir(&claude).unwrap();
        agent(&claude.join(CREDENTIALS_FILE));
        copy_credentials_back(dir.path(), &claude, &host).unwrap();
        let mode = std::fs::metadata(&host).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the host file keeps its mode");
        std::fs::read_to_string(&host).unwrap()
    }

    #[test]
    fn a_refreshed_token_comes_back() {
        assert_eq!(after_write_back(|f| std::fs::write(f, NEW).unwrap()), NEW);
    }

    #[test]
    fn what_the_agent_plants_never_comes_back() {
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), NEW).unwrap();
        let target = outside.path().to_path_buf();
        // A link to a file elsewhere on the host, even one holding valid credentials.
        assert_eq!(
            after_write_back(|f| std::os::unix::fs::symlink(&target, f).unwrap()),
            OLD
        );
        // Larger than any credentials file.
        let big = format!("{}{}", &NEW[..NEW.len() - 1], " ".repeat(2 << 20) + "}");
        assert_eq!(after_write_back(|f| std::fs::write(f, &big).unwrap()), OLD);
        // Not JSON, or JSON without a token.
        assert_eq!(
            after_write_back(|f| std::fs::write(f, "not json").unwrap()),
            OLD
        );
        assert_eq!(
            after_write_back(|f| std::fs::write(f, r#"{"claudeAiOauth":{}}"#).unwrap()),
            OLD
        );
        // A directory, a FIFO.
        assert_eq!(after_write_back(|f| std::fs::create_dir(f).unwrap()), OLD);
        assert_eq!(
            after_write_back(|f| {
                let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: mkfifo with a valid, NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
            OLD
        );
        // Not newer than the host file.
        assert_eq!(
            after_write_back(|f| {
                std::fs::write(f, NEW).unwrap();
                let older = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
                std::fs::File::options()
                    .write(true)
                    .open(f)
                    .unwrap()
                    .set_modified(older)
                    .unwrap();
            }),
            OLD
        );
    }
}
