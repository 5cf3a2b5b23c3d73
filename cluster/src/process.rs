//! The Ballista cluster processes, built with cryptolake's codecs and planner (the stock
//! `ballista-scheduler` and `ballista-executor` binaries cannot decode cryptolake's plan nodes).
//! Each process opens the lake's storage from its own configuration and environment, so plans
//! never carry credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::start_server;
use cryptolake_jobs::codec::{CryptolakeLogicalCodec, CryptolakePhysicalCodec};
use cryptolake_jobs::engine::session_state;
use iceberg::io::FileIO;
use serde::{Deserialize, Serialize};

use crate::metrics::{self, CountingClusterState};
use crate::{Error, Result};

/// How the scheduler hands out tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskDistribution {
    /// One task per executor in turn, so a stage spreads over the cluster.
    #[default]
    RoundRobin,
    /// Fill each executor's slots before the next.
    Bias,
}

/// `cryptolake cluster scheduler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSchedulerConfig {
    pub bind_host: String,
    /// gRPC and REST API port (Ballista's 50050).
    pub port: u16,
    /// The host executors and clients reach this scheduler at (default: bind_host).
    pub external_host: Option<String>,
    /// Push tasks to executors (true) or let executors poll for them.
    pub push_scheduling: bool,
    pub task_distribution: TaskDistribution,
    /// An executor silent for this long is considered lost.
    pub executor_timeout_secs: u64,
    /// Serve Prometheus `/metrics` on this port of `bind_host` (every executor's task slots
    /// and running tasks); none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
}

impl Default for ClusterSchedulerConfig {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".into(),
            port: 50050,
            external_host: None,
            push_scheduling: true,
            task_distribution: TaskDistribution::RoundRobin,
            executor_timeout_secs: 60,
            metrics_port: None,
        }
    }
}

impl ClusterSchedulerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.port == 0 || self.executor_timeout_secs == 0 {
            return Err(Error::Config(
                "cluster scheduler port and executor_timeout_secs must be positive".into(),
            ));
        }
        self.address().map(|_| ())
    }

    fn address(&self) -> Result<SocketAddr> {
        format!("{}:{}", self.bind_host, self.port)
            .parse()
            .map_err(|e| Error::Config(format!("scheduler bind address: {e}")))
    }
}

/// `cryptolake cluster executor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterExecutorConfig {
    pub bind_host: String,
    /// Flight port (shuffle data), Ballista's 50051.
    pub port: u16,
    /// gRPC port (task launches), Ballista's 50052.
    pub grpc_port: u16,
    /// The host others reach this executor at (default: bind_host).
    pub external_host: Option<String>,
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Tasks run at once (task slots); by default the machine's cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent_tasks: Option<usize>,
    /// Shuffle files and spills; by default a directory under the system temp directory.
    pub work_dir: Option<PathBuf>,
    /// Memory for all running tasks, in bytes, shared fairly between them (spilling past it).
    pub memory_pool_size: u64,
    /// Pull scheduling only: poll the scheduler for tasks instead of being pushed them.
    pub push_scheduling: bool,
    /// Seconds a connection to another executor is kept for reuse (Ballista's default, 0,
    /// reconnects for every shuffle fetch).
    pub client_ttl_secs: u64,
    /// Seconds between heartbeats to the scheduler; must stay well under the scheduler's
    /// `executor_timeout_secs` (Ballista's default, 60, equals cryptolake's timeout).
    pub heartbeat_interval_secs: u64,
    /// Serve Prometheus `/metrics` on this port of `bind_host` (task slots, memory); none when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
}

impl Default for ClusterExecutorConfig {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".into(),
            port: 50051,
            grpc_port: 50052,
            external_host: None,
            scheduler_host: "127.0.0.1".into(),
            scheduler_port: 50050,
            concurrent_tasks: None,
            work_dir: None,
            memory_pool_size: 4 * 1024 * 1024 * 1024,
            push_scheduling: true,
            client_ttl_secs: 300,
            heartbeat_interval_secs: 10,
            metrics_port: None,
        }
    }
}

