//! The sandbox image: Claude Code, pinned to [`CLAUDE_CODE_VERSION`], on Debian bookworm, for
//! a non-root user, built from the Containerfile shipped in the repository (`image/Containerfile`,
//! embedded here as [`CONTAINERFILE`]).
//!
//! [`build`] makes `localhost/creel-claude:<version>` and `localhost/creel-claude:latest` (the
//! default [`crate::config::DEFAULT_IMAGE`]) with Podman, in one of two ways that run the same
//! recipe:
//!
//! - **online**: `podman build` of the Containerfile as it is (it pulls
//!   `debian:bookworm-slim` and downloads Claude Code's npm package inside the build);
//! - **offline** (no container registry): the base is a `debootstrap --variant=minbase` rootfs
//!   of Debian bookworm, `podman import`ed as [`OFFLINE_BASE`]; Claude Code's native binary comes
//!   from its npm package (`npm pack`, integrity checked against the pinned value); then
//!   `podman build --pull=never` with that base and a build context that replaces the
//!   Containerfile's download stage. Both downloads are cached in [`BuildOptions::cache_dir`],
//!   and a second build reuses the base image, the cache and Podman's layer cache.
//!
//! The engine never prints: progress goes to a callback.
//!
//! ```no_run
//! use creel_engine::image::{self, BuildOptions, Progress};
//! # fn main() -> Result<(), creel_engine::Error> {
//! let opts = BuildOptions::new(None, true, image::default_cache_dir());
//! let report = image::build(&opts, &mut |p| {
//!     if let Progress::Step { index, total, title } = p {
//!         eprintln!("[{index}/{total}] {title}");
//!     }
//! })?;
//! println!("built {}", report.tags.join(", "));
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::files::find_in_path;

/// The Claude Code version the image pins (`npm install @anthropic-ai/claude-code@VERSION`).
pub const CLAUDE_CODE_VERSION: &str = "2.1.328";

/// The image repository; tags are the Claude Code version and `latest`.
pub const IMAGE_REPO: &str = "localhost/creel-claude";

/// The recipe, `image/Containerfile` in the repository.
pub const CONTAINERFILE: &str = include_str!("../../../image/Containerfile");

/// The base image an offline build imports from a debootstrap'ed rootfs.
pub const OFFLINE_BASE: &str = "localhost/creel-debian:bookworm";

/// The Debian release of the image.
pub const DEBIAN_SUITE: &str = "bookworm";

/// The Debian archive debootstrap uses by default.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// npm's integrity (sha512) of `@anthropic-ai/claude-code-linux-x64@2.1.328`.
const INTEGRITY_X64: &str = "sha512-KuzL+dBHgDCFTHJxwW+xuBJdVKfBsesGx2BBcTOG9sYDGoAD7b1hUV8rsTS4xjoJsB2SmeGraGjBiFuhrYuC9w==";
/// npm's integrity (sha512) of `@anthropic-ai/claude-code-linux-arm64@2.1.328`.
const INTEGRITY_ARM64: &str = "sha512-zeWsClzx/rli8q6RsngKisu5BnuZ41J7Htp0qgsdZomaJCINiksf+mewQ/gyaylKajBZCoE9Z8R+OkLMjIkJig==";

/// Lines of a failed tool's output kept for the error message.
const TAIL_LINES: usize = 30;

/// `localhost/creel-claude:<version>`.
pub fn versioned_tag() -> String {
    format!("{IMAGE_REPO}:{CLAUDE_CODE_VERSION}")
}

/// `localhost/creel-claude:latest`.
pub fn latest_tag() -> String {
    format!("{IMAGE_REPO}:latest")
}

pub use crate::error::ImageError;

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The podman binary (default: `podman` on PATH).
    pub podman: Option<PathBuf>,
    /// Build without a container registry (debootstrap + npm).
    pub offline: bool,
    /// Where downloads are cached (`/var/cache/creel` for root, else `~/.cache/creel`).
    pub cache_dir: PathBuf,
    /// The Debian archive for debootstrap.
    pub mirror: String,
    /// Ignore every cache: bootstrap and download again, and build without Podman's layer cache.
    pub refresh: bool,
}

