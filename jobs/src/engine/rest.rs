//! The Ballista scheduler's REST API, as the driver uses it: executors, jobs, cancelling a job.
//! One HTTP client for the process, with connect and request timeouts, so a hung scheduler
//! never stalls the driver.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use crate::job::context::ClusterSettings;
use crate::{Error, Result};

/// How long one REST call may take: the watcher polls every second.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_default()
});

/// GETs `path` (such as `/api/executors`) from the scheduler's REST API.
pub async fn get(cluster: &ClusterSettings, path: &str) -> Result<serde_json::Value> {
    let url = format!("{}{path}", cluster.rest_base());
    let response = CLIENT
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| Error::Cluster(format!("GET {url}: {e}")))?;
    response
        .json()
        .await
        .map_err(|e| Error::Cluster(format!("reading {url}: {e}")))
}

/// Ids of the executors the scheduler has.
pub async fn executor_ids(cluster: &ClusterSettings) -> Result<BTreeSet<String>> {
    let executors = get(cluster, "/api/executors").await?;
    Ok(executors
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.get("id")?.as_str()?.to_string()))
        .collect())
}

/// When the scheduler started (ms since the epoch, Ballista's `GET /api/state`): a scheduler
/// that restarted has forgotten its jobs.
pub async fn scheduler_started(cluster: &ClusterSettings) -> Result<u64> {
    let state = get(cluster, "/api/state").await?;
    state["started"].as_u64().ok_or_else(|| {
        Error::Cluster(format!(
            "the scheduler at {} did not say when it started: {state}",
            cluster.url
        ))
    })
}

/// Waits, up to `timeout`, until the scheduler answers and has an executor. Returns either
/// way: the next call says what is wrong, if something still is.
pub async fn wait_for_executors(cluster: &ClusterSettings, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if executor_ids(cluster).await.is_ok_and(|ids| !ids.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Cancels the queued or running job named `name` (Ballista's REST API: `PATCH /api/job/ID`).
pub async fn cancel_job(cluster: &ClusterSettings, name: &str) -> Result<()> {
    let jobs = get(cluster, "/api/jobs").await?;
    let ids: Vec<String> = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["job_name"] == name && j["status"] != "Completed" && j["status"] != "Failed")
        .filter_map(|j| Some(j.get("job_id")?.as_str()?.to_string()))
        .collect();
    for id in ids {
        let url = format!("{}/api/job/{id}", cluster.rest_base());
        CLIENT
            .patch(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::Cluster(format!("PATCH {url}: {e}")))?;
    }
    Ok(())
}

/// Task slots of the cluster's executors.
pub async fn cluster_slots(cluster: &ClusterSettings) -> Result<usize> {
    let executors = get(cluster, "/api/executors").await?;
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
