//! `cryptolake poll SOURCE [--base-url URL]` (also `run poll SOURCE`, so a schedule's
//! `job = "poll"`, `args = ["coincap_assets"]` runs it): fetch one market-data API and land the
//! answer, with the `[poll.<source>]` settings and these flags over them.

use cryptolake_jobs::pipeline::poll::Poll;
use cryptolake_jobs::sources::api::PollSettings;

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, Clone, clap::Args)]
pub struct PollArgs {
    /// The landing source to fetch: coincap_assets, coincap_rates, coinbase_spot,
    /// coingecko_markets, alpaca_quotes, alpaca_trades, coinapi_icons.
    pub source: String,
    /// The API's root URL (overrides [poll.SOURCE] base_url and the real API's).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Poll again this often within this run (5s); with --times.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Polls in this run (default 1).
    #[arg(long)]
    pub times: Option<u32>,
    /// Print the plan (the URLs, where answers go, the key variables used) and stop.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: &PollArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let mut settings: PollSettings = config.poll.get(&args.source).cloned().unwrap_or_default();
    if args.every.is_some() {
        settings.every = args.every.clone();
    }
    if args.times.is_some() {
        settings.times = args.times;
    }
    let poll = Poll::new(&args.source, settings, config.landing()?)?
        .with_base_url(args.base_url.clone())
        .with_kafka(config.kafka.clone());
    let plan = poll.plan()?;
    if args.dry_run {
        println!("{}", super::output::to_json(&plan)?);
        return Ok(());
    }
    let mut report = poll.execute(plan).await?;
    let failure = report.failure.take();
    if format == Format::Json {
        println!("{}", super::output::to_json(&[&report])?);
    } else {
        let rows: Vec<_> = report
            .written
            .iter()
            .map(|w| row([("written", w.clone().into())]))
            .chain(
                report
                    .kept_aside
                    .iter()
                    .map(|k| row([("kept aside", k.clone().into())])),
            )
            .collect();
        print_rows(&rows, &["written", "kept aside"], format);
        println!(
            "{}: {} poll(s), {} of {} request(s) answered with {} record(s) in {:.2} s",
            report.source,
            report.polls,
            report.responses,
            report.requests,
            report.records,
            report.duration_ms as f64 / 1000.0
        );
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