impl BuildOptions {
    /// Options with the default mirror and caches on.
    pub fn new(podman: Option<PathBuf>, offline: bool, cache_dir: PathBuf) -> BuildOptions {
        BuildOptions {
            podman,
            offline,
            cache_dir,
            mirror: DEFAULT_MIRROR.into(),
            refresh: false,
        }
    }
}

/// What a build reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress<'a> {
    /// A step begins.
    Step {
        /// 1-based.
        index: usize,
        /// Number of steps.
        total: usize,
        /// What it does.
        title: String,
    },
    /// A step found its result already there and did nothing.
    Reused(String),
    /// A line printed by the program a step runs.
    Output(&'a str),
    /// A step ended.
    StepDone {
        /// 1-based.
        index: usize,
        /// How long it took.
        elapsed: Duration,
    },
}

/// What a build made.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// The image tags, versioned first.
    pub tags: Vec<String>,
    /// The image id.
    pub image_id: String,
    /// What `claude --version` printed inside the image.
    pub claude_version: String,
    /// What was reused rather than made.
    pub reused: Vec<String>,
    /// Whole build time.
    pub elapsed: Duration,
}

/// The default cache directory: `$CREEL_CACHE_DIR`, else `/var/cache/creel` for root, else
/// `$XDG_CACHE_HOME/creel` or `~/.cache/creel`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CREEL_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/cache/creel");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("creel");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/creel"),
        None => std::env::temp_dir().join("creel-cache"),
    }
}

/// Claude Code's npm platform name and Debian's architecture name for this machine.
fn arch() -> Result<(&'static str, &'static str, &'static str), ImageError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(("x64", "amd64", INTEGRITY_X64)),
        "aarch64" => Ok(("arm64", "arm64", INTEGRITY_ARM64)),
        other => Err(ImageError::Architecture(other)),
    }
}

