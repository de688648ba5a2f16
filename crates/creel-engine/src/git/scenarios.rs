//! The session branch against real git repositories, without containers: what a job leaves
//! in its checkout is written here directly, as an agent inside the container could.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::land::{self, LandHow, LandReport, LandRequest};
use super::session::{self, SessionGit};
use super::{Git, GitError};
use crate::error::Error;

/// Plain git as a person runs it, for setting up and inspecting repositories.
fn sh_git(dir: &Path, args: &[&str]) -> String {
    git_with(dir, args, None)
}

/// Git as the agent runs it in its checkout: its `.git` borrows the session's objects from
/// where the container mounts them, which is elsewhere on the host.
fn ws_git(f: &Fixture, args: &[&str]) -> String {
    git_with(&f.workspace, args, Some(&f.sg.session_repo.join("objects")))
}

fn git_with(dir: &Path, args: &[&str], objects: Option<&Path>) -> String {
    let mut cmd = Command::new("git");
    if let Some(o) = objects {
        cmd.env("GIT_ALTERNATE_OBJECT_DIRECTORIES", o);
    }
    let out = cmd
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=U", "-c", "user.email=u@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    workspace: PathBuf,
    git: Git,
    sg: SessionGit,
    /// The branch's commit when the current job started (what `prepare_job` returned).
    base: std::cell::RefCell<String>,
}

