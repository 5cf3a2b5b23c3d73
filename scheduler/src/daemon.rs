//! The scheduler daemon: fires each schedule at its times, starts runs through one dispatcher
//! (shared with the API) that keeps at most `max_concurrent_runs` of a job going, and records
//! everything in the run history.
//!
//! A fire that finds the job still running is recorded as SKIPPED, as Glue refuses a run past
//! MaxConcurrentRuns. After a restart each schedule continues after its last recorded fire, so
//! no time fires twice; runs a previous daemon left going are adopted: watched until their
//! process ends, then closed from their output.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::{Mutex, Notify};

use crate::config::{ScheduleSpec, SchedulerConfig, validate_schedules};
use crate::history::{History, NewRun, Run, RunState};
use crate::runner::{self, RunRequest, RunnerConfig};
use crate::{Error, Result};

/// A run to start.
#[derive(Debug, Clone)]
pub struct Submission {
    pub job: String,
    pub args: Vec<String>,
    /// The schedule's name, `api`, or `eventbridge:<source>`.
    pub trigger: String,
    /// The fire time, for scheduled runs.
    pub scheduled_for: Option<DateTime<Utc>>,
    pub timeout: Duration,
    pub max_retries: u32,
}

/// What became of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Started(i64),
    /// Not started: the job was at its concurrency limit (the run id of the SKIPPED record,
    /// for scheduled fires), or this fire was recorded already.
    Skipped(Option<i64>, String),
}

#[derive(Debug)]
struct Active {
    job: String,
    /// `None` for a run adopted from a previous daemon: not ours to kill.
    cancel: Option<Arc<Notify>>,
}

/// Starts runs, keeps the concurrency limit, cancels.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    history: History,
    runner: RunnerConfig,
    max_concurrent: usize,
    active: Arc<Mutex<HashMap<i64, Active>>>,
}

impl Dispatcher {
    pub fn new(history: History, runner: RunnerConfig, max_concurrent: usize) -> Self {
        Self {
            history,
            runner,
            max_concurrent,
            active: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn logs(&self) -> &Path {
        &self.runner.logs
    }

    /// Starts a run unless the job is at its limit.
    pub async fn submit(&self, s: Submission) -> Result<Submitted> {
        let mut active = self.active.lock().await;
        let running: Vec<i64> = active
            .iter()
            .filter(|(_, a)| a.job == s.job)
            .map(|(id, _)| *id)
            .collect();
        if running.len() >= self.max_concurrent {
            let why = format!(
                "ConcurrentRunsExceeded: {} is still running (run {running:?}; max {} at a time)",
                s.job, self.max_concurrent
            );
            let id = match s.scheduled_for {
                Some(_) => {
                    self.history
                        .record(new_run(&s, RunState::Skipped, Some(why.clone())))
                        .await?
                }
                None => None,
            };
            tracing::warn!(trigger = %s.trigger, %why, "run skipped");
            return Ok(Submitted::Skipped(id, why));
        }
        let Some(id) = self
            .history
            .record(new_run(&s, RunState::Starting, None))
            .await?
        else {
            return Ok(Submitted::Skipped(
                None,
                "this fire was recorded already".into(),
            ));
        };
        let cancel = Arc::new(Notify::new());
        active.insert(
            id,
            Active {
                job: s.job.clone(),
                cancel: Some(cancel.clone()),
            },
        );
        drop(active);
        let request = RunRequest {
            id,
            job: s.job,
            args: s.args,
            timeout: s.timeout,
            max_retries: s.max_retries,
        };
        let this = self.clone();
        tokio::spawn(async move {
            let result = runner::execute(&this.history, &this.runner, &request, cancel).await;
            if let Err(e) = &result {
                tracing::error!(run = id, error = %e, "run could not be carried out");
                let _ = this
                    .history
                    .finish(id, RunState::Failed, None, Some(e.to_string()), None)
                    .await;
            }
            this.active.lock().await.remove(&id);
        });
        tracing::info!(run = id, "run started");
        Ok(Submitted::Started(id))
    }

    /// Asks a running run to stop. `Ok(false)` when it is not running (any more).
    pub async fn cancel(&self, id: i64) -> Result<bool> {
        self.history.get(id).await?;
        match self.active.lock().await.get(&id) {
            Some(Active {
                cancel: Some(c), ..
            }) => {
                c.notify_one();
                Ok(true)
            }
            Some(Active { cancel: None, .. }) => Err(Error::Config(format!(
                "run {id} was started by a previous scheduler process; it is watched, not owned"
            ))),
            None => Ok(false),
        }
    }

    /// Adopts the runs a previous daemon left STARTING or RUNNING.
    pub async fn adopt_stale_runs(&self) -> Result<()> {
        for run in self.history.list(None, true, 10_000).await? {
            self.active.lock().await.insert(
                run.id,
                Active {
                    job: run.job.clone(),
                    cancel: None,
                },
            );
            let this = self.clone();
            tokio::spawn(async move { this.watch_adopted(run).await });
        }
        Ok(())
    }

    async fn watch_adopted(&self, run: Run) {
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        while run.pid.is_some_and(alive) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (out, _) = runner::run_files(&self.runner.logs, run.id);
        let summary: Option<serde_json::Value> = std::fs::read_to_string(out)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let (state, error) = match summary {
            Some(_) => (RunState::Succeeded, None),
            None => (
                RunState::Failed,
                Some("the scheduler restarted during this run and found no summary".to_string()),
            ),
        };
        if let Err(e) = self
            .history
            .finish(run.id, state, None, error, summary)
            .await
        {
            tracing::error!(run = run.id, error = %e, "could not close an adopted run");
        }
        self.active.lock().await.remove(&run.id);
    }
}

fn new_run(s: &Submission, state: RunState, error: Option<String>) -> NewRun<'_> {
    NewRun {
        job: &s.job,
        args: &s.args,
        trigger: &s.trigger,
        scheduled_for: s.scheduled_for,
        state,
        error,
    }
}

/// Fires one schedule forever (or until its expression has no more times).
async fn fire_schedule(dispatcher: Dispatcher, spec: ScheduleSpec) -> Result<()> {
    let expression = spec.expression()?;
    let tz = spec.tz()?;
    let now = Utc::now();
    let mut cursor = dispatcher
        .history
        .last_fire(&spec.name)
        .await?
        .map_or(now, |last| last.max(now));
    while let Some(next) = expression.next_after(cursor, tz) {
        let jitter = match spec.flexible_window_minutes {
            0 => Duration::ZERO,
            w => Duration::from_secs(rand::rng().random_range(0..u64::from(w) * 60)),
        };
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO) + jitter;
        tokio::time::sleep(wait).await;
        let submission = Submission {
            job: spec.job.clone(),
            args: spec.args.clone(),
            trigger: spec.name.clone(),
            scheduled_for: Some(next),
            timeout: Duration::from_secs(spec.timeout_minutes * 60),
            max_retries: spec.max_retries,
        };
        if let Err(e) = dispatcher.submit(submission).await {
            tracing::error!(schedule = %spec.name, error = %e, "could not start a scheduled run");
        }
        cursor = next;
    }
    tracing::info!(schedule = %spec.name, "no more fire times");
    Ok(())
}

