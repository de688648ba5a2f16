//! `creel doctor`.

use creel_engine::{DoctorLevel, Engine};

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print JSON (a list of findings)
    #[arg(long)]
    pub json: bool,
}

/// Exits 3 when a finding is an error (jobs would fail), 0 otherwise.
pub fn run(engine: &Engine, args: DoctorArgs) -> anyhow::Result<ExitStatus> {
    let findings = engine.doctor();
    let failed = findings.iter().any(|f| f.level == DoctorLevel::Error);
    if args.json {
        let list: Vec<wire::DoctorWire> = findings.iter().map(wire::DoctorWire::from).collect();
        printer::json(&list)?;
    } else {
        let mut out = String::new();
        for f in &findings {
            let tag = match f.level {
                DoctorLevel::Ok => "ok   ",
                DoctorLevel::Warn => "warn ",
                DoctorLevel::Error => "ERROR",
            };
            out.push_str(&format!("{tag} {:<16} {}\n", f.check, f.message));
            if let Some(h) = &f.hint {
                out.push_str(&format!("      {:<16} hint: {h}\n", ""));
            }
        }
        printer::out(out.as_bytes())?;
    }
    Ok(if failed {
        ExitStatus::Environment
    } else {
        ExitStatus::Success
    })
}
