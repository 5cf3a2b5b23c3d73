//! Fault injection for crash tests: `CRYPTOLAKE_FAULT=<point>` kills the process at that
//! point with SIGKILL, as a lost machine or the OOM killer would.
//!
//! Points: `<job>:before-execute` (planned, nothing written), `<job>:after-write` (files
//! written, nothing committed) and `<job>:after-commit` (committed, before the run summary).
//! `<job>:<point>:delay=MS` sleeps that long at the point instead, to make a job slow.
//! `<job>:<point>:error` makes an async point fail with an internal error instead (a task's
//! invariant failing), to check that such a failure has the same kind everywhere.
//! `silver:sink` is in every stage-two task of silver (on a cluster, in the executors), before
//! it reads its input.

/// The environment variable that names the fault point.
pub const FAULT_ENV: &str = "CRYPTOLAKE_FAULT";

/// Aborts the process (or sleeps) when `CRYPTOLAKE_FAULT` names this point.
pub fn maybe_crash(job: &str, point: &str) {
    let Ok(wanted) = std::env::var(FAULT_ENV) else {
        return;
    };
    let here = format!("{job}:{point}");
    if let Some(ms) = delay(&wanted, &here) {
        tracing::warn!(job, point, ms, "fault injected: sleeping");
        std::thread::sleep(std::time::Duration::from_millis(ms));
        return;
    }
    if wanted == here {
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

/// [`maybe_crash`] in async code: a delay sleeps without holding a runtime thread, and
/// `:error` fails with an internal error.
pub async fn maybe_crash_async(job: &str, point: &str) -> crate::Result<()> {
    let Ok(wanted) = std::env::var(FAULT_ENV) else {
        return Ok(());
    };
    let here = format!("{job}:{point}");
    if wanted.strip_prefix(here.as_str()) == Some(":error") {
        tracing::warn!(job, point, "fault injected: failing");
        return Err(crate::Error::Internal(format!("fault injected at {here}")));
    }
    match delay(&wanted, &here) {
        Some(ms) => {
            tracing::warn!(job, point, ms, "fault injected: sleeping");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        None => maybe_crash(job, point),
    }
    Ok(())
}

/// The delay `wanted` asks for at `here`, if any.
fn delay(wanted: &str, here: &str) -> Option<u64> {
    wanted
        .strip_prefix(here)?
        .strip_prefix(":delay=")?
        .parse()
        .ok()
}
