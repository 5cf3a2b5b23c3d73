//! `cryptolake console`: the web console without a scheduler daemon (the daemon serves the
//! same pages at `/` beside its API), until SIGINT or SIGTERM.

use std::net::SocketAddr;

use cryptolake_console::metrics::Probes;
use cryptolake_console::{ConsoleParams, start_console};

use super::{CliError, Config};

#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Listen here.
    #[arg(
        long,
        env = "CRYPTOLAKE_CONSOLE_BIND",
        default_value = "127.0.0.1:8791"
    )]
    pub bind: SocketAddr,
    /// Serve without a token; allowed only on a loopback address.
    #[arg(long)]
    pub no_auth: bool,
}

/// The token the console requires: the API's, or none when the user asked for none on a
/// loopback address.
fn token(args: &ConsoleArgs, config: &Config) -> Result<Option<String>, CliError> {
    if args.no_auth {
        if !args.bind.ip().is_loopback() {
            return Err(CliError::Config(format!(
                "--no-auth serves the console to anyone who reaches {}: allowed only on a loopback address",
                args.bind
            )));
        }
        return Ok(None);
    }
    config.scheduler.token.clone().map(Some).ok_or_else(|| {
        CliError::Config(
            "the console needs a token: set [scheduler] token or CRYPTOLAKE_API_TOKEN \
             (or --no-auth on a loopback address)"
                .into(),
        )
    })
}

/// What the console reads, from the config.
pub async fn params(
    config: &Config,
    token: Option<String>,
    in_daemon: bool,
) -> Result<ConsoleParams, CliError> {
    // The metrics' probes plan ingest-files, ingest-kafka and compact as `run` would.
    let lake = cryptolake_catalog::Lake::open(&config.catalog).await?;
    let jobs = cryptolake_jobs::JobContext::new(lake, config.landing()?, config.job_settings())?;
    Ok(ConsoleParams {
        catalog: config.catalog.clone(),
        token,
        history_db: config.scheduler.db.clone(),
        logs: config.scheduler.logs.clone(),
        schedules: config.schedule.clone(),
        in_daemon,
        probes: Probes {
            jobs: Some(jobs),
            kafka: config.kafka.clone(),
        },
    })
}

pub async fn run(args: &ConsoleArgs, config: &Config) -> Result<(), CliError> {
    config
        .scheduler
        .validate()
        .map_err(|e| CliError::Config(e.to_string()))?;
    let token = token(args, config)?;
    start_console(
        params(config, token, false).await?,
        args.bind,
        super::scheduler::shutdown_signal(),
    )
    .await
    .map_err(console_error)
}

/// A console failure as the CLI reports it.
pub fn console_error(e: cryptolake_console::Error) -> CliError {
    match e {
        cryptolake_console::Error::Job(e) => CliError::Job(e),
        other => CliError::Io(std::io::Error::other(other.to_string())),
    }
}
