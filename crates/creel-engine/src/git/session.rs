//! A session's branch: made when the session starts, handed to each job as a fresh `.git`,
//! and advanced by one commit after each job.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Git, GitError, is_ancestor, numstat, object_id, rev_parse, run, run_status};

/// Where the session repository's objects are mounted (read-only) in a job's container. The
/// agent's `.git/objects/info/alternates` names this path.
pub const CONTAINER_OBJECTS: &str = "/creel/git/objects";

/// The commit author of what a job changed.
const AUTHOR_NAME: &str = "Claude";
const AUTHOR_EMAIL: &str = "noreply@anthropic.com";

/// The most the quarantine copy of the agent's `.git` may hold.
const QUARANTINE_MAX_FILES: usize = 200_000;
const QUARANTINE_MAX_BYTES: u64 = 4 << 30;

/// What creel keeps about a session's branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGit {
    /// The user's repository: its top-level work tree.
    pub repo: PathBuf,
    /// Its object store (in the common git dir), borrowed read-only.
    pub objects: PathBuf,
    /// creel's session repository (`$CREEL_HOME/git/<session>/repo.git`).
    pub session_repo: PathBuf,
    /// The branch in it: `creel/<session>`.
    pub branch: String,
    /// The commit the session started from (with `--include-uncommitted`, a commit of the
    /// user's uncommitted changes on top of the ref).
    pub base: String,
}

