//! `creel pool`: the warm pool's sandboxes (config `pool = N`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use creel_engine::Engine;
use creel_engine::pool::PoolStatus;

use super::ExitStatus;
use crate::printer;

#[derive(Debug, clap::Args)]
pub struct PoolArgs {
    #[command(subcommand)]
    pub action: Option<PoolAction>,
    /// Print JSON ({size, sandboxes: [{jobId, sessionId, createdAtMs, ready, monitorAlive}], lastFailure})
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum PoolAction {
    /// Show the pool's sandboxes (the default)
    Status,
    /// Make sandboxes until there are `pool`, and wait until they are ready
    ///
    /// Sandboxes made for an older config, login or image are replaced. A start tops the
    /// pool up by itself; this fills it before the first start, e.g. after a reboot.
    Fill {
        /// Return once the sandboxes are being made, without waiting for them
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
    /// Take every sandbox down (containers and files); starts fill the pool again
    Drain,
}

pub fn run(engine: &Engine, args: PoolArgs) -> anyhow::Result<ExitStatus> {
    match args.action.unwrap_or(PoolAction::Status) {
        PoolAction::Status => {
            let status = engine.pool_status().context("cannot read the pool")?;
            show(&status, args.json)?;
        }
        PoolAction::Fill { no_wait, timeout } => {
            let mut status = engine.fill_pool().context("cannot fill the pool")?;
            let until = Instant::now() + Duration::from_secs(timeout);
            let mut shown = usize::MAX;
            while !no_wait && status.ready() < status.size as usize {
                if let Some(why) = &status.last_failure {
                    bail!("a pooled sandbox could not start: {why}");
                }
                if Instant::now() >= until {
                    bail!(
                        "the pool is not ready after {timeout} s ({} of {} sandboxes); `creel pool` shows it",
                        status.ready(),
                        status.size
                    );
                }
                if !args.json && status.ready() != shown {
                    shown = status.ready();
                    eprintln!("pool: {shown} of {} sandboxes ready…", status.size);
                }
                std::thread::sleep(Duration::from_millis(100));
                status = engine.pool_status().context("cannot read the pool")?;
            }
            show(&status, args.json)?;
        }
        PoolAction::Drain => {
            let drained = engine.drain_pool().context("cannot drain the pool")?;
            if args.json {
                printer::json(&serde_json::json!({ "drained": drained }))?;
            } else {
                printer::out(format!("drained {} sandboxes\n", drained.len()).as_bytes())?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn show(status: &PoolStatus, json: bool) -> anyhow::Result<()> {
    if json {
        return printer::json(status);
    }
    let mut out = format!(
        "pool: {} of {} sandboxes ready{}\n",
        status.ready(),
        status.size,
        if status.size == 0 {
            " (off: set `pool = N` in the config)"
        } else {
            ""
        }
    );
    let now = creel_engine::internals::now_ms();
    for s in &status.sandboxes {
        out.push_str(&format!(
            "{:<14} {:<14} {:<9} {:>6} s old{}\n",
            s.job_id,
            s.session_id,
            if s.ready { "ready" } else { "starting" },
            (now - s.created_at_ms).max(0) / 1000,
            if s.monitor_alive {
                ""
            } else {
                "  (its monitor is gone: the next start discards it)"
            }
        ));
    }
    if let Some(why) = &status.last_failure {
        out.push_str(&format!("last failure: {why}\n"));
    }
    printer::out(out.as_bytes())
}
