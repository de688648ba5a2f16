//! creel's exit codes.

/// The exit codes the README lists under "Using creel", turned into a process exit code in `main` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    Success = 0,
    Failure = 1,
    Invalid = 2,
    Environment = 3,
    Timeout = 4,
    NeedsAnswer = 5,
}

/// A mistake in what the user gave creel outside the engine (a script file, its contents):
/// reported with exit status 2, like the engine's invalid requests.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);