/// What the daemon needs.
#[derive(Debug, Clone)]
pub struct DaemonParams {
    pub config: SchedulerConfig,
    pub schedules: Vec<ScheduleSpec>,
    pub runner: RunnerConfig,
    /// Jobs the API accepts.
    pub jobs: Vec<String>,
    /// Serve the submission API (needs a token).
    pub serve_api: bool,
    /// More routes served beside the API (the web console), with their own authentication.
    pub console: Option<axum::Router>,
    /// Which submitted `args` the API accepts for a job.
    pub args_check: crate::api::ArgsCheck,
}

/// Runs the daemon until `shutdown` completes. Runs still going are left to finish; the next
/// daemon adopts them.
pub async fn start_scheduler(
    params: DaemonParams,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    params.config.validate()?;
    validate_schedules(&params.schedules)?;
    let history = History::open(&params.config.db).await?;
    let dispatcher = Dispatcher::new(
        history,
        params.runner.clone(),
        params.config.max_concurrent_runs,
    );
    dispatcher.adopt_stale_runs().await?;
    for spec in params.schedules.iter().filter(|s| s.enabled) {
        let (d, spec) = (dispatcher.clone(), spec.clone());
        tokio::spawn(async move {
            if let Err(e) = fire_schedule(d, spec.clone()).await {
                tracing::error!(schedule = %spec.name, error = %e, "schedule stopped");
            }
        });
    }
    if !params.serve_api {
        shutdown.await;
        return Ok(());
    }
    let token = params.config.token.clone().ok_or_else(|| {
        Error::Config(
            "the API needs a token: set [scheduler] token or CRYPTOLAKE_API_TOKEN (or --no-api)"
                .into(),
        )
    })?;
    let app = crate::api::router(crate::api::ApiState {
        dispatcher,
        token,
        jobs: params.jobs,
        schedules: params.schedules,
        max_body_bytes: params.config.max_body_bytes,
        args_check: params.args_check,
    });
    let app = match params.console {
        Some(console) => app.merge(console),
        None => app,
    };
    let listener = tokio::net::TcpListener::bind(params.config.bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "submission API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