impl SessionGit {
    /// The full ref name of the session branch.
    pub fn full_branch(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    /// The directory holding the session repository and its index.
    fn dir(&self) -> &Path {
        self.session_repo.parent().unwrap_or(&self.session_repo)
    }

    fn index(&self) -> PathBuf {
        self.dir().join("index")
    }

    /// The session branch's commit.
    pub(crate) fn tip(&self, git: &Git) -> Result<String, GitError> {
        rev_parse(
            git.trusted(&self.session_repo, None),
            &format!("{}^{{commit}}", self.full_branch()),
        )
    }
}

/// The user's repository as found at `start`.
#[derive(Debug, Clone)]
pub(crate) struct UserRepo {
    pub(crate) toplevel: PathBuf,
    pub(crate) objects: PathBuf,
    pub(crate) commit: String,
    pub(crate) warnings: Vec<String>,
}

/// Checks the user's repository and resolves `reference` (default `HEAD`), reading only.
pub(crate) fn inspect(
    git: &Git,
    path: &Path,
    reference: Option<&str>,
) -> Result<UserRepo, GitError> {
    let not_repo = || GitError::NotARepository {
        path: path.to_path_buf(),
    };
    if !path.is_dir() {
        return Err(not_repo());
    }
    let mut c = git.user(path);
    c.args(["rev-parse", "--is-bare-repository"]);
    let bare = run(c).map_err(|_| not_repo())?;
    if bare.stdout.trim() == "true" {
        return Err(GitError::Bare {
            path: path.to_path_buf(),
        });
    }
    let mut c = git.user(path);
    c.args([
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--git-common-dir",
    ]);
    let out = run(c).map_err(|_| not_repo())?;
    let mut lines = out.stdout.lines();
    let (Some(top), Some(common)) = (lines.next(), lines.next()) else {
        return Err(not_repo());
    };
    let toplevel = PathBuf::from(top);
    let objects = PathBuf::from(common).join("objects");
    check_mountable(&objects)?;
    let reference = reference.unwrap_or("HEAD").to_string();
    let unknown = || GitError::UnknownRef {
        repo: toplevel.clone(),
        reference: reference.clone(),
    };
    if reference.is_empty() || reference.contains('\0') {
        return Err(unknown());
    }
    let commit = rev_parse(git.user(&toplevel), &format!("{reference}^{{commit}}"))
        .map_err(|_| unknown())?;
    let mut warnings = Vec::new();
    let mut c = git.user(&toplevel);
    c.args(["ls-tree", "--name-only", &commit, "--", ".gitmodules"]);
    if run(c).is_ok_and(|o| !o.stdout.trim().is_empty()) {
        warnings.push(
            "the repository has submodules: the session's checkout does not include them (their directories are empty), and changes inside them are not recorded".into(),
        );
    }
    let mut c = git.user(&toplevel);
    c.args(["show", &format!("{commit}:.gitattributes")]);
    if run(c).is_ok_and(|o| o.stdout.contains("filter=lfs")) {
        warnings.push(
            "the repository uses Git LFS: the session's checkout holds LFS pointer files, not their content".into(),
        );
    }
    Ok(UserRepo {
        toplevel,
        objects,
        commit,
        warnings,
    })
}

/// A path that goes into a container mount must not carry the runtimes' separators.
fn check_mountable(path: &Path) -> Result<(), GitError> {
    let s = path.as_os_str().as_encoded_bytes();
    if s.iter().any(|b| matches!(b, b',' | b':' | b'\n')) {
        return Err(GitError::UnusablePath {
            path: path.to_path_buf(),
            reason: "a repository whose path holds `,`, `:` or a newline cannot be mounted into a container; move or symlink it",
        });
    }
    Ok(())
}

/// Makes the session repository in `dir` (`$CREEL_HOME/git/<session>`) and checks the branch
/// out into `workspace`, which must be empty or missing. `owner` gets the checkout (rootful
/// runtimes, where the agent's uid differs from creel's).
pub(crate) fn create(
    git: &Git,
    dir: &Path,
    user: &UserRepo,
    session: &str,
    workspace: &Path,
    include_uncommitted: bool,
    owner: Option<(u32, u32)>,
) -> Result<SessionGit, GitError> {
    let io = |e: std::io::Error| GitError::Io(e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let session_repo = dir.join("repo.git");
    let mut c = git.trusted(&session_repo, None);
    c.args(["init", "--quiet", "--bare", "--shared=0644"]);
    run(c)?;
    std::fs::write(
        session_repo.join("objects/info/alternates"),
        format!("{}\n", user.objects.display()),
    )
    .map_err(io)?;
    let mut sg = SessionGit {
        repo: user.toplevel.clone(),
        objects: user.objects.clone(),
        session_repo,
        branch: format!("creel/{session}"),
        base: user.commit.clone(),
    };
    if include_uncommitted {
        sg.base = carry_uncommitted(git, &sg, user)?;
    }
    let mut c = git.trusted(&sg.session_repo, None);
    c.args(["update-ref", &sg.full_branch(), &sg.base]);
    run(c)?;
    let mut c = git.trusted(&sg.session_repo, None);
    c.args(["symbolic-ref", "HEAD", &sg.full_branch()]);
    run(c)?;
    std::fs::create_dir_all(workspace).map_err(io)?;
    let mut c = git.trusted(&sg.session_repo, Some(workspace));
    c.env("GIT_INDEX_FILE", sg.index())
        .args(["read-tree", "--reset", "-u", &sg.base]);
    run(c)?;
    if let Some(to) = owner {
        chown_tree(workspace, to).map_err(io)?;
    }
    Ok(sg)
}

/// A commit of the user's uncommitted changes (tracked and untracked, ignoring what their
/// `.gitignore` ignores) on top of the start commit, written to the session repository only.
fn carry_uncommitted(git: &Git, sg: &SessionGit, user: &UserRepo) -> Result<String, GitError> {
    let index = sg.dir().join("carry-index");
    // What the user's git ignores besides `.gitignore` files: the repository's
    // `info/exclude` and the user's global excludes file, gathered into one file of creel's.
    let mut ignored = Vec::new();
    let mut global = git.user(&user.toplevel);
    global.args(["config", "--path", "--get", "core.excludesFile"]);
    let global = run(global)
        .ok()
        .map(|o| PathBuf::from(o.stdout.trim()))
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .filter(|x| !x.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .map(|c| c.join("git/ignore"))
        });
    let info = user
        .objects
        .parent()
        .map(|common| common.join("info/exclude"));
    for file in [info, global].into_iter().flatten() {
        if let Ok(f) = crate::files::open_nofollow(&file, false) {
            let _ = f.take(1 << 20).read_to_end(&mut ignored);
            ignored.push(b'\n');
        }
    }
    let excludes = sg.dir().join("carry-excludes");
    std::fs::write(&excludes, &ignored).map_err(GitError::Io)?;
    let cmd = |args: &[&str]| over_work_tree(git, sg, &user.toplevel, &index, &excludes, args);
    run(cmd(&["read-tree", &user.commit]))?;
    run(cmd(&["add", "--all", "--ignore-errors", "--", "."]))?;
    let tree = object_id(&run(cmd(&["write-tree"]))?, "write-tree")?;
    let _ = std::fs::remove_file(&index);
    let _ = std::fs::remove_file(&excludes);
    if tree == tree_of(git, &sg.session_repo, &user.commit)? {
        return Ok(user.commit.clone());
    }
    let message = format!(
        "Uncommitted changes of {} at the session's start",
        user.toplevel.display()
    );
    commit_tree(git, &sg.session_repo, &tree, &[&user.commit], &message)
}

/// `git ARGS` over the session repository with `work_tree` read through `index`, skipping
/// what `excludes` lists.
fn over_work_tree(
    git: &Git,
    sg: &SessionGit,
    work_tree: &Path,
    index: &Path,
    excludes: &Path,
    args: &[&str],
) -> std::process::Command {
    let mut c = git.trusted(&sg.session_repo, Some(work_tree));
    c.env("GIT_INDEX_FILE", index)
        .arg("-c")
        .arg(format!("core.excludesFile={}", excludes.display()))
        .args(args);
    c
}

fn tree_of(git: &Git, repo: &Path, commit: &str) -> Result<String, GitError> {
    rev_parse(git.trusted(repo, None), &format!("{commit}^{{tree}}"))
}

fn commit_tree(
    git: &Git,
    repo: &Path,
    tree: &str,
    parents: &[&str],
    message: &str,
) -> Result<String, GitError> {
    let mut c = git.trusted(repo, None);
    c.env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .args(["commit-tree", tree]);
    for p in parents {
        c.args(["-p", p]);
    }
    c.args(["-m", message]);
    object_id(&run(c)?, "commit-tree")
}

/// Gives `workspace` a fresh `.git` for the next job: whatever the last job left there is
/// removed (never followed), and the new one is creel's: HEAD on the session branch at its
/// tip, an index matching it, objects borrowed read-only. Returns that tip: the job's base,
/// which [`record_job`] records against.
pub(crate) fn prepare_job(
    git: &Git,
    sg: &SessionGit,
    workspace: &Path,
    owner: Option<(u32, u32)>,
) -> Result<String, GitError> {
    let io = |e: std::io::Error| GitError::Io(e);
    let tip = sg.tip(git)?;
    let dot = workspace.join(".git");
    match std::fs::symlink_metadata(&dot) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dot).map_err(io)?,
        Ok(_) => std::fs::remove_file(&dot).map_err(io)?,
        Err(_) => {}
    }
    let branch_ref = dot.join("refs/heads").join(&sg.branch);
    for d in [
        dot.join("objects/info"),
        dot.join("objects/pack"),
        dot.join("refs/tags"),
        branch_ref.parent().unwrap_or(&dot).to_path_buf(),
    ] {
        std::fs::create_dir_all(&d).map_err(io)?;
    }
    let files: [(PathBuf, String); 4] = [
        (dot.join("HEAD"), format!("ref: {}\n", sg.full_branch())),
        (branch_ref, format!("{tip}\n")),
        (
            dot.join("config"),
            format!(
                "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n[user]\n\tname = {AUTHOR_NAME}\n\temail = {AUTHOR_EMAIL}\n"
            ),
        ),
        (
            dot.join("objects/info/alternates"),
            format!("{CONTAINER_OBJECTS}\n"),
        ),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).map_err(io)?;
    }
    // The index matching the tip, with the work tree's stat data, so that `git status` in the
    // job is fast. The harvest index always matches the tip after a job is recorded.
    if sg.index().is_file() {
        std::fs::copy(sg.index(), dot.join("index")).map_err(io)?;
    } else {
        let mut c = git.trusted(&sg.session_repo, Some(workspace));
        c.env("GIT_INDEX_FILE", dot.join("index"))
            .args(["read-tree", &tip]);
        run(c)?;
    }
    if let Some(to) = owner {
        chown_tree(&dot, to).map_err(io)?;
    }
    Ok(tip)
}

