//! Reading a session's work (`diff`, `log`) and landing it in the user's repository
//! (`apply`, `merge`, `branch`). Reading runs only over creel's session repository; landing
//! changes the user's repository, and only in the way asked, or not at all.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use super::session::SessionGit;
use super::{Git, GitError, is_ancestor, numstat, object_id, rev_parse, run, run_status};
use crate::engine::Engine;
use crate::error::{Error, Result};

pub use super::session::Changes;

/// What `diff` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffRequest {
    /// The session.
    pub session_id: String,
    /// Only this job's changes (default: the whole session, from its start).
    pub job_id: Option<String>,
    /// A summary (`--stat`) instead of the patch.
    pub stat: bool,
}

/// A diff of a session's branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The patch, or the summary.
    pub text: String,
    /// Whether `text` was cut at the limit.
    pub truncated: bool,
    /// What changed, counted.
    pub changes: Changes,
}

/// One commit of a session's branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Its id.
    pub commit: String,
    /// Its subject line.
    pub subject: String,
    /// The job that made it (its `Creel-Job` trailer); `None` for commits Claude made itself
    /// or the carried-over uncommitted changes.
    pub job_id: Option<String>,
    /// Author name.
    pub author: String,
    /// Author time, unix seconds.
    pub time: i64,
    /// Files changed.
    pub files: u64,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
}

/// How to land a session's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandHow {
    /// The session's changes as uncommitted edits in the user's work tree.
    Apply,
    /// Merge (or fast-forward) the session branch into a branch of the user's.
    Merge,
    /// Fetch the session branch into the user's repository as `creel/<session>`.
    Branch,
}

impl LandHow {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            LandHow::Apply => "apply",
            LandHow::Merge => "merge",
            LandHow::Branch => "branch",
        }
    }
}

/// A request to land a session's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandRequest {
    /// The session.
    pub session_id: String,
    /// How.
    pub how: LandHow,
    /// For `merge`: the branch to merge into (default: the one checked out).
    pub into: Option<String>,
}

/// What landing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandReport {
    /// How.
    pub how: LandHow,
    /// The user's repository.
    pub repo: PathBuf,
    /// The branch written (merge: the target; branch: `creel/<session>`).
    pub branch: Option<String>,
    /// The commit the branch now points at.
    pub commit: Option<String>,
    /// Whether a merge was a fast-forward.
    pub fast_forward: bool,
    /// The files the session changed.
    pub files: Vec<String>,
    /// Whether there was nothing to land (no changes, or already merged).
    pub nothing_to_do: bool,
}

impl Engine {
    /// The session's git branch.
    fn session_git(&self, session: &str) -> Result<SessionGit> {
        crate::session::validate_session_id(session)?;
        let s = self
            .store()
            .session(session)?
            .ok_or_else(|| Error::UnknownSession(session.to_string()))?;
        s.git
            .ok_or_else(|| GitError::NoBranch(session.to_string()).into())
    }

    /// The changes of a session (from its start to its branch's tip) or of one of its jobs.
    pub fn diff(&self, req: &DiffRequest) -> Result<Diff> {
        let sg = self.session_git(&req.session_id)?;
        let git = Git::find()?;
        let (from, to) = match &req.job_id {
            Some(job) => {
                let rec = self.load_job(job)?;
                let none = || GitError::NoJobCommit {
                    session: req.session_id.clone(),
                    job: job.clone(),
                };
                if rec.session_id != req.session_id {
                    return Err(none().into());
                }
                let ch = rec.changes.ok_or_else(none)?;
                let to = ch.commit.clone().unwrap_or_else(|| ch.parent.clone());
                (ch.parent, to)
            }
            None => (sg.base.clone(), sg.tip(&git)?),
        };
        let changes = super::session::changes(&git, &sg, &from, &to)?;
        let mut c = git.trusted(&sg.session_repo, None);
        c.args(["diff", "--no-ext-diff", "--no-textconv"]);
        if req.stat {
            c.arg("--stat");
        }
        c.args([&from, &to]);
        let out = run(c)?;
        Ok(Diff {
            text: out.stdout,
            truncated: out.truncated,
            changes,
        })
    }

