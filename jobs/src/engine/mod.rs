//! Where a job's plan runs: in this process (the default) or on a Ballista cluster
//! ([`crate::job::context::Engine`] says which). The job builds one DataFusion logical plan
//! either way; the engine plans and runs it, runs it again on a cluster when it failed for a
//! reason that can pass ([`crate::Error::retryable`], the same rule the CLI and the scheduler
//! use), and returns the files its write nodes wrote. The commit stays with the caller, on the
//! driver.

pub mod lake;
pub mod rest;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use iceberg::io::FileIO;

use crate::codec::{CryptolakeLogicalCodec, CryptolakePhysicalCodec};
use crate::iceberg::TableRef;
use crate::job::context::{ClusterSettings, Engine, JobContext};
use crate::physical_plan::{CryptolakePlanner, WrittenFile, written_files};
use crate::{Error, Result};

pub use rest::cluster_slots;

/// The session state every cryptolake process plans with: DataFusion's defaults plus the
/// planner for cryptolake's nodes. The cluster scheduler builds its sessions with this too.
pub fn session_state(config: SessionConfig, file_io: FileIO) -> SessionState {
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_query_planner(Arc::new(CryptolakePlanner::new(file_io)))
        .build()
}

/// A session config carrying cryptolake's codecs, for Ballista clients and processes.
pub fn ballista_config(file_io: &FileIO) -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(Arc::new(CryptolakeLogicalCodec::new(
            file_io.clone(),
        )))
        .with_ballista_physical_extension_codec(Arc::new(CryptolakePhysicalCodec::new(
            file_io.clone(),
        )))
}

/// A DataFusion session on the job's engine, with the lake's storage for cryptolake's nodes
/// and the job's tasks per stage.
pub async fn session(ctx: &JobContext) -> Result<SessionContext> {
    engine_session(
        &ctx.engine,
        ctx.lake.file_io(),
        ctx.settings.parallelism,
        ctx.settings.batch_size,
    )
    .await
}

/// A session that runs plans here or on the cluster, with `partitions` per stage in-process
/// (a cluster's default is its executors' task slots).
pub async fn engine_session(
    engine: &Engine,
    file_io: &FileIO,
    partitions: usize,
    batch_size: usize,
) -> Result<SessionContext> {
    match engine {
        Engine::InProcess => {
            let config = SessionConfig::new()
                .with_target_partitions(partitions.max(1))
                .with_batch_size(batch_size);
            Ok(SessionContext::new_with_state(session_state(
                config,
                file_io.clone(),
            )))
        }
        Engine::Cluster(cluster) => {
            let partitions = match cluster.partitions {
                Some(p) => p,
                None => cluster_slots(cluster).await?.max(1),
            };
            let config = ballista_config(file_io)
                .with_target_partitions(partitions)
                .with_batch_size(batch_size);
            let state = SessionStateBuilder::new()
                .with_default_features()
                .with_config(config)
                .build();
            Ok(SessionContext::remote_with_state(&cluster.url, state).await?)
        }
    }
}

/// Runs a plan whose root writes `table`; returns the files written.
pub async fn write(
    engine: &Engine,
    ctx: &SessionContext,
    table: &TableRef,
    plan: LogicalPlan,
) -> Result<Vec<WrittenFile>> {
    written_files(table, &collect(engine, ctx, plan).await?)
}

