//! cryptolake-jobs knows data: landing-file and Kafka sources, the bronze → silver → gold
//! pipeline, table maintenance, the Iceberg read and write paths, the plan nodes that carry
//! them in-process or to a Ballista cluster, and the data generator. Every job is a builder
//! with a pure `plan()` (what it will read, write and commit) and an `execute(plan)`.
//!
//! Modules are layered; each imports only from its own layer or the ones below it (checked by
//! `tests/jobs/layers.rs`):
//!
//! | layer | modules |
//! | --- | --- |
//! | jobs | [`pipeline`] (ingest-files, ingest-kafka, silver, gold), [`maintenance`] (compact, rewrite-manifests, expire-snapshots, remove-orphans); neither imports the other |
//! | plans | [`engine`] (where plans run), [`codec`] (plans to and from bytes), [`physical_plan`] (every node) |
//! | logic | [`transform`] (silver's per-record work), [`iceberg`] (reading and writing tables), [`sources`] (landing files, Kafka), [`generate`] |
//! | core | [`job`] (context, settings, errors with kinds, summary, progress, faults), [`bookmarks`] |

pub mod bookmarks;
pub mod codec;
pub mod engine;
pub mod generate;
pub mod iceberg;
pub mod job;
pub mod maintenance;
pub mod physical_plan;
pub mod pipeline;
pub mod sources;
pub mod transform;

pub use job::context::{JobContext, JobSettings};
pub use job::error::{Error, ErrorKind, Result};
pub use job::summary::{RunSummary, SourceCounts, TableRun};

/// A job: a pure `plan()` that says what will be read, written and committed, and an
/// `execute()` that carries a plan out. `--dry-run` prints the plan.
pub trait Job {
    /// What `plan()` found; serializable so that `--dry-run` can print it.
    type Plan: ::serde::Serialize + Send;
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