    /// The session branch's commits since the session started, newest first.
    pub fn log(&self, session: &str) -> Result<Vec<CommitInfo>> {
        let sg = self.session_git(session)?;
        let git = Git::find()?;
        let tip = sg.tip(&git)?;
        let mut c = git.trusted(&sg.session_repo, None);
        c.args([
            "log",
            "--no-ext-diff",
            "--no-textconv",
            "--numstat",
            "--format=%x1e%H%x1f%an%x1f%at%x1f%s%x1f%(trailers:key=Creel-Job,valueonly,separator=%x20)",
            &format!("{}..{tip}", sg.base),
        ]);
        let out = run(c)?;
        Ok(parse_log(&out.stdout))
    }

    /// Lands a session's work in the user's repository, or explains why it cannot (then the
    /// repository is left as it was).
    pub fn land(&self, req: &LandRequest) -> Result<LandReport> {
        let sg = self.session_git(&req.session_id)?;
        if !sg.repo.is_dir() {
            return Err(GitError::NotARepository {
                path: sg.repo.clone(),
            }
            .into());
        }
        let git = Git::find()?;
        let tip = sg.tip(&git)?;
        let files = changed_files(&git, &sg, &sg.base, &tip)?;
        let mut report = LandReport {
            how: req.how,
            repo: sg.repo.clone(),
            branch: None,
            commit: None,
            fast_forward: false,
            files,
            nothing_to_do: false,
        };
        match req.how {
            LandHow::Apply => apply(&git, &sg, &tip, &mut report)?,
            LandHow::Merge => merge(&git, &sg, &tip, req, &mut report)?,
            LandHow::Branch => branch(&git, &sg, &tip, &mut report)?,
        }
        Ok(report)
    }
}

fn parse_log(text: &str) -> Vec<CommitInfo> {
    let mut commits = Vec::new();
    for record in text.split('\u{1e}').skip(1) {
        let mut lines = record.lines();
        let header = lines.next().unwrap_or("");
        let f: Vec<&str> = header.split('\u{1f}').collect();
        if f.len() < 5 {
            continue;
        }
        let mut c = CommitInfo {
            commit: f[0].to_string(),
            author: f[1].to_string(),
            time: f[2].parse().unwrap_or(0),
            subject: f[3].to_string(),
            job_id: Some(f[4].trim().to_string()).filter(|j| !j.is_empty()),
            files: 0,
            insertions: 0,
            deletions: 0,
        };
        for (added, removed) in lines.filter_map(numstat) {
            c.files += 1;
            c.insertions += added;
            c.deletions += removed;
        }
        commits.push(c);
    }
    commits
}

/// Files whose content decides what the user's git runs or contacts when it writes the work
/// tree: a session that changed one is landed only by `branch`, for a person to review.
/// (`.gitattributes` chooses filters and drivers from the user's configuration, `.lfsconfig`
/// where git-lfs fetches from.) Attributes the user's repository already has are the user's.
fn check_landable(files: &[String]) -> Result<()> {
    let risky: Vec<String> = files
        .iter()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            name == ".gitattributes" || name == ".lfsconfig"
        })
        .cloned()
        .collect();
    if risky.is_empty() {
        Ok(())
    } else {
        Err(GitError::NeedsReview { files: risky }.into())
    }
}

/// The path in one of `git apply`'s error lines: `error: patch failed: PATH:LINE` or
/// `error: PATH: REASON`.
fn apply_error_path(line: &str) -> Option<String> {
    let rest = line.strip_prefix("error: ")?;
    let path = match rest.strip_prefix("patch failed: ") {
        Some(p) => p.rsplit_once(':')?.0,
        None => rest.rsplit_once(": ")?.0,
    };
    Some(path.to_string()).filter(|p| !p.is_empty())
}

pub(super) fn changed_files(
    git: &Git,
    sg: &SessionGit,
    from: &str,
    to: &str,
) -> Result<Vec<String>> {
    let mut c = git.trusted(&sg.session_repo, None);
    c.args([
        "diff",
        "--no-ext-diff",
        "--no-textconv",
        "--no-renames",
        "--name-only",
        "-z",
        from,
        to,
    ]);
    Ok(run(c)?
        .stdout
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect())
}

