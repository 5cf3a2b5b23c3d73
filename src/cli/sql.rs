//! `cryptolake sql "SELECT ..."`: DataFusion over every table of the lake.

use arrow::array::RecordBatch;
use cryptolake_catalog::Lake;
use cryptolake_jobs::engine::lake::{TimeTravel, register_lake};

use super::output::Format;
use super::{CliError, Config};

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The query; tables are `bronze.<source>`, `silver.quotes`, `gold.candles_1m`, ...
    pub query: String,
    /// Read a table at a snapshot (time travel): `silver.quotes=1234` (repeatable).
    #[arg(long = "snapshot", value_name = "TABLE=ID")]
    pub snapshots: Vec<String>,
    /// Read every other table as it was at this time (RFC 3339); a table that had no snapshot
    /// then reads as empty.
    #[arg(long)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

fn time_travel(args: &SqlArgs) -> Result<TimeTravel, CliError> {
    let mut travel = TimeTravel {
        as_of_ms: args.as_of.map(|t| t.timestamp_millis()),
        ..Default::default()
    };
    for s in &args.snapshots {
        let (table, id) = s
            .split_once('=')
            .and_then(|(t, id)| Some((t.to_string(), id.parse::<i64>().ok()?)))
            .ok_or_else(|| CliError::Config(format!("--snapshot takes TABLE=ID, not `{s}`")))?;
        travel.snapshots.insert(table, id);
    }
    Ok(travel)
}

pub async fn run(args: &SqlArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let lake = Lake::open(&config.catalog).await?;
    let ctx = datafusion::prelude::SessionContext::new();
    register_lake(&ctx, &lake, &time_travel(args)?).await?;
    let df = ctx
        .sql(&args.query)
        .await
        .map_err(cryptolake_jobs::Error::from)?;
    let batches = df.collect().await.map_err(cryptolake_jobs::Error::from)?;
    match format {
        Format::Json => println!("{}", batches_to_json(&batches)?),
        Format::Text => println!(
            "{}",
            arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(cryptolake_jobs::Error::from)?
        ),
    }
    Ok(())
}

/// Rows as a JSON array of objects (nulls kept as `null`).
pub fn batches_to_json(batches: &[RecordBatch]) -> Result<String, CliError> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch).map_err(cryptolake_jobs::Error::from)?;
    }
    writer.finish().map_err(cryptolake_jobs::Error::from)?;
    let bytes = writer.into_inner();
    Ok(if bytes.is_empty() {
        "[]".to_string()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
