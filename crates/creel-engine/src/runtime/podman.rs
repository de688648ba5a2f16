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

/// Waits for the end of container `cid` through its conmon (pid in the job's `conmon.pid`).
/// conmon drains the container's output into the log, then writes the exit code to
/// `<--exit-dir>/<cid>`, then runs podman's cleanup and waits for it (~100 ms) before it
/// exits: the exit file is the earliest sign that everything is in the log, conmon's exit the
/// fallback. `None` when there is no such conmon (or no pidfd support): then ask podman.
pub(crate) fn wait_conmon(job_dir: &Path, cid: &str) -> Option<super::Exit> {
    let pid = crate::files::read_pid_file(&job_dir.join(super::argv::CONMON_PIDFILE))?;
    let conmon = crate::watch::Process::open(i32::try_from(pid).ok()?, cid)?;
    let Some(exit_dir) = conmon_exit_dir(conmon.args()) else {
        conmon.wait();
        return Some(super::Exit::Conmon(None));
    };
    conmon.wait_for_file_or_exit(&exit_dir, cid);
    Some(super::Exit::Conmon(conmon_exit_code(&exit_dir, cid)))
}

/// The directory conmon writes the container's exit file to (its `--exit-dir` argument).
pub(crate) fn conmon_exit_dir<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    while let Some(a) = args.next() {
        if a == b"--exit-dir" {
            return args
                .next()
                .map(|d| PathBuf::from(std::ffi::OsStr::from_bytes(d)));
        }
        if let Some(d) = a.strip_prefix(b"--exit-dir=") {
            return Some(PathBuf::from(std::ffi::OsStr::from_bytes(d)));
        }
    }
    None
}

/// The exit code conmon recorded for container `cid` (written once the container's last
/// output is in its log; -1 means conmon could not tell).
pub(crate) fn conmon_exit_code(exit_dir: &Path, cid: &str) -> Option<i64> {
    std::fs::read_to_string(exit_dir.join(cid))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|c: &i64| *c >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_exit_dir_in_conmons_arguments() {
        let cmdline: &[&[u8]] = &[
            b"/usr/bin/conmon",
            b"-c",
            b"abc",
            b"--exit-dir",
            b"/run/libpod/exits",
            b"--full-attach",
        ];
        assert_eq!(
            conmon_exit_dir(cmdline.iter().copied()),
            Some(PathBuf::from("/run/libpod/exits"))
        );
        let eq: &[&[u8]] = &[b"conmon", b"--exit-dir=/x/exits"];
        assert_eq!(
            conmon_exit_dir(eq.iter().copied()),
            Some(PathBuf::from("/x/exits"))
        );
        let none: &[&[u8]] = &[b"conmon", b"--exit-dir"];
        assert_eq!(conmon_exit_dir(none.iter().copied()), None);
    }

    #[test]
    fn reads_the_exit_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c1"), "137").unwrap();
        std::fs::write(dir.path().join("c2"), "-1").unwrap();
        assert_eq!(conmon_exit_code(dir.path(), "c1"), Some(137));
        assert_eq!(conmon_exit_code(dir.path(), "c2"), None);
        assert_eq!(conmon_exit_code(dir.path(), "c3"), None);
    }
}