/// What a job changed, as recorded on the session branch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The commit that ends the job's changes (`None` when it changed nothing).
    pub commit: Option<String>,
    /// The session branch's commit before the job.
    pub parent: String,
    /// Files changed.
    pub files: u64,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
}

/// Records what job `job_id` changed as commits on the session branch: the commits Claude made
/// itself (when they extend the branch), then one commit of whatever the work tree holds
/// beyond them. Runs after the job's container is gone. Idempotent: with the job's `base` (the
/// tip [`prepare_job`] returned), a branch already past it is this job's record, reported
/// again. Returns the changes and any warnings.
pub(crate) fn record_job(
    git: &Git,
    sg: &SessionGit,
    workspace: &Path,
    job_id: &str,
    subject: &str,
    base: Option<&str>,
) -> Result<(Changes, Vec<String>), GitError> {
    let mut warnings = Vec::new();
    let tip = sg.tip(git)?;
    // Only this job moves the branch while it lives (the session is busy until its monitor
    // has recorded it): a tip past the job's base is this job's record, made before a
    // monitor restart. Report it again.
    if let Some(base) = base
        && base != tip
    {
        return Ok((changes(git, sg, base, &tip)?, warnings));
    }
    let mut parent = tip.clone();
    match import_agent_commits(git, sg, workspace) {
        Ok(Some(head)) if head != tip => {
            if is_ancestor(git.trusted(&sg.session_repo, None), &tip, &head)? {
                parent = head;
            } else {
                warnings.push(
                    "Claude's own commits do not extend the session branch (history was rewritten or another branch checked out); their content is kept in the job's commit, their messages are not".into(),
                );
            }
        }
        Ok(_) => {}
        Err(e) => warnings.push(format!(
            "Claude's own commits could not be read ({e}); their content is kept in the job's commit"
        )),
    }
    // What git must not look into: nested repositories (git opens their `.git`, which could be
    // a FIFO, a link to /dev/zero or a `gitdir:` pointing anywhere on the host) and files too
    // large to record. Found with `lstat` alone, listed in an exclude file of creel's.
    let left_out = survey(workspace).map_err(GitError::Io)?;
    let excludes = sg.dir().join("excludes");
    std::fs::write(&excludes, left_out.patterns()).map_err(GitError::Io)?;
    warnings.extend(left_out.warnings());
    let index = sg.index();
    let cmd = |args: &[&str]| over_work_tree(git, sg, workspace, &index, &excludes, args);
    // `--ignore-errors`: a FIFO or an unreadable file is left out, not fatal.
    let (code, _) = run_status(
        cmd(&["add", "--all", "--ignore-errors", "--", "."]),
        &[0, 1],
    )?;
    if code != 0 {
        warnings.push(
            "some files in the workspace could not be recorded (not regular files, or unreadable)"
                .into(),
        );
    }
    let tree = object_id(&run(cmd(&["write-tree"]))?, "write-tree")?;
    let end = if tree == tree_of(git, &sg.session_repo, &parent)? {
        parent.clone()
    } else {
        let subject = subject_line(subject);
        let message = format!("{subject}\n\nCreel-Job: {job_id}\n");
        commit_tree(git, &sg.session_repo, &tree, &[&parent], &message)?
    };
    if end != tip {
        let mut c = git.trusted(&sg.session_repo, None);
        c.args(["update-ref", &sg.full_branch(), &end, &tip]);
        run(c)?;
    }
    Ok((changes(git, sg, &tip, &end)?, warnings))
}

