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
}
