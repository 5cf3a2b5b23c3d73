//! Sources: landing files (local directories or S3), Kafka topics, their record formats, and the
//! bronze tables silver reads.

pub mod api;
pub mod bronze;
pub mod defined;
pub mod kafka;
pub mod kafka_config;
pub mod landing;
pub mod landing_stream;
pub mod records;

use cryptolake_catalog::layout::{self, LANDING_SOURCES};
use serde::Serialize;

use self::kafka_config::{TopicConfig, default_table_name};

/// A bronze table silver reads: its name in silver (the `source` column and the bookmark),
/// the table, and the record format of its rows (a landing source's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BronzeInput {
    pub name: String,
    pub table: String,
    pub format: String,
}

impl BronzeInput {
    /// `bronze.<source>`, written by `ingest-files`.
    pub fn landing(source: &str) -> Self {
        Self {
            name: source.into(),
            table: format!("bronze.{source}"),
            format: source.into(),
        }
    }

    /// A topic's table, written by `ingest-kafka`; named as its table (`coinbase_trades`).
    pub fn kafka(topic: &TopicConfig) -> Self {
        let table = topic.table();
        let name = table
            .strip_prefix("bronze.")
            .map_or_else(|| default_table_name(&topic.topic), str::to_string);
        Self {
            name,
            table,
            format: topic.format.clone(),
        }
    }

    /// Every landing source silver reads: the built-in market sources, then the configured
    /// sources that map to quotes or trades.
    pub fn landing_sources() -> Vec<Self> {
        let defined = defined::all()
            .into_iter()
            .filter(|d| d.def.kind != defined::SourceKind::None)
            .map(|d| Self::landing(&d.def.name))
            .collect::<Vec<_>>();
        LANDING_SOURCES
            .iter()
            .map(|s| Self::landing(s))
            .chain(defined)
            .collect()
    }

    /// Whether rows in this format are trades (otherwise quotes).
    pub fn is_trades(format: &str) -> bool {
        format == "trades"
            || defined::lookup(format).is_some_and(|d| d.def.kind == defined::SourceKind::Trades)
    }

    /// Checks the format is one silver knows.
    pub fn validate(&self) -> crate::Result<()> {
        if layout::bronze_source_fields(&self.format).is_none() {
            return Err(crate::Error::Usage(format!(
                "{}: unknown record format {}",
                self.table, self.format
            )));
        }
        Ok(())
    }
}
