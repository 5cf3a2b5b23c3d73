//! cryptolake-jobs knows data: landing-file sources, the bronze → silver → gold transforms, the
//! Iceberg read and write paths, and the data generator. Every job is a builder with a pure
//! `plan()` (what it will read, write and commit) and an `execute(plan)`.

pub mod context;
mod error;
pub mod fault;
pub mod generate;
pub mod gold;
pub mod ingest_files;
pub mod provider;
pub mod scan;
pub mod silver;
pub mod sources;
pub mod summary;
pub mod write;

pub use context::{JobContext, JobSettings};
pub use error::{Error, Result};
pub use summary::{RunSummary, SourceCounts, TableRun};
