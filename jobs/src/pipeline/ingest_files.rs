//! `ingest-files`: new landing files become rows of one bronze table per source.
//!
//! Exactly once without a checkpoint directory: the files a run takes, each with its version (a
//! local file's size and modification time, an object's ETag), are recorded in the summary of
//! the snapshot that holds their rows (key [`FILES_TAKEN_KEY`]). A run lists the files (or
//! versions of files: a file appended to or overwritten is taken again) no snapshot of the
//! table has taken, writes their rows, and commits rows and file list in one snapshot,
//! requiring (again, on every retry) that no other run took them meanwhile. A crash before the
//! commit leaves only unreferenced files; the next run takes the same files again.
//!
//! Each source's run is one plan on the engine (in this process or on a cluster): a landing
//! scan split into groups of whole files, one task each, under a write node; the tasks return
//! their files and the records they read, and the driver commits.

use std::sync::Arc;
use std::time::Instant;

use cryptolake_catalog::layout::{self, LANDING_SOURCES, REFERENCE_SOURCES};
use cryptolake_catalog::{Requirement, SnapshotCommit};
use iceberg::spec::DataFile;
use serde::Serialize;

use crate::bookmarks::{
    FILES_TAKEN_KEY, JOB_PROPERTY, Taken, TakenFile, taken_files, taken_in_snapshots,
};
use crate::engine;
use crate::iceberg::TableRef;
use crate::iceberg::writer::arrow_schema;
use crate::job::context::JobContext;
use crate::job::fault::maybe_crash;
use crate::job::summary::{RunSummary, SourceCounts, TableRun};
use crate::physical_plan::pack_by_size;
use crate::physical_plan::{SourceNode, SourceSpec, TableWriteNode, records_read_total};
use crate::sources::landing::{LandingFile, LandingScan};
use crate::{Error, Result};

const JOB: &str = "ingest-files";

/// What one source's run will take.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourcePlan {
    pub source: String,
    pub table: String,
    /// Files to take: new ones and changed ones.
    pub new_files: Vec<String>,
    /// Of `new_files`, those taken before with other content (appended to, overwritten): taken
    /// again, silver's dedup absorbing the records it already has.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_files: Vec<String>,
    pub new_bytes: u64,
    pub already_taken: usize,
    /// Where the listing started (S3, after the newest file taken); `None` for a full listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed_from: Option<String>,
    #[serde(skip)]
    files: Vec<LandingFile>,
}

/// The plan of an `ingest-files` run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IngestFilesPlan {
    pub sources: Vec<SourcePlan>,
}

impl IngestFilesPlan {
    pub fn is_empty(&self) -> bool {
        self.sources.iter().all(|s| s.new_files.is_empty())
    }
}

/// Builder for an `ingest-files` run.
#[derive(Debug, Clone)]
pub struct IngestFiles {
    ctx: JobContext,
    sources: Vec<String>,
    full_listing: bool,
}

impl IngestFiles {
    pub fn new(ctx: JobContext) -> Self {
        Self {
            ctx,
            sources: LANDING_SOURCES
                .iter()
                .chain(REFERENCE_SOURCES.iter())
                .map(|s| s.to_string())
                .chain(layout::defined_sources())
                .collect(),
            full_listing: false,
        }
    }

    /// Limits the run to some sources.
    pub fn with_sources(mut self, sources: Vec<String>) -> Self {
        self.sources = sources;
        self
    }

    /// Lists every file anew, on S3 too (by default an S3 listing starts from the directory of
    /// the newest file taken).
    pub fn with_full_listing(mut self, full: bool) -> Self {
        self.full_listing = full;
        self
    }

    /// Lists the files (or versions of files) each source has not taken yet. Writes nothing.
    async fn plan_impl(&self) -> Result<IngestFilesPlan> {
        // A location that cannot be read fails its listing (a missing directory or bucket).
        let landing = &self.ctx.landing;
        let mut sources = Vec::new();
        for source in &self.sources {
            let layout = layout::bronze(source)?;
            let taken = match self.ctx.lake.table_if_exists(&layout.ident()).await? {
                Some(table) => taken_files(&table).await?,
                None => Taken::default(),
            };
            let after = match self.full_listing || !landing.is_s3() {
                true => None,
                false => taken.newest().map(str::to_string),
            };
            let all = landing.list_source(source, after.as_deref()).await?;
            let (files, already): (Vec<LandingFile>, Vec<LandingFile>) = all
                .into_iter()
                .partition(|f| !taken.contains(&f.rel_path, &f.version));
            sources.push(SourcePlan {
                source: source.clone(),
                table: layout.ident().to_string(),
                new_files: files.iter().map(|f| f.rel_path.clone()).collect(),
                changed_files: files
                    .iter()
                    .filter(|f| taken.contains_path(&f.rel_path))
                    .map(|f| f.rel_path.clone())
                    .collect(),
                new_bytes: files.iter().map(|f| f.size).sum(),
                already_taken: already.len(),
                listed_from: after,
                files,
            });
        }
        Ok(IngestFilesPlan { sources })
    }

