//! Host quirks creel detects instead of asking the user to know them: the cgroup layout (crun
//! fails on hybrid cgroups), hard rlimits root cannot raise, rootless limits that podman
//! silently ignores on cgroup v1, and `/dev/net/tun` permissions for rootless networking.

use std::path::Path;

use crate::config::{Config, RuntimeKind};
use crate::files::find_in_path;

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Legacy v1 hierarchies only.
    V1,
    /// v1 hierarchies plus a v2 mount at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// The unified v2 hierarchy.
    V2,
}

impl CgroupLayout {
    /// A short name.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupLayout::V1 => "v1",
            CgroupLayout::Hybrid => "hybrid (v1 + v2)",
            CgroupLayout::V2 => "v2",
        }
    }
}

/// What creel found out about this host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostProfile {
    /// Effective uid of this process.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Whether containers run rootless (podman as a non-root user).
    pub rootless: bool,
    /// The cgroup layout.
    pub cgroup: CgroupLayout,
    /// The OCI runtime to force, if any, and why.
    pub oci_runtime: Option<String>,
    /// Why that OCI runtime was chosen.
    pub oci_reason: String,
    /// Hard limit on open files.
    pub nofile_hard: u64,
    /// Hard limit on processes.
    pub nproc_hard: u64,
    /// Whether this user can open `/dev/net/tun` (rootless networking needs it).
    pub tun_usable: bool,
}

/// The most creel asks for, when the host's hard limit allows it.
const NOFILE_WANTED: u64 = 65536;
/// Podman caps what it hands conmon/runc at 32768 processes here; more fails with "error setting rlimit type 6".
const NPROC_WANTED: u64 = 32768;

impl HostProfile {
    /// Looks at the host.
    pub fn detect(config: &Config, kind: RuntimeKind) -> HostProfile {
        let (euid, egid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let rootless = euid != 0 && kind == RuntimeKind::Podman;
        let cgroup = cgroup_layout(Path::new("/sys/fs/cgroup"));
        let runc = find_in_path("runc").or_else(|| {
            ["/usr/sbin/runc", "/usr/bin/runc"]
                .iter()
                .map(Path::new)
                .find(|p| p.exists())
                .map(Path::to_path_buf)
        });
        let (oci_runtime, oci_reason) = match (config.oci_runtime.as_str(), kind) {
            ("runc", _) => (Some("runc".to_string()), "set by `oci_runtime`".to_string()),
            ("crun", _) => (Some("crun".to_string()), "set by `oci_runtime`".to_string()),
            ("default", _) => (
                None,
                "the runtime's default (set by `oci_runtime`)".to_string(),
            ),
            (_, RuntimeKind::Docker) => (None, "Docker's default".to_string()),
            (_, RuntimeKind::Podman) if cgroup != CgroupLayout::V2 && runc.is_some() => (
                Some("runc".to_string()),
                format!(
                    "cgroups are {}, where crun fails; runc is installed",
                    cgroup.as_str()
                ),
            ),
            (_, RuntimeKind::Podman) if cgroup != CgroupLayout::V2 => (
                None,
                format!(
                    "cgroups are {} and runc is not installed: crun may fail (`apt-get install runc`)",
                    cgroup.as_str()
                ),
            ),
            _ => (None, "podman's default (cgroups v2)".to_string()),
        };
        HostProfile {
            euid,
            egid,
            rootless,
            cgroup,
            oci_runtime,
            oci_reason,
            nofile_hard: hard_limit(rustix::process::Resource::Nofile),
            nproc_hard: hard_limit(rustix::process::Resource::Nproc),
            tun_usable: tun_usable(),
        }
    }

    /// `--ulimit` values within the host's hard limits (root here cannot raise them, and runc
    /// fails with "error setting rlimit" when asked to).
    pub fn ulimits(&self) -> Vec<(String, u64)> {
        vec![
            ("nofile".to_string(), self.nofile_hard.min(NOFILE_WANTED)),
            ("nproc".to_string(), self.nproc_hard.min(NPROC_WANTED)),
        ]
    }

    /// Whether memory, CPU and pids limits are enforced for containers started from here.
    pub fn limits_enforced(&self) -> bool {
        !(self.rootless && self.cgroup != CgroupLayout::V2)
    }

    /// The warning a job carries when limits are not enforced.
    pub fn limits_warning(&self) -> Option<String> {
        (!self.limits_enforced()).then(|| {
            format!(
                "memory, CPU and pids limits are NOT enforced: rootless containers on cgroups {} cannot be limited (podman ignores the flags); run rootful or on a cgroup v2 host to enforce them",
                self.cgroup.as_str()
            )
        })
    }
}

fn hard_limit(resource: rustix::process::Resource) -> u64 {
    rustix::process::getrlimit(resource)
        .maximum
        .unwrap_or(u64::MAX)
}

fn cgroup_layout(root: &Path) -> CgroupLayout {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    // (`f_type`'s integer type differs between architectures.)
    #[allow(clippy::unnecessary_cast)]
    if rustix::fs::statfs(root).is_ok_and(|st| st.f_type as i64 == CGROUP2_SUPER_MAGIC) {
        return CgroupLayout::V2;
    }
    if root.join("unified").join("cgroup.controllers").exists() || root.join("unified").is_dir() {
        CgroupLayout::Hybrid
    } else {
        CgroupLayout::V1
    }
}

fn tun_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_never_exceed_hard_limits() {
        let p = HostProfile::detect(&Config::default(), RuntimeKind::Podman);
        for (name, v) in p.ulimits() {
            let hard = if name == "nofile" {
                p.nofile_hard
            } else {
                p.nproc_hard
            };
            assert!(v <= hard, "{name}={v} > {hard}");
            assert!(v > 0);
        }
    }

    #[test]
    fn rootless_on_v1_warns() {
        let mut p = HostProfile::detect(&Config::default(), RuntimeKind::Podman);
        p.rootless = true;
        p.cgroup = CgroupLayout::Hybrid;
        assert!(p.limits_warning().unwrap().contains("NOT enforced"));
        p.cgroup = CgroupLayout::V2;
        assert!(p.limits_warning().is_none());
        p.rootless = false;
        p.cgroup = CgroupLayout::V1;
        assert!(p.limits_warning().is_none());
    }
}
