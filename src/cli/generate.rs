//! `cryptolake gen`: landing files for every source, or quotes and trades produced to Kafka.

use chrono::{DateTime, Utc};
use cryptolake_jobs::generate::{GenOptions, generate_into, generate_messages};
use cryptolake_jobs::sources::kafka;

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
    /// Produce the quotes and trades to these brokers' topics (the [kafka] topics, by
    /// format: one message per JSON line) instead of writing landing files.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
}

pub async fn run(args: &GenArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let opts = GenOptions {
        minutes: args.minutes,
        seed: args.seed,
        symbols: args.symbols,
        bad_rate: args.bad_rate,
        dup_rate: args.dup_rate,
        start: args.start,
    };
    if let Some(brokers) = &args.kafka {
        return produce(&opts, config, brokers, format).await;
    }
    let counts = generate_into(&config.landing()?, &opts).await?;
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

/// `gen --kafka`: each topic gets the messages of its format.
async fn produce(
    opts: &GenOptions,
    config: &Config,
    brokers: &str,
    format: Format,
) -> Result<(), CliError> {
    let mut kafka = config.kafka();
    kafka.brokers = brokers.to_string();
    kafka.validate()?;
    let (counts, messages) = generate_messages(opts)?;
    let mut rows = Vec::new();
    for topic in &kafka.topics {
        let Some(batch) = messages.get(&topic.format) else {
            continue;
        };
        let sent = kafka::produce(&kafka, &topic.topic, batch).await?;
        let c = &counts[&topic.format];
        rows.push(row([
            ("topic", topic.topic.clone().into()),
            ("partitions", sent.len().into()),
            ("messages", batch.len().into()),
            ("records", c.records.into()),
            ("good", c.good.into()),
            ("bad", c.bad.into()),
            ("duplicates", c.duplicates.into()),
        ]));
    }
    print_rows(
        &rows,
        &[
            "topic",
            "partitions",
            "messages",
            "records",
            "good",
            "bad",
            "duplicates",
        ],
        format,
    );
    Ok(())
}