/// Builds the image (see the module docs). Holds a lock on the cache dir while it runs, so two
/// builds take turns.
pub fn build(
    opts: &BuildOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<BuildReport, crate::Error> {
    Ok(build_inner(opts, progress)?)
}

fn build_inner(
    opts: &BuildOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<BuildReport, ImageError> {
    let t0 = Instant::now();
    let (npm_arch, deb_arch, integrity) = arch()?;
    let podman = match &opts.podman {
        Some(p) if p.is_file() => Some(p.clone()),
        Some(_) => None,
        None => find_in_path("podman"),
    }
    .ok_or(ImageError::ToolMissing {
        tool: "podman",
        purpose: "build the image",
    })?;
    let podman = podman.as_path();
    std::fs::create_dir_all(&opts.cache_dir)
        .map_err(|e| ImageError::io("cannot create the cache dir", &opts.cache_dir, e))?;
    let lock_path = opts.cache_dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| ImageError::io("cannot open", &lock_path, e))?;
    lock.lock()
        .map_err(|e| ImageError::io("cannot lock", &lock_path, e))?;

    let total = if opts.offline { 4 } else { 2 };
    let mut reused = Vec::new();
    let mut index = 0;
    let mut step = |title: String, progress: &mut dyn FnMut(Progress<'_>)| {
        index += 1;
        progress(Progress::Step {
            index,
            total,
            title,
        });
        (index, Instant::now())
    };

    let build_dir = opts.cache_dir.join("build");
    let context = build_dir.join("context");
    std::fs::create_dir_all(&context).map_err(|e| ImageError::io("cannot create", &context, e))?;
    let containerfile = build_dir.join("Containerfile");
    write_atomic(&containerfile, CONTAINERFILE.as_bytes(), 0o644)?;

    let mut build_args: Vec<OsString> = Vec::new();
    if opts.offline {
        // 1. The Debian base image.
        let (i, t) = step(
            format!("base image {OFFLINE_BASE} (Debian {DEBIAN_SUITE}, debootstrap minbase)"),
            progress,
        );
        if !opts.refresh && image_exists(podman, OFFLINE_BASE)? {
            progress(Progress::Reused(format!(
                "{OFFLINE_BASE} is already in podman's storage"
            )));
            reused.push(OFFLINE_BASE.to_string());
        } else {
            let tarball = opts
                .cache_dir
                .join(format!("debian-{DEBIAN_SUITE}-minbase-{deb_arch}.tar"));
            if !opts.refresh && tarball.is_file() {
                progress(Progress::Reused(format!(
                    "cached rootfs {}",
                    tarball.display()
                )));
                reused.push(tarball.display().to_string());
            } else {
                bootstrap(opts, deb_arch, &tarball, progress)?;
            }
            let args = import_args(&tarball);
            run_streaming(podman, &args, false, progress)?;
        }
        progress(Progress::StepDone {
            index: i,
            elapsed: t.elapsed(),
        });

        // 2. Claude Code's binary.
        let (i, t) = step(
            format!("Claude Code {CLAUDE_CODE_VERSION} ({npm_arch}) from npm"),
            progress,
        );
        let dir = opts
            .cache_dir
            .join("claude-code")
            .join(format!("{CLAUDE_CODE_VERSION}-{npm_arch}"));
        if !opts.refresh && cached_binary_ok(&dir, integrity) {
            progress(Progress::Reused(format!(
                "cached binary {}",
                dir.join("claude").display()
            )));
            reused.push(dir.join("claude").display().to_string());
        } else {
            fetch_claude(opts, npm_arch, integrity, &dir, progress)?;
        }
        progress(Progress::StepDone {
            index: i,
            elapsed: t.elapsed(),
        });
        build_args = offline_build_args(&dir);
    }

    // 3. podman build.
    let (i, t) = step(
        format!(
            "podman build {} ({})",
            versioned_tag(),
            if opts.offline {
                "offline: --pull=never"
            } else {
                "online"
            }
        ),
        progress,
    );
    let args = podman_build_args(opts, &build_args, &containerfile, &context);
    run_streaming(podman, &args, !opts.offline, progress)?;
    progress(Progress::StepDone {
        index: i,
        elapsed: t.elapsed(),
    });

    // 4. Check it.
    let (i, t) = step("check: `claude --version` in the image".into(), progress);
    let claude_version = capture(podman, &check_args())?.trim().to_string();
    if !claude_version.contains(CLAUDE_CODE_VERSION) {
        return Err(ImageError::Parse {
            command: "podman run IMAGE claude --version".into(),
            message: format!("expected {CLAUDE_CODE_VERSION}, got `{claude_version}`"),
        });
    }
    progress(Progress::Output(&claude_version));
    let image_id = capture(
        podman,
        &[
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{.Id}}".into(),
            versioned_tag().into(),
        ],
    )?
    .trim()
    .to_string();
    progress(Progress::StepDone {
        index: i,
        elapsed: t.elapsed(),
    });
    drop(lock);
    Ok(BuildReport {
        tags: vec![versioned_tag(), latest_tag()],
        image_id,
        claude_version,
        reused,
        elapsed: t0.elapsed(),
    })
}