/// The first line of a prompt, as a commit subject.
fn subject_line(prompt: &str) -> String {
    let line = prompt
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("creel job");
    let mut s: String = line.chars().take(72).collect();
    if line.chars().count() > 72 {
        s.push('…');
    }
    s
}

/// The largest file a job's commit records; larger ones are left out with a warning (a
/// sparse file can claim exabytes).
const MAX_RECORDED_FILE: u64 = 512 << 20;
/// The most entries the survey walks before giving up on recording.
const MAX_SURVEYED: usize = 2_000_000;

/// What [`survey`] found that git must not look into.
#[derive(Debug, Default)]
struct LeftOut {
    nested: Vec<String>,
    large: Vec<String>,
    unnamable: usize,
}

impl LeftOut {
    /// Exclude-file lines: each path anchored at the work tree's root, special characters
    /// escaped.
    fn patterns(&self) -> String {
        let mut out = String::new();
        let all = self.nested.iter().map(|p| (p, true));
        for (p, dir) in all.chain(self.large.iter().map(|p| (p, false))) {
            out.push('/');
            for c in p.chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\' | '!' | '#' | ' ') {
                    out.push('\\');
                }
                out.push(c);
            }
            if dir {
                out.push('/');
            }
            out.push('\n');
        }
        out
    }

    fn warnings(&self) -> Vec<String> {
        let some = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let mut w = Vec::new();
        if !self.nested.is_empty() {
            w.push(format!(
                "left out of the job's commit: {} nested git repositories ({}); creel does not record repositories inside the workspace",
                self.nested.len(),
                some(&self.nested)
            ));
        }
        if !self.large.is_empty() {
            w.push(format!(
                "left out of the job's commit: {} files larger than {} MiB ({})",
                self.large.len(),
                MAX_RECORDED_FILE >> 20,
                some(&self.large)
            ));
        }
        if self.unnamable > 0 {
            w.push(format!(
                "left out of the job's commit: {} paths whose names git cannot be told to skip (a newline, or not UTF-8), with their directories",
                self.unnamable
            ));
        }
        w
    }
}

