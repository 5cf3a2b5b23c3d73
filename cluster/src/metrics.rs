//! Prometheus metrics of the cluster processes, each on its own port (`metrics_port`).
//!
//! The scheduler binds tasks to executors' slots (push scheduling) and releases them when the
//! tasks end, so it knows every executor's slots and running tasks: [`CountingClusterState`]
//! wraps Ballista's cluster state and counts the slots bound per executor, and the scheduler's
//! `/metrics` reports them (`cryptolake_cluster_executor_task_slots`,
//! `cryptolake_cluster_executor_running_tasks`, `cryptolake_cluster_tasks_bound_total`). An
//! executor's `/metrics` reports what it knows itself: its task slots and its process's memory.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use ballista_core::error::Result as BallistaResult;
use ballista_core::serde::protobuf::ExecutorHeartbeat;
use ballista_core::serde::scheduler::{ExecutorData, ExecutorMetadata};
use ballista_scheduler::cluster::{BoundTask, ClusterState, ClusterStateEventStream, ExecutorSlot};
use ballista_scheduler::config::TaskDistributionPolicy;
use ballista_scheduler::state::task_manager::JobInfoCache;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::{Error, Result};

/// Slots bound per executor: running tasks, and how many were ever bound.
#[derive(Debug, Default)]
struct Slots {
    running: HashMap<String, i64>,
    bound_total: HashMap<String, u64>,
}

/// Ballista's cluster state, with the task slots bound per executor counted.
pub struct CountingClusterState {
    inner: Arc<dyn ClusterState>,
    slots: Mutex<Slots>,
}

