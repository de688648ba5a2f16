//! The embedded store: SQLite in WAL mode under `$CREEL_HOME/creel.db`.
//!
//! Every creel process (CLI, MCP server, monitors) opens it; read-modify-write goes through
//! `BEGIN IMMEDIATE` transactions, so concurrent writers serialise and a `kill -9` mid-write
//! leaves the previous state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::job::{ErrorKind, JobError, JobRecord, JobSpec, JobState, Metrics, Retry};
use crate::session::{SessionRecord, SessionSummary};

pub use crate::error::StoreError;

/// Connection to the store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The schema; `{UNFINISHED}` stands for [`UNFINISHED`] (see [`schema`]).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    last_activity INTEGER NOT NULL,
    workspace TEXT NOT NULL,
    workspace_created INTEGER NOT NULL,
    claude_session_id TEXT NOT NULL,
    git TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    state TEXT NOT NULL,
    error_kind TEXT,
    error_message TEXT,
    exit_code INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    container_id TEXT,
    spec TEXT NOT NULL,
    output_size INTEGER NOT NULL DEFAULT 0,
    log_offset INTEGER NOT NULL DEFAULT 0,
    first_output_at INTEGER,
    last_output_at INTEGER,
    claude_session_id TEXT,
    num_turns INTEGER,
    cost_usd REAL,
    result TEXT,
    retry TEXT,
    metrics TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    webhook_delivered_at INTEGER,
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    egress_denied TEXT,
    has_webhook INTEGER NOT NULL DEFAULT 0,
    changes TEXT,
    messages INTEGER NOT NULL DEFAULT 1,
    input_closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS requests (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ask TEXT NOT NULL,
    asked_at INTEGER NOT NULL,
    answer TEXT,
    notified_at INTEGER,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS budgets (
    session_id TEXT PRIMARY KEY,
    budget TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pool (
    job_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    spec TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    start_after INTEGER NOT NULL DEFAULT 0,
    container_id TEXT,
    ready_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_session ON jobs(session_id, created_at);
CREATE INDEX IF NOT EXISTS active_jobs ON jobs(session_id) WHERE state IN {UNFINISHED};
CREATE INDEX IF NOT EXISTS sessions_by_activity ON sessions(last_activity);
CREATE INDEX IF NOT EXISTS jobs_by_creation ON jobs(created_at);
";

/// The states a job has not ended in, as an SQL list: every query about unfinished jobs uses
/// this one list, which a unit test holds to [`JobState::is_final`].
const UNFINISHED: &str = "('pending', 'running')";

fn schema() -> String {
    SCHEMA.replace("{UNFINISHED}", UNFINISHED)
}

/// Progress the monitor checkpoints while a job runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Output bytes captured (durable in the output file).
    pub output_size: u64,
    /// Log bytes consumed to produce them.
    pub log_offset: u64,
    /// First output at.
    pub first_output_at_ms: Option<i64>,
    /// Latest output at.
    pub last_output_at_ms: Option<i64>,
    /// Claude's session id.
    pub claude_session_id: Option<String>,
    /// Turns.
    pub num_turns: Option<u64>,
    /// Cost.
    pub cost_usd: Option<f64>,
    /// Result text.
    pub result: Option<String>,
    /// Current retry.
    pub retry: Option<Retry>,
    /// Latest metrics.
    pub metrics: Option<Metrics>,
    /// Egress refusals (bounded summary).
    pub egress_denied: crate::egress::Refusals,
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // Two processes making a new store at once (two first `creel start`s) can meet in
        // the switch to WAL or in the schema, where SQLite answers "busy" at once rather than
        // wait (its busy handler is not asked there): try again, for as long as the timeout.
        let init = |conn: &Connection| -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(&schema())?;
            migrate(conn)
        };
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match init(&conn) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < until =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Gets a session.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, created_at, last_activity, workspace, workspace_created, claude_session_id, git
                 FROM sessions WHERE id = ?1",
                [id],
                |r| session_from_row(r, 6),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The session's unfinished job, if any (an index lookup).
    pub fn active_job(&self, session: &str) -> Result<Option<(String, JobState)>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT id, state FROM jobs WHERE session_id = ?1 AND state IN {UNFINISHED}"
                ),
                [session],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map(|o| o.map(|(id, st)| (id, JobState::parse(&st).unwrap_or(JobState::Running))))
            .map_err(|e| self.err(e))
    }

    /// Records a new job, creating its session if `new_session` is given, in one transaction.
    /// Fails with the active job when the session is busy.
    pub fn insert_job(
        &mut self,
        job: &JobRecord,
        new_session: Option<&SessionRecord>,
    ) -> Result<Result<(), (String, JobState)>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let active: Option<(String, String)> = tx
            .query_row(
                &format!(
                    "SELECT id, state FROM jobs WHERE session_id = ?1 AND state IN {UNFINISHED}"
                ),
                [&job.session_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        if let Some((id, state)) = active {
            return Ok(Err((
                id,
                JobState::parse(&state).unwrap_or(JobState::Running),
            )));
        }
        insert_rows(&tx, job, new_session).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Ok(()))
    }

    /// Records a job as another source of truth says it is (a cluster's pod), with its new
    /// session if given: no busy check, since the source has decided already. A job already
    /// recorded is left as it is.
    pub fn mirror_job(
        &mut self,
        job: &JobRecord,
        new_session: Option<&SessionRecord>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let known: Option<String> = tx
            .query_row("SELECT id FROM jobs WHERE id = ?1", [&job.id], |r| r.get(0))
            .optional()
            .map_err(err)?;
        let session_known: Option<String> = tx
            .query_row(
                "SELECT id FROM sessions WHERE id = ?1",
                [&job.session_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if known.is_none() {
            insert_rows(&tx, job, new_session.filter(|_| session_known.is_none())).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Gets a job.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                |r| Ok(RawJob::from_row(r)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(raw) => raw
                .map_err(|e| self.err(e))?
                .into_record(&self.path)
                .map(Some),
        }
    }

    /// Jobs of a session, oldest first.
    pub fn jobs_of_session(&self, session: &str) -> Result<Vec<JobRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE session_id = ?1 ORDER BY created_at, rowid"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([session], |r| Ok(RawJob::from_row(r)))
            .map_err(|e| self.err(e))?;
        self.records(rows)
    }

    /// The newest `limit` jobs (0: all), newest first, of one session when `session` is given,
    /// only unfinished ones when `active`, else only those in `state` when given.
    pub fn recent_jobs(
        &self,
        session: Option<&str>,
        state: Option<JobState>,
        active: bool,
        limit: u64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
        let mut params: Vec<String> = Vec::new();
        if let Some(s) = session {
            params.push(s.to_string());
            sql.push_str(&format!(" AND session_id = ?{}", params.len()));
        }
        if active {
            sql.push_str(&format!(" AND state IN {UNFINISHED}"));
        } else if let Some(st) = state {
            params.push(st.to_string());
            sql.push_str(&format!(" AND state = ?{}", params.len()));
        }
        sql.push_str(" ORDER BY created_at DESC, rowid DESC");
        if limit > 0 {
            sql.push_str(&format!(" LIMIT {}", limit.min(i64::MAX as u64)));
        }
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                Ok(RawJob::from_row(r))
            })
            .map_err(|e| self.err(e))?;
        self.records(rows)
    }

    /// The job records of a query's rows.
    fn records(
        &self,
        rows: impl Iterator<Item = rusqlite::Result<rusqlite::Result<RawJob>>>,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        for raw in rows {
            let raw = raw.map_err(|e| self.err(e))?.map_err(|e| self.err(e))?;
            out.push(raw.into_record(&self.path)?);
        }
        Ok(out)
    }

    /// Ids of jobs that have not reached a final state, or still owe a webhook.
    pub fn unfinished_jobs(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id FROM jobs WHERE state IN {UNFINISHED}
                 OR (has_webhook = 1 AND webhook_delivered_at IS NULL AND webhook_attempts < {})",
                crate::job::WEBHOOK_MAX_ATTEMPTS
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Moves a pending job to running with its container. Returns false if the job was no
    /// longer pending (e.g. cancelled meanwhile).
    pub fn set_running(
        &mut self,
        id: &str,
        container_id: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE jobs SET state = 'running', container_id = ?2, started_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
                params![id, container_id, at_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Records the container id without changing state (a cancelled job's container).
    pub fn set_container(&mut self, id: &str, container_id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET container_id = ?2 WHERE id = ?1",
                params![id, container_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Checkpoints progress.
    pub fn set_progress(&mut self, id: &str, p: &Progress) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET output_size = ?2, log_offset = ?3, first_output_at = ?4, last_output_at = ?5,
                   claude_session_id = ?6, num_turns = ?7, cost_usd = ?8, result = ?9, retry = ?10, metrics = ?11,
                   egress_denied = ?12
                 WHERE id = ?1",
                params![
                    id,
                    p.output_size as i64,
                    p.log_offset as i64,
                    p.first_output_at_ms,
                    p.last_output_at_ms,
                    p.claude_session_id,
                    p.num_turns.map(|n| n as i64),
                    p.cost_usd,
                    p.result,
                    p.retry.as_ref().and_then(|r| serde_json::to_string(r).ok()),
                    p.metrics.as_ref().and_then(|m| serde_json::to_string(m).ok()),
                    serde_json::to_string(&p.egress_denied).ok(),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Adds a warning to a job.
    pub fn add_warning(&mut self, id: &str, warning: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let current: Option<String> = tx
            .query_row("SELECT warnings FROM jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        let mut list: Vec<String> = current
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_default();
        if !list.iter().any(|w| w == warning) {
            list.push(warning.to_string());
        }
        tx.execute(
            "UPDATE jobs SET warnings = ?2 WHERE id = ?1",
            params![
                id,
                serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Moves a job to a final state, once: returns false (and changes nothing) if it already
    /// was final. Also touches the session's last activity.
    pub fn finish(
        &mut self,
        id: &str,
        state: JobState,
        error: Option<&JobError>,
        exit_code: Option<i64>,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        debug_assert!(state.is_final());
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let n = tx
            .execute(
                &format!(
                    "UPDATE jobs SET state = ?2, error_kind = ?3, error_message = ?4,
                   exit_code = COALESCE(?5, exit_code), finished_at = ?6
                 WHERE id = ?1 AND state IN {UNFINISHED}"
                ),
                params![
                    id,
                    state.as_str(),
                    error.map(|e| e.kind.as_str()),
                    error.map(|e| e.message.as_str()),
                    exit_code,
                    at_ms
                ],
            )
            .map_err(err)?;
        tx.execute(
            "UPDATE sessions SET last_activity = MAX(last_activity, ?2)
             WHERE id = (SELECT session_id FROM jobs WHERE id = ?1)",
            params![id, at_ms],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n == 1)
    }

    /// Records the exit code of a job that is already final (a cancelled job's container).
    pub fn set_exit_code(&mut self, id: &str, exit_code: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET exit_code = COALESCE(exit_code, ?2) WHERE id = ?1",
                params![id, exit_code],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Counts a webhook delivery attempt.
    pub fn add_webhook_attempt(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET webhook_attempts = webhook_attempts + 1 WHERE id = ?1",
                [id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the end of a job's webhook: delivered at `delivered_at_ms`, or (with `None`)
    /// given up. Either way the bearer token leaves the stored spec: nothing needs it again.
    pub fn end_webhook(
        &mut self,
        id: &str,
        delivered_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET
                   webhook_delivered_at = COALESCE(?2, webhook_delivered_at),
                   webhook_attempts = CASE WHEN ?2 IS NULL THEN MAX(webhook_attempts, ?3)
                                           ELSE webhook_attempts END,
                   spec = CASE WHEN json_type(spec, '$.webhook.token') IS NULL THEN spec
                               ELSE json_set(spec, '$.webhook.token', json('null')) END
                 WHERE id = ?1",
                params![id, delivered_at_ms, crate::job::WEBHOOK_MAX_ATTEMPTS],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// All sessions with their job counts and active job, most recently active first.
    pub fn sessions(&self) -> Result<Vec<SessionSummary>, StoreError> {
        self.sessions_idle_since(i64::MAX)
    }

    /// Sessions whose last activity is at or before `cutoff_ms` (an index range scan).
    pub fn sessions_idle_since(&self, cutoff_ms: i64) -> Result<Vec<SessionSummary>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                &format!("SELECT s.id, s.created_at, s.last_activity, s.workspace, s.workspace_created, s.claude_session_id,
                   (SELECT COUNT(*) FROM jobs j WHERE j.session_id = s.id),
                   (SELECT j.id FROM jobs j WHERE j.session_id = s.id AND j.state IN {UNFINISHED} LIMIT 1),
                   (SELECT j.id || ' ' || j.state FROM jobs j WHERE j.session_id = s.id
                      ORDER BY j.created_at DESC, j.rowid DESC LIMIT 1),
                   s.git
                 FROM sessions s WHERE s.last_activity <= ?1 ORDER BY s.last_activity DESC, s.id"),
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([cutoff_ms], |r| {
                Ok(SessionSummary {
                    record: session_from_row(r, 9)?,
                    job_count: r.get::<_, i64>(6)? as u64,
                    active_job_id: r.get(7)?,
                    last_job: r.get::<_, Option<String>>(8)?.and_then(|l| {
                        let (id, state) = l.split_once(' ')?;
                        Some((id.to_string(), JobState::parse(state)?))
                    }),
                    budget: None,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records what a job changed on its session's branch.
    pub fn set_changes(&self, id: &str, changes: &crate::git::Changes) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET changes = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(changes).ok()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// How many user messages a job has been given (the prompt is the first), and whether its
    /// input is closed.
    pub fn messages(&self, job: &str) -> Result<(u32, bool), StoreError> {
        self.conn
            .query_row(
                "SELECT messages, input_closed FROM jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get::<_, u32>(0)?, r.get::<_, bool>(1)?)),
            )
            .map_err(|e| self.err(e))
    }

    /// Counts one more message for a job whose input is open and which has not ended; returns
    /// its number, or None when the job takes no more.
    pub fn add_message(&self, job: &str) -> Result<Option<u32>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "UPDATE jobs SET messages = messages + 1
                     WHERE id = ?1 AND input_closed = 0 AND state IN {UNFINISHED}
                     RETURNING messages"
                ),
                [job],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Closes a job's input if it still has exactly `messages` messages (one sent meanwhile
    /// keeps it open). Returns whether it closed it.
    pub fn close_input(&self, job: &str, messages: u32) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE jobs SET input_closed = 1 WHERE id = ?1 AND messages = ?2 AND input_closed = 0",
                params![job, messages],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// A session's budget, if one was set.
    pub fn budget(&self, session: &str) -> Result<Option<crate::api::Budget>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT budget FROM budgets WHERE session_id = ?1",
                [session],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Sets a session's budget.
    pub fn set_budget(&self, session: &str, budget: &crate::api::Budget) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO budgets (session_id, budget) VALUES (?1, ?2)
                 ON CONFLICT(session_id) DO UPDATE SET budget = excluded.budget",
                params![session, serde_json::to_string(budget).unwrap_or_default()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What a session's jobs have used, a running job's time counted up to `now_ms`. Claude
    /// reports the cost of the whole conversation (a resumed conversation's cost includes the
    /// jobs before), and the turns of one run: so the cost is the highest reported per
    /// conversation, added up over the session's conversations, and the turns a plain sum.
    pub fn spent(&self, session: &str, now_ms: i64) -> Result<crate::api::Spent, StoreError> {
        self.conn
            .query_row(
                "SELECT
                    (SELECT COALESCE(SUM(c), 0) FROM (SELECT MAX(cost_usd) AS c FROM jobs
                        WHERE session_id = ?1 GROUP BY COALESCE(claude_session_id, id))),
                    COALESCE(SUM(num_turns), 0),
                    COALESCE(SUM(MAX(COALESCE(finished_at, ?2) - started_at, 0)), 0)
                 FROM jobs WHERE session_id = ?1 AND started_at IS NOT NULL",
                params![session, now_ms],
                |r| {
                    Ok(crate::api::Spent {
                        cost_usd: r.get(0)?,
                        turns: r.get::<_, i64>(1)?.max(0) as u64,
                        wall_seconds: r.get::<_, i64>(2)?.max(0) as f64 / 1000.0,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Records request `seq` of a job, with its answer when one is known at once (once: a
    /// request already there is left as it is).
    pub fn insert_request(
        &self,
        job: &str,
        seq: u32,
        ask: &crate::steer::Ask,
        at_ms: i64,
        answer: Option<&crate::steer::Answer>,
    ) -> Result<(), StoreError> {
        let ask = serde_json::to_string(ask).unwrap_or_default();
        let answer = answer.map(|a| serde_json::to_string(a).unwrap_or_default());
        self.conn
            .execute(
                "INSERT OR IGNORE INTO requests (job_id, seq, ask, asked_at, answer) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job, seq, ask, at_ms, answer],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A job's requests in order; only the unanswered ones with `open_only`.
    pub fn requests(
        &self,
        job: &str,
        open_only: bool,
    ) -> Result<Vec<crate::steer::Request>, StoreError> {
        let sql = if open_only {
            "SELECT seq, ask, asked_at, answer FROM requests WHERE job_id = ?1 AND answer IS NULL ORDER BY seq"
        } else {
            "SELECT seq, ask, asked_at, answer FROM requests WHERE job_id = ?1 ORDER BY seq"
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([job], |r| {
                let ask: String = r.get(1)?;
                let answer: Option<String> = r.get(3)?;
                Ok((r.get::<_, u32>(0)?, ask, r.get::<_, i64>(2)?, answer))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, ask, asked_at_ms, answer) = row.map_err(|e| self.err(e))?;
            // Rows are written only from parsed values; one that does not parse is skipped.
            let Ok(ask) = serde_json::from_str(&ask) else {
                continue;
            };
            out.push(crate::steer::Request {
                seq,
                ask,
                asked_at_ms,
                answer: answer.and_then(|a| serde_json::from_str(&a).ok()),
            });
        }
        Ok(out)
    }

    /// The highest request number recorded for a job (0: none).
    pub fn last_request(&self, job: &str) -> Result<u32, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM requests WHERE job_id = ?1",
                [job],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Records the answer to request `seq`, unless it has one already. Returns whether this
    /// call answered it (exactly one answer wins).
    pub fn answer_request(
        &self,
        job: &str,
        seq: u32,
        answer: &crate::steer::Answer,
    ) -> Result<bool, StoreError> {
        let answer = serde_json::to_string(answer).unwrap_or_default();
        let n = self
            .conn
            .execute(
                "UPDATE requests SET answer = ?3 WHERE job_id = ?1 AND seq = ?2 AND answer IS NULL",
                params![job, seq, answer],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Marks request `seq`'s notification as sent; returns false if it already was.
    pub fn mark_notified(&self, job: &str, seq: u32, at_ms: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE requests SET notified_at = ?3 WHERE job_id = ?1 AND seq = ?2 AND notified_at IS NULL",
                params![job, seq, at_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Deletes a session and its jobs, unless it has an active job. Returns false if it had one.
    pub fn delete_session(&mut self, id: &str) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let active: i64 = tx
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM jobs WHERE session_id = ?1 AND state IN {UNFINISHED}"
                ),
                [id],
                |r| r.get(0),
            )
            .map_err(err)?;
        if active > 0 {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM requests WHERE job_id IN (SELECT id FROM jobs WHERE session_id = ?1)",
            [id],
        )
        .map_err(err)?;
        tx.execute("DELETE FROM budgets WHERE session_id = ?1", [id])
            .map_err(err)?;
        tx.execute("DELETE FROM jobs WHERE session_id = ?1", [id])
            .map_err(err)?;
        tx.execute("DELETE FROM sessions WHERE id = ?1", [id])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }
}

/// A prepared sandbox of the warm pool (see `crate::pool`): a job id and session id waiting
/// for a prompt, with the spec its container was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolEntry {
    /// The job id the claimed job will have.
    pub job_id: String,
    /// The session id the claimed job's new session will have.
    pub session_id: String,
    /// When the entry was made (ms).
    pub created_at_ms: i64,
    /// The spec (JSON) its container was made from.
    pub spec: String,
    /// What else the sandbox depends on (login, image): see `crate::pool::fingerprint`.
    pub fingerprint: String,
    /// Not before this (ms) does its monitor start the container.
    pub start_after_ms: i64,
    /// The container, once it waits for its prompt.
    pub container_id: Option<String>,
}

fn pool_entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PoolEntry> {
    Ok(PoolEntry {
        job_id: r.get(0)?,
        session_id: r.get(1)?,
        created_at_ms: r.get(2)?,
        spec: r.get(3)?,
        fingerprint: r.get(4)?,
        start_after_ms: r.get(5)?,
        container_id: r.get(6)?,
    })
}

const POOL_COLUMNS: &str =
    "job_id, session_id, created_at, spec, fingerprint, start_after, container_id";

impl Store {
    /// Adds a prepared sandbox to the pool (its container not yet made).
    pub fn pool_add(&self, e: &PoolEntry) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO pool (job_id, session_id, created_at, spec, fingerprint, start_after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    e.job_id,
                    e.session_id,
                    e.created_at_ms,
                    e.spec,
                    e.fingerprint,
                    e.start_after_ms
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Records a pooled sandbox's container, now waiting for a prompt. False if the entry is
    /// gone (drained or discarded meanwhile).
    pub fn pool_ready(&self, job_id: &str, container_id: &str) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE pool SET container_id = ?2, ready_at = ?3 WHERE job_id = ?1",
                params![job_id, container_id, crate::job::now_ms()],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// The pool's entries, oldest first.
    pub fn pool_entries(&self) -> Result<Vec<PoolEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {POOL_COLUMNS} FROM pool ORDER BY created_at, job_id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], pool_entry_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Whether a pool entry holds session id `session`.
    pub fn pool_has_session(&self, session: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM pool WHERE session_id = ?1",
                [session],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    /// One pool entry.
    pub fn pool_entry(&self, job_id: &str) -> Result<Option<PoolEntry>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {POOL_COLUMNS} FROM pool WHERE job_id = ?1"),
                [job_id],
                pool_entry_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Takes an entry out of the pool (not claimed: drained or discarded). False if it was
    /// gone already (claimed or removed by someone else).
    pub fn pool_remove(&self, job_id: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM pool WHERE job_id = ?1", [job_id])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Claims a ready pool entry for `job` (whose id is the entry's) and its new session, in
    /// one transaction: the entry leaves the pool exactly when the job appears. False if the
    /// entry was not there, or not ready.
    pub fn claim_pool_job(
        &mut self,
        job: &JobRecord,
        new_session: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let taken = tx
            .execute(
                "DELETE FROM pool WHERE job_id = ?1 AND session_id = ?2 AND container_id IS NOT NULL",
                params![job.id, new_session.id],
            )
            .map_err(err)?;
        if taken == 0 {
            return Ok(false);
        }
        insert_rows(&tx, job, Some(new_session)).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }
}

/// Inserts a job's row, and its new session's (or updates its session's activity), in `tx`.
fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    job: &JobRecord,
    new_session: Option<&SessionRecord>,
) -> rusqlite::Result<()> {
    if let Some(s) = new_session {
        tx.execute(
                "INSERT INTO sessions (id, created_at, last_activity, workspace, workspace_created, claude_session_id, git)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    s.created_at_ms,
                    s.last_activity_ms,
                    s.workspace.to_string_lossy(),
                    s.workspace_created,
                    s.claude_session_id,
                    s.git.as_ref().and_then(|g| serde_json::to_string(g).ok())
                ],
            )
            ?;
    } else {
        tx.execute(
            "UPDATE sessions SET last_activity = ?2, claude_session_id = ?3 WHERE id = ?1",
            params![
                job.session_id,
                job.created_at_ms,
                job.spec.conversation.id()
            ],
        )?;
    }
    let spec = serde_json::to_string(&job.spec).unwrap_or_default();
    tx.execute(
            "INSERT INTO jobs (id, session_id, state, created_at, spec, warnings, has_webhook, container_id, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                job.id,
                job.session_id,
                job.state.as_str(),
                job.created_at_ms,
                spec,
                serde_json::to_string(&job.warnings).unwrap_or_else(|_| "[]".into()),
                job.spec.webhook.is_some(),
                job.container_id,
                job.started_at_ms
            ],
        )
        ?;
    Ok(())
}

/// The schema version this code writes (`PRAGMA user_version`). Stores from before versions
/// existed read 0.
const SCHEMA_VERSION: i64 = 6;

/// Brings an older store up to [`SCHEMA_VERSION`], one step at a time, each step in place and
/// idempotent (a store whose upgrade was interrupted upgrades again). A fresh store has the
/// whole schema already and only gets its version.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let columns_of = |conn: &Connection, table: &str| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        stmt.query_map([], |r| r.get(0))?.collect()
    };
    let columns = |conn: &Connection| columns_of(conn, "jobs");
    let add_to = |conn: &Connection, table: &str, name: &str, decl: &str| -> rusqlite::Result<()> {
        if !columns_of(conn, table)?.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {decl}"))?;
        }
        Ok(())
    };
    let add = |conn: &Connection, name: &str, decl: &str| add_to(conn, "jobs", name, decl);
    // 1: webhook delivery attempts and egress refusals.
    add(conn, "webhook_attempts", "INTEGER NOT NULL DEFAULT 0")?;
    add(conn, "egress_denied", "TEXT")?;
    // 2: whether a job has a webhook, a column instead of a text search of its spec.
    let had = columns(conn)?.iter().any(|c| c == "has_webhook");
    add(conn, "has_webhook", "INTEGER NOT NULL DEFAULT 0")?;
    if !had {
        conn.execute_batch(
            "UPDATE jobs SET has_webhook = 1
             WHERE json_type(spec, '$.webhook') = 'object'",
        )?;
    }
    // 3: a session's git branch, a job's recorded changes.
    add_to(conn, "sessions", "git", "TEXT")?;
    add(conn, "changes", "TEXT")?;
    // 4: the `requests` (steering) and `budgets` tables, made by the schema itself.
    // 5: messages into a running job.
    add(conn, "messages", "INTEGER NOT NULL DEFAULT 1")?;
    add(conn, "input_closed", "INTEGER NOT NULL DEFAULT 0")?;
    // 6: the warm pool's table, made by the schema itself.
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

fn session_from_row(r: &Row<'_>, git_column: usize) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.get(0)?,
        created_at_ms: r.get(1)?,
        last_activity_ms: r.get(2)?,
        workspace: PathBuf::from(r.get::<_, String>(3)?),
        workspace_created: r.get(4)?,
        claude_session_id: r.get(5)?,
        git: r
            .get::<_, Option<String>>(git_column)?
            .and_then(|g| serde_json::from_str(&g).ok()),
    })
}

const JOB_COLUMNS: &str = "id, session_id, state, error_kind, error_message, exit_code, created_at, started_at,
    finished_at, container_id, spec, output_size, log_offset, first_output_at, last_output_at, claude_session_id,
    num_turns, cost_usd, result, retry, metrics, warnings, webhook_delivered_at, webhook_attempts, egress_denied, changes";

struct RawJob {
    id: String,
    session_id: String,
    state: String,
    error_kind: Option<String>,
    error_message: Option<String>,
    exit_code: Option<i64>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    container_id: Option<String>,
    spec: String,
    output_size: i64,
    log_offset: i64,
    first_output_at: Option<i64>,
    last_output_at: Option<i64>,
    claude_session_id: Option<String>,
    num_turns: Option<i64>,
    cost_usd: Option<f64>,
    result: Option<String>,
    retry: Option<String>,
    metrics: Option<String>,
    warnings: String,
    webhook_delivered_at: Option<i64>,
    webhook_attempts: i64,
    egress_denied: Option<String>,
    changes: Option<String>,
}

impl RawJob {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawJob> {
        Ok(RawJob {
            id: r.get(0)?,
            session_id: r.get(1)?,
            state: r.get(2)?,
            error_kind: r.get(3)?,
            error_message: r.get(4)?,
            exit_code: r.get(5)?,
            created_at: r.get(6)?,
            started_at: r.get(7)?,
            finished_at: r.get(8)?,
            container_id: r.get(9)?,
            spec: r.get(10)?,
            output_size: r.get(11)?,
            log_offset: r.get(12)?,
            first_output_at: r.get(13)?,
            last_output_at: r.get(14)?,
            claude_session_id: r.get(15)?,
            num_turns: r.get(16)?,
            cost_usd: r.get(17)?,
            result: r.get(18)?,
            retry: r.get(19)?,
            metrics: r.get(20)?,
            warnings: r.get(21)?,
            webhook_delivered_at: r.get(22)?,
            webhook_attempts: r.get(23)?,
            egress_denied: r.get(24)?,
            changes: r.get(25)?,
        })
    }

    fn into_record(self, path: &Path) -> Result<JobRecord, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!("job {}", self.id),
            message,
        };
        let state =
            JobState::parse(&self.state).ok_or_else(|| corrupt(format!("state {}", self.state)))?;
        let spec: JobSpec =
            serde_json::from_str(&self.spec).map_err(|e| corrupt(format!("spec: {e}")))?;
        let error = match self.error_kind {
            Some(k) => Some(JobError {
                kind: ErrorKind::parse(&k).ok_or_else(|| corrupt(format!("error kind {k}")))?,
                message: self.error_message.clone().unwrap_or_default(),
            }),
            None => None,
        };
        Ok(JobRecord {
            id: self.id,
            session_id: self.session_id,
            state,
            error,
            exit_code: self.exit_code,
            created_at_ms: self.created_at,
            started_at_ms: self.started_at,
            finished_at_ms: self.finished_at,
            container_id: self.container_id,
            spec,
            output_size: self.output_size.max(0) as u64,
            log_offset: self.log_offset.max(0) as u64,
            first_output_at_ms: self.first_output_at,
            last_output_at_ms: self.last_output_at,
            claude_session_id: self.claude_session_id,
            num_turns: self.num_turns.map(|n| n.max(0) as u64),
            cost_usd: self.cost_usd,
            result: self.result,
            retry: self.retry.and_then(|r| serde_json::from_str(&r).ok()),
            metrics: self.metrics.and_then(|m| serde_json::from_str(&m).ok()),
            warnings: serde_json::from_str(&self.warnings).unwrap_or_default(),
            webhook_delivered_at_ms: self.webhook_delivered_at,
            webhook_attempts: self.webhook_attempts.clamp(0, u32::MAX as i64) as u32,
            egress_denied: self
                .egress_denied
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_default(),
            changes: self.changes.and_then(|c| serde_json::from_str(&c).ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_is_exactly_the_states_that_are_not_final() {
        let all = [
            JobState::Pending,
            JobState::Running,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
        ];
        let list: Vec<String> = all
            .iter()
            .filter(|s| !s.is_final())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(UNFINISHED, format!("({})", list.join(", ")));
    }

    #[test]
    fn the_webhook_token_leaves_the_record_once_the_webhook_is_done() {
        use crate::job::{JobRecord, JobState};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("creel.db")).unwrap();
        let mut spec = crate::runtime::argv::tests::spec();
        spec.webhook = Some(crate::webhook::WebhookSpec {
            url: "http://127.0.0.1:9/hooks/agent".into(),
            token: Some("sekrit-hook-token".into()),
        });
        let session = crate::session::SessionRecord {
            id: "s1".into(),
            created_at_ms: 1,
            last_activity_ms: 1,
            workspace: "/ws".into(),
            workspace_created: true,
            claude_session_id: "u-1".into(),
            git: None,
        };
        for (id, delivered) in [("0123456789ab", Some(5)), ("ba9876543210", None)] {
            let record = JobRecord::pending(id.into(), "s1".into(), spec.clone(), 1, vec![]);
            let new_session = (id == "0123456789ab").then_some(&session);
            store.insert_job(&record, new_session).unwrap().unwrap();
            store
                .finish(id, JobState::Completed, None, Some(0), 2)
                .unwrap();
            assert!(store.job(id).unwrap().unwrap().webhook_pending());
            store.end_webhook(id, delivered).unwrap();
            let after = store.job(id).unwrap().unwrap();
            let hook = after.spec.webhook.as_ref().unwrap();
            assert_eq!(hook.token, None, "{id}");
            assert_eq!(hook.url, "http://127.0.0.1:9/hooks/agent");
            assert_eq!(after.webhook_delivered_at_ms, delivered);
            assert!(
                !after.webhook_pending(),
                "{id}: done, delivered or given up"
            );
        }
        assert!(store.unfinished_jobs().unwrap().is_empty());
    }

    #[test]
    fn older_stores_open_and_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creel.db");
        {
            let conn = Connection::open(&path).unwrap();
            // The first schema, without the later columns and without a version.
            let old = schema().replace(
                ",\n    webhook_attempts INTEGER NOT NULL DEFAULT 0,\n    egress_denied TEXT,\n    has_webhook INTEGER NOT NULL DEFAULT 0",
                "",
            );
            assert!(
                !old.contains("webhook_attempts") && !old.contains("has_webhook"),
                "test must start from the old schema"
            );
            conn.execute_batch(&old).unwrap();
            // A finished job that still owes its webhook, and one without a webhook.
            let mut spec = crate::runtime::argv::tests::spec();
            let plain = serde_json::to_string(&spec).unwrap();
            spec.webhook = Some(crate::webhook::WebhookSpec {
                url: "http://127.0.0.1:9/hooks/agent".into(),
                token: None,
            });
            let hooked = serde_json::to_string(&spec).unwrap();
            for (id, spec) in [("0123456789ab", hooked), ("ba9876543210", plain)] {
                conn.execute(
                    "INSERT INTO jobs (id, session_id, state, created_at, spec) VALUES (?1, 's', 'completed', 1, ?2)",
                    params![id, spec],
                )
                .unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.unfinished_jobs().unwrap(), vec!["0123456789ab"]);
        let job = store.job("0123456789ab").unwrap().unwrap();
        assert!(job.webhook_pending() && job.egress_denied.total == 0);
        // Opening again changes nothing.
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.unfinished_jobs().unwrap(), vec!["0123456789ab"]);
        // A fresh store starts at the current version.
        let fresh = Store::open(&dir.path().join("fresh.db")).unwrap();
        let v: i64 = fresh
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_pool_entry_is_claimed_once_only_when_ready_and_never_after_it_was_removed() {
        use crate::job::{JobRecord, JobState};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("creel.db")).unwrap();
        let spec = crate::runtime::argv::tests::spec();
        let entry = |id: &str| PoolEntry {
            job_id: id.into(),
            session_id: format!("s-{id}"),
            created_at_ms: 1,
            spec: serde_json::to_string(&spec).unwrap(),
            fingerprint: "f".into(),
            start_after_ms: 0,
            container_id: None,
        };
        let claim = |store: &mut Store, id: &str| {
            let mut job = JobRecord::pending(id.into(), format!("s-{id}"), spec.clone(), 5, vec![]);
            job.state = JobState::Running;
            job.container_id = Some("c".into());
            job.started_at_ms = Some(5);
            let session = crate::session::SessionRecord {
                id: format!("s-{id}"),
                created_at_ms: 5,
                last_activity_ms: 5,
                workspace: "/w".into(),
                workspace_created: true,
                claude_session_id: "conv".into(),
                git: None,
            };
            store.claim_pool_job(&job, &session).unwrap()
        };
        store.pool_add(&entry("aaaaaaaaaaaa")).unwrap();
        store.pool_add(&entry("bbbbbbbbbbbb")).unwrap();
        assert!(
            !claim(&mut store, "aaaaaaaaaaaa"),
            "not ready: no container yet"
        );
        assert!(store.pool_ready("aaaaaaaaaaaa", "c").unwrap());
        assert!(claim(&mut store, "aaaaaaaaaaaa"));
        assert!(!claim(&mut store, "aaaaaaaaaaaa"), "used at most once");
        let job = store.job("aaaaaaaaaaaa").unwrap().unwrap();
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.container_id.as_deref(), Some("c"));
        assert_eq!(job.started_at_ms, Some(5));
        assert!(store.session("s-aaaaaaaaaaaa").unwrap().is_some());
        assert_eq!(store.pool_entry("aaaaaaaaaaaa").unwrap(), None);
        // A drained entry cannot be claimed, nor made ready.
        assert!(store.pool_ready("bbbbbbbbbbbb", "c").unwrap());
        assert!(store.pool_remove("bbbbbbbbbbbb").unwrap());
        assert!(!store.pool_remove("bbbbbbbbbbbb").unwrap());
        assert!(!store.pool_ready("bbbbbbbbbbbb", "c").unwrap());
        assert!(!claim(&mut store, "bbbbbbbbbbbb"));
        assert!(store.job("bbbbbbbbbbbb").unwrap().is_none());
        assert!(store.pool_entries().unwrap().is_empty());
    }
}
