//! Session budgets: how much a session's jobs may spend together (dollars, turns, running
//! time), enforced while a job runs, and `budget`, the verb that shows or changes one.
//!
//! A job is given what is left: the dollars as Claude Code's own `--max-budget-usd` (Claude
//! stops after the turn that crosses it, with `error_max_budget_usd`), the turns as
//! `--max-turns`, the seconds as a deadline the monitor keeps. A job stopped by any of them
//! fails with error kind `budget`; the session is then exhausted (what it spent reaches a
//! limit) and `start` refuses it until the budget is raised.

use crate::api::{Budget, BudgetStatus, Spent};
use crate::engine::Engine;
use crate::error::{Error, Result};

pub(crate) fn status_of(session_id: &str, budget: Budget, spent: Spent) -> BudgetStatus {
    let exhausted = if budget.max_cost_usd.is_some_and(|m| spent.cost_usd >= m) {
        Some(format!(
            "spent ${:.4} of max_cost_usd ${:.4}",
            spent.cost_usd,
            budget.max_cost_usd.unwrap_or_default()
        ))
    } else if budget.max_turns.is_some_and(|m| spent.turns >= m) {
        Some(format!(
            "used {} of max_turns {}",
            spent.turns,
            budget.max_turns.unwrap_or_default()
        ))
    } else if budget
        .max_wall_seconds
        .is_some_and(|m| spent.wall_seconds >= m as f64)
    {
        Some(format!(
            "ran {:.0} s of max_wall_seconds {}",
            spent.wall_seconds,
            budget.max_wall_seconds.unwrap_or_default()
        ))
    } else {
        None
    };
    BudgetStatus {
        session_id: session_id.to_string(),
        budget,
        spent,
        exhausted,
    }
}

impl Engine {
    /// A session's budget and what its jobs spent; with `change`, first sets the limits it
    /// names (raising or lowering them).
    pub fn budget(&self, session_id: &str, change: Option<&Budget>) -> Result<BudgetStatus> {
        if self.store().session(session_id)?.is_none() {
            return Err(Error::UnknownSession(session_id.to_string()));
        }
        if let Some(c) = change {
            c.check()?;
            let now = self.store().budget(session_id)?.unwrap_or_default();
            self.store().set_budget(session_id, &now.overlaid(c))?;
        }
        Ok(self
            .budget_status(session_id)?
            .unwrap_or_else(|| status_of(session_id, Budget::default(), Spent::default())))
    }

    /// The budget of a session that has one.
    pub(crate) fn budget_status(&self, session_id: &str) -> Result<Option<BudgetStatus>> {
        let store = self.store();
        let Some(budget) = store.budget(session_id)?.filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        let spent = store.spent(session_id, crate::job::now_ms())?;
        Ok(Some(status_of(session_id, budget, spent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_names_the_first_limit_reached_and_left_never_goes_below_zero() {
        let b = Budget {
            max_cost_usd: Some(1.0),
            max_turns: Some(10),
            max_wall_seconds: Some(60),
        };
        let s = status_of(
            "s",
            b.clone(),
            Spent {
                cost_usd: 0.4,
                turns: 10,
                wall_seconds: 5.0,
            },
        );
        assert_eq!(s.exhausted.as_deref(), Some("used 10 of max_turns 10"));
        assert_eq!(s.turns_left(), Some(0));
        let s = status_of(
            "s",
            b,
            Spent {
                cost_usd: 1.5,
                turns: 0,
                wall_seconds: 90.0,
            },
        );
        assert!(s.exhausted.as_deref().unwrap().contains("max_cost_usd"));
        assert_eq!((s.cost_left(), s.wall_seconds_left()), (Some(0.0), Some(0)));
    }

    #[test]
    fn bad_budgets_are_refused() {
        for b in [
            Budget {
                max_cost_usd: Some(-1.0),
                ..Default::default()
            },
            Budget {
                max_cost_usd: Some(f64::NAN),
                ..Default::default()
            },
            Budget {
                max_turns: Some(0),
                ..Default::default()
            },
        ] {
            assert!(b.check().is_err(), "{b:?}");
        }
    }
}
