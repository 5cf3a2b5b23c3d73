//! `cryptolake scheduler`: the daemon that fires the config's schedules and serves the
//! submission API and the web console, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::CommandFactory;
use cryptolake_scheduler::api::ArgsCheck;
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
        args_check: ArgsCheck::new(submitted_args),
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

/// Flags a submitted run may not give: they would point the job at another config, warehouse,
/// landing zone, cluster, broker or API than the daemon's (a submitter could make ingest-files
/// read any directory the daemon can see into bronze), or change what the runner reads back.
const NOT_SUBMITTABLE: [&str; 7] = [
    "config",
    "warehouse",
    "landing",
    "output",
    "cluster",
    "brokers",
    "base-url",
];

/// The API's check of a submission's `args`: `cryptolake run JOB ARGS...` must parse, and no
/// flag among [`NOT_SUBMITTABLE`] (long, `--flag=value`, or the short `-c`/`-o`) may appear.
pub fn submitted_args(job: &str, args: &[String]) -> Result<(), String> {
    for arg in args {
        let refused = if let Some(long) = arg.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or_default();
            NOT_SUBMITTABLE.contains(&name).then(|| format!("--{name}"))
        } else if let Some(short) = arg.strip_prefix('-') {
            short
                .chars()
                .next()
                .filter(|c| matches!(c, 'c' | 'o'))
                .map(|c| format!("-{c}"))
        } else {
            None
        };
        if let Some(flag) = refused {
            return Err(format!(
                "{flag} cannot be submitted: a run uses the daemon's config, warehouse, landing \
                 zone and cluster; args take only {job}'s own flags"
            ));
        }
    }
    let argv = ["cryptolake", "run", job]
        .into_iter()
        .map(str::to_string)
        .chain(args.iter().cloned());
    match super::Cli::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                Err(format!("args for {job} ask for help; submit a run's flags"))
            }
            _ => Err(format!(
                "args for {job}: {}",
                e.render().to_string().trim_end()
            )),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::submitted_args;

    fn check(job: &str, args: &[&str]) -> Result<(), String> {
        submitted_args(job, &args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_jobs_own_flags_pass() {
        assert_eq!(check("ingest-files", &[]), Ok(()));
        assert_eq!(
            check("compact", &["--table", "silver.quotes", "--dry-run"]),
            Ok(())
        );
        assert_eq!(check("silver", &["--max-bad-fraction=0.5"]), Ok(()));
        assert_eq!(check("poll", &["coincap_assets", "--times", "2"]), Ok(()));
    }

    #[test]
    fn flags_that_point_elsewhere_are_refused() {
        for args in [
            &["--landing", "/some/dir"][..],
            &["--landing=/etc"],
            &["-c", "/tmp/other.toml"],
            &["-c/tmp/other.toml"],
            &["--config", "x.toml"],
            &["--warehouse", "/tmp/w"],
            &["--dry-run", "--cluster", "df://evil:50050"],
            &["-o", "json"],
        ] {
            let why = check("ingest-files", args).unwrap_err();
            assert!(why.contains("cannot be submitted"), "{args:?}: {why}");
        }
        let why = check("ingest-kafka", &["--brokers", "evil:9092"]).unwrap_err();
        assert!(why.starts_with("--brokers cannot be submitted"), "{why}");
        let why = check(
            "poll",
            &["coincap_assets", "--base-url", "http://169.254.169.254"],
        );
        assert!(why.unwrap_err().starts_with("--base-url cannot"));
    }

    #[test]
    fn flags_of_another_job_or_none_are_refused() {
        let why = check("gold", &["--table", "silver.quotes"]).unwrap_err();
        assert!(
            why.starts_with("args for gold: error: unexpected argument '--table'"),
            "{why}"
        );
        assert!(check("compact", &["--help"]).unwrap_err().contains("help"));
        assert!(
            check("poll", &[])
                .unwrap_err()
                .starts_with("args for poll: error:")
        );
    }
}
