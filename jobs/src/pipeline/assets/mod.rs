//! `assets`: the assets dimension, `silver.assets` (seed 001's `crypto_assets`), upserted from
//! the CoinCap assets and CoinAPI icons that bronze gained since the table's bookmarks.
//!
//! A run reads the new bronze rows, keeps each asset's newest state (and each symbol's newest
//! icon), merges them into the table ([`merge::merge`]: changed rows replaced, new rows
//! inserted, unchanged rows untouched; with `history`, SCD type 2) and commits one `overwrite`
//! snapshot that removes the rewritten files, adds the new ones and moves both bookmarks. The
//! commit requires the bookmarks unchanged and the removed files still live, so an upsert that
//! raced another fails with a conflict (exit 4) having changed nothing, and its re-run merges
//! into the winner's rows: a concurrent upsert loses nothing. Records that cannot be used (no
//! id, a number that is not one) stay in bronze, counted and named in the log.
//!
//! The table is a dimension of a few thousand rows: a run reads all of its live files.

pub mod merge;
pub mod table;

use std::collections::BTreeMap;
use std::time::Instant;

use cryptolake_catalog::SnapshotCommit;
use cryptolake_catalog::commit::bookmarks_unchanged;
use cryptolake_catalog::layout::{self, silver_assets};
use futures::TryStreamExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use serde::Serialize;

use self::merge::{AssetRow, Icons};
use self::table::{ASSET_COLUMNS, ICON_COLUMNS, StatesRead};
use crate::bookmarks::{JOB_PROPERTY, silver_key, snapshot_bookmark};
use crate::iceberg::scan;
use crate::iceberg::writer::TableWriter;
use crate::job::context::JobContext;
use crate::job::fault::maybe_crash;
use crate::job::summary::{RunSummary, SourceCounts, TableRun};
use crate::{Error, Result};

const JOB: &str = "assets";

/// The bronze tables the upsert reads, by landing source.
pub const INPUTS: [&str; 2] = ["coincap_assets", "coinapi_icons"];

/// One bronze input's new files.
#[derive(Debug, Clone, Serialize)]
pub struct InputPlan {
    pub source: String,
    /// The table's bookmark, which the commit requires unchanged.
    pub bookmark: Option<i64>,
    /// The bronze snapshot read through.
    pub through_snapshot: i64,
    pub new_files: usize,
    pub new_records: u64,
    #[serde(skip)]
    files: Vec<DataFile>,
}

/// What an assets run will do.
#[derive(Debug, Clone, Serialize)]
pub struct AssetsPlan {
    pub table: String,
    pub history: bool,
    /// Inputs with new files; empty when there is nothing to do.
    pub inputs: Vec<InputPlan>,
    /// `silver.assets`' live files when planned (all read; those with a change rewritten).
    pub table_files: usize,
    #[serde(skip)]
    bookmarks: Vec<(String, Option<i64>)>,
}

/// Builder for an assets run.
#[derive(Debug, Clone)]
pub struct Assets {
    ctx: JobContext,
    history: bool,
}

impl Assets {
    pub fn new(ctx: JobContext) -> Self {
        Self {
            ctx,
            history: false,
        }
    }

    /// Keep every version of an asset (`valid_from`, `valid_to`) instead of replacing it.
    pub fn with_history(mut self, history: bool) -> Self {
        self.history = history;
        self
    }

    async fn plan_impl(&self) -> Result<AssetsPlan> {
        let lake = &self.ctx.lake;
        let target = lake.table_if_exists(&silver_assets().ident()).await?;
        let mut plan = AssetsPlan {
            table: silver_assets().ident().to_string(),
            history: self.history,
            inputs: Vec::new(),
            table_files: 0,
            bookmarks: Vec::new(),
        };
        if let Some(t) = &target {
            plan.table_files = scan::live_data_files(t).await?.len();
        }
        for source in INPUTS {
            let key = silver_key(source);
            let bookmark = match &target {
                Some(t) => snapshot_bookmark(t, &key)?,
                None => None,
            };
            plan.bookmarks.push((key, bookmark));
            let Some(bronze) = lake
                .table_if_exists(&layout::bronze(source)?.ident())
                .await?
            else {
                continue;
            };
            let Some(current) = bronze.metadata().current_snapshot_id() else {
                continue;
            };
            if Some(current) == bookmark {
                continue;
            }
            let files: Vec<DataFile> = scan::appended_since(&bronze, bookmark)
                .await?
                .into_iter()
                .flat_map(|a| a.files)
                .collect();
            plan.inputs.push(InputPlan {
                source: source.to_string(),
                bookmark,
                through_snapshot: current,
                new_files: files.len(),
                new_records: files.iter().map(|f| f.record_count()).sum(),
                files,
            });
        }
        Ok(plan)
    }

