//! File helpers every part of the engine shares: private directories, atomic writes, pid
//! files, reading the end of a file, opening without following links, finding a program.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates `dir` and any missing parents with mode 0700 (less the umask); directories that
/// already exist keep their mode.
pub(crate) fn create_private_dir_all(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("cannot create", dir, e))
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    create_private_dir_all(dir)?;
    // A job directory is always new: make it private whatever the umask.
    set_mode(dir, 0o700);
    Ok(())
}

pub(crate) fn chown(path: &Path, to: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = to {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io("cannot chown", path, e))?;
    }
    Ok(())
}

/// Writes `data` to `path` durably: a temporary file, fsync, rename.
pub(crate) fn write_file_atomic(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    write_replacing(path, data, mode, owner, true)
}

/// A temporary file, fsync when `sync`, rename.
fn write_replacing(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    sync: bool,
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io("cannot create", &tmp, e))?;
    f.write_all(data)
        .map_err(|e| Error::io("cannot write", &tmp, e))?;
    if sync {
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
    }
    chown(&tmp, owner)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into place", path, e))?;
    Ok(())
}

/// Files written whole (temporary file and rename) without waiting for the disk, to be made
/// durable together by [`Unsynced::sync`]. `start` syncs its job's files after it has
/// launched the job's monitor and before it answers, so that the disk's latency is not on
/// the job's way to its container, and nothing is reported accepted before it is on disk.
#[derive(Debug, Default)]
pub(crate) struct Unsynced(Vec<std::path::PathBuf>);

impl Unsynced {
    /// Writes `data` to `path` (replacing it whole), to be synced later.
    pub(crate) fn write(
        &mut self,
        path: &Path,
        data: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        write_replacing(path, data, mode, owner, false)?;
        self.0.push(path.to_path_buf());
        Ok(())
    }

    /// Makes every file written, and the directories that name them, durable.
    pub(crate) fn sync(self) -> Result<()> {
        let mut dirs: Vec<&Path> = Vec::new();
        for p in &self.0 {
            File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("cannot sync", p, e))?;
            if let Some(d) = p.parent()
                && !dirs.contains(&d)
            {
                dirs.push(d);
            }
        }
        for d in dirs {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("cannot sync", d, e))?;
        }
        Ok(())
    }
}

/// A positive pid from a file podman wrote (`--pidfile`, `--conmon-pidfile`).
/// Opens (creating it) the lock file `path` and waits for its exclusive lock, which lasts until
/// the returned file is dropped.
pub(crate) fn lock_exclusive(path: &Path) -> Result<File> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    lock.lock().map_err(|e| Error::io("cannot lock", path, e))?;
    Ok(lock)
}

pub(crate) fn read_pid_file(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i64| *p > 0)
}

pub(crate) fn tail_of_file(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Opens a regular file without following a symlink in its last component. Anything else
/// there (a directory, a FIFO, a device) is an error, and never blocks the open: `O_NONBLOCK`
/// (which changes nothing for a regular file) keeps a FIFO from waiting for a writer.
pub(crate) fn open_nofollow(path: &Path, write: bool) -> Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    if write {
        o.write(true).create(true).mode(0o600);
    }
    let f = o
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::io("cannot stat", path, e))?;
    if !meta.is_file() {
        return Err(Error::io(
            "not a regular file:",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file"),
        ));
    }
    Ok(f)
}

/// Finds `name` on PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file() && is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
