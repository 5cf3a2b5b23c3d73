//! Arguments, the error-to-exit-code mapping, and dispatch to one module per verb.

mod cluster;
mod config;
mod console;
mod generate;
mod init;
mod job;
mod output;
mod poll;
mod probe;
mod run;
mod schedule;
mod scheduler;
mod sql;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cryptolake_jobs::ErrorKind;

pub use self::config::{CONFIG_FILE, Config};
pub use self::output::Format;

/// cryptolake: data-lake batch jobs without Spark. Landing files → bronze → silver → gold
/// Iceberg tables, on an embedded SQLite catalog by default.
#[derive(Debug, Parser)]
#[command(name = "cryptolake", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: ./cryptolake.toml when present).
    #[arg(short = 'c', long, global = true, env = "CRYPTOLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override the warehouse root (local directory or URL).
    #[arg(long, global = true, env = "CRYPTOLAKE_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// Override the landing zone: a local directory or s3://BUCKET/PREFIX.
    #[arg(long, global = true, env = "CRYPTOLAKE_LANDING")]
    pub landing: Option<String>,
    /// Output format for commands that print results.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write DIR/cryptolake.toml: the embedded default (SQLite catalog, local warehouse), or
    /// `--catalog glue --warehouse s3://BUCKET/PREFIX [--endpoint URL]`.
    Init(init::InitArgs),
    /// Generate realistic landing files for every source, deterministic for a seed (with
    /// --kafka, produce the quotes and trades to the [kafka] topics instead).
    Gen(generate::GenArgs),
    /// Run a job: ingest-files, silver, gold, or all of them in order.
    Run(run::RunArgs),
    /// Fetch a market-data API once (or --times, --every apart) into the landing zone or
    /// Kafka: CoinCap, Coinbase, CoinGecko, Alpaca, CoinAPI.
    Poll(poll::PollArgs),
    /// Run a SQL query over every table (`bronze.x`, `silver.x`, `gold.x`).
    Sql(sql::SqlArgs),
    /// Inspect tables: list, describe, history, files, check (Athena readability).
    #[command(subcommand)]
    Table(table::TableCommand),
    /// EventBridge schedules: list, next fire times, validate, export.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// The scheduler daemon: fires schedules, keeps run history, serves the submission API.
    Scheduler(scheduler::SchedulerArgs),
    /// The web console (markets, runs, tables) and its /v1/ read endpoints, without a daemon.
    Console(console::ConsoleArgs),
    /// Submit, list, inspect and cancel runs through a running scheduler's API.
    Job(job::JobArgs),
    /// A Ballista cluster: scheduler and executor processes, a local cluster (up, down, status).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Health check: exit 0 when an http(s):// URL answers 2xx or a tcp:// address accepts a
    /// connection (for images without a shell).
    Probe(probe::ProbeArgs),
}

/// A failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Job(#[from] cryptolake_jobs::Error),
    #[error(transparent)]
    Catalog(#[from] cryptolake_catalog::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} table(s) would not read correctly in Athena (see above)")]
    Check(usize),
}

impl CliError {
    /// The kind of failure; one mapping from kind to exit code and retry serves the CLI, the
    /// scheduler daemon and the cluster engine ([`ErrorKind`]).
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            CliError::Config(_) => Some(ErrorKind::Usage),
            CliError::Job(e) => Some(e.kind()),
            CliError::Catalog(e) => Some(cryptolake_jobs::job::error::catalog_kind(e)),
            CliError::Io(_) => Some(ErrorKind::Transient),
            CliError::Check(_) => None,
        }
    }

    /// The kind's exit code (2 usage, 3 bad data, 4 lost a commit race, 1 transient, 70
    /// internal), or 5 when `table check` found problems.
    pub fn exit_code(&self) -> u8 {
        self.kind().map_or(5, ErrorKind::exit_code)
    }
}

/// The loaded configuration with the global flags applied.
fn load_config(cli: &Cli) -> Result<Config, CliError> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(w) = &cli.warehouse {
        config.catalog.warehouse = w.clone();
    }
    if let Some(l) = &cli.landing {
        let cwd = std::env::current_dir()
            .map_err(|e| CliError::Config(format!("no working directory: {e}")))?;
        config.landing.path = config::resolve_landing(&cwd, l);
    }
    config.catalog.validate()?;
    Ok(config)
}

/// Runs the parsed command. On SIGTERM (a container or pod stopped) or SIGINT: the daemons
/// and the cluster processes stop cleanly (an executor tells the scheduler and stops taking
/// tasks); any other command stops at once with 128 + the signal's number. A job stopped
/// this way has committed nothing or all of a commit, as after any crash.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let daemon = matches!(
        &cli.command,
        Command::Scheduler(_)
            | Command::Console(_)
            | Command::Cluster(
                cluster::ClusterCommand::Executor(_) | cluster::ClusterCommand::Scheduler(_)
            )
    );
    if daemon {
        return dispatch(cli).await;
    }
    tokio::select! {
        result = dispatch(cli) => result,
        signal = terminated() => {
            if matches!(signal, 15) {
                tracing::warn!("terminated (SIGTERM)");
            }
            std::process::exit(128 + signal)
        }
    }
}

/// Waits for SIGTERM or SIGINT and returns its number. The cluster scheduler stops on it;
/// the executor and the schedule daemon handle the signals themselves.
pub async fn terminated() -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => 15,
        _ = int.recv() => 2,
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Init(args) => init::run(
            args,
            cli.warehouse.as_deref(),
            cli.landing.as_deref(),
            cli.output,
        ),
        Command::Gen(args) => generate::run(args, &load_config(&cli)?, cli.output).await,
        Command::Run(args) => run::run(args, &load_config(&cli)?, cli.output).await,
        Command::Poll(args) => poll::run(args, &load_config(&cli)?, cli.output).await,
        Command::Sql(args) => sql::run(args, &load_config(&cli)?, cli.output).await,
        Command::Table(cmd) => table::run(cmd, &load_config(&cli)?, cli.output).await,
        Command::Schedule(cmd) => schedule::run(cmd, &load_config(&cli)?, cli.output),
        Command::Scheduler(args) => {
            let file = config_file(&cli);
            scheduler::run(args, &load_config(&cli)?, file.as_deref()).await
        }
        Command::Console(args) => console::run(args, &load_config(&cli)?).await,
        Command::Job(args) => job::run(args, &load_config(&cli)?, cli.output).await,
        Command::Cluster(cmd) => {
            let file = config_file(&cli);
            cluster::run(cmd, &load_config(&cli)?, file.as_deref(), cli.output).await
        }
        Command::Probe(args) => probe::run(args).await,
    }
}

/// The config file in use, as an absolute path, so child runs find it from anywhere.
fn config_file(cli: &Cli) -> Option<PathBuf> {
    let file = cli
        .config
        .clone()
        .or_else(|| Some(PathBuf::from(CONFIG_FILE)).filter(|p| p.exists()))?;
    std::path::absolute(&file).ok()
}
