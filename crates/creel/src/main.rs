//! `creel`: run Claude Code jobs in hardened rootless containers, from a CLI or an MCP server.
//!
//! This crate holds the faces only: argument parsing, printing and the MCP server. Every verb
//! is a thin adapter over [`creel_engine::Engine`].

mod acp;
mod changes;
mod choice;
mod cli;
mod exit;
mod fake_kube;
mod fake_model;
mod http_serve;
mod mcp;
mod printer;
mod ui;
mod wire;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, ExitStatus};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(&cli.global);
    let json = cli.command.json();
    match cli::dispatch(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            let status = cli::report_error(&err, json);
            status.into()
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s as u8)
    }
}
