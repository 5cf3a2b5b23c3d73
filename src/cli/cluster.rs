//! `cryptolake cluster`: the Ballista scheduler and executor processes (built with cryptolake's
//! codecs), and a local cluster of them started in the background (`up`, `down`, `status`).

use std::path::PathBuf;

use cryptolake_catalog::Lake;
use cryptolake_cluster::local::{self, LocalCluster, LocalClusterSpec};
use cryptolake_cluster::process::{start_executor, start_scheduler};
use cryptolake_jobs::job::context::ClusterSettings;
use serde_json::Value;

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Run a Ballista scheduler (gRPC and REST API on one port) until stopped.
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor until stopped.
    Executor(ExecutorArgs),
    /// Start a local cluster in the background: one scheduler and N executors.
    Up(UpArgs),
    /// Stop the local cluster `up` started.
    Down(StateArgs),
    /// Executors, task slots and jobs, from the scheduler's REST API.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Listen on this host (overrides cluster.scheduler.bind_host; default 127.0.0.1).
    #[arg(long)]
    pub bind_host: Option<String>,
    /// gRPC and REST port (default 50050).
    #[arg(long)]
    pub port: Option<u16>,
    /// The host executors and clients reach the scheduler at.
    #[arg(long)]
    pub external_host: Option<String>,
    /// Let executors poll for tasks instead of pushing tasks to them.
    #[arg(long)]
    pub pull: bool,
    /// Serve Prometheus /metrics on this port (overrides cluster.scheduler.metrics_port).
    #[arg(long)]
    pub metrics_port: Option<u16>,
}

#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// Listen on this host (default 127.0.0.1).
    #[arg(long)]
    pub bind_host: Option<String>,
    /// Flight (shuffle data) port (default 50051).
    #[arg(long)]
    pub port: Option<u16>,
    /// gRPC port (default 50052).
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// The host others reach this executor at.
    #[arg(long)]
    pub external_host: Option<String>,
    /// The scheduler as HOST:PORT (default 127.0.0.1:50050).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Task slots (default: the machine's cores).
    #[arg(long)]
    pub concurrent_tasks: Option<usize>,
    /// Shuffle files and spills.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Memory for all running tasks, in bytes (default 4 GiB); tasks spill past it.
    #[arg(long)]
    pub memory_pool_size: Option<u64>,
    /// Poll the scheduler for tasks instead of being pushed them.
    #[arg(long)]
    pub pull: bool,
    /// Seconds a connection to another executor is kept for reuse (default 300).
    #[arg(long)]
    pub client_ttl: Option<u64>,
    /// Serve Prometheus /metrics on this port (overrides cluster.executor.metrics_port).
    #[arg(long)]
    pub metrics_port: Option<u16>,
}

#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// Where the local cluster keeps its state file, logs and work directories.
    #[arg(
        long,
        default_value = ".cryptolake/cluster",
        env = "CRYPTOLAKE_CLUSTER_DIR"
    )]
    pub state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Executor processes.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Scheduler port; executor i listens on the two ports after PORT + 2i.
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// Task slots per executor.
    #[arg(long, default_value_t = 2)]
    pub concurrent_tasks: usize,
    /// Serve Prometheus /metrics: the scheduler on this port, executor i on PORT + 1 + i.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The scheduler (default: the local cluster's, else cluster.url, else df://127.0.0.1:50050).
    #[arg(long, value_name = "URL", env = "CRYPTOLAKE_CLUSTER")]
    pub cluster: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

fn cluster_error(e: cryptolake_cluster::Error) -> CliError {
    match e {
        cryptolake_cluster::Error::Config(m) => CliError::Config(m),
        cryptolake_cluster::Error::Io(e) => CliError::Io(e),
        other => CliError::Job(cryptolake_jobs::Error::Cluster(other.to_string())),
    }
}

pub async fn run(
    cmd: &ClusterCommand,
    config: &Config,
    file: Option<&std::path::Path>,
    format: Format,
) -> Result<(), CliError> {
    match cmd {
        ClusterCommand::Scheduler(args) => {
            let mut c = config.cluster.scheduler.clone();
            if let Some(h) = &args.bind_host {
                c.bind_host = h.clone();
            }
            c.port = args.port.unwrap_or(c.port);
            c.external_host = args.external_host.clone().or(c.external_host);
            c.push_scheduling &= !args.pull;
            c.metrics_port = args.metrics_port.or(c.metrics_port);
            let lake = Lake::open(&config.catalog).await?;
            tokio::select! {
                result = start_scheduler(&c, lake.file_io().clone()) => result.map_err(cluster_error),
                signal = super::terminated() => {
                    tracing::info!(signal, "cluster scheduler stopping");
                    Ok(())
                }
            }
        }
        ClusterCommand::Executor(args) => {
            let c = executor_config(args, config)?;
            let lake = Lake::open(&config.catalog).await?;
            start_executor(&c, lake.file_io().clone())
                .await
                .map_err(cluster_error)
        }
        ClusterCommand::Up(args) => up(args, file, format),
        ClusterCommand::Down(args) => {
            let stopped = local::down(&args.state_dir).map_err(cluster_error)?;
            match format {
                Format::Json => println!("{}", serde_json::json!({ "stopped": stopped })),
                Format::Text => println!("stopped {stopped} cluster process(es)"),
            }
            Ok(())
        }
        ClusterCommand::Status(args) => status(args, config, format).await,
    }
}