/// Walks the work tree with `lstat` only (never following a link, never opening a file):
/// directories holding a `.git` entry of any kind, and files over [`MAX_RECORDED_FILE`].
/// A directory holding a name an exclude file cannot express (not UTF-8, a newline) is left
/// out whole.
fn survey(workspace: &Path) -> std::io::Result<LeftOut> {
    let mut found = LeftOut::default();
    let mut stack = vec![(workspace.to_path_buf(), String::new())];
    let mut seen = 0usize;
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut subdirs = Vec::new();
        let mut large = Vec::new();
        let mut leave_out = false;
        for entry in entries {
            let entry = entry?;
            seen += 1;
            if seen > MAX_SURVEYED {
                return Err(std::io::Error::other(format!(
                    "the workspace holds more than {MAX_SURVEYED} entries"
                )));
            }
            let name = entry.file_name();
            if name == ".git" {
                leave_out |= !rel.is_empty();
                continue;
            }
            let Some(name) = name.to_str().filter(|n| !n.contains('\n')) else {
                if rel.is_empty() {
                    // Nothing above it to leave out instead.
                    return Err(std::io::Error::other(
                        "the top of the workspace holds a name git cannot be told to skip (a newline, or not UTF-8)",
                    ));
                }
                found.unnamable += 1;
                leave_out = true;
                continue;
            };
            let path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            // `DirEntry::metadata` does not follow links.
            let meta = entry.metadata()?;
            if meta.is_dir() {
                subdirs.push((entry.path(), path));
            } else if meta.is_file() && meta.len() > MAX_RECORDED_FILE {
                large.push(path);
            }
        }
        if leave_out {
            found.nested.push(rel);
        } else {
            found.large.extend(large);
            stack.extend(subdirs);
        }
    }
    found.nested.sort();
    found.large.sort();
    Ok(found)
}

/// Counts what changed from `from` to `to`.
pub(crate) fn changes(
    git: &Git,
    sg: &SessionGit,
    from: &str,
    to: &str,
) -> Result<Changes, GitError> {
    let mut jc = Changes {
        commit: (from != to).then(|| to.to_string()),
        parent: from.to_string(),
        ..Default::default()
    };
    if from == to {
        return Ok(jc);
    }
    let mut c = git.trusted(&sg.session_repo, None);
    c.args([
        "diff",
        "--no-ext-diff",
        "--no-textconv",
        "--numstat",
        from,
        to,
    ]);
    for (added, removed) in run(c)?.stdout.lines().filter_map(numstat) {
        jc.files += 1;
        jc.insertions += added;
        jc.deletions += removed;
    }
    Ok(jc)
}