impl Fixture {
    /// A user repository (in a directory with a space in its name) with two files, and a
    /// session made from it.
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let repo = root.join("my repo");
        std::fs::create_dir_all(repo.join("src")).unwrap();
        sh_git(&repo, &["init", "-q"]);
        std::fs::write(repo.join("README"), "hello\n").unwrap();
        std::fs::write(repo.join("src/lib.rs"), "fn a() {}\n").unwrap();
        sh_git(&repo, &["add", "."]);
        sh_git(&repo, &["commit", "-qm", "init"]);
        let git = Git::find().unwrap();
        let user = session::inspect(&git, &repo, None).unwrap();
        let workspace = root.join("home/workspaces/s1");
        let sg = session::create(
            &git,
            &root.join("home/git/s1"),
            &user,
            "s1",
            &workspace,
            false,
            None,
        )
        .unwrap();
        let base = session::prepare_job(&git, &sg, &workspace, None).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            repo,
            workspace,
            git,
            sg,
            base: std::cell::RefCell::new(base),
        }
    }

    /// Prepares the checkout for the next job, as `start` does.
    fn prepare(&self) {
        let base = session::prepare_job(&self.git, &self.sg, &self.workspace, None).unwrap();
        *self.base.borrow_mut() = base;
    }

    fn record(&self, job: &str, prompt: &str) -> (session::Changes, Vec<String>) {
        // A FIFO or a hostile file must never hang the host: fail the test instead.
        let (tx, rx) = std::sync::mpsc::channel();
        let (git, sg, ws) = (self.git.clone(), self.sg.clone(), self.workspace.clone());
        let (job, prompt) = (job.to_string(), prompt.to_string());
        let base = self.base.borrow().clone();
        std::thread::spawn(move || {
            let _ = tx.send(session::record_job(
                &git,
                &sg,
                &ws,
                &job,
                &prompt,
                Some(&base),
            ));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("recording a job hung")
            .unwrap()
    }

    fn land(&self, how: LandHow, into: Option<&str>) -> Result<LandReport, Error> {
        let tip = self.sg.tip(&self.git).unwrap();
        let mut report = LandReport {
            how,
            repo: self.sg.repo.clone(),
            branch: None,
            commit: None,
            fast_forward: false,
            files: land::changed_files(&self.git, &self.sg, &self.sg.base, &tip)?,
            nothing_to_do: false,
        };
        let req = LandRequest {
            session_id: "s1".into(),
            how,
            into: into.map(String::from),
        };
        match how {
            LandHow::Apply => land::apply(&self.git, &self.sg, &tip, &mut report)?,
            LandHow::Merge => land::merge(&self.git, &self.sg, &tip, &req, &mut report)?,
            LandHow::Branch => land::branch(&self.git, &self.sg, &tip, &mut report)?,
        }
        Ok(report)
    }

    fn session_git(&self, args: &[&str]) -> String {
        let mut c = self.git.trusted(&self.sg.session_repo, None);
        c.args(args);
        super::run(c).unwrap().stdout
    }
}

#[test]
fn a_job_s_edits_become_one_commit_with_its_trailer_and_the_next_job_continues() {
    let f = Fixture::new();
    // The agent's `.git` works as a repository: HEAD on the session branch, a clean index.
    let status = ws_git(&f, &["status", "--porcelain"]);
    assert_eq!(status, "", "a fresh checkout is clean");
    assert_eq!(
        ws_git(&f, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/creel/s1"
    );
    std::fs::write(f.workspace.join("README"), "hello\nworld\n").unwrap();
    std::fs::write(f.workspace.join("new file.txt"), "new\n").unwrap();
    let (ch, warnings) = f.record("job000000001", "Add a greeting\n\nmore words");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!((ch.files, ch.insertions, ch.deletions), (2, 2, 0));
    let commit = ch.commit.clone().unwrap();
    let msg = f.session_git(&["log", "-1", "--format=%s%n%b%an", &commit]);
    assert!(msg.starts_with("Add a greeting\n"), "{msg}");
    assert!(msg.contains("Creel-Job: job000000001"), "{msg}");
    assert!(msg.trim_end().ends_with("Claude"), "{msg}");
    // Recording again (a monitor restarted) makes no second commit.
    let (again, _) = f.record("job000000001", "Add a greeting");
    assert_eq!(again.commit.as_deref(), Some(commit.as_str()));
    assert_eq!(f.sg.tip(&f.git).unwrap(), commit);
    // The next job sees the branch at that commit, its work tree clean.
    f.prepare();
    assert_eq!(ws_git(&f, &["rev-parse", "HEAD"]).trim(), commit);
    assert_eq!(ws_git(&f, &["status", "--porcelain"]), "");
    // A job that changes nothing records nothing.
    let (none, _) = f.record("job000000002", "look only");
    assert_eq!(none.commit, None);
    assert_eq!(f.sg.tip(&f.git).unwrap(), commit);
}

#[test]
fn commits_claude_made_itself_are_kept_under_the_job_s_commit() {
    let f = Fixture::new();
    std::fs::write(f.workspace.join("a.txt"), "a\n").unwrap();
    ws_git(&f, &["add", "a.txt"]);
    ws_git(&f, &["commit", "-qm", "Claude's own commit"]);
    std::fs::write(f.workspace.join("b.txt"), "b\n").unwrap();
    let (ch, warnings) = f.record("job000000001", "two files");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ch.files, 2);
    let log = f.session_git(&["log", "--format=%s", "creel/s1"]);
    assert_eq!(log, "two files\nClaude's own commit\ninit\n");
}

#[test]
fn uncommitted_changes_are_carried_over_as_the_session_s_base() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    std::fs::create_dir_all(&repo).unwrap();
    sh_git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("a"), "1\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "ignored\n").unwrap();
    sh_git(&repo, &["add", "."]);
    sh_git(&repo, &["commit", "-qm", "init"]);
    std::fs::write(repo.join("a"), "2\n").unwrap();
    std::fs::write(repo.join("untracked"), "u\n").unwrap();
    std::fs::write(repo.join("ignored"), "i\n").unwrap();
    // Ignored only by the repository's own exclude file, not by a `.gitignore`.
    std::fs::write(repo.join(".git/info/exclude"), "secret.env\n").unwrap();
    std::fs::write(repo.join("secret.env"), "TOKEN=1\n").unwrap();
    let before = sh_git(&repo, &["status", "--porcelain", "--ignored"]);
    let objects = sh_git(&repo, &["count-objects"]);
    let git = Git::find().unwrap();
    let user = session::inspect(&git, &repo, None).unwrap();
    let ws = tmp.path().join("ws");
    let sg = session::create(&git, &tmp.path().join("g"), &user, "s", &ws, true, None).unwrap();
    assert_ne!(sg.base, user.commit);
    assert_eq!(std::fs::read_to_string(ws.join("a")).unwrap(), "2\n");
    assert!(ws.join("untracked").is_file());
    assert!(!ws.join("ignored").exists());
    assert!(!ws.join("secret.env").exists());
    // The user's repository is as it was: same status, no new objects or refs.
    assert_eq!(
        sh_git(&repo, &["status", "--porcelain", "--ignored"]),
        before
    );
    assert_eq!(sh_git(&repo, &["for-each-ref"]).lines().count(), 1);
    assert_eq!(sh_git(&repo, &["count-objects"]), objects);
}

