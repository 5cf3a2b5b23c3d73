//! Runs one job as a child process of the cryptolake binary and drives its run to an end
//! state: retries with exponential backoff, a timeout, and cancellation.
//!
//! The child writes its JSON summary to `<logs>/<id>.out` and its log to `<logs>/<id>.log`
//! (files, not pipes, so a child outlives a killed daemon cleanly). Whether a failed run is
//! tried again is its error kind's rule ([`ErrorKind`], the same for the CLI and the cluster
//! engine), read back from the child's exit code: 1 (transient) and 4 (lost a commit race)
//! are tried again; 2 (usage), 3 (bad-record threshold) and 70 (internal) are not, as
//! retrying cannot help. A child killed by a signal is tried again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cryptolake_jobs::ErrorKind;

use tokio::process::Command;
use tokio::sync::Notify;

use crate::Result;
use crate::history::{History, RunState};

/// How to start a job's process.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The cryptolake binary.
    pub program: PathBuf,
    /// Passed as `-c FILE`.
    pub config_file: Option<PathBuf>,
    pub logs: PathBuf,
    /// First retry after this; doubles each time.
    pub retry_backoff: Duration,
}

/// One run to carry out.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub id: i64,
    pub job: String,
    pub args: Vec<String>,
    pub timeout: Duration,
    pub max_retries: u32,
}

/// Paths of a run's output and log.
pub fn run_files(logs: &Path, id: i64) -> (PathBuf, PathBuf) {
    (
        logs.join(format!("{id}.out")),
        logs.join(format!("{id}.log")),
    )
}

/// Carries a run out; returns its end state. `cancel` stops it (state STOPPED).
pub async fn execute(
    history: &History,
    config: &RunnerConfig,
    request: &RunRequest,
    cancel: Arc<Notify>,
) -> Result<RunState> {
    std::fs::create_dir_all(&config.logs)?;
    let (out_path, log_path) = run_files(&config.logs, request.id);
    let mut attempt = 0;
    loop {
        let outcome = attempt_once(history, config, request, attempt, &cancel).await?;
        let (state, code, error) = match outcome {
            Outcome::Exited(0) => {
                let summary = std::fs::read_to_string(&out_path)
                    .ok()
                    .and_then(|s| serde_json::from_str(&s).ok());
                history
                    .finish(request.id, RunState::Succeeded, Some(0), None, summary)
                    .await?;
                return Ok(RunState::Succeeded);
            }
            Outcome::Exited(code) => (RunState::Failed, Some(code), last_line(&log_path)),
            Outcome::Killed => (RunState::Failed, None, Some("killed by a signal".into())),
            Outcome::TimedOut => {
                let why = format!("timed out after {} s", request.timeout.as_secs());
                history
                    .finish(request.id, RunState::Timeout, None, Some(why), None)
                    .await?;
                return Ok(RunState::Timeout);
            }
            Outcome::Cancelled => {
                let why = "stopped on request".to_string();
                history
                    .finish(request.id, RunState::Stopped, None, Some(why), None)
                    .await?;
                return Ok(RunState::Stopped);
            }
        };
        let retryable = code.is_none_or(|c| ErrorKind::from_exit_code(c).retryable());
        if !retryable || attempt >= request.max_retries {
            history.finish(request.id, state, code, error, None).await?;
            return Ok(state);
        }
        let wait = config.retry_backoff * 2_u32.saturating_pow(attempt);
        tracing::warn!(
            run = request.id,
            attempt,
            ?code,
            ?wait,
            "run failed; trying again"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.notified() => {
                history.finish(request.id, RunState::Stopped, code, Some("stopped on request".into()), None).await?;
                return Ok(RunState::Stopped);
            }
        }
        attempt += 1;
    }
}

enum Outcome {
    Exited(i32),
    Killed,
    TimedOut,
    Cancelled,
}

async fn attempt_once(
    history: &History,
    config: &RunnerConfig,
    request: &RunRequest,
    attempt: u32,
    cancel: &Notify,
) -> Result<Outcome> {
    let (out_path, log_path) = run_files(&config.logs, request.id);
    let out = std::fs::File::create(&out_path)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    use std::io::Write;
    writeln!(
        log,
        "--- attempt {attempt}: cryptolake run {} {}",
        request.job,
        request.args.join(" ")
    )?;
    let mut command = Command::new(&config.program);
    if let Some(file) = &config.config_file {
        command.arg("-c").arg(file);
    }
    let mut child = command
        .args(["-o", "json", "run", &request.job])
        .args(&request.args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()?;
    history.started(request.id, attempt, child.id()).await?;
    let outcome = tokio::select! {
        status = child.wait() => {
            let status = status?;
            match status.code() {
                Some(code) => Outcome::Exited(code),
                None => Outcome::Killed,
            }
        }
        () = tokio::time::sleep(request.timeout) => Outcome::TimedOut,
        () = cancel.notified() => Outcome::Cancelled,
    };
    if matches!(outcome, Outcome::TimedOut | Outcome::Cancelled) {
        // Safe to kill at any point: the job's commit is atomic, files come first.
        child.kill().await?;
    }
    Ok(outcome)
}

/// The last non-empty line of a log: the error the CLI printed.
fn last_line(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string)
    })
}
