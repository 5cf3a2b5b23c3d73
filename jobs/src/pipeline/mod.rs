//! The data jobs, bronze → silver → gold: each a builder with a pure `plan()` and an
//! `execute()` that builds one DataFusion plan, runs it on the engine and commits on the
//! driver with the job's bookmarks; `alerts` evaluates price rules on new silver quotes.

pub mod alerts;
pub mod gold;
pub mod ingest_files;
pub mod ingest_kafka;
pub mod silver;
