//! cryptolake-jobs knows data: landing-file sources, the bronze → silver → gold transforms, the
//! Iceberg read and write paths, and the data generator. Every job is a builder with a pure
//! `plan()` (what it will read, write and commit) and an `execute(plan)`.

pub mod compact;
pub mod context;
pub mod dist;
mod error;
pub mod expire;
pub mod fault;
pub mod generate;
pub mod gold;
pub mod ingest_files;
pub mod ingest_kafka;
pub mod manifests;
pub mod orphans;
pub mod predicate;
pub mod progress;
pub mod provider;
pub mod scan;
pub mod silver;
pub mod sources;
pub mod summary;
pub mod write;

pub use context::{JobContext, JobSettings};

/// A job: a pure `plan()` that says what will be read, written and committed, and an
/// `execute()` that carries a plan out. `--dry-run` prints the plan.
pub trait Job {
    /// What `plan()` found; serializable so that `--dry-run` can print it.
    type Plan: serde::Serialize + Send;
    /// The job's name, as the CLI spells it.
    const NAME: &'static str;
    /// Reads catalogs and sources; writes nothing.
    fn plan(&self) -> impl std::future::Future<Output = Result<Self::Plan>> + Send;
    /// Writes files and commits them.
    fn execute(
        &self,
        plan: Self::Plan,
    ) -> impl std::future::Future<Output = Result<RunSummary>> + Send;
}
pub use error::{Error, Result};
pub use summary::{RunSummary, SourceCounts, TableRun};
