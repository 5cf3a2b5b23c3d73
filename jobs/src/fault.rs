//! Fault injection for crash tests: `CRYPTOLAKE_FAULT=<point>` kills the process at that
//! point with no cleanup, as SIGKILL or a lost machine would.
//!
//! Points: `<job>:after-write` (files written, nothing committed) and
//! `<job>:after-commit` (committed, before the run summary).

/// The environment variable that names the fault point.
pub const FAULT_ENV: &str = "CRYPTOLAKE_FAULT";

/// Aborts the process when `CRYPTOLAKE_FAULT` names this point.
pub fn maybe_crash(job: &str, point: &str) {
    if let Ok(wanted) = std::env::var(FAULT_ENV)
        && wanted == format!("{job}:{point}")
    {
        tracing::warn!(job, point, "fault injected: aborting the process");
        // abort() skips destructors and buffered IO, like SIGKILL.
        std::process::abort();
    }
}
