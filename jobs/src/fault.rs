//! Fault injection for crash tests: `CRYPTOLAKE_FAULT=<point>` kills the process at that
//! point with SIGKILL, as a lost machine or the OOM killer would.
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
        tracing::warn!(
            job,
            point,
            "fault injected: killing the process with SIGKILL"
        );
        // A real SIGKILL: no destructor, no flush, no chance to clean up.
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        std::thread::sleep(std::time::Duration::from_secs(10));
        // Only reached where `kill` is missing.
        std::process::abort();
    }
}
