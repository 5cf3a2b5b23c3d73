//! The runner against real child processes: a stand-in program that behaves like
//! `cryptolake run` (exit codes, a JSON summary on stdout) drives retries, timeouts and
//! cancellation to Glue's end states.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptolake_scheduler::history::{History, NewRun, RunState};
use cryptolake_scheduler::runner::{RunRequest, RunnerConfig, execute};
use tokio::sync::Notify;

/// `prog -o json run JOB`: `ok` prints a summary, `flaky` fails (exit 1) until its third try,
/// `bad` exits 2, `slow` sleeps. Every start appends the job to `starts`.
const PROGRAM: &str = r#"#!/bin/sh
dir=$(dirname "$0")
job=$4
echo "$job" >> "$dir/starts"
case "$job" in
  ok) echo '[{"job":"ok","tables":{}}]' ;;
  flaky) [ "$(grep -c flaky "$dir/starts")" -ge 3 ] && echo '[{"job":"flaky"}]' && exit 0; echo "error: lost a race" >&2; exit 4 ;;
  bad) echo "error: bad config" >&2; exit 2 ;;
  slow) sleep 30 ;;
esac
"#;

struct Env {
    dir: tempfile::TempDir,
    history: History,
    config: RunnerConfig,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("prog");
    std::fs::write(&program, PROGRAM).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let history = History::open(&dir.path().join("h.db")).await.unwrap();
    let config = RunnerConfig {
        program,
        config_file: None,
        logs: dir.path().join("runs"),
        retry_backoff: Duration::from_millis(10),
    };
    Env {
        dir,
        history,
        config,
    }
}

impl Env {
    async fn run(
        &self,
        job: &str,
        retries: u32,
        timeout: Duration,
        cancel: Arc<Notify>,
    ) -> (RunState, u32, Option<i32>) {
        let new = NewRun {
            job,
            args: &[],
            trigger: "api",
            scheduled_for: None,
            state: RunState::Starting,
            error: None,
        };
        let id = self.history.record(new).await.unwrap().unwrap();
        let request = RunRequest {
            id,
            job: job.into(),
            args: Vec::new(),
            timeout,
            max_retries: retries,
        };
        let state = execute(&self.history, &self.config, &request, cancel)
            .await
            .unwrap();
        let run = self.history.get(id).await.unwrap();
        assert_eq!(run.state, state);
        (state, run.attempt, run.exit_code)
    }

    fn starts(&self, job: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("starts"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == job)
            .count()
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn retries_only_what_may_pass_and_keeps_the_summary() {
    let e = env().await;
    let none = || Arc::new(Notify::new());
    assert_eq!(
        e.run("ok", 0, LONG, none()).await,
        (RunState::Succeeded, 0, Some(0))
    );
    // Exit 4 (lost a race) is retried: the third attempt succeeds.
    assert_eq!(
        e.run("flaky", 5, LONG, none()).await,
        (RunState::Succeeded, 2, Some(0))
    );
    assert_eq!(e.starts("flaky"), 3);
    // Exit 2 (bad usage) is not, whatever max_retries says.
    assert_eq!(
        e.run("bad", 5, LONG, none()).await,
        (RunState::Failed, 0, Some(2))
    );
    assert_eq!(e.starts("bad"), 1);
    let runs = e.history.list(None, false, 10).await.unwrap();
    let ok = runs.iter().find(|r| r.job == "ok").unwrap();
    assert_eq!(
        ok.summary,
        Some(serde_json::json!([{"job": "ok", "tables": {}}]))
    );
    let bad = runs.iter().find(|r| r.job == "bad").unwrap();
    assert_eq!(bad.error.as_deref(), Some("error: bad config"));
}

#[tokio::test]
async fn a_timeout_and_a_cancel_kill_the_process() {
    let e = env().await;
    let started = Instant::now();
    let (state, _, _) = e
        .run(
            "slow",
            3,
            Duration::from_millis(300),
            Arc::new(Notify::new()),
        )
        .await;
    assert_eq!(state, RunState::Timeout);
    assert_eq!(e.starts("slow"), 1, "a timeout is not retried");
    let cancel = Arc::new(Notify::new());
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.notify_one();
    });
    let (state, _, _) = e.run("slow", 3, LONG, cancel).await;
    assert_eq!(state, RunState::Stopped);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the sleeps were killed"
    );
}
