//! Sessions: a named, persistent workspace plus Claude's conversation state.

use std::path::PathBuf;

use crate::error::Error;

/// What the store keeps about a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Session id.
    pub id: String,
    /// Created at (unix ms).
    pub created_at_ms: i64,
    /// Last job started or finished at.
    pub last_activity_ms: i64,
    /// Host path of the workspace.
    pub workspace: PathBuf,
    /// Whether creel created the workspace (only then may cleanup delete it).
    pub workspace_created: bool,
    /// The Claude conversation id creel chose for this session.
    pub claude_session_id: String,
    /// Its git branch, for a session started with `--repo`.
    pub git: Option<crate::git::SessionGit>,
}

/// A session as listed: the record plus job facts.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    /// The record.
    pub record: SessionRecord,
    /// Jobs run in it.
    pub job_count: u64,
    /// The job that has not finished, if any.
    pub active_job_id: Option<String>,
    /// The newest job, finished or not, and its state.
    pub last_job: Option<(String, crate::job::JobState)>,
    /// Its budget, with what is spent, when it has one.
    pub budget: Option<crate::api::BudgetStatus>,
}

/// Checks a user-given session id against `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
pub fn validate_session_id(id: &str) -> Result<(), Error> {
    let err = |reason| {
        Err(Error::InvalidSessionId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return err("it is empty");
    }
    if id.len() > 128 {
        return err("it is longer than 128 characters");
    }
    let first = id.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return err("it must start with a letter or digit");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return err("only letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

/// A new session id: `s-` and 10 hex digits.
pub fn new_session_id() -> String {
    format!("s-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        for ok in ["a", "my-session", "S.1_x", &"a".repeat(128)] {
            assert!(validate_session_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            ".hidden",
            "-x",
            "a/b",
            "a\0b",
            "a b",
            &"a".repeat(129),
            "é",
        ] {
            assert!(validate_session_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_session_id(&new_session_id()).is_ok());
    }
}