#[test]
fn bad_repositories_and_refs_are_refused_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::find().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    assert!(matches!(
        session::inspect(&git, &plain, None),
        Err(GitError::NotARepository { .. })
    ));
    assert!(matches!(
        session::inspect(&git, &tmp.path().join("missing"), None),
        Err(GitError::NotARepository { .. })
    ));
    let bare = tmp.path().join("bare.git");
    std::fs::create_dir_all(&bare).unwrap();
    sh_git(&bare, &["init", "-q", "--bare"]);
    assert!(matches!(
        session::inspect(&git, &bare, None),
        Err(GitError::Bare { .. })
    ));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    sh_git(&empty, &["init", "-q"]);
    assert!(matches!(
        session::inspect(&git, &empty, None),
        Err(GitError::UnknownRef { .. })
    ));
    let f = Fixture::new();
    for bad in ["no-such-branch", "--upload-pack=touch x", "HEAD~5"] {
        assert!(
            matches!(
                session::inspect(&f.git, &f.repo, Some(bad)),
                Err(GitError::UnknownRef { .. })
            ),
            "{bad}"
        );
    }
    // A subdirectory names its repository; a detached HEAD is a fine start.
    let sub = session::inspect(&f.git, &f.repo.join("src"), None).unwrap();
    assert_eq!(sub.toplevel, f.repo.canonicalize().unwrap());
    sh_git(&f.repo, &["checkout", "-q", "--detach"]);
    assert!(session::inspect(&f.git, &f.repo, None).is_ok());
    // …but merging needs a branch to merge into.
    std::fs::write(f.workspace.join("x"), "x\n").unwrap();
    f.record("job000000001", "x");
    assert!(matches!(
        f.land(LandHow::Merge, None),
        Err(Error::Git(GitError::DetachedHead { .. }))
    ));
    assert!(matches!(
        f.land(LandHow::Merge, Some("no-such-branch")),
        Err(Error::Git(GitError::UnknownRef { .. }))
    ));
    let colon = tmp.path().join("a:b");
    std::fs::create_dir_all(&colon).unwrap();
    sh_git(&colon, &["init", "-q"]);
    assert!(matches!(
        session::inspect(&git, &colon, None),
        Err(GitError::UnusablePath { .. })
    ));
}

