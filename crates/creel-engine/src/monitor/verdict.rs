//! The monitor's decisions, as plain functions of what it has seen: the output cap, the
//! startup and idle timeouts, and the final verdict. The follow loop feeds them; they touch no
//! file, process or clock of their own, so they are tested here without a container engine.

use crate::job::{ErrorKind, JobError, JobSpec};
use crate::runtime::{Failure, RuntimeError};
use crate::stream::{ResultFailure, StreamFacts, failure_kind};

/// Why creel itself stopped a container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KillReason {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

/// Of `len` new bytes of Claude's output, how many the output limit lets through when
/// `written` are already kept (`limit` 0: no limit), and the reason to stop the job once the
/// limit is reached.
pub(super) fn cap_output(limit: u64, written: u64, len: usize) -> (usize, Option<KillReason>) {
    if limit == 0 || written.saturating_add(len as u64) <= limit {
        return (len, None);
    }
    let room = limit.saturating_sub(written);
    let keep = usize::try_from(room).unwrap_or(usize::MAX).min(len);
    (
        keep,
        Some(KillReason {
            kind: ErrorKind::OutputLimit,
            message: format!(
                "output reached max_output_size ({limit} bytes); kept up to the limit"
            ),
        }),
    )
}

/// The reason to stop a job whose stderr went past the output limit: `seen` bytes of it so
/// far, `kept` of them in `stderr.log`.
pub(super) fn cap_stderr(limit: u64, seen: u64, kept: u64) -> Option<KillReason> {
    (limit > 0 && seen > limit).then(|| KillReason {
        kind: ErrorKind::OutputLimit,
        message: format!(
            "stderr reached max_output_size ({limit} bytes); kept the first {kept} bytes"
        ),
    })
}

/// The startup or idle timeout, if one has passed at `now_ms`: startup counts from
/// `started_ms` until the first output, idle from the last output, and never while the
/// container is `busy` (using CPU: thinking, or running a tool that prints nothing).
pub(super) fn timeout(
    spec: &JobSpec,
    now_ms: i64,
    started_ms: i64,
    last_output_ms: Option<i64>,
    busy: bool,
) -> Option<KillReason> {
    if let Some(left) = spec.budget.as_ref().and_then(|b| b.wall_seconds)
        && now_ms.saturating_sub(started_ms) >= secs_to_ms(left)
    {
        return Some(KillReason {
            kind: ErrorKind::Budget,
            message: format!(
                "the session's max_wall_seconds budget ran out ({left} s were left for this job)"
            ),
        });
    }
    match last_output_ms {
        None if spec.startup_timeout > 0
            && now_ms.saturating_sub(started_ms) > secs_to_ms(spec.startup_timeout) =>
        {
            Some(KillReason {
                kind: ErrorKind::StartupTimeout,
                message: format!(
                    "no output within startup_timeout ({} s)",
                    spec.startup_timeout
                ),
            })
        }
        Some(last)
            if spec.idle_timeout > 0
                && !busy
                && now_ms.saturating_sub(last) > secs_to_ms(spec.idle_timeout) =>
        {
            Some(KillReason {
                kind: ErrorKind::IdleTimeout,
                message: format!(
                    "no output for idle_timeout ({} s) while the container was idle",
                    spec.idle_timeout
                ),
            })
        }
        _ => None,
    }
}

