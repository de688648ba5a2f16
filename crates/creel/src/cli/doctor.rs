//! `creel doctor`.

use creel_engine::{DoctorLevel, Engine};

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print JSON (a list of findings)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: super::EngineChoice,
}

/// Exits 3 when a finding is an error (jobs would fail), 0 otherwise.
pub fn run(
    engine: &Engine,
    global: &super::GlobalArgs,
    args: DoctorArgs,
) -> anyhow::Result<ExitStatus> {
    let mut findings = engine.doctor();
    // Which config file this is about (the engine only sees the result).
    let (path, _) = super::config_path(global);
    findings.insert(
        0,
        creel_engine::DoctorFinding {
            check: "config".into(),
            level: DoctorLevel::Ok,
            message: match path {
                Some(p) if p.is_file() => {
                    format!("`{}`, with CREEL_* variables over it", p.display())
                }
                Some(p) => format!(
                    "defaults (no file at `{}`), with CREEL_* variables over them",
                    p.display()
                ),
                None => "defaults, with CREEL_* variables over them".into(),
            },
            hint: None,
            remedy: None,
        },
    );
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
            let hint = f
                .hint
                .clone()
                .or_else(|| f.remedy.as_ref().map(super::remedy::phrase));
            if let Some(h) = hint {
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
