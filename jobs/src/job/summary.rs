//! The run summary every job returns, printed by the CLI and kept in run history.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Figures for one table a job wrote.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TableRun {
    pub rows_in: u64,
    pub rows_out: u64,
    pub quarantined: u64,
    pub duplicates_dropped: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub files_removed: u64,
    /// The snapshot committed, `None` when there was nothing to commit.
    pub snapshot_id: Option<i64>,
    pub commit_attempts: u32,
    /// compact: groups dropped because a concurrent writer removed one of their files.
    #[serde(skip_serializing_if = "is_zero")]
    pub groups_dropped: u64,
    /// Processes (`host:pid`) that wrote the files: this one in-process, executors on a
    /// cluster.
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub writers: std::collections::BTreeSet<String>,
    /// Why the job left the table alone (compact: it has delete files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What one job run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunSummary {
    pub job: String,
    /// Per table written (`namespace.table`).
    pub tables: BTreeMap<String, TableRun>,
    /// Per source read: records in and where they went.
    pub sources: BTreeMap<String, SourceCounts>,
    pub duration_ms: u64,
}

/// How one source's records were accounted for.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SourceCounts {
    pub records: u64,
    pub good: u64,
    pub quarantined: u64,
    pub duplicates_dropped: u64,
    pub files: u64,
    /// ingest-files: of `files`, those taken before with other content (appended to or
    /// overwritten since), taken again.
    #[serde(skip_serializing_if = "is_zero")]
    pub files_changed: u64,
    /// ingest-kafka: messages retention deleted before they were read (skipped under
    /// `--on-missing-offsets earliest`).
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

impl RunSummary {
    pub fn new(job: &str) -> Self {
        Self {
            job: job.to_string(),
            ..Default::default()
        }
    }

    pub fn finish(mut self, elapsed: Duration) -> Self {
        self.duration_ms = elapsed.as_millis() as u64;
        self
    }

    /// Snapshots committed by this run.
    pub fn commits(&self) -> usize {
        self.tables
            .values()
            .filter(|t| t.snapshot_id.is_some())
            .count()
    }
}
