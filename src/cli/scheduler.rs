//! `cryptolake scheduler`: the daemon that fires the config's schedules and serves the
//! submission API and the web console, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use cryptolake_scheduler::daemon::{DaemonParams, start_scheduler};
use cryptolake_scheduler::runner::RunnerConfig;

use super::{CliError, Config};

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Listen here (overrides [scheduler] bind; loopback by default).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Fire schedules only; serve no API (no token needed).
    #[arg(long)]
    pub no_api: bool,
    /// First retry of a failed run after this many seconds (doubling each time).
    #[arg(long, default_value_t = 10)]
    pub retry_backoff_secs: u64,
}

pub async fn run(
    args: &SchedulerArgs,
    config: &Config,
    file: Option<&std::path::Path>,
) -> Result<(), CliError> {
    super::schedule::validate(config)?;
    let mut scheduler = config.scheduler.clone();
    if let Some(bind) = args.bind {
        scheduler.bind = bind;
    }
    let program = std::env::current_exe()?;
    let params = DaemonParams {
        runner: RunnerConfig {
            program,
            config_file: file.map(|f| f.to_path_buf()),
            logs: scheduler.logs.clone(),
            retry_backoff: Duration::from_secs(args.retry_backoff_secs),
        },
        config: scheduler,
        schedules: config.schedule.clone(),
        jobs: super::run::job_names(),
        serve_api: !args.no_api,
        console: None,
    };
    // The console's pages and reads beside the API, with the API's token.
    let mut params = params;
    if params.serve_api
        && let Some(token) = config.scheduler.token.clone()
    {
        let console = super::console::params(config, Some(token), true).await?;
        let state = cryptolake_console::console_state(&console)
            .await
            .map_err(super::console::console_error)?;
        params.console = Some(cryptolake_console::router(state, true));
    }
    start_scheduler(params, shutdown_signal())
        .await
        .map_err(|e| match e {
            cryptolake_scheduler::Error::Config(m) | cryptolake_scheduler::Error::Expression(m) => {
                CliError::Config(m)
            }
            other => CliError::Io(std::io::Error::other(other.to_string())),
        })
}

pub(super) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down; runs in progress are left to finish");
}