impl ClusterExecutorConfig {
    /// Task slots: `concurrent_tasks`, or the machine's cores.
    pub fn slots(&self) -> usize {
        self.concurrent_tasks
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    pub fn validate(&self) -> Result<()> {
        if self.slots() == 0 || self.client_ttl_secs == 0 || self.heartbeat_interval_secs == 0 {
            return Err(Error::Config(
                "executor concurrent_tasks, client_ttl_secs and heartbeat_interval_secs must be \
                 positive"
                    .into(),
            ));
        }
        if self.memory_pool_size < (self.slots() as u64) * 16 * 1024 * 1024 {
            return Err(Error::Config(format!(
                "executor memory_pool_size {} leaves under 16 MiB for each of {} tasks",
                self.memory_pool_size,
                self.slots()
            )));
        }
        if self.port == self.grpc_port {
            return Err(Error::Config(
                "executor port and grpc_port must differ".into(),
            ));
        }
        Ok(())
    }
}

fn metrics_address(host: &str, port: u16) -> Result<SocketAddr> {
    format!("{host}:{port}")
        .parse()
        .map_err(|e| Error::Config(format!("metrics address {host}:{port}: {e}")))
}

fn policy(push: bool) -> TaskSchedulingPolicy {
    if push {
        TaskSchedulingPolicy::PushStaged
    } else {
        TaskSchedulingPolicy::PullStaged
    }
}

fn ballista(e: ballista_core::error::BallistaError) -> Error {
    Error::Cluster(e.to_string())
}

/// Runs a scheduler until the process is stopped. `file_io` opens tables for planning: the
/// scheduler plans scans, so it reads table metadata and manifests.
pub async fn start_scheduler(config: &ClusterSchedulerConfig, file_io: FileIO) -> Result<()> {
    config.validate()?;
    let planner_io = file_io.clone();
    let ballista_config = SchedulerConfig {
        bind_host: config.bind_host.clone(),
        bind_port: config.port,
        external_host: config
            .external_host
            .clone()
            .unwrap_or_else(|| config.bind_host.clone()),
        scheduling_policy: policy(config.push_scheduling),
        task_distribution: match config.task_distribution {
            TaskDistribution::RoundRobin => TaskDistributionPolicy::RoundRobin,
            TaskDistribution::Bias => TaskDistributionPolicy::Bias,
        },
        executor_timeout_seconds: config.executor_timeout_secs,
        // Look for silent executors several times per timeout, so a lost one is noticed
        // within about 1.25 timeouts (Ballista checks every 15 s).
        expire_dead_executor_interval_seconds: (config.executor_timeout_secs / 4).clamp(1, 15),
        override_session_builder: Some(Arc::new(move |session_config| {
            Ok(session_state(session_config, planner_io.clone()))
        })),
        override_logical_codec: Some(Arc::new(CryptolakeLogicalCodec::new(file_io.clone()))),
        override_physical_codec: Some(Arc::new(CryptolakePhysicalCodec::new(file_io))),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&ballista_config)
        .await
        .map_err(ballista)?;
    // Ballista's own state, with the slots it binds per executor counted for /metrics.
    let counting = Arc::new(CountingClusterState::new(cluster.cluster_state()));
    let cluster = BallistaCluster::new(counting.clone(), cluster.job_state());
    if let Some(port) = config.metrics_port {
        let addr = metrics_address(&config.bind_host, port)?;
        tokio::spawn(async move {
            let render = move || {
                let counting = counting.clone();
                async move { counting.render().await }
            };
            if let Err(e) = metrics::serve(addr, render).await {
                tracing::error!(error = %e, "the metrics server stopped");
            }
        });
    }
    start_server(cluster, config.address()?, Arc::new(ballista_config))
        .await
        .map_err(ballista)
}

/// The address an executor listening on every interface tells the scheduler, when no
/// `external_host` is set: its host name's address (a container's or pod's own IP, from its
/// `/etc/hosts`), so executors scaled out from one definition each advertise their own.
fn advertised_host(bind_host: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    if !matches!(bind_host, "0.0.0.0" | "::" | "[::]") {
        return None;
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let addr = (name.trim(), 0)
        .to_socket_addrs()
        .ok()?
        .find(|a| !a.ip().is_loopback())?;
    tracing::info!(host = %name.trim(), address = %addr.ip(), "advertising this executor's address");
    Some(addr.ip().to_string())
}

/// Runs an executor until the process is stopped (SIGTERM or SIGINT: it tells the scheduler
/// and stops taking tasks).
pub async fn start_executor(config: &ClusterExecutorConfig, file_io: FileIO) -> Result<()> {
    config.validate()?;
    let work_dir = match &config.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("cryptolake-executor-{}", config.port)),
    };
    std::fs::create_dir_all(&work_dir)?;
    if let Some(port) = config.metrics_port {
        let addr = metrics_address(&config.bind_host, port)?;
        let slots = config.slots();
        tokio::spawn(async move {
            let render = move || async move { metrics::executor_metrics(slots) };
            if let Err(e) = metrics::serve(addr, render).await {
                tracing::error!(error = %e, "the metrics server stopped");
            }
        });
    }
    let ballista_config = ExecutorProcessConfig {
        bind_host: config.bind_host.clone(),
        external_host: config
            .external_host
            .clone()
            .or_else(|| advertised_host(&config.bind_host)),
        port: config.port,
        grpc_port: config.grpc_port,
        scheduler_host: config.scheduler_host.clone(),
        scheduler_port: config.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        concurrent_tasks: config.slots(),
        task_scheduling_policy: policy(config.push_scheduling),
        work_dir: Some(work_dir.to_string_lossy().into_owned()),
        memory_pool_size: Some(config.memory_pool_size),
        client_ttl: config.client_ttl_secs,
        executor_heartbeat_interval_seconds: config.heartbeat_interval_secs,
        override_logical_codec: Some(Arc::new(CryptolakeLogicalCodec::new(file_io.clone()))),
        override_physical_codec: Some(Arc::new(CryptolakePhysicalCodec::new(file_io))),
        ..Default::default()
    };
    start_executor_process(Arc::new(ballista_config))
        .await
        .map_err(ballista)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_refused() {
        ClusterSchedulerConfig::default().validate().unwrap();
        let executor = ClusterExecutorConfig::default();
        executor.validate().unwrap();
        assert!(executor.client_ttl_secs > 0);
        let too_small = ClusterExecutorConfig {
            concurrent_tasks: Some(8),
            memory_pool_size: 64 * 1024 * 1024,
            ..Default::default()
        };
        let message = too_small.validate().unwrap_err().to_string();
        assert!(
            message.contains("under 16 MiB for each of 8 tasks"),
            "{message}"
        );
        let no_ttl = ClusterExecutorConfig {
            client_ttl_secs: 0,
            ..Default::default()
        };
        assert!(no_ttl.validate().is_err());
        let bad_host = ClusterSchedulerConfig {
            bind_host: "not a host".into(),
            ..Default::default()
        };
        assert!(bad_host.validate().is_err());
    }
}
