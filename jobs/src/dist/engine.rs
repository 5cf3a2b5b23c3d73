//! Where a job's plan runs: in this process (the default) or on a Ballista cluster. The job
//! builds one DataFusion logical plan either way; the engine plans and runs it, and returns the
//! files its write nodes wrote. The commit stays with the caller, on the driver.

use std::sync::Arc;

use arrow::array::RecordBatch;
use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use iceberg::io::FileIO;
use serde::{Deserialize, Serialize};

use super::codec::{CryptolakeLogicalCodec, CryptolakePhysicalCodec};
use super::table_ref::TableRef;
use super::write::{CryptolakePlanner, WrittenFile, written_files};
use crate::{Error, Result};

/// Running on a Ballista cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The scheduler, `df://HOST:PORT`.
    pub url: String,
    /// Plan partitions (tasks per stage); by default the executors' task slots.
    pub partitions: Option<usize>,
    /// Runs of one job when the cluster fails it for a reason that can pass (an executor
    /// lost). Safe: files are written first and the commit, with its bookmark, is atomic.
    pub max_attempts: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            url: "df://127.0.0.1:50050".into(),
            partitions: None,
            max_attempts: 3,
        }
    }
}

impl ClusterSettings {
    pub fn validate(&self) -> Result<()> {
        let rest = self.url.strip_prefix("df://").ok_or_else(|| {
            Error::Invalid(format!(
                "cluster url {} must look like df://HOST:PORT",
                self.url
            ))
        })?;
        let port_ok = rest
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(Error::Invalid(format!(
                "cluster url {} must look like df://HOST:PORT",
                self.url
            )));
        }
        if self.max_attempts == 0 || self.partitions == Some(0) {
            return Err(Error::Invalid(
                "cluster max_attempts and partitions must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// `http://HOST:PORT`: Ballista serves its REST API on the gRPC port.
    pub fn rest_base(&self) -> String {
        format!("http://{}", self.url.trim_start_matches("df://"))
    }

    /// GETs `path` (such as `/api/executors`) from the scheduler's REST API.
    pub async fn api(&self, path: &str) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.rest_base());
        let response = reqwest::get(&url)
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::Cluster(format!("GET {url}: {e}")))?;
        response
            .json()
            .await
            .map_err(|e| Error::Cluster(format!("reading {url}: {e}")))
    }
}

/// Where plans run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    InProcess,
    Cluster(ClusterSettings),
}

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

