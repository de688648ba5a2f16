//! creel's integration tests: all linked into one binary (as ripgrep does). They run the built
//! `creel` binary against real Podman (and Docker) containers from the tiny test image that
//! `scripts/build-test-image.sh` builds (busybox + the stand-in `claude` in `tests-image/`).

// The harness: a fresh state dir per test, the binary, JSON helpers.
mod util;

// Starting, observing and finishing jobs through the CLI, on Podman.
mod lifecycle;
// Bad input and environment errors: messages, hints, exit codes, nothing stored.
mod errors;
// The container's hardening and the agent's identity, seen from inside.
mod sandbox;
// The same scenarios on Docker.
mod docker;
// The allowlist network: the egress proxy, raw-socket attempts, the key kept out.
mod egress;
// Completion webhooks and OAuth logins.
mod hooks;
// Idle-session cleanup, automatic and explicit.
mod cleanup;
// `creel kube render`, its manifests run with `podman kube play`.
mod kube;
// `runtime = "kubernetes"` against `creel fake-kube`, the stand-in API server.
mod kube_api;
// The warm pool: sandboxes started ahead, used once, refilled, discarded when stale.
mod pool;
// `--help` snapshots.
mod help;
// Error messages snapshotted whole: exit code, stdout, stderr (no container needed).
mod messages;
// Rootless Podman as an unprivileged user.
mod rootless;
// Steering: questions, approvals and their answers (the test image's stand-in asks).
mod steer;
// The MCP server (`creel mcp`) driven by rmcp's client over stdio and streamable HTTP.
mod mcp;
// The real Claude Code in the real sandbox image, against `creel fake-model` (needs the image).
mod e2e;
// `creel acp` driven by independent ACP clients (acpx, the official TypeScript SDK) with the
// real Claude Code in the real image.
mod acp;
// The web dashboard (`creel ui`) in headless Chromium, and its refusals over raw HTTP.
mod ui;
