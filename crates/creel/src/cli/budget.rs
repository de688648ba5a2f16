//! `creel budget`: a session's budget, spent and left; and raising (or lowering) it.

use anyhow::Context;
use creel_engine::{Budget, Engine};

use super::ExitStatus;
use crate::{printer, wire};

#[derive(Debug, clap::Args)]
pub struct BudgetArgs {
    /// The session
    pub session: String,
    /// Set the limit in dollars, for all the session's jobs together
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// Set the limit in agent turns
    #[arg(long, value_name = "N")]
    pub max_turns: Option<u64>,
    /// Set the limit in seconds of running jobs
    #[arg(long, value_name = "SECS")]
    pub max_wall_seconds: Option<u64>,
    /// Print {sessionId, limits, spent, remaining, exhausted} as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(engine: &Engine, args: BudgetArgs) -> anyhow::Result<ExitStatus> {
    let change = Budget {
        max_cost_usd: args.max_cost_usd,
        max_turns: args.max_turns,
        max_wall_seconds: args.max_wall_seconds,
    };
    let b = engine
        .budget(&args.session, (!change.is_empty()).then_some(&change))
        .with_context(|| format!("cannot read the budget of session {}", args.session))?;
    let w = wire::BudgetWire::from(&b);
    if args.json {
        printer::json(&w)?;
    } else if b.budget.is_empty() {
        printer::out(
            format!(
                "session {} has no budget (set one with --max-cost-usd, --max-turns or --max-wall-seconds)\n",
                args.session
            )
            .as_bytes(),
        )?;
    } else {
        printer::out(format!("session {}  {}\n", args.session, w.human()).as_bytes())?;
    }
    Ok(ExitStatus::Success)
}
