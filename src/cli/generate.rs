//! `cryptolake gen`: landing files for every source.

use chrono::{DateTime, Utc};
use cryptolake_jobs::generate::{GenOptions, generate};

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Minutes of market data to generate.
    #[arg(long, default_value_t = 10)]
    pub minutes: u32,
    /// Random seed: the same seed and options give the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of symbols (1..=24).
    #[arg(long, default_value_t = 20)]
    pub symbols: usize,
    /// Fraction of records replaced by malformed ones.
    #[arg(long, default_value_t = 0.0)]
    pub bad_rate: f64,
    /// Fraction of good records delivered twice (at-least-once delivery).
    #[arg(long, default_value_t = 0.0)]
    pub dup_rate: f64,
    /// First minute (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub start: DateTime<Utc>,
}

pub fn run(args: &GenArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let opts = GenOptions {
        minutes: args.minutes,
        seed: args.seed,
        symbols: args.symbols,
        bad_rate: args.bad_rate,
        dup_rate: args.dup_rate,
        start: args.start,
    };
    let counts = generate(&config.landing.path, &opts)?;
    let rows: Vec<_> = counts
        .iter()
        .map(|(source, c)| {
            row([
                ("source", source.clone().into()),
                ("files", c.files.into()),
                ("records", c.records.into()),
                ("good", c.good.into()),
                ("bad", c.bad.into()),
                ("duplicates", c.duplicates.into()),
            ])
        })
        .collect();
    print_rows(
        &rows,
        &["source", "files", "records", "good", "bad", "duplicates"],
        format,
    );
    Ok(())
}
