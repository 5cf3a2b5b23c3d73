//! The data jobs, bronze → silver → gold: each a builder with a pure `plan()` and an
//! `execute()` that builds one DataFusion plan, runs it on the engine and commits on the
//! driver with the job's bookmarks; `alerts` evaluates price rules on new silver quotes;
//! `assets` upserts the assets dimension; `poll` fetches a market-data API into the landing zone
//! (or Kafka), before bronze.

pub mod alerts;
pub mod assets;
pub mod gold;
pub mod ingest_files;
pub mod ingest_kafka;
pub mod poll;
pub mod silver;
