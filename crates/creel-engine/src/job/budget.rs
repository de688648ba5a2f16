//! Session budgets: how much a session's jobs may spend together (dollars, turns, running
//! time), enforced while a job runs, and `budget`, the verb that shows or changes one.
//!
//! A job is given what is left: the dollars as Claude Code's own `--max-budget-usd` (Claude
//! stops after the turn that crosses it, with `error_max_budget_usd`), the turns as
//! `--max-turns`, the seconds as a deadline the monitor keeps. A job stopped by any of them
//! fails with error kind `budget`; the session is then exhausted (what it spent reaches a
//! limit) and `start` refuses it until the budget is raised.

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// A session's limits; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Dollars, as Claude reports its cost.
    pub max_cost_usd: Option<f64>,
    /// Agent turns.
    pub max_turns: Option<u64>,
    /// Seconds the session's jobs may run, together.
    pub max_wall_seconds: Option<u64>,
}

impl Budget {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.max_cost_usd.is_none() && self.max_turns.is_none() && self.max_wall_seconds.is_none()
    }

    /// `self` with every limit `other` sets replaced.
    pub fn overlaid(&self, other: &Budget) -> Budget {
        Budget {
            max_cost_usd: other.max_cost_usd.or(self.max_cost_usd),
            max_turns: other.max_turns.or(self.max_turns),
            max_wall_seconds: other.max_wall_seconds.or(self.max_wall_seconds),
        }
    }

    /// Checks the values (a cost must be a positive number).
    pub fn check(&self) -> Result<()> {
        if let Some(c) = self.max_cost_usd
            && !(c > 0.0 && c.is_finite())
        {
            return Err(Error::InvalidRequest(format!(
                "max_cost_usd {c} is not a positive number of dollars"
            )));
        }
        if self.max_turns == Some(0) || self.max_wall_seconds == Some(0) {
            return Err(Error::InvalidRequest(
                "a budget of 0 turns or 0 seconds allows nothing; leave it out for no limit".into(),
            ));
        }
        Ok(())
    }
}

/// What a session's jobs have used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spent {
    /// Dollars (finished jobs, and running ones as far as Claude has reported).
    pub cost_usd: f64,
    /// Turns.
    pub turns: u64,
    /// Seconds the jobs have run (a running job up to now).
    pub wall_seconds: f64,
}

/// A session's budget with what is spent and left.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The session.
    pub session_id: String,
    /// The limits.
    pub budget: Budget,
    /// What is used.
    pub spent: Spent,
    /// The first limit reached, in words, once one is.
    pub exhausted: Option<String>,
}

impl BudgetStatus {
    /// Dollars left, if limited.
    pub fn cost_left(&self) -> Option<f64> {
        self.budget
            .max_cost_usd
            .map(|m| (m - self.spent.cost_usd).max(0.0))
    }

    /// Turns left, if limited.
    pub fn turns_left(&self) -> Option<u64> {
        self.budget
            .max_turns
            .map(|m| m.saturating_sub(self.spent.turns))
    }

    /// Seconds left, if limited.
    pub fn wall_seconds_left(&self) -> Option<u64> {
        self.budget
            .max_wall_seconds
            .map(|m| (m as f64 - self.spent.wall_seconds).max(0.0) as u64)
    }
}

/// What a job may use of its session's budget, fixed when it is accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobBudget {
    /// Passed as `--max-budget-usd`.
    pub cost_usd: Option<f64>,
    /// Whether the job's `--max-turns` is the budget's (so hitting it is `budget`).
    pub turns_from_budget: bool,
    /// Seconds the job may run before the monitor stops it.
    pub wall_seconds: Option<u64>,
}

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
