//! Which container engine and image new jobs use: the `--runtime` and `--image` options of
//! the commands that start jobs or check what they need (`run`, `start`, `doctor`, `mcp`).

/// `--runtime` and `--image`, over the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EngineChoice {
    /// Container engine for new jobs: podman or docker
    #[arg(long, env = "CREEL_RUNTIME", value_name = "RUNTIME", value_parser = ["podman", "docker"])]
    pub runtime: Option<String>,
    /// Container image with Claude Code for new jobs
    #[arg(long, env = "CREEL_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,
}
