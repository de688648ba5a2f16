//! The engine behind creel: it runs Claude Code jobs as detached, hardened containers and keeps
//! their state on disk, so that any front end (the `creel` CLI, its MCP server) sees the same
//! jobs and any of them can die without losing a byte.
//!
//! The main type is [`Engine`]: `start`, `status`, `output`, `wait`, `cancel`, `sessions`,
//! `cleanup` and `doctor`. A job is driven to its end by a per-job monitor process
//! ([`monitor::run`]); its lifecycle is in [`job`]; the container command line is built only in
//! [`runtime::argv`]; state lives in a SQLite [`store::Store`] under `$CREEL_HOME`.
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
pub mod cgroup;
pub mod config;
mod doctor;
pub mod egress;
mod engine;
pub mod error;
mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod image;
pub mod job;
pub mod logfile;
pub mod login;
pub mod monitor;
pub mod netns;
pub mod runtime;
pub mod session;
pub mod store;
pub mod stream;
pub mod watch;
pub mod webhook;

pub use api::{
    Activity, CleanupReport, JobStatus, OutputChunk, OutputFormat, OutputRequest, StartRequest,
    StartResponse, WaitOutcome,
};
pub use config::Config;
pub use doctor::{DoctorFinding, DoctorLevel};
pub use engine::{Engine, EngineOptions, MonitorLauncher};
pub use error::{Error, ErrorCategory, Result};
pub use job::start::MAX_PROMPT as MAX_PROMPT_BYTES;
pub use job::{ErrorKind, JobRecord, JobState};
pub use session::SessionSummary;