#[test]
fn merge_fast_forwards_merges_and_on_a_conflict_leaves_the_repository_as_it_was() {
    let f = Fixture::new();
    std::fs::write(f.workspace.join("README"), "hello from claude\n").unwrap();
    f.record("job000000001", "edit readme");
    // Fast-forward into the checked-out branch: work tree and index follow.
    let r = f.land(LandHow::Merge, None).unwrap();
    assert!(r.fast_forward && !r.nothing_to_do, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(f.repo.join("README")).unwrap(),
        "hello from claude\n"
    );
    assert_eq!(sh_git(&f.repo, &["status", "--porcelain"]), "");
    assert!(f.land(LandHow::Merge, None).unwrap().nothing_to_do);

    // Both sides change: a merge commit when they do not touch the same lines…
    sh_git(&f.repo, &["checkout", "-q", "-b", "side"]);
    std::fs::write(f.repo.join("src/lib.rs"), "fn a() {}\nfn user() {}\n").unwrap();
    sh_git(&f.repo, &["commit", "-qam", "user change"]);
    f.prepare();
    std::fs::write(f.workspace.join("other.txt"), "o\n").unwrap();
    f.record("job000000002", "another file");
    let r = f.land(LandHow::Merge, Some("side")).unwrap();
    assert!(!r.fast_forward, "{r:?}");
    assert!(f.repo.join("other.txt").is_file());
    let parents = sh_git(&f.repo, &["log", "-1", "--format=%P", "side"]);
    assert_eq!(parents.split_whitespace().count(), 2);

    // …and a conflict when they do: nothing changes.
    std::fs::write(f.repo.join("README"), "the user's words\n").unwrap();
    sh_git(&f.repo, &["commit", "-qam", "user readme"]);
    f.prepare();
    std::fs::write(f.workspace.join("README"), "claude's words\n").unwrap();
    f.record("job000000003", "readme again");
    let head = sh_git(&f.repo, &["rev-parse", "HEAD"]);
    let refs = sh_git(&f.repo, &["for-each-ref"]);
    match f.land(LandHow::Merge, None) {
        Err(Error::Git(GitError::Conflict { files, .. })) => assert_eq!(files, ["README"]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(sh_git(&f.repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(sh_git(&f.repo, &["for-each-ref"]), refs);
    assert_eq!(sh_git(&f.repo, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(f.repo.join("README")).unwrap(),
        "the user's words\n"
    );
}

#[test]
fn apply_is_all_or_nothing_and_branch_never_overwrites_the_user_s_commits() {
    let f = Fixture::new();
    std::fs::write(f.workspace.join("README"), "claude\n").unwrap();
    std::fs::write(f.workspace.join("added.txt"), "added\n").unwrap();
    f.record("job000000001", "two files");
    // The user has their own edit of README: the patch does not apply, nothing is written.
    std::fs::write(f.repo.join("README"), "mine\n").unwrap();
    match f.land(LandHow::Apply, None) {
        Err(Error::Git(GitError::Conflict { files, .. })) => assert_eq!(files, ["README"]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(!f.repo.join("added.txt").exists());
    assert_eq!(
        std::fs::read_to_string(f.repo.join("README")).unwrap(),
        "mine\n"
    );
    sh_git(&f.repo, &["checkout", "-q", "--", "README"]);
    let r = f.land(LandHow::Apply, None).unwrap();
    assert_eq!(r.files, ["README", "added.txt"]);
    assert_eq!(
        sh_git(&f.repo, &["status", "--porcelain"]),
        " M README\n?? added.txt\n"
    );
    sh_git(&f.repo, &["checkout", "-q", "--", "README"]);
    std::fs::remove_file(f.repo.join("added.txt")).unwrap();

    let r = f.land(LandHow::Branch, None).unwrap();
    assert_eq!(r.branch.as_deref(), Some("creel/s1"));
    let tip = f.sg.tip(&f.git).unwrap();
    assert_eq!(sh_git(&f.repo, &["rev-parse", "creel/s1"]).trim(), tip);
    assert!(f.land(LandHow::Branch, None).unwrap().nothing_to_do);
    // The user commits on the fetched branch; the session moves on: not overwritten.
    sh_git(&f.repo, &["checkout", "-q", "creel/s1"]);
    std::fs::write(f.repo.join("user.txt"), "u\n").unwrap();
    sh_git(&f.repo, &["add", "user.txt"]);
    sh_git(&f.repo, &["commit", "-qm", "user on the branch"]);
    sh_git(&f.repo, &["checkout", "-q", "main"]);
    f.prepare();
    std::fs::write(f.workspace.join("later.txt"), "l\n").unwrap();
    f.record("job000000002", "later");
    let mine = sh_git(&f.repo, &["rev-parse", "creel/s1"]);
    assert!(matches!(
        f.land(LandHow::Branch, None),
        Err(Error::Git(GitError::BranchDiverged { .. }))
    ));
    assert_eq!(sh_git(&f.repo, &["rev-parse", "creel/s1"]), mine);
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// What an agent can plant in its checkout to make git run something on the host, each
/// touching a marker file in `markers` if it ever runs.
fn plant_everything(ws: &Path, markers: &Path, secret: &Path) {
    let touch = |name: &str| format!("touch {}", markers.join(name).display());
    let dot = ws.join(".git");
    let hooks = dot.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in [
        "pre-commit",
        "post-commit",
        "post-checkout",
        "post-merge",
        "pre-push",
        "reference-transaction",
        "post-index-change",
        "fsmonitor-watchman",
        "pre-auto-gc",
        "post-rewrite",
    ] {
        let p = hooks.join(hook);
        std::fs::write(
            &p,
            format!("#!/bin/sh\n{}\n", touch(&format!("hook-{hook}"))),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let evil_hooks = ws.join("evil-hooks");
    std::fs::create_dir_all(&evil_hooks).unwrap();
    for hook in [
        "pre-commit",
        "post-commit",
        "reference-transaction",
        "post-merge",
    ] {
        let p = evil_hooks.join(hook);
        std::fs::write(
            &p,
            format!("#!/bin/sh\n{}\n", touch(&format!("hookspath-{hook}"))),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = \"{fsmonitor}\"\n\thooksPath = {hooks}\n\tsshCommand = {ssh}\n\tpager = {pager}\n\teditor = {editor}\n\tgitProxy = {proxy}\n\talternateRefsCommand = {altrefs}\n\
         [diff]\n\texternal = {extdiff}\n[diff \"evil\"]\n\ttextconv = {textconv}\n\tcommand = {diffcmd}\n\
         [filter \"evil\"]\n\tclean = {clean}\n\tsmudge = {smudge}\n\tprocess = {process}\n\trequired = true\n\
         [merge \"evil\"]\n\tdriver = {mergedriver}\n[uploadpack]\n\tpackObjectsHook = {packhook}\n\
         [credential]\n\thelper = !{cred}\n[include]\n\tpath = {include}\n[safe]\n\tdirectory = *\n",
        fsmonitor = touch("fsmonitor"),
        hooks = evil_hooks.display(),
        ssh = touch("ssh"),
        pager = touch("pager"),
        editor = touch("editor"),
        proxy = touch("proxy"),
        altrefs = touch("altrefs"),
        extdiff = touch("extdiff"),
        textconv = touch("textconv"),
        diffcmd = touch("diffcmd"),
        clean = touch("clean"),
        smudge = touch("smudge"),
        process = touch("process"),
        mergedriver = touch("mergedriver"),
        packhook = touch("packhook"),
        cred = touch("cred"),
        include = ws.join("included.cfg").display(),
    );
    std::fs::write(dot.join("config"), config).unwrap();
    std::fs::write(
        ws.join("included.cfg"),
        format!("[core]\n\tfsmonitor = \"{}\"\n", touch("included")),
    )
    .unwrap();
    std::fs::write(
        ws.join(".gitattributes"),
        "* filter=evil diff=evil merge=evil\n",
    )
    .unwrap();
    std::fs::write(
        ws.join(".gitmodules"),
        format!(
            "[submodule \"m\"]\n\tpath = m\n\turl = ext::sh -c {}\n\tupdate = !{}\n",
            touch("submodule").replace(' ', "% "),
            touch("submodule-update")
        ),
    )
    .unwrap();
    // A nested repository with its own fsmonitor; links out of the tree; a FIFO.
    let nested = ws.join("nested");
    std::fs::create_dir_all(nested.join(".git")).unwrap();
    std::fs::write(nested.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(
        nested.join(".git/config"),
        format!("[core]\n\tfsmonitor = \"{}\"\n", touch("nested")),
    )
    .unwrap();
    // Nested repositories git would open while adding: a FIFO for HEAD (hangs), a ref linked
    // to /dev/zero (unbounded read), a `gitdir:` file naming a repository on the host (probe).
    let fifo_repo = ws.join("nested-fifo/.git");
    std::fs::create_dir_all(fifo_repo.join("objects")).unwrap();
    std::fs::create_dir_all(fifo_repo.join("refs")).unwrap();
    mkfifo(&fifo_repo.join("HEAD"));
    let zero_repo = ws.join("nested-zero/.git");
    std::fs::create_dir_all(zero_repo.join("objects")).unwrap();
    std::fs::create_dir_all(zero_repo.join("refs/heads")).unwrap();
    std::fs::write(zero_repo.join("HEAD"), "ref: refs/heads/x\n").unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero_repo.join("refs/heads/x")).unwrap();
    std::fs::create_dir_all(ws.join("nested-gitdir")).unwrap();
    std::fs::write(
        ws.join("nested-gitdir/.git"),
        format!("gitdir: {}\n", markers.join("../my repo/.git").display()),
    )
    .unwrap();
    // A sparse file that claims a terabyte.
    std::fs::File::create(ws.join("huge.bin"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    std::os::unix::fs::symlink(secret, ws.join("secret-link")).unwrap();
    std::os::unix::fs::symlink("/", ws.join("root-link")).unwrap();
    mkfifo(&ws.join("fifo"));
    // The agent's refs and objects pointing out of the tree.
    let _ = std::fs::remove_file(dot.join("packed-refs"));
    std::os::unix::fs::symlink(secret, dot.join("packed-refs")).unwrap();
    std::fs::write(
        dot.join("objects/info/alternates"),
        format!("{}\n", markers.display()),
    )
    .unwrap();
}

#[test]
fn nothing_an_agent_plants_in_its_checkout_runs_or_reads_anything_on_the_host() {
    let f = Fixture::new();
    let markers = f.root.join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    let secret = f.root.join("secret.txt");
    std::fs::write(&secret, "TOP SECRET host data\n").unwrap();
    // Claude's own commit first (its git inside the container runs its hooks: that is the
    // sandbox's business), then everything hostile.
    std::fs::write(f.workspace.join("work.txt"), "real work\n").unwrap();
    ws_git(&f, &["add", "work.txt"]);
    ws_git(&f, &["commit", "-qm", "Claude's commit"]);
    plant_everything(&f.workspace, &markers, &secret);
    let (ch, warnings) = f.record("job000000001", "hostile");
    let commit = ch.commit.clone().unwrap();
    // The work is recorded; the nested repositories and the huge file left out, said once
    // each; the FIFO left out silently (git skips what is not a file, link or directory);
    // links kept as links.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("4 nested git repositories"),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("1 files larger than"), "{warnings:?}");
    let files = f.session_git(&["ls-tree", "-r", "--name-only", &commit]);
    for name in [
        "work.txt",
        ".gitattributes",
        ".gitmodules",
        "secret-link",
        "root-link",
    ] {
        assert!(files.lines().any(|l| l == name), "{name} in {files}");
    }
    assert!(!files.contains("fifo"), "{files}");
    assert!(
        !files.contains("nested") && !files.contains("huge.bin"),
        "{files}"
    );
    assert!(!files.lines().any(|l| l.starts_with(".git/")), "{files}");
    let link = f.session_git(&["cat-file", "-p", &format!("{commit}:secret-link")]);
    assert_eq!(link, secret.display().to_string());
    // Claude's commit came through; the secret never became an object.
    let log = f.session_git(&["log", "--format=%s", &commit]);
    assert!(log.contains("Claude's commit"), "{log}");
    let all = f.session_git(&["log", "-p", "--all", "--no-textconv", "--no-ext-diff"]);
    assert!(!all.contains("TOP SECRET"));

    // Every read and every landing, then the next job's fresh `.git`.
    let diff = f.session_git(&[
        "diff",
        "--no-ext-diff",
        "--no-textconv",
        &f.sg.base,
        &commit,
    ]);
    assert!(diff.contains("+real work"), "{diff}");
    let mut c = f.git.trusted(&f.sg.session_repo, None);
    c.args(["log", "--numstat", "creel/s1"]);
    super::run(c).unwrap();
    let clone = f.root.join("clone");
    Command::new("git")
        .args(["clone", "-q"])
        .arg(&f.repo)
        .arg(&clone)
        .status()
        .unwrap();
    f.land(LandHow::Branch, None).unwrap();
    // The session brings a `.gitattributes` (naming filters the user's configuration might
    // define): only `branch` lands it.
    for how in [LandHow::Apply, LandHow::Merge] {
        match f.land(how, None) {
            Err(Error::Git(GitError::NeedsReview { files })) => {
                assert_eq!(files, [".gitattributes"])
            }
            other => panic!("{how:?}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(sh_git(&f.repo, &["status", "--porcelain"]), "");
    // A later job removes it; the rest (links, `.gitmodules`, hooks in the tree) lands. The
    // fresh `.git` that job gets has nothing of the first one's.
    f.prepare();
    let fresh = std::fs::read_to_string(f.workspace.join(".git/config")).unwrap();
    assert!(
        !fresh.contains("fsmonitor") && !fresh.contains("hooksPath"),
        "{fresh}"
    );
    assert!(!f.workspace.join(".git/hooks").exists());
    std::fs::remove_file(f.workspace.join(".gitattributes")).unwrap();
    std::fs::remove_file(f.workspace.join("fifo")).unwrap();
    f.record("job000000002", "drop the attributes");
    // Applied as edits, then undone by the user; then merged.
    f.land(LandHow::Apply, None).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.repo.join("work.txt")).unwrap(),
        "real work\n"
    );
    sh_git(&f.repo, &["checkout", "-q", "--", "."]);
    sh_git(&f.repo, &["clean", "-fdq"]);
    f.land(LandHow::Merge, None).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.repo.join("work.txt")).unwrap(),
        "real work\n"
    );
    assert!(
        std::fs::symlink_metadata(f.repo.join("secret-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    f.prepare();
    std::fs::write(f.workspace.join("more.txt"), "m\n").unwrap();
    f.record("job000000003", "more");
    f.land(LandHow::Merge, None).unwrap();

    let ran: Vec<_> = std::fs::read_dir(&markers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(ran.is_empty(), "ran on the host: {ran:?}");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "TOP SECRET host data\n"
    );
}

#[test]
fn sessions_on_one_repository_never_collide() {
    let f = Fixture::new();
    let user = session::inspect(&f.git, &f.repo, None).unwrap();
    let ws2 = f.root.join("home/workspaces/s2");
    let sg2 = session::create(
        &f.git,
        &f.root.join("home/git/s2"),
        &user,
        "s2",
        &ws2,
        false,
        None,
    )
    .unwrap();
    session::prepare_job(&f.git, &sg2, &ws2, None).unwrap();
    std::fs::write(f.workspace.join("README"), "from s1\n").unwrap();
    std::fs::write(ws2.join("README"), "from s2\n").unwrap();
    f.record("job000000001", "s1's edit");
    session::record_job(&f.git, &sg2, &ws2, "job000000002", "s2's edit", None).unwrap();
    // Each branch holds its own edit; both land as branches side by side.
    assert_eq!(f.session_git(&["show", "creel/s1:README"]), "from s1\n");
    let mut c = f.git.trusted(&sg2.session_repo, None);
    c.args(["show", "creel/s2:README"]);
    assert_eq!(super::run(c).unwrap().stdout, "from s2\n");
    f.land(LandHow::Branch, None).unwrap();
    let tip2 = sg2.tip(&f.git).unwrap();
    let mut report = LandReport {
        how: LandHow::Branch,
        repo: sg2.repo.clone(),
        branch: None,
        commit: None,
        fast_forward: false,
        files: Vec::new(),
        nothing_to_do: false,
    };
    land::branch(&f.git, &sg2, &tip2, &mut report).unwrap();
    assert_eq!(sh_git(&f.repo, &["show", "creel/s1:README"]), "from s1\n");
    assert_eq!(sh_git(&f.repo, &["show", "creel/s2:README"]), "from s2\n");
    assert_eq!(sh_git(&f.repo, &["show", "main:README"]), "hello\n");
}

#[test]
fn submodules_and_lfs_are_named_with_what_works() {
    let f = Fixture::new();
    std::fs::write(
        f.repo.join(".gitmodules"),
        "[submodule \"lib\"]\n\tpath = lib\n\turl = https://example.com/lib.git\n",
    )
    .unwrap();
    std::fs::write(
        f.repo.join(".gitattributes"),
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    )
    .unwrap();
    sh_git(&f.repo, &["add", "."]);
    sh_git(&f.repo, &["commit", "-qm", "modules and lfs"]);
    let user = session::inspect(&f.git, &f.repo, None).unwrap();
    assert_eq!(user.warnings.len(), 2, "{:?}", user.warnings);
    assert!(
        user.warnings[0].contains("submodules"),
        "{:?}",
        user.warnings
    );
    assert!(
        user.warnings[1].contains("LFS pointer files"),
        "{:?}",
        user.warnings
    );
    // A plain repository has none.
    let plain = session::inspect(&f.git, &f.repo, Some("HEAD~1")).unwrap();
    assert!(plain.warnings.is_empty(), "{:?}", plain.warnings);
}

#[test]
fn an_object_store_linked_out_of_the_checkout_is_never_copied() {
    let f = Fixture::new();
    // Another repository on the host, which the session's repository cannot see.
    let other = f.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    sh_git(&other, &["init", "-q"]);
    std::fs::write(other.join("private.txt"), "private\n").unwrap();
    sh_git(&other, &["add", "."]);
    sh_git(&other, &["commit", "-qm", "private"]);
    let private = sh_git(&other, &["rev-parse", "HEAD"]).trim().to_string();
    // The agent points its `.git/objects` there and its HEAD at that commit.
    let dot = f.workspace.join(".git");
    std::fs::remove_dir_all(dot.join("objects")).unwrap();
    std::os::unix::fs::symlink(other.join(".git/objects"), dot.join("objects")).unwrap();
    std::fs::write(dot.join("refs/heads/creel/s1"), format!("{private}\n")).unwrap();
    std::fs::write(f.workspace.join("x.txt"), "x\n").unwrap();
    let (ch, _) = f.record("job000000001", "x");
    assert!(ch.commit.is_some());
    let mut c = f.git.trusted(&f.sg.session_repo, None);
    c.args(["cat-file", "-e", &private]);
    assert!(
        super::run(c).is_err(),
        "the private commit reached the session repository"
    );
}
