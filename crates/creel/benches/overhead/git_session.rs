//! A new `--repo` session on a large repository (100,000 files, 1 GiB of history), against
//! `git worktree add` of the same commit: the floor for giving someone a work tree of a
//! commit without copying the object store.
//!
//! The repository is made with `git fast-import`: one commit of `--files` small text files
//! in 1,000 directories, then commits that each replace an 8 MiB incompressible blob until the
//! history holds `--history-mib`. creel is timed from just before `creel start --repo` is
//! spawned to its return (the session's repository, the checkout and the job's `.git` are
//! made by then; the job itself runs after); `git worktree add --detach` is timed to its
//! return. Both alternate, after one untimed warm-up each; the page cache is warm for both.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Env, Samples, fmt_ms};
use crate::{Opts, Report, Verdict};

const BIG_BLOB: usize = 8 << 20;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Streams the repository into `git fast-import`.
fn make_repo(repo: &Path, files: usize, history_mib: u64) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut w = std::io::BufWriter::new(child.stdin.take().unwrap());
    // Each commit continues the branch fast-import is writing (no `from` needed).
    let commit = |w: &mut dyn Write, n: usize| {
        writeln!(w, "commit refs/heads/main").unwrap();
        writeln!(
            w,
            "committer Bench <b@example.com> {} +0000",
            1_700_000_000 + n
        )
        .unwrap();
        let msg = format!("commit {n}");
        writeln!(w, "data {}\n{msg}", msg.len()).unwrap();
    };
    commit(&mut w, 0);
    for i in 0..files {
        let body = format!(
            "// file {i}\nfn f{i}() -> u64 {{\n    {i}\n}}\n{}\n",
            "// padding line for a source file of realistic size\n".repeat(12)
        );
        writeln!(w, "M 644 inline src/d{:03}/f{i}.rs", i % 1000).unwrap();
        writeln!(w, "data {}\n{body}", body.len()).unwrap();
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let commits = (history_mib << 20) / BIG_BLOB as u64;
    let mut blob = vec![0u8; BIG_BLOB];
    for n in 0..commits {
        for chunk in blob.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        commit(&mut w, n as usize + 1);
        writeln!(w, "M 644 inline history/blob.bin").unwrap();
        writeln!(w, "data {BIG_BLOB}").unwrap();
        w.write_all(&blob).unwrap();
        writeln!(w).unwrap();
    }
    drop(w);
    assert!(child.wait().unwrap().success(), "fast-import failed");
    git(repo, &["checkout", "-q", "-f", "main"]);
}

fn du_bytes(path: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-sb"])
        .arg(path)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn run(o: &Opts, r: &mut Report) {
    let env = Env::new(&o.base, "git", "", o.keep);
    let repo = env.root.join("big repo");
    let t = Instant::now();
    make_repo(&repo, o.repo_files, o.history_mib);
    let pack = du_bytes(&repo.join(".git/objects"));
    r.note(format!(
        "repository: {} files at HEAD, {:.2} GiB of objects, made in {:.0} s",
        o.repo_files,
        pack as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64()
    ));
    let n = o.iters.clamp(1, 5);
    let mut creel = Samples::default();
    let mut worktree = Samples::default();
    let mut session_bytes = 0;
    for i in 0..=n {
        // git worktree add, then removed (untimed).
        let wt = env.root.join(format!("wt-{i}"));
        let t = Instant::now();
        git(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                wt.to_str().unwrap(),
                "main",
            ],
        );
        let took = t.elapsed().as_secs_f64() * 1000.0;
        git(
            &repo,
            &["worktree", "remove", "--force", wt.to_str().unwrap()],
        );
        // creel start --repo: a new session each time.
        let session = format!("big-{i}");
        let t = Instant::now();
        let out = env.run_ok(&[
            "start",
            "--json",
            "--repo",
            repo.to_str().unwrap(),
            "--session",
            &session,
            "say hi",
        ]);
        let took_creel = t.elapsed().as_secs_f64() * 1000.0;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("start JSON");
        let job = v["jobId"].as_str().expect("jobId").to_string();
        let rec = env.wait_final(&job, Duration::from_secs(300));
        assert!(
            rec.changes.is_some(),
            "the job recorded no changes: {rec:?}"
        );
        session_bytes = du_bytes(&env.home.join("git").join(&session));
        env.run_ok(&["cleanup", "--idle-seconds", "0", "--delete-workspaces"]);
        if i > 0 {
            worktree.push(took);
            creel.push(took_creel);
        }
    }
    let ratio = creel.p50() / worktree.p50();
    r.row(
        format!(
            "new session, {} files, {} MiB history (p50)",
            o.repo_files, o.history_mib
        ),
        fmt_ms(creel.p50()),
        format!("{} (git worktree add)", fmt_ms(worktree.p50())),
        format!("{ratio:.2}x"),
        "<= 1.5x",
        if ratio <= 1.5 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    r.note(format!(
        "creel's session repository and index after one job: {:.1} MiB (the object store is borrowed, not copied)",
        session_bytes as f64 / (1u64 << 20) as f64
    ));
}