/// `podman run` of `claude --version` in the new image, as a job runs: read-only, non-root, no
/// network, and within this host's hard rlimits and OCI runtime quirks.
fn check_args() -> Vec<OsString> {
    let host = crate::host::HostProfile::detect(
        &crate::config::Config::default(),
        crate::config::RuntimeKind::Podman,
    );
    let mut v: Vec<OsString> = [
        "run",
        "--rm",
        "--pull=never",
        "--network=none",
        "--read-only",
        "--user=1000:1000",
        "--env=HOME=/tmp",
        "--tmpfs=/tmp",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    for (name, value) in host.ulimits() {
        v.push(format!("--ulimit={name}={value}:{value}").into());
    }
    if let Some(oci) = &host.oci_runtime {
        v.push(format!("--runtime={oci}").into());
    }
    v.extend([versioned_tag().into(), "claude".into(), "--version".into()]);
    v
}

/// `podman import` of the rootfs tarball as [`OFFLINE_BASE`], with what `debian:bookworm-slim`
/// sets.
fn import_args(tarball: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "import",
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        "CMD [\"bash\"]",
        "--change",
        "LABEL io.creel.base=debootstrap-minbase",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    v.push(tarball.as_os_str().to_os_string());
    v.push(OFFLINE_BASE.into());
    v
}

/// The `--build-arg` and `--build-context` an offline build adds.
fn offline_build_args(claude_dir: &Path) -> Vec<OsString> {
    let mut ctx = OsString::from("claude-code=");
    ctx.push(claude_dir.as_os_str());
    vec![
        "--pull=never".into(),
        "--build-arg".into(),
        format!("BASE_IMAGE={OFFLINE_BASE}").into(),
        "--build-context".into(),
        ctx,
    ]
}

/// The whole `podman build` command line (after the binary).
fn podman_build_args(
    opts: &BuildOptions,
    extra: &[OsString],
    containerfile: &Path,
    context: &Path,
) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["build".into(), "--layers".into()];
    if opts.refresh {
        v.push("--no-cache".into());
    }
    v.extend(extra.iter().cloned());
    for a in [
        "--build-arg".to_string(),
        format!("CLAUDE_CODE_VERSION={CLAUDE_CODE_VERSION}"),
        "--tag".into(),
        versioned_tag(),
        "--tag".into(),
        latest_tag(),
        "--file".into(),
    ] {
        v.push(a.into());
    }
    v.push(containerfile.as_os_str().to_os_string());
    v.push(context.as_os_str().to_os_string());
    v
}

/// debootstrap into a scratch dir under the cache, drop the package cache and lists (the
/// Containerfile fetches fresh ones), and tar it up as `tarball`.
fn bootstrap(
    opts: &BuildOptions,
    deb_arch: &str,
    tarball: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), ImageError> {
    if !rustix::process::geteuid().is_root() {
        return Err(ImageError::NeedsRoot {
            step: "debootstrap of the Debian base",
        });
    }
    let debootstrap = find_in_path("debootstrap").ok_or(ImageError::ToolMissing {
        tool: "debootstrap",
        purpose: "make the Debian base offline",
    })?;
    let root = opts.cache_dir.join("rootfs.tmp");
    remove_tree(&root)?;
    let args: Vec<OsString> = vec![
        "--variant=minbase".into(),
        format!("--arch={deb_arch}").into(),
        DEBIAN_SUITE.into(),
        root.as_os_str().to_os_string(),
        opts.mirror.clone().into(),
    ];
    let result = (|| {
        run_streaming(&debootstrap, &args, false, progress)?;
        for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            clear_files(&root.join(dir))?;
        }
        let tmp = tarball.with_extension("tar.tmp");
        let tar_args: Vec<OsString> = vec![
            "--numeric-owner".into(),
            "-C".into(),
            root.as_os_str().to_os_string(),
            "-cf".into(),
            tmp.as_os_str().to_os_string(),
            ".".into(),
        ];
        let tar = find_in_path("tar").ok_or(ImageError::ToolMissing {
            tool: "tar",
            purpose: "pack the Debian rootfs",
        })?;
        run_streaming(&tar, &tar_args, false, progress)?;
        std::fs::rename(&tmp, tarball)
            .map_err(|e| ImageError::io("cannot move into place", tarball, e))
    })();
    let cleanup = remove_tree(&root);
    result.and(cleanup)
}

/// Whether `dir` holds a binary fetched for the pinned integrity.
fn cached_binary_ok(dir: &Path, integrity: &str) -> bool {
    let ok_binary = std::fs::metadata(dir.join("claude"))
        .is_ok_and(|m| m.is_file() && m.len() > 0 && m.permissions().mode() & 0o111 != 0);
    let recorded = std::fs::read_to_string(dir.join("integrity")).unwrap_or_default();
    ok_binary && recorded.trim() == integrity
}

