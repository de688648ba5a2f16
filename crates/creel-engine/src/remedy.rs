//! What can be done about an error, as data. The engine says *what* would help; each face says
//! it in its own words: the CLI names its commands and flags, the MCP server names its tools
//! and, for what only the host's operator can do, says so. A face matches every variant, so a
//! new remedy cannot reach a user unphrased.

/// A remedy for an [`crate::Error`] (see [`crate::Error::remedy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// Session ids are 1-128 letters, digits, `.`, `_` or `-`, starting with a letter or digit.
    SessionIdFormat,
    /// The job is not known: list the sessions and their active jobs to find it.
    FindJob,
    /// The session already runs `job`: wait for it to end, or cancel it.
    WaitOrCancel {
        /// The active job.
        job: String,
    },
    /// The session's budget is spent: raise it (then the next job resumes the conversation).
    RaiseBudget {
        /// The session.
        session: String,
    },
    /// The sandbox image is missing: build it (Podman builds; Docker loads Podman's build), or
    /// configure another `image`.
    BuildImage {
        /// The image creel looked for.
        image: String,
        /// Whether jobs run on Docker.
        docker: bool,
    },
    /// A configured image that creel does not build is missing: pull or build it, or go back to
    /// creel's own.
    ProvideImage {
        /// The image creel looked for.
        image: String,
    },
    /// No Claude login: an API key (`ANTHROPIC_API_KEY` or `api_key_file`) or an OAuth login
    /// (`claude login`) on this host.
    Login,
    /// The container runtime is not installed (`podman`: it is Podman).
    InstallRuntime {
        /// Whether the missing runtime is Podman.
        podman: bool,
    },
    /// The host's hybrid cgroup layout needs `oci_runtime = "runc"`.
    UseRunc,
    /// The host's hard rlimits are below what the container asks for.
    RaiseRlimits,
    /// The container runtime failed: check the host (`doctor`).
    CheckHost,
    /// A program the image build needs is missing.
    InstallTool {
        /// The program.
        tool: String,
    },
    /// The offline image build needs root once (then its Debian rootfs is cached).
    BuildOfflineAsRoot,
    /// No container registry is reachable: the offline build needs none.
    BuildOffline,
    /// debootstrap could not reach the Debian archive (another mirror may do).
    DebianMirror,
    /// npm could not reach its registry.
    NpmRegistry,
}

impl Remedy {
    /// What helps when `image` is missing: creel's own image can be built by creel; any other
    /// must come from wherever it is made.
    pub(crate) fn missing_image(image: &str, docker: bool) -> Remedy {
        if image.starts_with("localhost/creel-claude:") {
            Remedy::BuildImage {
                image: image.to_string(),
                docker,
            }
        } else {
            Remedy::ProvideImage {
                image: image.to_string(),
            }
        }
    }
}