impl CountingClusterState {
    pub fn new(inner: Arc<dyn ClusterState>) -> Self {
        Self {
            inner,
            slots: Mutex::new(Slots::default()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic elsewhere while holding the lock leaves counts that are still counts.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scheduler's metrics in Prometheus text format.
    pub async fn render(&self) -> Result<String> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGaugeVec> {
            let g = IntGaugeVec::new(
                Opts::new(format!("cryptolake_cluster_{name}"), help),
                &["executor"],
            )
            .map_err(prom)?;
            registry.register(Box::new(g.clone())).map_err(prom)?;
            Ok(g)
        };
        let slots = gauge(
            "executor_task_slots",
            "Task slots of each registered executor",
        )?;
        let running = gauge(
            "executor_running_tasks",
            "Tasks the scheduler has bound to each executor and not yet seen end",
        )?;
        let bound = IntCounterVec::new(
            Opts::new(
                "cryptolake_cluster_tasks_bound_total",
                "Tasks the scheduler has bound to each executor since it started",
            ),
            &["executor"],
        )
        .map_err(prom)?;
        registry.register(Box::new(bound.clone())).map_err(prom)?;
        let executors = self.inner.registered_executor_metadata().await;
        let counted = {
            let s = self.slots();
            (s.running.clone(), s.bound_total.clone())
        };
        for e in &executors {
            slots
                .with_label_values(&[e.id.as_str()])
                .set(i64::from(e.specification.task_slots));
            running
                .with_label_values(&[e.id.as_str()])
                .set(counted.0.get(&e.id).copied().unwrap_or(0));
            bound
                .with_label_values(&[e.id.as_str()])
                .inc_by(counted.1.get(&e.id).copied().unwrap_or(0));
        }
        let live = IntGaugeVec::new(
            Opts::new("cryptolake_cluster_executors", "Registered executors"),
            &[],
        )
        .map_err(prom)?;
        registry.register(Box::new(live.clone())).map_err(prom)?;
        live.with_label_values(&[] as &[&str])
            .set(executors.len() as i64);
        encode(&registry)
    }
}

#[async_trait::async_trait]
impl ClusterState for CountingClusterState {
    async fn init(&self) -> BallistaResult<()> {
        self.inner.init().await
    }

    async fn bind_schedulable_tasks(
        &self,
        distribution: TaskDistributionPolicy,
        active_jobs: Arc<HashMap<String, JobInfoCache>>,
        executors: Option<HashSet<String>>,
    ) -> BallistaResult<Vec<BoundTask>> {
        let bound = self
            .inner
            .bind_schedulable_tasks(distribution, active_jobs, executors)
            .await?;
        let mut s = self.slots();
        for (executor, _) in &bound {
            *s.running.entry(executor.clone()).or_default() += 1;
            *s.bound_total.entry(executor.clone()).or_default() += 1;
        }
        Ok(bound)
    }

    async fn unbind_tasks(&self, executor_slots: Vec<ExecutorSlot>) -> BallistaResult<()> {
        let released = executor_slots.clone();
        self.inner.unbind_tasks(executor_slots).await?;
        let mut s = self.slots();
        for (executor, n) in released {
            let running = s.running.entry(executor).or_default();
            *running = (*running - i64::from(n)).max(0);
        }
        Ok(())
    }

    async fn register_executor(
        &self,
        metadata: ExecutorMetadata,
        spec: ExecutorData,
    ) -> BallistaResult<()> {
        self.inner.register_executor(metadata, spec).await
    }

    async fn save_executor_metadata(&self, metadata: ExecutorMetadata) -> BallistaResult<()> {
        self.inner.save_executor_metadata(metadata).await
    }

    async fn get_executor_metadata(&self, executor_id: &str) -> BallistaResult<ExecutorMetadata> {
        self.inner.get_executor_metadata(executor_id).await
    }

    async fn registered_executor_metadata(&self) -> Vec<ExecutorMetadata> {
        self.inner.registered_executor_metadata().await
    }

    async fn save_executor_heartbeat(&self, heartbeat: ExecutorHeartbeat) -> BallistaResult<()> {
        self.inner.save_executor_heartbeat(heartbeat).await
    }

    async fn remove_executor(&self, executor_id: &str) -> BallistaResult<()> {
        self.inner.remove_executor(executor_id).await?;
        // A lost executor's tasks run no more (the scheduler reschedules them elsewhere).
        self.slots().running.remove(executor_id);
        Ok(())
    }

    fn executor_heartbeats(&self) -> HashMap<String, ExecutorHeartbeat> {
        self.inner.executor_heartbeats()
    }

    fn get_executor_heartbeat(&self, executor_id: &str) -> Option<ExecutorHeartbeat> {
        self.inner.get_executor_heartbeat(executor_id)
    }

    async fn cluster_state_events(&self) -> BallistaResult<ClusterStateEventStream> {
        self.inner.cluster_state_events().await
    }
}

/// An executor's metrics: its task slots, and its process's resident and peak memory.
pub fn executor_metrics(slots: usize) -> Result<String> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, value: i64| -> Result<()> {
        let g =
            prometheus::IntGauge::new(format!("cryptolake_executor_{name}"), help).map_err(prom)?;
        g.set(value);
        registry.register(Box::new(g)).map_err(prom)
    };
    gauge(
        "task_slots",
        "Tasks this executor runs at once",
        slots as i64,
    )?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> i64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0)
    };
    gauge(
        "resident_memory_bytes",
        "Resident memory of the process",
        kib("VmRSS:") * 1024,
    )?;
    gauge(
        "peak_resident_memory_bytes",
        "Peak resident memory of the process",
        kib("VmHWM:") * 1024,
    )?;
    encode(&registry)
}

fn encode(registry: &Registry) -> Result<String> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .map_err(prom)?;
    String::from_utf8(out).map_err(|e| Error::Cluster(format!("metrics: {e}")))
}

fn prom(e: prometheus::Error) -> Error {
    Error::Cluster(format!("metrics: {e}"))
}

/// Serves `GET /metrics` from `render` on `addr` until the process stops.
pub async fn serve<F, Fut>(addr: SocketAddr, render: F) -> Result<()>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String>> + Send,
{
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                match render().await {
                    Ok(text) => (
                        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        text,
                    )
                        .into_response(),
                    Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                        .into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics");
    axum::serve(listener, app).await?;
    Ok(())
}
