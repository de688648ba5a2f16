//! The hidden `__monitor` subcommand: the per-job monitor process `start` spawns; and
//! `__kube-watch`, the one watcher of the store's jobs on a Kubernetes cluster.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;

use creel_engine::monitor;

use super::{ExitStatus, GlobalArgs, home_dir};

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// The job id
    pub job: String,
}

pub fn run(global: &GlobalArgs, args: MonitorArgs) -> anyhow::Result<ExitStatus> {
    let home = home_dir(global)?;
    let lock_path = home.join("jobs").join(&args.job).join("monitor.lock");
    let inherited = match std::env::var("CREEL_MONITOR_LOCK_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(fd) => {
            // SAFETY: the parent passed this fd to us and nothing else in this process owns it.
            let file = unsafe { File::from_raw_fd(fd) };
            // Only trust it if it really is this job's lock file.
            match (file.metadata(), std::fs::metadata(&lock_path)) {
                (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev() => Some(file),
                _ => None,
            }
        }
        None => None,
    };
    tracing::debug!(job = %args.job, "monitor starting");
    monitor::run(&home, &args.job, inherited)?;
    Ok(ExitStatus::Success)
}

pub fn run_kube_watch(global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let home = home_dir(global)?;
    let lock_path = home.join("kube-watch.lock");
    let inherited = std::env::var("CREEL_MONITOR_LOCK_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .and_then(|fd| {
            // SAFETY: the parent passed this fd to us and nothing else in this process owns it.
            let file = unsafe { File::from_raw_fd(fd) };
            match (file.metadata(), std::fs::metadata(&lock_path)) {
                (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev() => Some(file),
                _ => None,
            }
        });
    let engine = super::open_engine(global)?;
    creel_engine::kube::watcher::run(engine, inherited)?;
    Ok(ExitStatus::Success)
}