/// `git apply` of the session's patch in the user's work tree: all of it, or none of it.
pub(super) fn apply(git: &Git, sg: &SessionGit, tip: &str, report: &mut LandReport) -> Result<()> {
    if tip == sg.base {
        report.nothing_to_do = true;
        return Ok(());
    }
    check_landable(&report.files)?;
    let mut c = git.trusted(&sg.session_repo, None);
    c.args([
        "diff",
        "--no-ext-diff",
        "--no-textconv",
        "--binary",
        "--full-index",
        &sg.base,
        tip,
    ]);
    let patch = run(c)?;
    if patch.truncated {
        return Err(Error::InvalidRequest(format!(
            "the session's changes are larger than {} MiB as a patch; land them with merge or branch instead",
            super::MAX_OUTPUT >> 20
        )));
    }
    let with_patch = |check: bool| -> Result<(i32, String)> {
        let mut c = git.user(&sg.repo);
        c.arg("apply");
        if check {
            c.arg("--check");
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(GitError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A failed write means git stopped reading: its status says why.
            let _ = stdin.write_all(patch.stdout.as_bytes());
        }
        let out = child.wait_with_output().map_err(GitError::Spawn)?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (code, stderr) = with_patch(true)?;
    if code != 0 {
        let mut files: Vec<String> = stderr.lines().filter_map(apply_error_path).collect();
        files.dedup();
        if files.is_empty() {
            return Err(GitError::Failed {
                command: "apply --check".into(),
                status: format!("exit status: {code}"),
                stderr: stderr.trim().to_string(),
            }
            .into());
        }
        return Err(GitError::Conflict {
            action: "apply",
            files,
        }
        .into());
    }
    let (code, stderr) = with_patch(false)?;
    if code != 0 {
        return Err(GitError::Failed {
            command: "apply".into(),
            status: format!("exit status: {code}"),
            stderr: stderr.trim().to_string(),
        }
        .into());
    }
    Ok(())
}

/// Fetches `refspec` from the session repository into the user's repository: only objects
/// and what the refspec names, no tags, no FETCH_HEAD, never a submodule.
fn fetch_from_session(git: &Git, sg: &SessionGit, refspec: &str) -> Result<()> {
    let mut c = git.user(&sg.repo);
    c.args([
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
    ])
    .arg(&sg.session_repo)
    .arg(refspec);
    run(c)?;
    Ok(())
}

/// Fetches the session branch's objects into the user's repository (no ref is written).
fn fetch_objects(git: &Git, sg: &SessionGit) -> Result<()> {
    fetch_from_session(git, sg, &sg.full_branch())
}

pub(super) fn merge(
    git: &Git,
    sg: &SessionGit,
    tip: &str,
    req: &LandRequest,
    report: &mut LandReport,
) -> Result<()> {
    check_landable(&report.files)?;
    let branch = match &req.into {
        Some(b) => b.clone(),
        None => {
            let mut c = git.user(&sg.repo);
            c.args(["symbolic-ref", "--quiet", "--short", "HEAD"]);
            let out = run(c).map_err(|_| GitError::DetachedHead {
                repo: sg.repo.clone(),
            })?;
            out.stdout.trim().to_string()
        }
    };
    let full = format!("refs/heads/{branch}");
    let mut c = git.user(&sg.repo);
    c.args(["check-ref-format", &full]);
    let unknown = || GitError::UnknownRef {
        repo: sg.repo.clone(),
        reference: branch.clone(),
    };
    run(c).map_err(|_| unknown())?;
    let current =
        rev_parse(git.user(&sg.repo), &format!("{full}^{{commit}}")).map_err(|_| unknown())?;
    report.branch = Some(branch.clone());
    fetch_objects(git, sg)?;
    let ancestor = |a: &str, b: &str| is_ancestor(git.user(&sg.repo), a, b);
    if ancestor(tip, &current)? {
        report.nothing_to_do = true;
        report.commit = Some(current);
        return Ok(());
    }
    let new = if ancestor(&current, tip)? {
        report.fast_forward = true;
        tip.to_string()
    } else {
        let mut c = git.user(&sg.repo);
        c.args([
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            &current,
            tip,
        ]);
        let (code, out) = run_status(c, &[0, 1])?;
        let mut lines = out.stdout.lines();
        let tree = lines.next().unwrap_or("").trim().to_string();
        if code == 1 {
            let mut files: Vec<String> = lines
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            files.dedup();
            return Err(GitError::Conflict {
                action: "merge",
                files,
            }
            .into());
        }
        let mut c = git.user(&sg.repo);
        c.args([
            "commit-tree",
            &tree,
            "-p",
            &current,
            "-p",
            tip,
            "-m",
            &format!("Merge {} (creel session)", sg.branch),
        ]);
        object_id(&run(c)?, "commit-tree")?
    };
    match checked_out_in(git, sg, &full)? {
        Some(worktree) => {
            let mut c = git.user(&worktree);
            c.args(["merge", "--ff-only", "--quiet", &new]);
            if let Err(e) = run(c) {
                let stderr = match &e {
                    GitError::Failed { stderr, .. } => stderr.clone(),
                    _ => String::new(),
                };
                let files: Vec<String> = stderr
                    .lines()
                    .filter(|l| l.starts_with('\t'))
                    .map(|l| l.trim().to_string())
                    .collect();
                if files.is_empty() {
                    return Err(e.into());
                }
                return Err(GitError::Dirty {
                    repo: worktree,
                    branch,
                    files,
                }
                .into());
            }
        }
        None => {
            let mut c = git.user(&sg.repo);
            c.args([
                "update-ref",
                "-m",
                &format!("creel merge {}", sg.branch),
                &full,
                &new,
                &current,
            ]);
            run(c)?;
        }
    }
    report.commit = Some(new);
    Ok(())
}

/// The work tree that has `full_ref` checked out, if any.
fn checked_out_in(git: &Git, sg: &SessionGit, full_ref: &str) -> Result<Option<PathBuf>> {
    let mut c = git.user(&sg.repo);
    c.args(["worktree", "list", "--porcelain", "-z"]);
    let out = run(c)?;
    let mut path = None;
    for field in out.stdout.split('\0') {
        if let Some(p) = field.strip_prefix("worktree ") {
            path = Some(PathBuf::from(p));
        } else if field.strip_prefix("branch ") == Some(full_ref) {
            return Ok(path);
        }
    }
    Ok(None)
}

pub(super) fn branch(git: &Git, sg: &SessionGit, tip: &str, report: &mut LandReport) -> Result<()> {
    let full = sg.full_branch();
    report.branch = Some(sg.branch.clone());
    if let Ok(existing) = rev_parse(git.user(&sg.repo), &format!("{full}^{{commit}}")) {
        if existing == tip {
            report.nothing_to_do = true;
            report.commit = Some(existing);
            return Ok(());
        }
        fetch_objects(git, sg)?;
        if !is_ancestor(git.user(&sg.repo), &existing, tip)? {
            return Err(GitError::BranchDiverged {
                repo: sg.repo.clone(),
                branch: sg.branch.clone(),
            }
            .into());
        }
    }
    fetch_from_session(git, sg, &format!("{full}:{full}"))?;
    report.commit = Some(tip.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_errors_name_their_paths_spaces_and_all() {
        assert_eq!(
            apply_error_path("error: patch failed: my dir/a b.txt:3").as_deref(),
            Some("my dir/a b.txt")
        );
        assert_eq!(
            apply_error_path("error: new.txt: already exists in working directory").as_deref(),
            Some("new.txt")
        );
        assert_eq!(apply_error_path("Checking patch x..."), None);
    }

    #[test]
    fn log_records_parse_with_their_stats_and_trailers() {
        let text = "\u{1e}aaaa\u{1f}Claude\u{1f}1700000000\u{1f}fix it\u{1f}0123456789ab\n\n3\t1\tsrc/a.rs\n-\t-\tlogo.png\n\u{1e}bbbb\u{1f}Claude\u{1f}1700000001\u{1f}mine\u{1f}\n";
        let log = parse_log(text);
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].job_id.as_deref(), Some("0123456789ab"));
        assert_eq!(
            (log[0].files, log[0].insertions, log[0].deletions),
            (2, 3, 1)
        );
        assert_eq!(log[1].job_id, None);
        assert_eq!(log[1].files, 0);
    }
}