/// `npm pack` the platform package, check its integrity, and unpack `package/claude` into `dir`.
fn fetch_claude(
    opts: &BuildOptions,
    npm_arch: &str,
    integrity: &'static str,
    dir: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), ImageError> {
    let npm = find_in_path("npm").ok_or(ImageError::ToolMissing {
        tool: "npm",
        purpose: "download Claude Code's npm package",
    })?;
    let package = format!("@anthropic-ai/claude-code-linux-{npm_arch}@{CLAUDE_CODE_VERSION}");
    let scratch = opts.cache_dir.join("npm.tmp");
    remove_tree(&scratch)?;
    std::fs::create_dir_all(&scratch).map_err(|e| ImageError::io("cannot create", &scratch, e))?;
    let result = (|| {
        let args: Vec<OsString> = vec![
            "pack".into(),
            package.clone().into(),
            "--json".into(),
            "--pack-destination".into(),
            scratch.as_os_str().to_os_string(),
        ];
        progress(Progress::Output(&format!("npm pack {package}")));
        let json = capture_in(&npm, &args, Some(&scratch))?;
        let (filename, got) = parse_npm_pack(&json).map_err(|message| ImageError::Parse {
            command: "npm pack --json".into(),
            message,
        })?;
        if got != integrity {
            return Err(ImageError::Integrity {
                package: package.clone(),
                expected: integrity,
                got,
            });
        }
        // The file name comes from npm; keep only its last component.
        let name = Path::new(&filename)
            .file_name()
            .map(OsStr::to_os_string)
            .ok_or_else(|| ImageError::Parse {
                command: "npm pack --json".into(),
                message: format!("bad file name `{filename}`"),
            })?;
        let tgz = scratch.join(name);
        let tar = find_in_path("tar").ok_or(ImageError::ToolMissing {
            tool: "tar",
            purpose: "unpack the npm package",
        })?;
        let tar_args: Vec<OsString> = vec![
            "-xzf".into(),
            tgz.into_os_string(),
            "-C".into(),
            scratch.as_os_str().to_os_string(),
            "--no-same-owner".into(),
            "package/claude".into(),
        ];
        run_streaming(&tar, &tar_args, false, progress)?;
        let unpacked = scratch.join("package").join("claude");
        let meta = std::fs::symlink_metadata(&unpacked)
            .map_err(|e| ImageError::io("cannot find the unpacked binary", &unpacked, e))?;
        if !meta.is_file() {
            return Err(ImageError::Parse {
                command: "tar -xzf".into(),
                message: "package/claude is not a regular file".into(),
            });
        }
        std::fs::set_permissions(&unpacked, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io("cannot chmod", &unpacked, e))?;
        remove_tree(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| ImageError::io("cannot create", dir, e))?;
        let target = dir.join("claude");
        std::fs::rename(&unpacked, &target)
            .map_err(|e| ImageError::io("cannot move into place", &target, e))?;
        write_atomic(&dir.join("integrity"), integrity.as_bytes(), 0o644)?;
        progress(Progress::Output(&format!(
            "cached {} ({} MB)",
            target.display(),
            meta.len() >> 20
        )));
        Ok(())
    })();
    let cleanup = remove_tree(&scratch);
    result.and(cleanup)
}

/// The file name and integrity from `npm pack --json` (an array with one object).
fn parse_npm_pack(json: &str) -> Result<(String, String), String> {
    // npm may print notices before the JSON; it starts at the first `[`.
    let start = json.find('[').ok_or("no JSON array in the output")?;
    let v: serde_json::Value = serde_json::from_str(&json[start..]).map_err(|e| e.to_string())?;
    let first = v.get(0).ok_or("empty array")?;
    let field = |k: &str| {
        first
            .get(k)
            .and_then(|x| x.as_str())
            .map(String::from)
            .ok_or_else(|| format!("no `{k}`"))
    };
    Ok((field("filename")?, field("integrity")?))
}