/// When [`timeout`] may next decide to stop the job (unix ms), if ever: the wall budget's end,
/// or the startup or idle deadline (the idle one moves with each output, and does not apply
/// while the job is busy, which the caller learns at the next metrics sample).
pub(super) fn next_deadline(
    spec: &JobSpec,
    started_ms: i64,
    last_output_ms: Option<i64>,
) -> Option<i64> {
    let wall = spec
        .budget
        .as_ref()
        .and_then(|b| b.wall_seconds)
        .map(|left| started_ms.saturating_add(secs_to_ms(left)));
    let quiet = match last_output_ms {
        None if spec.startup_timeout > 0 => Some(
            started_ms
                .saturating_add(secs_to_ms(spec.startup_timeout))
                .saturating_add(1),
        ),
        Some(last) if spec.idle_timeout > 0 => Some(
            last.saturating_add(secs_to_ms(spec.idle_timeout))
                .saturating_add(1),
        ),
        _ => None,
    };
    match (wall, quiet) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The final verdict, in order of precedence: what creel stopped it for, the runtime's OOM
/// record (or a SIGKILL under an enforced memory limit that creel did not send), Claude's
/// result event, the exit code.
pub(crate) fn decide(
    spec: &crate::job::JobSpec,
    kill: Option<KillReason>,
    oom_flag: bool,
    exit_code: Option<i64>,
    facts: &StreamFacts,
    stderr_tail: &str,
) -> Option<JobError> {
    if let Some(k) = kill {
        return Some(JobError {
            kind: k.kind,
            message: k.message,
        });
    }
    if oom_flag {
        return Some(JobError {
            kind: ErrorKind::Oom,
            message: format!("killed for memory exhaustion (limit {})", spec.memory),
        });
    }
    if let Some(f) = failure_kind(facts) {
        let from_budget = spec.budget.as_ref().is_some_and(|b| b.turns_from_budget);
        let kind = match f {
            ResultFailure::MaxTurns if from_budget => ErrorKind::Budget,
            ResultFailure::MaxTurns => ErrorKind::MaxTurns,
            ResultFailure::MaxBudget => ErrorKind::Budget,
            ResultFailure::Auth => ErrorKind::Auth,
            ResultFailure::RateLimit => ErrorKind::RateLimit,
            ResultFailure::ApiError => ErrorKind::ApiError,
            ResultFailure::Other => ErrorKind::ExitNonzero,
        };
        let message = match kind {
            ErrorKind::Budget => Some(match f {
                ResultFailure::MaxBudget => format!(
                    "the session's max_cost_usd budget is spent ({})",
                    facts
                        .errors
                        .first()
                        .map_or("Claude stopped", String::as_str)
                ),
                _ => "the session's max_turns budget is spent".to_string(),
            }),
            _ => None,
        };
        let message = message
            .or_else(|| facts.result.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| facts.errors.first().cloned())
            .unwrap_or_else(|| {
                format!(
                    "Claude reported an error ({})",
                    facts.result_subtype.as_deref().unwrap_or("?")
                )
            });
        return Some(JobError {
            kind,
            message: super::first_line(&message, 500),
        });
    }
    match exit_code {
        Some(0) => None,
        Some(c) => Some(JobError {
            kind: ErrorKind::ExitNonzero,
            message: if stderr_tail.trim().is_empty() {
                format!("claude exited with code {c}")
            } else {
                format!("claude exited with code {c}: {}", stderr_tail.trim())
            },
        }),
        None if facts.saw_result => None,
        None => Some(JobError {
            kind: ErrorKind::Runtime,
            message: "the container's exit code could not be determined".into(),
        }),
    }
}

/// What a container that could not start (or an egress proxy that could not) makes of the job:
/// `image_missing` when the runtime said so, else `runtime`.
pub(super) fn start_failure(e: &RuntimeError) -> ErrorKind {
    if e.failure() == Failure::ImageMissing {
        ErrorKind::ImageMissing
    } else {
        ErrorKind::Runtime
    }
}

/// Seconds as milliseconds, saturating (a huge timeout means "never", not an overflow).
pub(super) fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(startup: u64, idle: u64) -> JobSpec {
        let mut s = crate::runtime::argv::tests::spec();
        s.startup_timeout = startup;
        s.idle_timeout = idle;
        s
    }

    #[test]
    fn the_output_cap_keeps_exactly_up_to_the_limit() {
        assert_eq!(cap_output(0, u64::MAX - 1, 10), (10, None));
        assert_eq!(cap_output(100, 90, 10), (10, None));
        let (keep, kill) = cap_output(100, 90, 11);
        assert_eq!(keep, 10);
        assert_eq!(kill.unwrap().kind, ErrorKind::OutputLimit);
        assert_eq!(cap_output(100, 100, 5).0, 0);
        // Already past it (a limit lowered by hand): nothing more, never an underflow.
        assert_eq!(cap_output(100, 150, 5).0, 0);
        assert_eq!(cap_output(100, u64::MAX, usize::MAX).0, 0);
        assert!(cap_stderr(0, u64::MAX, 1).is_none());
        assert!(cap_stderr(100, 100, 100).is_none());
        let k = cap_stderr(100, 101, 100).unwrap();
        assert!(
            k.message.contains("kept the first 100 bytes"),
            "{}",
            k.message
        );
    }

    #[test]
    fn the_budget_s_limits_end_a_job_as_budget() {
        let mut s = spec(0, 0);
        s.budget = Some(crate::job::JobBudget {
            cost_usd: Some(0.5),
            turns_from_budget: true,
            wall_seconds: Some(10),
        });
        assert!(timeout(&s, 9_999, 0, Some(9_000), true).is_none());
        let k = timeout(&s, 10_000, 0, Some(9_000), true).unwrap();
        assert_eq!(k.kind, ErrorKind::Budget, "even while busy: {k:?}");
        let mut facts = StreamFacts {
            saw_result: true,
            is_error: Some(true),
            result_subtype: Some("error_max_turns".into()),
            ..Default::default()
        };
        let e = decide(&s, None, false, Some(1), &facts, "").unwrap();
        assert_eq!(e.kind, ErrorKind::Budget, "{e:?}");
        facts.result_subtype = Some("error_max_budget_usd".into());
        facts.errors = vec!["Reached maximum budget ($0.5)".into()];
        let e = decide(&s, None, false, Some(1), &facts, "").unwrap();
        assert_eq!(e.kind, ErrorKind::Budget);
        assert!(e.message.contains("Reached maximum budget"), "{e:?}");
        s.budget = None;
        facts.result_subtype = Some("error_max_turns".into());
        let e = decide(&s, None, false, Some(1), &facts, "").unwrap();
        assert_eq!(e.kind, ErrorKind::MaxTurns, "the job's own --max-turns");
    }

    #[test]
    fn the_next_deadline_is_the_first_moment_a_timeout_decides() {
        // Each deadline is exactly the first moment `timeout` stops the job.
        let s = spec(2, 5);
        let at = next_deadline(&s, 1_000, None).unwrap();
        assert_eq!(at, 3_001);
        assert!(timeout(&s, at - 1, 1_000, None, false).is_none());
        assert!(timeout(&s, at, 1_000, None, false).is_some());
        let at = next_deadline(&s, 1_000, Some(4_000)).unwrap();
        assert_eq!(at, 9_001);
        assert!(timeout(&s, at - 1, 1_000, Some(4_000), false).is_none());
        assert!(timeout(&s, at, 1_000, Some(4_000), false).is_some());
        let mut w = spec(0, 0);
        assert_eq!(next_deadline(&w, 0, Some(1)), None, "no timeouts: never");
        w.budget = Some(crate::job::JobBudget {
            cost_usd: None,
            turns_from_budget: false,
            wall_seconds: Some(3),
        });
        assert_eq!(next_deadline(&w, 500, None), Some(3_500));
        assert_eq!(
            next_deadline(&spec(u64::MAX, 0), i64::MAX, None),
            Some(i64::MAX)
        );
    }

    #[test]
    fn startup_timeout_counts_until_the_first_output() {
        let s = spec(2, 0);
        assert!(timeout(&s, 2_000, 0, None, false).is_none());
        let k = timeout(&s, 2_001, 0, None, true).unwrap();
        assert_eq!(k.kind, ErrorKind::StartupTimeout);
        // Once output came, startup no longer matters.
        assert!(timeout(&s, 60_000, 0, Some(1), false).is_none());
        // 0: none.
        assert!(timeout(&spec(0, 0), i64::MAX, 0, None, false).is_none());
    }

    #[test]
    fn idle_timeout_counts_from_the_last_output_and_spares_a_busy_container() {
        let s = spec(0, 5);
        assert!(timeout(&s, 5_000, 0, Some(0), false).is_none());
        assert_eq!(
            timeout(&s, 5_001, 0, Some(0), false).unwrap().kind,
            ErrorKind::IdleTimeout
        );
        assert!(timeout(&s, 500_000, 0, Some(0), true).is_none());
    }

    #[test]
    fn huge_timeouts_mean_never_not_an_overflow() {
        let s = spec(u64::MAX, u64::MAX);
        assert!(timeout(&s, i64::MAX, i64::MIN, None, false).is_none());
        assert!(timeout(&s, i64::MAX, 0, Some(i64::MIN), false).is_none());
        assert_eq!(secs_to_ms(u64::MAX), i64::MAX);
    }

    fn facts(lines: &[&str]) -> StreamFacts {
        let mut f = StreamFacts::default();
        for l in lines {
            f.observe(l.as_bytes());
        }
        f
    }

    #[test]
    fn the_verdict_puts_creels_own_reason_first_then_oom_then_claude_then_the_exit_code() {
        let s = spec(0, 0);
        let ok =
            facts(&[r#"{"type":"result","subtype":"success","is_error":false,"result":"done"}"#]);
        let kill = KillReason {
            kind: ErrorKind::IdleTimeout,
            message: "idle".into(),
        };
        assert_eq!(
            decide(&s, Some(kill), true, Some(137), &ok, "")
                .unwrap()
                .kind,
            ErrorKind::IdleTimeout
        );
        assert_eq!(
            decide(&s, None, true, Some(0), &ok, "").unwrap().kind,
            ErrorKind::Oom
        );
        assert_eq!(decide(&s, None, false, Some(0), &ok, ""), None);
        let turns = facts(&[r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#]);
        assert_eq!(
            decide(&s, None, false, Some(1), &turns, "").unwrap().kind,
            ErrorKind::MaxTurns
        );
        let e = decide(&s, None, false, Some(3), &StreamFacts::default(), "boom\n").unwrap();
        assert_eq!(e.kind, ErrorKind::ExitNonzero);
        assert_eq!(e.message, "claude exited with code 3: boom");
        // No exit code: fine after Claude's result, a runtime failure without one.
        assert_eq!(decide(&s, None, false, None, &ok, ""), None);
        assert_eq!(
            decide(&s, None, false, None, &StreamFacts::default(), "")
                .unwrap()
                .kind,
            ErrorKind::Runtime
        );
    }

    #[test]
    fn image_missing_is_recognised_in_both_runtimes_words() {
        let kind =
            |stderr: &str| start_failure(&RuntimeError::failed("podman", "run", "1", stderr));
        assert_eq!(kind("Error: x: image not known"), ErrorKind::ImageMissing);
        assert_eq!(
            kind("Unable to find image 'x' locally"),
            ErrorKind::ImageMissing
        );
        assert_eq!(kind("permission denied"), ErrorKind::Runtime);
    }
}