impl Engine {
    /// A session that runs plans here or on the cluster, with `partitions` per stage.
    pub async fn session(
        &self,
        file_io: &FileIO,
        partitions: usize,
        batch_size: usize,
    ) -> Result<SessionContext> {
        match self {
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
        &self,
        ctx: &SessionContext,
        table: &TableRef,
        plan: LogicalPlan,
    ) -> Result<Vec<WrittenFile>> {
        written_files(table, &self.collect(ctx, plan).await?)
    }

    /// Runs a plan and returns its rows. On a cluster, a run that fails for a reason that can
    /// pass is run again, up to `max_attempts` runs; files of a failed run are left for
    /// `remove-orphans`, as nothing references them.
    pub async fn collect(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<Vec<RecordBatch>> {
        let attempts = match self {
            Engine::InProcess => 1,
            Engine::Cluster(c) => c.max_attempts,
        };
        let mut attempt = 1;
        loop {
            let result = match self {
                Engine::InProcess => run(ctx, plan.clone(), false).await,
                Engine::Cluster(cluster) => run_watched(ctx, plan.clone(), cluster, attempt).await,
            };
            match result {
                Ok(batches) => return Ok(batches),
                Err(e) if attempt < attempts && e.is_retryable() => {
                    tracing::warn!(attempt, error = %e, "cluster run failed; running it again");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

async fn run(ctx: &SessionContext, plan: LogicalPlan, cluster: bool) -> Result<Vec<RecordBatch>> {
    let batches = async { ctx.execute_logical_plan(plan).await?.collect().await }.await;
    match batches {
        Ok(b) => Ok(b),
        // Ballista reports every failure of a submitted job (a lost executor, a failed task, a
        // cancelled job, a dropped connection) as an execution error, possibly wrapped in an
        // Arrow error; planning errors keep their own kinds.
        Err(e)
            if cluster
                && matches!(
                    e.find_root(),
                    datafusion::error::DataFusionError::Execution(_)
                ) =>
        {
            Err(Error::Cluster(e.to_string()))
        }
        Err(e) => Err(Error::from_datafusion(e)),
    }
}

/// Runs a plan on the cluster while watching its executors. Ballista 53 does not always finish
/// a job that lost an executor: it resets the lost tasks but may never run them again, and the
/// job hangs. So when an executor that was there at the start disappears (the scheduler drops
/// it after `executor_timeout_secs` without a heartbeat), the job is cancelled and reported as
/// a retryable failure, and the caller runs it again on the executors left.
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
    let before = executor_ids(cluster).await?;
    let job = run(ctx, plan, true);
    tokio::pin!(job);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            result = &mut job => return result,
            _ = tick.tick() => {}
        }
        // A failed poll says nothing about the executors: the job's own result will tell.
        let Ok(now) = executor_ids(cluster).await else {
            continue;
        };
        let Some(lost) = before.difference(&now).next() else {
            continue;
        };
        tracing::warn!(executor = %lost, job = %name, "an executor was lost mid-job; cancelling the job");
        if let Err(e) = cancel_job(cluster, &name).await {
            tracing::warn!(error = %e, "could not cancel the job");
        }
        // Let the client see the cancellation, but never wait on a job that hangs.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), &mut job).await;
        return Err(Error::Cluster(format!(
            "executor {lost} was lost during job {name}"
        )));
    }
}

/// Ids of the executors the scheduler has.
async fn executor_ids(cluster: &ClusterSettings) -> Result<std::collections::BTreeSet<String>> {
    let executors = cluster.api("/api/executors").await?;
    Ok(executors
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.get("id")?.as_str()?.to_string()))
        .collect())
}

/// Cancels the queued or running job named `name` (Ballista's REST API: `PATCH /api/job/ID`).
async fn cancel_job(cluster: &ClusterSettings, name: &str) -> Result<()> {
    let jobs = cluster.api("/api/jobs").await?;
    let ids: Vec<String> = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["job_name"] == name && j["status"] != "Completed" && j["status"] != "Failed")
        .filter_map(|j| Some(j.get("job_id")?.as_str()?.to_string()))
        .collect();
    for id in ids {
        let url = format!("{}/api/job/{id}", cluster.rest_base());
        reqwest::Client::new()
            .patch(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::Cluster(format!("PATCH {url}: {e}")))?;
    }
    Ok(())
}

/// Task slots of the cluster's executors, from the scheduler's REST API.
pub async fn cluster_slots(cluster: &ClusterSettings) -> Result<usize> {
    let executors = cluster.api("/api/executors").await?;
    let slots = executors
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e.pointer("/specification/task_slots")?.as_u64())
                .sum::<u64>() as usize
        })
        .unwrap_or(0);
    if slots == 0 {
        return Err(Error::Cluster(format!(
            "the cluster at {} has no executors",
            cluster.url
        )));
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_checked() {
        ClusterSettings::default().validate().unwrap();
        let with = |url: &str| ClusterSettings {
            url: url.into(),
            ..Default::default()
        };
        assert!(with("df://scheduler.internal:50050").validate().is_ok());
        assert!(with("http://h:50050").validate().is_err());
        assert!(with("df://h").validate().is_err());
        assert!(with("df://:50050").validate().is_err());
        assert_eq!(with("df://h:7").rest_base(), "http://h:7");
        let none = ClusterSettings {
            max_attempts: 0,
            ..Default::default()
        };
        assert!(none.validate().is_err());
    }
}
