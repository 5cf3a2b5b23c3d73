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
