//! A container's resource use, read from its cgroup's files (v1 or v2) instead of running
//! `podman stats` (a 30 MB process per sample, per job).
//!
//! The cgroup is found through `/proc/<pid>/cgroup` of the container's first process, and
//! only used when its path names the container: rootless Podman on cgroup v1 cannot give a
//! container cgroups of its own, and the user's session cgroup would be a wrong answer. The
//! monitor then falls back to the runtime's `stats`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::job::{Metrics, now_ms};

/// Where the files of one container's cgroup are.
#[derive(Debug, Clone, PartialEq)]
enum Layout {
    V1 {
        cpuacct: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
    },
    V2(PathBuf),
}

/// Samples one container's cgroup.
#[derive(Debug)]
pub struct CgroupStats {
    layout: Layout,
    last: Option<(u64, Instant)>,
}

impl CgroupStats {
    /// The cgroup of process `pid` (the container's init), if its path names `container_id`
    /// and its files are readable.
    pub fn of_container(pid: i64, container_id: &str) -> Option<CgroupStats> {
        if pid <= 0 {
            return None;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let layout = layout_from(&text, Path::new("/sys/fs/cgroup"), container_id)?;
        let stats = CgroupStats { layout, last: None };
        // Readable now, or not at all.
        stats.cpu_usage_ns()?;
        Some(stats)
    }

    /// Total CPU time the cgroup used, in nanoseconds.
    fn cpu_usage_ns(&self) -> Option<u64> {
        match &self.layout {
            Layout::V1 { cpuacct, .. } => read_u64(&cpuacct.join("cpuacct.usage")),
            Layout::V2(dir) => {
                let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let usec = stat_field(&text, "usage_usec")?;
                Some(usec.saturating_mul(1000))
            }
        }
    }

    /// One sample. CPU is the average since the previous sample (the first one has none).
    /// `None` once the cgroup is gone (the container exited).
    pub fn sample(&mut self) -> Option<Metrics> {
        let usage = self.cpu_usage_ns()?;
        let now = Instant::now();
        let cpu_percent = self.last.map(|(prev, at)| {
            let wall = now.duration_since(at).as_nanos().max(1) as f64;
            usage.saturating_sub(prev) as f64 / wall * 100.0
        });
        self.last = Some((usage, now));
        // Memory as `podman stats` reports it: usage less the inactive page cache. v2's
        // "max" (no limit) does not parse: no limit to report.
        let (mem, usage, inactive, limit, pids) = match &self.layout {
            Layout::V1 { memory, pids, .. } => (
                memory,
                "memory.usage_in_bytes",
                "total_inactive_file",
                "memory.limit_in_bytes",
                pids,
            ),
            Layout::V2(dir) => (dir, "memory.current", "inactive_file", "memory.max", dir),
        };
        let inactive = std::fs::read_to_string(mem.join("memory.stat"))
            .ok()
            .and_then(|t| stat_field(&t, inactive))
            .unwrap_or(0);
        let memory_bytes = read_u64(&mem.join(usage)).map(|u| u.saturating_sub(inactive));
        let memory_limit_bytes = read_u64(&mem.join(limit));
        let pids = read_u64(&pids.join("pids.current"));
        Some(Metrics {
            cpu_percent,
            memory_bytes,
            memory_limit_bytes,
            pids,
            sampled_at_ms: now_ms(),
        })
    }
}

/// Finds the container's cgroup directories in the text of `/proc/<pid>/cgroup`.
fn layout_from(proc_cgroup: &str, root: &Path, container_id: &str) -> Option<Layout> {
    // Podman and Docker name the cgroup after the full id; 12 characters are enough to tell.
    let short = container_id.get(..12).unwrap_or(container_id);
    if short.is_empty() {
        return None;
    }
    let mut cpuacct = None;
    let mut memory = None;
    let mut pids = None;
    let mut unified = None;
    for line in proc_cgroup.lines() {
        // hierarchy-id:controllers:path
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !path.contains(short) {
            continue;
        }
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            unified = Some(root.join(rel));
            continue;
        }
        for c in controllers.split(',') {
            let mount = root.join(controllers).join(rel);
            match c {
                "cpuacct" => cpuacct = Some(mount),
                "memory" => memory = Some(mount),
                "pids" => pids = Some(mount),
                _ => {}
            }
        }
    }
    match (cpuacct, memory, pids, unified) {
        (Some(cpuacct), Some(memory), Some(pids), _) => Some(Layout::V1 {
            cpuacct,
            memory,
            pids,
        }),
        (_, _, _, Some(dir)) => Some(Layout::V2(dir)),
        _ => None,
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `name` in a flat-keyed cgroup file (`name value` lines).
fn stat_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f9c2a1b7d3e8f60a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef01";

    #[test]
    fn cgroup_v1_hybrid_paths_of_a_podman_container() {
        let text = format!(
            "12:pids:/machine.slice/libpod-{ID}.scope\n\
             11:cpu,cpuacct:/machine.slice/libpod-{ID}.scope\n\
             5:memory:/machine.slice/libpod-{ID}.scope\n\
             1:name=systemd:/machine.slice/libpod-{ID}.scope\n\
             0::/machine.slice/libpod-{ID}.scope\n"
        );
        let l = layout_from(&text, Path::new("/sys/fs/cgroup"), ID).unwrap();
        let scope = format!("machine.slice/libpod-{ID}.scope");
        assert_eq!(
            l,
            Layout::V1 {
                cpuacct: Path::new("/sys/fs/cgroup/cpu,cpuacct").join(&scope),
                memory: Path::new("/sys/fs/cgroup/memory").join(&scope),
                pids: Path::new("/sys/fs/cgroup/pids").join(&scope),
            }
        );
    }

    #[test]
    fn cgroup_v2_path_of_a_docker_container() {
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        let l = layout_from(&text, Path::new("/sys/fs/cgroup"), ID).unwrap();
        assert_eq!(
            l,
            Layout::V2(Path::new("/sys/fs/cgroup/system.slice").join(format!("docker-{ID}.scope")))
        );
    }

    #[test]
    fn a_cgroup_that_does_not_name_the_container_is_not_used() {
        // Rootless podman on cgroup v1: the container stays in the user's session.
        let text = "11:cpu,cpuacct:/user.slice\n5:memory:/user.slice/user-1000.slice/session-3.scope\n\
                    12:pids:/user.slice/user-1000.slice/session-3.scope\n0::/user.slice/user-1000.slice/session-3.scope\n";
        assert_eq!(layout_from(text, Path::new("/sys/fs/cgroup"), ID), None);
        assert_eq!(layout_from(text, Path::new("/sys/fs/cgroup"), ""), None);
    }

    #[test]
    fn samples_a_cgroup_v2_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(d.join("memory.current"), "10485760\n").unwrap();
        std::fs::write(d.join("memory.stat"), "anon 1\ninactive_file 4194304\n").unwrap();
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        std::fs::write(d.join("pids.current"), "3\n").unwrap();
        let mut s = CgroupStats {
            layout: Layout::V2(d.to_path_buf()),
            last: None,
        };
        let m = s.sample().unwrap();
        assert_eq!(m.cpu_percent, None);
        assert_eq!(m.memory_bytes, Some(6 << 20));
        assert_eq!(m.memory_limit_bytes, None);
        assert_eq!(m.pids, Some(3));
        std::fs::write(d.join("cpu.stat"), "usage_usec 5000000\n").unwrap();
        let m = s.sample().unwrap();
        assert!(m.cpu_percent.unwrap() > 0.0);
        std::fs::remove_file(d.join("cpu.stat")).unwrap();
        assert!(s.sample().is_none(), "a vanished cgroup gives no sample");
    }
}