/// Runs a plan and returns its rows. On a cluster, a run that fails for a reason that can pass
/// is run again, up to `max_attempts` runs; files of a failed run are left for
/// `remove-orphans`, as nothing references them. In-process a plan runs once: the caller (the
/// CLI's exit code, the scheduler's retry) decides with the same [`Error::retryable`].
pub async fn collect(
    engine: &Engine,
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> Result<Vec<RecordBatch>> {
    let attempts = match engine {
        Engine::InProcess => 1,
        Engine::Cluster(c) => c.max_attempts,
    };
    let mut attempt = 1;
    loop {
        let result = match engine {
            Engine::InProcess => run(ctx, plan.clone(), false).await,
            Engine::Cluster(cluster) => run_watched(ctx, plan.clone(), cluster, attempt).await,
        };
        match result {
            Ok(batches) => return Ok(batches),
            Err(e) if attempt < attempts && e.retryable() => {
                tracing::warn!(attempt, error = %e, "cluster run failed; running it again");
                attempt += 1;
                if let Engine::Cluster(cluster) = engine {
                    // A restarted scheduler has no executors until their next heartbeat.
                    rest::wait_for_executors(cluster, READY_TIMEOUT).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs a plan. Failures keep their kind whichever way the plan ran: our own errors come back
/// out of DataFusion's wrapping, so an internal failure in a task is internal in-process and
/// on a cluster alike; on a cluster, Ballista's own failures of the job (a lost executor, a
/// failed fetch, a cancelled job) carry no kind of ours and are transient
/// ([`Error::from_cluster`]).
async fn run(ctx: &SessionContext, plan: LogicalPlan, cluster: bool) -> Result<Vec<RecordBatch>> {
    let unwrap = if cluster {
        Error::from_cluster
    } else {
        Error::from_datafusion
    };
    async { ctx.execute_logical_plan(plan).await?.collect().await }
        .await
        .map_err(unwrap)
}

/// How long a run waits, before running a failed job again, for the cluster to have executors.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a plan on the cluster while watching the cluster. Ballista 53 does not always finish
/// a job that lost an executor: it resets the lost tasks but may never run them again, and the
/// job hangs. A restarted scheduler forgets its jobs, and its client then waits on a job that
/// no longer exists. So when an executor that was there at the start disappears (the
/// scheduler drops it after `executor_timeout_secs` without a heartbeat), the job is cancelled;
/// when the scheduler starts again, there is nothing left to cancel. Either way the job is
/// reported as a retryable failure, and the caller runs it again on the cluster left.
async fn run_watched(
    ctx: &SessionContext,
    plan: LogicalPlan,
    cluster: &ClusterSettings,
    attempt: u32,
) -> Result<Vec<RecordBatch>> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("cryptolake-{}-{nanos}-{attempt}", std::process::id());
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .set(ballista_core::config::BALLISTA_JOB_NAME, &name)?;
    let before = Watched {
        executors: rest::executor_ids(cluster).await?,
        started: rest::scheduler_started(cluster).await?,
    };
    let job = run(ctx, plan, true);
    tokio::pin!(job);
    loop {
        // The poll runs beside the job: a slow REST API never delays the job's own result.
        let lost = tokio::select! {
            result = &mut job => return result,
            lost = before.lost(cluster) => lost,
        };
        let Some(lost) = lost else {
            continue;
        };
        tracing::warn!(job = %name, "{lost}; giving up on the job");
        if let Lost::Executor(_) = lost {
            if let Err(e) = rest::cancel_job(cluster, &name).await {
                tracing::warn!(error = %e, "could not cancel the job");
            }
            // Let the client see the cancellation, but never wait on a job that hangs.
            let _ = tokio::time::timeout(Duration::from_secs(30), &mut job).await;
        }
        return Err(Error::Cluster(format!("{lost} during job {name}")));
    }
}

/// What the cluster was when a job started.
struct Watched {
    executors: std::collections::BTreeSet<String>,
    /// The scheduler's start time (ms since the epoch): another one means it restarted.
    started: u64,
}

/// What a running job lost.
enum Lost {
    Executor(String),
    /// The scheduler started again (its start times, before and now): its jobs are gone, so
    /// there is nothing to cancel.
    Scheduler(u64, u64),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Executor(id) => write!(f, "executor {id} was lost"),
            Lost::Scheduler(was, now) => write!(
                f,
                "the scheduler restarted (started at {now} ms since the epoch, not {was})"
            ),
        }
    }
}

impl Watched {
    /// After a second, what the job lost since it started. A failed poll says nothing (the
    /// scheduler may be busy or starting): the job's own result will tell.
    async fn lost(&self, cluster: &ClusterSettings) -> Option<Lost> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = rest::scheduler_started(cluster).await.ok()?;
        if started != self.started {
            return Some(Lost::Scheduler(self.started, started));
        }
        let now = rest::executor_ids(cluster).await.ok()?;
        let lost = self.executors.difference(&now).next()?;
        Some(Lost::Executor(lost.clone()))
    }
}
