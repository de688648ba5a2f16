//! The engine behind creel: it runs Claude Code jobs as detached, hardened containers and keeps
//! their state on disk, so that any front end (the `creel` CLI, its MCP server) sees the same
//! jobs and any of them can die without losing a byte.
//!
//! The main type is [`Engine`]: `start`, `status`, `output`, `wait`, `cancel`, `sessions`,
//! `cleanup` and `doctor`. A job is driven to its end by a per-job monitor process
//! ([`monitor::run`]); its lifecycle is in `job/`; the container command line is built only in
//! `runtime/argv.rs`; state lives in a SQLite store under `$CREEL_HOME` (`store.rs`).
//!
//! ```no_run
//! use creel_engine::{Engine, EngineOptions, StartRequest};
//! # fn main() -> Result<(), creel_engine::Error> {
//! let engine = Engine::open(EngineOptions::from_env("/tmp/creel-home".into(), Default::default()))?;
//! let started = engine.start(StartRequest { prompt: "say hello".into(), ..Default::default() })?;
//! let status = engine.status(&started.job_id)?;
//! println!("{} is {}", status.record.id, status.record.state);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod api;
pub(crate) mod approvals;
pub(crate) mod cgroup;
pub mod config;
mod doctor;
pub(crate) mod egress;
mod engine;
pub mod error;
mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod git;
pub(crate) mod host;
pub mod image;
pub(crate) mod job;
pub mod kube;
pub(crate) mod logfile;
pub(crate) mod login;
pub mod monitor;
pub(crate) mod netns;
pub mod pool;
mod remedy;
pub(crate) mod runtime;
pub(crate) mod session;
pub mod steer;
pub(crate) mod store;
pub mod stream;
pub(crate) mod watch;
pub(crate) mod webhook;

pub use api::{
    Activity, Budget, BudgetStatus, CleanupReport, JobStatus, JobSummary, JobsRequest, Login,
    OutputChunk, OutputFormat, OutputRequest, Spent, StartRequest, StartResponse, WaitOutcome,
};
pub use config::Config;
pub use doctor::{DoctorFinding, DoctorLevel};
pub use engine::{Engine, EngineOptions, MonitorLauncher};
pub use error::{Error, ErrorCategory, Result};
pub use job::output::MAX_PAGE as MAX_OUTPUT_PAGE;
pub use job::start::MAX_PROMPT as MAX_PROMPT_BYTES;
pub use job::{ErrorKind, JobRecord, JobState};
pub use remedy::Remedy;
pub use session::{SessionRecord, SessionSummary};
pub use watch::JobWatch;

/// Internals the benchmark suite (`crates/creel/benches`) builds on: the container command line,
/// job specs and the store, so that bare `podman` runs the same container creel does, and the
/// store can be filled directly. Not an API for anything else.
#[doc(hidden)]
pub mod internals {
    pub use crate::job::{ConversationMode, JobSpec, UserMode, new_job_id, now_ms};
    pub use crate::runtime::argv::{ContainerArgs, run_args};
    pub use crate::runtime::find_in_path;
    pub use crate::session::SessionRecord;
    pub use crate::steer::{
        prepare as prepare_steer, write_close as close_steer_input,
        write_message as write_steer_message,
    };
    pub use crate::store::Store;
}
