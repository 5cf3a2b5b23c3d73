//! `cryptolake sql "SELECT ..."`: DataFusion over every table of the lake.

use arrow::array::RecordBatch;
use cryptolake_catalog::Lake;
use cryptolake_jobs::provider::session_with_lake;

use super::output::Format;
use super::{CliError, Config};

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The query; tables are `bronze.<source>`, `silver.quotes`, `gold.candles_1m`, ...
    pub query: String,
}

pub async fn run(args: &SqlArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let lake = Lake::open(&config.catalog).await?;
    let ctx = session_with_lake(&lake).await?;
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