    async fn execute_impl(&self, plan: AssetsPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        if plan.inputs.is_empty() {
            return Ok(summary.finish(started.elapsed()));
        }
        let lake = &self.ctx.lake;
        let target = lake.ensure_table(&silver_assets()).await?;
        let (states, icons) = self.read_inputs(&plan, &mut summary).await?;
        let live = scan::live_data_files(&target).await?;
        let mut current = Vec::with_capacity(live.len());
        for file in &live {
            current.push(self.read_rows(&target, file).await?);
        }
        let merged = merge::merge(&current, &states.states, &icons, self.history);
        tracing::info!(
            inserted = merged.inserted,
            updated = merged.updated,
            unchanged = merged.unchanged,
            rewritten_files = merged.rewrite.len(),
            "assets merged"
        );
        let added = self.write(&target, &merged.rows).await?;
        maybe_crash(JOB, "after-write");
        let removed: Vec<String> = merged
            .rewrite
            .iter()
            .map(|&i| live[i].file_path().to_string())
            .collect();
        let mut run = TableRun {
            rows_in: states.records,
            rows_out: merged.inserted + merged.updated,
            quarantined: states.rejected.len() as u64,
            files_written: added.len() as u64,
            bytes_written: added.iter().map(|f| f.file_size_in_bytes()).sum(),
            files_removed: removed.len() as u64,
            ..Default::default()
        };
        let mut commit = SnapshotCommit::overwrite(target.identifier().clone())
            .add_files(added)
            .remove_files(removed)
            .set_property(JOB_PROPERTY, JOB)
            .require(bookmarks_unchanged(plan.bookmarks.clone()));
        for input in &plan.inputs {
            commit = commit.set_property(
                silver_key(&input.source),
                input.through_snapshot.to_string(),
            );
        }
        let outcome = lake.commit(&commit).await?;
        run.snapshot_id = Some(outcome.snapshot_id);
        run.commit_attempts = outcome.attempts;
        summary.tables.insert(plan.table.clone(), run);
        Ok(summary.finish(started.elapsed()))
    }

    /// The newest asset states and icons in the plan's new bronze files.
    async fn read_inputs(
        &self,
        plan: &AssetsPlan,
        summary: &mut RunSummary,
    ) -> Result<(StatesRead, Icons)> {
        let mut states = StatesRead::default();
        let mut icons = Icons::new();
        let mut icon_order = BTreeMap::new();
        for input in &plan.inputs {
            let bronze = self
                .ctx
                .lake
                .load_table(&layout::bronze(&input.source)?.ident())
                .await?;
            let columns: &[&str] = if input.source == "coincap_assets" {
                &ASSET_COLUMNS
            } else {
                &ICON_COLUMNS
            };
            let tasks = scan::tasks_for_files(&bronze, &input.files, Some(columns))?;
            let mut stream = scan::read(&bronze, tasks, self.ctx.settings.batch_size)?;
            let mut records = 0u64;
            while let Some(batch) = stream.try_next().await? {
                records += batch.num_rows() as u64;
                if input.source == "coincap_assets" {
                    states.add(&batch)?;
                } else {
                    table::add_icons(&mut icons, &mut icon_order, &batch)?;
                }
            }
            summary.sources.insert(
                input.source.clone(),
                SourceCounts {
                    records,
                    files: input.files.len() as u64,
                    ..Default::default()
                },
            );
        }
        if let Some(c) = summary.sources.get_mut("coincap_assets") {
            c.quarantined = states.rejected.len() as u64;
            c.good = c.records - c.quarantined;
            c.duplicates_dropped = c.good.saturating_sub(states.states.len() as u64);
        }
        for reason in states.rejected.iter().take(20) {
            tracing::warn!("bronze.coincap_assets {reason}: left in bronze, not in silver.assets");
        }
        Ok((states, icons))
    }

    async fn read_rows(&self, table: &Table, file: &DataFile) -> Result<Vec<AssetRow>> {
        let tasks = scan::tasks_for_files(table, std::slice::from_ref(file), None)?;
        let mut stream = scan::read(table, tasks, self.ctx.settings.batch_size)?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.try_next().await? {
            rows.extend(table::from_batch(&batch)?);
        }
        if rows.len() as u64 != file.record_count() {
            return Err(Error::Internal(format!(
                "{}: read {} rows of {} ({} recorded)",
                table.identifier(),
                rows.len(),
                file.file_path(),
                file.record_count()
            )));
        }
        Ok(rows)
    }

    async fn write(&self, table: &Table, rows: &[AssetRow]) -> Result<Vec<DataFile>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut writer = TableWriter::new(table, self.ctx.settings.target_file_size)?;
        let batch = table::to_batch(rows, writer.schema())?;
        writer.write(batch).await?;
        writer.close().await
    }
}

impl crate::Job for Assets {
    type Plan = AssetsPlan;
    const NAME: &'static str = "assets";

    async fn plan(&self) -> Result<AssetsPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: AssetsPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}
