//! The engine's remedies in the CLI's words: its commands, flags and config keys.

use creel_engine::Remedy;

/// The `hint:` line for `r`.
pub fn phrase(r: &Remedy) -> String {
    match r {
        Remedy::SessionIdFormat => "session ids are 1-128 characters of letters, digits, `.`, `_` and `-`, starting with a letter or digit".into(),
        Remedy::FindJob => "`creel jobs` lists the newest jobs (`--session S` for one session's)".into(),
        Remedy::RaiseBudget { session } => format!(
            "raise it with `creel budget {session} --max-cost-usd N` (or --max-turns, --max-wall-seconds); the next `creel start --session {session}` resumes the conversation"
        ),
        Remedy::WaitOrCancel { job } => {
            format!("wait for it with `creel wait {job}` or stop it with `creel cancel {job}`")
        }
        Remedy::BuildImage { image, docker: true } => format!(
            "build it with Podman and load it into Docker: `creel image build && podman save {image} | docker load` \
             (Podman only builds; jobs run on Docker), or choose another with `image` in the config"
        ),
        Remedy::BuildImage { docker: false, .. } => {
            "build it with `creel image build`, or choose another with `image` in the config".into()
        }
        Remedy::ProvideImage { image } => format!(
            "pull or build `{image}` with the container engine (`creel image build` makes only localhost/creel-claude), \
             or remove `image` from the config to use creel's own"
        ),
        Remedy::Login => {
            "export ANTHROPIC_API_KEY=... or run `claude login` on this host (Claude Pro/Max); for a dry run without a key, `creel fake-model` prints what to export".into()
        }
        Remedy::InstallRuntime { podman: true } => "install Podman (`apt-get install podman runc uidmap slirp4netns`), or pick Docker with `--runtime docker`; `creel doctor` checks the host".into(),
        Remedy::InstallRuntime { podman: false } => {
            "install it, or pick another with `--runtime`; `creel doctor` checks the host".into()
        }
        Remedy::UseRunc => "this host's hybrid cgroup layout needs runc: set `oci_runtime = \"runc\"` (`creel doctor` explains)".into(),
        Remedy::RaiseRlimits => "the host's hard rlimits are lower than the container asks for; `creel doctor` shows the limits creel uses".into(),
        Remedy::CheckHost => "`creel doctor` checks the container runtime on this host".into(),
        Remedy::InstallTool { tool } if tool == "podman" => {
            "apt-get install podman runc uidmap slirp4netns".into()
        }
        Remedy::InstallTool { tool } if tool == "npm" => "install Node.js and npm (Debian: `apt-get install npm`), or put a cached binary in the cache dir".into(),
        Remedy::InstallTool { tool } => format!("apt-get install {tool}"),
        Remedy::BuildOfflineAsRoot => "run `creel image build --offline` once as root (the Debian rootfs is then cached), or build online".into(),
        Remedy::BuildOffline => {
            "no container registry reachable? `creel image build --offline` needs none".into()
        }
        Remedy::DebianMirror => "debootstrap needs the Debian archive (`--mirror URL` picks another); once it succeeds the rootfs is cached".into(),
        Remedy::NpmRegistry => "npm needs the npm registry (`npm config get registry`); once it succeeds the binary is cached".into(),
    }
}