/// Copies the agent's refs and own objects (regular files only, never through a link) into a
/// quarantine repository creel configures itself, and fetches its HEAD into the session
/// repository. `None` when the agent left no `.git` or no HEAD commit.
fn import_agent_commits(
    git: &Git,
    sg: &SessionGit,
    workspace: &Path,
) -> Result<Option<String>, GitError> {
    let io = |e: std::io::Error| GitError::Io(e);
    let src = workspace.join(".git");
    if !std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_dir()) {
        return Ok(None);
    }
    let q = sg.dir().join("quarantine.git");
    let _ = std::fs::remove_dir_all(&q);
    std::fs::create_dir_all(q.join("objects/info")).map_err(io)?;
    let mut budget = Budget {
        files: QUARANTINE_MAX_FILES,
        bytes: QUARANTINE_MAX_BYTES,
    };
    let result = (|| {
        copy_regular(&src.join("HEAD"), &q.join("HEAD"), &mut budget)?;
        let _ = copy_regular(
            &src.join("packed-refs"),
            &q.join("packed-refs"),
            &mut budget,
        );
        copy_dir(&src.join("refs"), &q.join("refs"), &mut budget, 0)?;
        // Never through a link: `objects` itself must be a directory, as each entry below it.
        let objects = src.join("objects");
        if std::fs::symlink_metadata(&objects).is_ok_and(|m| m.is_dir()) {
            for sub in std::fs::read_dir(&objects).map_err(io)? {
                let sub = sub.map_err(io)?;
                if sub.file_name() == "info" {
                    continue;
                }
                copy_dir(
                    &sub.path(),
                    &q.join("objects").join(sub.file_name()),
                    &mut budget,
                    0,
                )?;
            }
        }
        std::fs::write(
            q.join("config"),
            "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
        )
        .map_err(io)?;
        std::fs::write(
            q.join("objects/info/alternates"),
            format!("{}\n", sg.session_repo.join("objects").display()),
        )
        .map_err(io)?;
        std::fs::create_dir_all(q.join("refs")).map_err(io)?;
        let Ok(head) = rev_parse(git.trusted(&q, None), "HEAD^{commit}") else {
            return Ok(None);
        };
        // Checked as a fetch from a stranger is: malformed trees, `.git` entries and the like
        // are refused (the content still arrives through the job's commit).
        let mut c = git.trusted(&sg.session_repo, None);
        c.args(["-c", "fetch.fsckObjects=true"])
            .args(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"])
            .arg(&q)
            .arg("+HEAD:refs/creel/import");
        run(c)?;
        let mut c = git.trusted(&sg.session_repo, None);
        c.args(["update-ref", "-d", "refs/creel/import"]);
        run(c)?;
        Ok(Some(head))
    })();
    let _ = std::fs::remove_dir_all(&q);
    result
}

struct Budget {
    files: usize,
    bytes: u64,
}

fn over_budget() -> GitError {
    GitError::Io(std::io::Error::other(
        "the agent's .git is larger than creel imports",
    ))
}

/// Copies a regular file, refusing links, FIFOs and devices, within the budget.
fn copy_regular(src: &Path, dst: &Path, budget: &mut Budget) -> Result<(), GitError> {
    let io = |e: std::io::Error| GitError::Io(e);
    let mut f = crate::files::open_nofollow(src, false)
        .map_err(|e| GitError::Io(std::io::Error::other(e.to_string())))?;
    let meta = f.metadata().map_err(io)?;
    if budget.files == 0 || meta.len() > budget.bytes {
        return Err(over_budget());
    }
    budget.files -= 1;
    budget.bytes -= meta.len();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dst)
        .map_err(io)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut left = meta.len();
    while left > 0 {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let n = n.min(left as usize);
        out.write_all(&buf[..n]).map_err(io)?;
        left -= n as u64;
    }
    Ok(())
}

/// Copies the directories and regular files under `src`; anything else is skipped.
fn copy_dir(src: &Path, dst: &Path, budget: &mut Budget, depth: u32) -> Result<(), GitError> {
    let io = |e: std::io::Error| GitError::Io(e);
    if depth > 32 {
        return Err(over_budget());
    }
    match std::fs::symlink_metadata(src) {
        Ok(m) if m.is_dir() => {}
        _ => return Ok(()),
    }
    std::fs::create_dir_all(dst).map_err(io)?;
    for entry in std::fs::read_dir(src).map_err(io)? {
        let entry = entry.map_err(io)?;
        let ty = entry.file_type().map_err(io)?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        if ty.is_dir() {
            copy_dir(&from, &to, budget, depth + 1)?;
        } else if ty.is_file() {
            copy_regular(&from, &to, budget)?;
        }
    }
    Ok(())
}

/// `lchown -R`: never follows a link.
fn chown_tree(root: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p)?;
        if m.uid() != uid || m.gid() != gid {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_the_first_non_empty_line_cut_at_72() {
        assert_eq!(subject_line("\n  fix the tests \nmore"), "fix the tests");
        assert_eq!(subject_line(""), "creel job");
        let long = "x".repeat(100);
        assert_eq!(subject_line(&long).chars().count(), 73);
    }

    #[test]
    fn paths_with_mount_separators_are_refused() {
        assert!(check_mountable(Path::new("/home/a b/repo/.git/objects")).is_ok());
        assert!(check_mountable(Path::new("/x:y/.git/objects")).is_err());
        assert!(check_mountable(Path::new("/x,y/.git/objects")).is_err());
    }
}