fn executor_config(
    args: &ExecutorArgs,
    config: &Config,
) -> Result<cryptolake_cluster::process::ClusterExecutorConfig, CliError> {
    let mut c = config.cluster.executor.clone();
    if let Some(h) = &args.bind_host {
        c.bind_host = h.clone();
    }
    c.port = args.port.unwrap_or(c.port);
    c.grpc_port = args.grpc_port.unwrap_or(c.grpc_port);
    c.external_host = args.external_host.clone().or(c.external_host);
    if let Some(s) = &args.scheduler {
        let (host, port) = s
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
            .ok_or_else(|| CliError::Config(format!("--scheduler {s}: expected HOST:PORT")))?;
        c.scheduler_host = host;
        c.scheduler_port = port;
    }
    c.concurrent_tasks = args.concurrent_tasks.or(c.concurrent_tasks);
    c.work_dir = args.work_dir.clone().or(c.work_dir);
    c.memory_pool_size = args.memory_pool_size.unwrap_or(c.memory_pool_size);
    c.push_scheduling &= !args.pull;
    c.client_ttl_secs = args.client_ttl.unwrap_or(c.client_ttl_secs);
    c.metrics_port = args.metrics_port.or(c.metrics_port);
    Ok(c)
}

fn up(args: &UpArgs, file: Option<&std::path::Path>, format: Format) -> Result<(), CliError> {
    let spec = LocalClusterSpec {
        program: std::env::current_exe()?,
        config_file: file.map(|f| f.to_path_buf()),
        state_dir: std::path::absolute(&args.state.state_dir)?,
        executors: args.executors,
        port: args.port,
        concurrent_tasks: args.concurrent_tasks,
        metrics_port: args.metrics_port,
    };
    let cluster = local::up(&spec).map_err(cluster_error)?;
    match format {
        Format::Json => println!("{}", super::output::to_json(&cluster)?),
        Format::Text => {
            for p in &cluster.processes {
                println!(
                    "{:<12} pid {:<8} port {:<6} log {}",
                    p.role,
                    p.pid,
                    p.port,
                    p.log.display()
                );
            }
            println!(
                "cluster up at {url}: run jobs with `cryptolake run JOB --cluster {url}`; \
                 stop it with `cryptolake cluster down`",
                url = cluster.url
            );
        }
    }
    Ok(())
}

async fn status(args: &StatusArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let local = LocalCluster::load(&args.state.state_dir).map_err(cluster_error)?;
    let url = args
        .cluster
        .clone()
        .or_else(|| local.as_ref().map(|l| l.url.clone()))
        .or_else(|| config.cluster.url.clone())
        .unwrap_or_else(|| ClusterSettings::default().url);
    let settings = ClusterSettings {
        url,
        ..Default::default()
    };
    settings.validate()?;
    let executors = cryptolake_jobs::engine::rest::get(&settings, "/api/executors").await?;
    let jobs = cryptolake_jobs::engine::rest::get(&settings, "/api/jobs").await?;
    if format == Format::Json {
        let out = serde_json::json!({ "url": settings.url, "executors": executors, "jobs": jobs });
        println!("{}", super::output::to_json(&out)?);
        return Ok(());
    }
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let executor_rows: Vec<_> = list(&executors)
        .iter()
        .map(|e| {
            row([
                ("executor", e["id"].clone()),
                ("host", e["host"].clone()),
                ("port", e["port"].clone()),
                (
                    "slots",
                    e.pointer("/specification/task_slots")
                        .cloned()
                        .unwrap_or(Value::Null),
                ),
                ("last_seen_ms", e["last_seen"].clone()),
            ])
        })
        .collect();
    println!("scheduler {}", settings.url);
    print_rows(
        &executor_rows,
        &["executor", "host", "port", "slots", "last_seen_ms"],
        format,
    );
    let job_rows: Vec<_> = list(&jobs)
        .iter()
        .map(|j| {
            row([
                ("job", j["job_id"].clone()),
                ("name", j["job_name"].clone()),
                ("status", j["status"].clone()),
                ("stages", j["num_stages"].clone()),
                ("done", j["completed_stages"].clone()),
                ("percent", j["percent_complete"].clone()),
            ])
        })
        .collect();
    print_rows(
        &job_rows,
        &["job", "name", "status", "stages", "done", "percent"],
        format,
    );
    Ok(())
}