    /// Ingests the planned files, one commit per source with new files.
    async fn execute_impl(&self, plan: IngestFilesPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let ingest_us = chrono::Utc::now().timestamp_micros();
        let files = plan.sources.iter().map(|s| s.files.len() as u64).sum();
        self.ctx
            .progress
            .start("ingest-files: landing files", files);
        let mut tasks = tokio::task::JoinSet::new();
        for source_plan in plan.sources.into_iter().filter(|s| !s.files.is_empty()) {
            let ctx = self.ctx.clone();
            tasks.spawn(async move { ingest_source(&ctx, source_plan, ingest_us).await });
        }
        let mut summary = RunSummary::new(JOB);
        while let Some(joined) = tasks.join_next().await {
            let (source, table, counts, run) =
                joined.map_err(|e| Error::Internal(format!("ingest task failed: {e}")))??;
            summary.sources.insert(source, counts);
            summary.tables.insert(table, run);
        }
        Ok(summary.finish(started.elapsed()))
    }
}

/// What one source's write returned.
struct Written {
    files: Vec<DataFile>,
    records: u64,
    writers: std::collections::BTreeSet<String>,
}

/// Writes one source's planned files as one plan on the engine (the files split by size into
/// a task each, every task writing its own data files). Commits nothing.
async fn write_source(
    ctx: &JobContext,
    plan: &SourcePlan,
    table: &iceberg::table::Table,
    ingest_us: i64,
) -> Result<Written> {
    let session = engine::session(ctx).await?;
    let tasks = session.state().config().target_partitions();
    let scan = LandingScan {
        landing: ctx.landing.clone(),
        source: plan.source.clone(),
        groups: pack_by_size(plan.files.clone(), tasks, |f| f.size),
        schema: arrow_schema(table)?,
        ingest_us,
        batch_size: ctx.settings.batch_size,
    };
    let table_ref = TableRef::of(table);
    let write = TableWriteNode::new(
        SourceNode::new(SourceSpec::Landing(Box::new(scan)))?.into_plan(),
        Arc::new(table_ref.clone()),
        ctx.settings.target_file_size,
    );
    let written = engine::write(&ctx.engine, &session, &table_ref, write.into_plan()).await?;
    let records = records_read_total(&written).unwrap_or(0);
    let rows: u64 = written.iter().map(|w| w.file.record_count()).sum();
    if rows != records {
        return Err(Error::Internal(format!(
            "{}: read {records} landing records but wrote {rows} rows: refusing to commit",
            plan.source
        )));
    }
    Ok(Written {
        writers: written.iter().map(|w| w.writer.clone()).collect(),
        files: written.into_iter().map(|w| w.file).collect(),
        records,
    })
}

/// Writes one source's planned files, then commits them with the list of files taken.
async fn ingest_source(
    ctx: &JobContext,
    plan: SourcePlan,
    ingest_us: i64,
) -> Result<(String, String, SourceCounts, TableRun)> {
    let layout = layout::bronze(&plan.source)?;
    let table = ctx.lake.ensure_table(&layout).await?;
    let Written {
        files: data_files,
        records,
        writers,
    } = write_source(ctx, &plan, &table, ingest_us).await?;
    ctx.progress.advance(plan.files.len() as u64);
    let mut counts = SourceCounts {
        records,
        files: plan.files.len() as u64,
        files_changed: plan.changed_files.len() as u64,
        ..Default::default()
    };
    maybe_crash(JOB, "after-write");

    let taken: Vec<TakenFile> = plan
        .files
        .iter()
        .map(|f| TakenFile::Version {
            path: f.rel_path.clone(),
            version: f.version.clone(),
        })
        .collect();
    let name = plan.table.clone();
    let wanted = plan.files.clone();
    let requirement: Requirement = std::sync::Arc::new(move |metadata| {
        // A concurrent run's snapshot is recent: the snapshots' own lists are enough here.
        // A changed file's older versions, taken before, do not conflict.
        let already = taken_in_snapshots(&name, metadata).map_err(|e| e.to_string())?;
        match wanted
            .iter()
            .find(|f| already.contains(&f.rel_path, &f.version))
        {
            Some(f) => Err(format!(
                "landing file {} was taken by a concurrent run",
                f.rel_path
            )),
            None => Ok(()),
        }
    });
    let run = TableRun {
        rows_in: counts.records,
        rows_out: counts.records,
        writers,
        files_written: data_files.len() as u64,
        bytes_written: data_files.iter().map(|f| f.file_size_in_bytes()).sum(),
        ..Default::default()
    };
    let taken_json = serde_json::to_string(&taken)
        .map_err(|e| Error::Internal(format!("{}: files taken: {e}", plan.table)))?;
    let commit = SnapshotCommit::append(layout.ident())
        .add_files(data_files)
        .set_property(FILES_TAKEN_KEY, taken_json)
        .set_property(JOB_PROPERTY, JOB)
        .require(requirement);
    let outcome = ctx.lake.commit(&commit).await?;
    tracing::info!(
        source = %plan.source,
        files = plan.files.len(),
        records = counts.records,
        snapshot = outcome.snapshot_id,
        "landing files ingested"
    );
    maybe_crash(JOB, "after-commit");
    counts.good = counts.records;
    Ok((
        plan.source,
        layout.ident().to_string(),
        counts,
        TableRun {
            snapshot_id: Some(outcome.snapshot_id),
            commit_attempts: outcome.attempts,
            ..run
        },
    ))
}

impl crate::Job for IngestFiles {
    type Plan = IngestFilesPlan;
    const NAME: &'static str = "ingest-files";

    async fn plan(&self) -> Result<IngestFilesPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: IngestFilesPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}