fn image_exists(podman: &Path, image: &str) -> Result<bool, ImageError> {
    let status = Command::new(podman)
        .args(["image", "exists", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| ImageError::Spawn {
            program: podman.display().to_string(),
            source,
        })?;
    Ok(status.success())
}

/// Runs `program args`, passing each output line (stdout and stderr) to `progress`. On failure
/// the error keeps the last lines.
fn run_streaming(
    program: &Path,
    args: &[OsString],
    online: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), ImageError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ImageError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, tx.clone()));
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    for line in rx {
        progress(Progress::Output(&line));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(|source| ImageError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(ImageError::Failed {
        command: command_line(program, args),
        status: status.to_string(),
        tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
        online,
    })
}

fn spawn_reader(
    r: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    // Progress bars redraw with `\r`: keep the last state of the line.
                    let line = text
                        .trim_end()
                        .rsplit('\r')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Runs `program args` and returns its stdout; on failure, an error with its stderr.
fn capture(program: &Path, args: &[OsString]) -> Result<String, ImageError> {
    capture_in(program, args, None)
}

fn capture_in(program: &Path, args: &[OsString], cwd: Option<&Path>) -> Result<String, ImageError> {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c.output().map_err(|source| ImageError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        return Err(ImageError::Failed {
            command: command_line(program, args),
            status: out.status.to_string(),
            tail,
            online: false,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command for messages: the program's name and its arguments, paths shortened.
fn command_line(program: &Path, args: &[OsString]) -> String {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.display().to_string());
    let mut s = name;
    for a in args.iter().take(8) {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if args.len() > 8 {
        s.push_str(" …");
    }
    s
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| ImageError::io("cannot write", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ImageError::io("cannot chmod", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ImageError::io("cannot move into place", path, e))
}

/// Removes a directory tree if it exists (symlinks inside are removed, never followed).
fn remove_tree(path: &Path) -> Result<(), ImageError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io("cannot look at", path, e)),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|e| ImageError::io("cannot remove", path, e))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| ImageError::io("cannot remove", path, e)),
    }
}

/// Removes the regular files and symlinks directly in `dir` (apt's `partial/` and `lock` stay
/// as directories and empty files are harmless).
fn clear_files(dir: &Path) -> Result<(), ImageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io("cannot list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io("cannot list", dir, e))?;
        let path = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| ImageError::io("cannot look at", &path, e))?;
        if !ft.is_dir() && entry.file_name() != "lock" {
            std::fs::remove_file(&path).map_err(|e| ImageError::io("cannot remove", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerfile_pins_the_same_version() {
        let pins: Vec<&str> = CONTAINERFILE
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ARG CLAUDE_CODE_VERSION="))
            .collect();
        assert!(!pins.is_empty());
        assert!(pins.iter().all(|v| *v == CLAUDE_CODE_VERSION), "{pins:?}");
        assert!(latest_tag() == crate::config::DEFAULT_IMAGE);
    }

    /// The Containerfile's structure: the online default base, the stage the offline build
    /// replaces, what the issue asks of the image. (No registry here to build it online.)
    #[test]
    fn containerfile_recipe() {
        let c = CONTAINERFILE;
        assert!(c.contains("ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim"));
        assert!(c.contains("FROM scratch AS claude-code\n"));
        assert!(c.contains("COPY --from=claude-code /claude /usr/local/bin/claude"));
        for pkg in ["git", "ripgrep", "jq", "python3", "build-essential"] {
            assert!(c.contains(&format!(" {pkg} ")), "{pkg}");
        }
        assert!(c.contains("DISABLE_AUTOUPDATER=1"));
        assert!(c.contains("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"));
        assert!(c.contains("USER agent"));
        // Every instruction is one podman/docker know.
        let known = [
            "ARG", "FROM", "RUN", "COPY", "ENV", "LABEL", "USER", "WORKDIR", "CMD",
        ];
        let mut continued = false;
        for line in c.lines() {
            let l = line.trim();
            if !continued && !l.is_empty() && !l.starts_with('#') {
                let word = l.split_whitespace().next().unwrap_or("");
                assert!(known.contains(&word), "unknown instruction in `{l}`");
            }
            continued = l.ends_with('\\');
        }
    }

    #[test]
    fn integrity_pins_match_the_containerfile_checksums() {
        // The Containerfile has the same sha512 values as hex.
        for (b64, arg) in [
            (INTEGRITY_X64, "CLAUDE_CODE_SHA512_X64="),
            (INTEGRITY_ARM64, "CLAUDE_CODE_SHA512_ARM64="),
        ] {
            let hex = CONTAINERFILE
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("ARG ")
                        .and_then(|l| l.strip_prefix(arg))
                })
                .unwrap();
            let bytes = base64_decode(b64.strip_prefix("sha512-").unwrap());
            let from_b64: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, from_b64);
        }
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|&c| c != b'=') {
            let v = alphabet.iter().position(|&a| a == c).unwrap() as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        out
    }

    #[test]
    fn offline_build_command_line() {
        let mut opts = BuildOptions::new(None, true, "/c".into());
        let extra = offline_build_args(Path::new("/c/claude-code/2.1.328-x64"));
        let v: Vec<String> = podman_build_args(
            &opts,
            &extra,
            Path::new("/c/build/Containerfile"),
            Path::new("/c/build/context"),
        )
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect();
        let pair = |a: &str, b: &str| v.windows(2).any(|w| w[0] == a && w[1] == b);
        assert_eq!(v[0], "build");
        assert!(v.contains(&"--pull=never".to_string()));
        assert!(pair(
            "--build-arg",
            "BASE_IMAGE=localhost/creel-debian:bookworm"
        ));
        assert!(pair(
            "--build-context",
            "claude-code=/c/claude-code/2.1.328-x64"
        ));
        assert!(pair("--build-arg", "CLAUDE_CODE_VERSION=2.1.328"));
        assert!(pair("--tag", "localhost/creel-claude:2.1.328"));
        assert!(pair("--tag", "localhost/creel-claude:latest"));
        assert!(pair("--file", "/c/build/Containerfile"));
        assert_eq!(v.last().unwrap(), "/c/build/context");
        assert!(!v.contains(&"--no-cache".to_string()));
        opts.refresh = true;
        opts.offline = false;
        let v = podman_build_args(&opts, &[], Path::new("/f"), Path::new("/d"));
        assert!(v.iter().any(|a| a == "--no-cache"));
        assert!(!v.iter().any(|a| a == "--pull=never"));
    }

    #[test]
    fn import_sets_path_and_tag() {
        let v: Vec<String> = import_args(Path::new("/c/rootfs.tar"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(v[0], "import");
        assert!(v.iter().any(|a| a.starts_with("ENV PATH=")));
        assert_eq!(&v[v.len() - 2..], ["/c/rootfs.tar", OFFLINE_BASE]);
    }

    #[test]
    fn npm_pack_output() {
        let out = "npm notice something\n[\n  {\n    \"id\": \"x\", \"filename\": \"a-b-1.tgz\", \"integrity\": \"sha512-abc\"\n  }\n]\n";
        assert_eq!(
            parse_npm_pack(out).unwrap(),
            ("a-b-1.tgz".to_string(), "sha512-abc".to_string())
        );
        assert!(parse_npm_pack("oops").is_err());
        assert!(parse_npm_pack("[]").is_err());
    }

    #[test]
    fn cache_check_needs_the_recorded_integrity() {
        let d = tempfile::tempdir().unwrap();
        assert!(!cached_binary_ok(d.path(), "sha512-x"));
        let bin = d.path().join("claude");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!cached_binary_ok(d.path(), "sha512-x"));
        std::fs::write(d.path().join("integrity"), "sha512-x\n").unwrap();
        assert!(cached_binary_ok(d.path(), "sha512-x"));
        assert!(!cached_binary_ok(d.path(), "sha512-y"));
    }
}
