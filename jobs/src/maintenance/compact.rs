//! `compact`: rewrite a table's small (and oversized) data files into files of the target size,
//! per partition, committed as `replace` snapshots that keep every row.
//!
//! Defaults follow Spark's `rewrite_data_files` bin-pack: target `write.target-file-size-bytes`
//! (512 MiB), files under 75 % or over 180 % of the target are candidates, a partition's
//! candidates are rewritten when there are at least `min_input_files` (5) of them or one of them
//! is oversized. Appends that land meanwhile are kept (the commit layer builds on the newest
//! snapshot); a group one of whose files was removed meanwhile is dropped and reported, never
//! resurrecting removed rows. Groups are rewritten concurrently: one plan whose task `i` rewrites
//! group `i`, in this process or on a Ballista cluster.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use cryptolake_catalog::{Error as CatalogError, SnapshotCommit};
use std::sync::Arc;

use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use futures::TryStreamExt;
use iceberg::TableIdent;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use serde::Serialize;

use crate::engine;
use crate::iceberg::TableRef;
use crate::iceberg::scan;
use crate::job::context::JobContext;
use crate::job::fault::maybe_crash;
use crate::job::summary::{RunSummary, TableRun};
use crate::physical_plan::IcebergProvider;
use crate::physical_plan::TableWriteNode;
use crate::{Error, Result};

const JOB: &str = "compact";
/// Iceberg's table property for the target data file size.
pub const TARGET_SIZE_PROPERTY: &str = "write.target-file-size-bytes";
const DEFAULT_TARGET: u64 = 512 * 1024 * 1024;

/// Options of a compaction run.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactOptions {
    /// Overrides every table's target file size.
    pub target_size: Option<u64>,
    /// Fewest candidate files that make a partition worth rewriting.
    pub min_input_files: usize,
    /// Tables to compact; every table when empty.
    pub tables: Vec<TableIdent>,
    /// Only files that may hold rows matching this SQL condition (Spark's `where`).
    pub filter: Option<String>,
    /// Commit each group as soon as it is rewritten, not all at the end (Spark's
    /// `partial-progress.enabled`): a failure keeps the groups done so far.
    pub partial_progress: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            target_size: None,
            min_input_files: 5,
            tables: Vec::new(),
            filter: None,
            partial_progress: false,
        }
    }
}

/// Files of one partition rewritten together.
#[derive(Debug, Clone, Serialize)]
pub struct CompactGroup {
    pub partition: String,
    pub files_in: usize,
    pub bytes_in: u64,
    pub records: u64,
    /// Files the group should become (bytes in / target, rounded up).
    pub expected_files_out: u64,
    #[serde(skip)]
    files: Vec<DataFile>,
}

/// What compaction will do to one table.
#[derive(Debug, Clone, Serialize)]
pub struct CompactTablePlan {
    pub table: String,
    pub target_size: u64,
    pub snapshot_id: Option<i64>,
    pub live_files: usize,
    /// Live files the `filter` selected (all of them without one).
    pub selected_files: usize,
    pub groups: Vec<CompactGroup>,
    /// Why the table is left alone: it has delete files (merge-on-read, from Athena or
    /// Spark), which compaction does not apply, so rewriting its files would bring deleted
    /// rows back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The plan of a compaction run.
#[derive(Debug, Clone, Serialize)]
pub struct CompactPlan {
    pub tables: Vec<CompactTablePlan>,
}

/// Builder for a compaction run.
#[derive(Debug, Clone)]
pub struct Compact {
    ctx: JobContext,
    options: CompactOptions,
}

impl Compact {
    pub fn new(ctx: JobContext, options: CompactOptions) -> Self {
        Self { ctx, options }
    }

    /// The target file size: `--target-size`, else the table's property, else 512 MiB. A
    /// property that is not a positive number of bytes is an error, not a silent default.
    fn target_of(&self, table: &Table) -> Result<u64> {
        if let Some(size) = self.options.target_size {
            return Ok(size);
        }
        let Some(text) = table.metadata().properties().get(TARGET_SIZE_PROPERTY) else {
            return Ok(DEFAULT_TARGET);
        };
        match text.parse::<u64>() {
            Ok(size) if size > 0 => Ok(size),
            _ => Err(Error::Usage(format!(
                "{}: {TARGET_SIZE_PROPERTY} = {text:?} is not a positive number of bytes",
                table.identifier()
            ))),
        }
    }

    async fn plan_impl(&self) -> Result<CompactPlan> {
        let idents = super::options::tables_or_all(&self.ctx.lake, &self.options.tables).await?;
        let mut tables = Vec::new();
        for ident in idents {
            let table = self.ctx.lake.load_table(&ident).await?;
            // The pipeline's tables are rewritten by their own spec only, as they are written.
            if let Some(layout) = cryptolake_catalog::layout::layout_of(&ident) {
                layout.check_partition_spec(table.metadata())?;
            }
            let target = self.target_of(&table)?;
            let deletes = scan::delete_manifests(&table).await?;
            if deletes > 0 {
                let why = format!(
                    "has delete files ({deletes} manifest(s)), which compaction does not apply: \
                     rewriting its data files would bring deleted rows back"
                );
                tracing::warn!(table = %ident, "compaction skips the table: it {why}");
                tables.push(CompactTablePlan {
                    table: ident.to_string(),
                    target_size: target,
                    snapshot_id: table.metadata().current_snapshot_id(),
                    live_files: 0,
                    selected_files: 0,
                    groups: Vec::new(),
                    skipped: Some(why),
                });
                continue;
            }
            let files = scan::live_data_files(&table).await?;
            let live_files = files.len();
            let files = match &self.options.filter {
                Some(sql) => matching_files(&table, files, sql).await?,
                None => files,
            };
            let groups = bin_pack(&files, target, self.options.min_input_files.max(2));
            tables.push(CompactTablePlan {
                table: ident.to_string(),
                target_size: target,
                snapshot_id: table.metadata().current_snapshot_id(),
                live_files,
                selected_files: files.len(),
                groups,
                skipped: None,
            });
        }
        Ok(CompactPlan { tables })
    }

    async fn execute_impl(&self, plan: CompactPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        let groups: u64 = plan.tables.iter().map(|t| t.groups.len() as u64).sum();
        self.ctx.progress.start("compact: file groups", groups);
        for table_plan in &plan.tables {
            if let Some(why) = &table_plan.skipped {
                let run = TableRun {
                    skipped: Some(why.clone()),
                    ..TableRun::default()
                };
                summary.tables.insert(table_plan.table.clone(), run);
            }
        }
        for table_plan in plan.tables.into_iter().filter(|t| !t.groups.is_empty()) {
            let run = self.compact_table(&table_plan).await?;
            summary.tables.insert(table_plan.table.clone(), run);
        }
        Ok(summary.finish(started.elapsed()))
    }

    async fn compact_table(&self, plan: &CompactTablePlan) -> Result<TableRun> {
        let ident = cryptolake_catalog::lake::parse_ident(&plan.table)?;
        let table = self.ctx.lake.load_table(&ident).await?;
        let mut run = TableRun::default();
        // One plan rewrites many groups, group `i` in task `i`, spread over the cores (or the
        // cluster's executors). With partial progress a plan takes as many groups as there are
        // tasks, and each group commits on its own.
        let session = engine::session(&self.ctx).await?;
        let per_plan = if self.options.partial_progress {
            session.state().config().target_partitions()
        } else {
            plan.groups.len()
        };
        let mut pending = Vec::new();
        for chunk in plan.groups.chunks(per_plan.max(1)) {
            let written = self
                .rewrite(&session, &table, chunk, plan.target_size, &mut run.writers)
                .await?;
            run.rows_in += chunk.iter().map(|g| g.records).sum::<u64>();
            self.ctx.progress.advance(chunk.len() as u64);
            pending.extend(chunk.iter().cloned().zip(written));
            if self.options.partial_progress {
                // One `replace` snapshot per group, as Spark's partial progress commits.
                for group in std::mem::take(&mut pending) {
                    self.commit_groups(&ident, vec![group], &mut run).await?;
                }
            }
        }
        maybe_crash(JOB, "after-write");
        self.commit_groups(&ident, pending, &mut run).await?;
        Ok(run)
    }

    /// Commits rewritten groups in one `replace` snapshot; groups that lost a file to a
    /// concurrent writer drop out (counted in `run.groups_dropped`) and the rest commit.
    async fn commit_groups(
        &self,
        ident: &TableIdent,
        mut written: Vec<(CompactGroup, Vec<DataFile>)>,
        run: &mut TableRun,
    ) -> Result<()> {
        while !written.is_empty() {
            let commit = written.iter().fold(
                SnapshotCommit::replace(ident.clone())
                    .set_property(crate::bookmarks::JOB_PROPERTY, JOB),
                |c, (g, out)| {
                    c.remove_files(g.files.iter().map(|f| f.file_path().to_string()))
                        .add_files(out.clone())
                },
            );
            match self.ctx.lake.commit(&commit).await {
                Ok(outcome) => {
                    run.snapshot_id = Some(outcome.snapshot_id);
                    run.commit_attempts += outcome.attempts;
                    break;
                }
                Err(CatalogError::RequirementFailed { table, reason }) => {
                    let live: HashSet<String> =
                        scan::live_data_files(&self.ctx.lake.load_table(ident).await?)
                            .await?
                            .iter()
                            .map(|f| f.file_path().to_string())
                            .collect();
                    let before = written.len();
                    written.retain(|(g, _)| g.files.iter().all(|f| live.contains(f.file_path())));
                    let dropped = before - written.len();
                    tracing::warn!(table = %ident, dropped, %reason, "compaction groups dropped: their files changed");
                    if dropped == 0 {
                        // Not a vanished file: nothing to drop, so the failure stands.
                        return Err(CatalogError::RequirementFailed { table, reason }.into());
                    }
                    run.groups_dropped += dropped as u64;
                }
                Err(e) => return Err(e.into()),
            }
        }
        for (g, out) in &written {
            run.files_removed += g.files.len() as u64;
            run.files_written += out.len() as u64;
            run.bytes_written += out.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
            run.rows_out += out.iter().map(|f| f.record_count()).sum::<u64>();
        }
        Ok(())
    }

    /// Reads the groups' rows and writes them again at the target size: one plan, a scan
    /// partition and a write task per group. Returns each group's new files, in order.
    async fn rewrite(
        &self,
        session: &datafusion::prelude::SessionContext,
        table: &Table,
        groups: &[CompactGroup],
        target: u64,
        writers: &mut std::collections::BTreeSet<String>,
    ) -> Result<Vec<Vec<DataFile>>> {
        let files = groups.iter().map(|g| g.files.clone()).collect();
        let provider = IcebergProvider::with_groups(table.clone(), files)?;
        let scan = LogicalPlanBuilder::scan(
            table.identifier().to_string(),
            provider_as_source(Arc::new(provider)),
            None,
        )?
        .build()?;
        let table_ref = TableRef::of(table);
        let write = TableWriteNode::new(scan, Arc::new(table_ref.clone()), target as usize);
        let written =
            engine::write(&self.ctx.engine, session, &table_ref, write.into_plan()).await?;
        let mut out: Vec<Vec<DataFile>> = vec![Vec::new(); groups.len()];
        writers.extend(written.iter().map(|w| w.writer.clone()));
        for w in written {
            let slot = out.get_mut(w.partition as usize).ok_or_else(|| {
                Error::Internal(format!("a write returned unknown group {}", w.partition))
            })?;
            slot.push(w.file);
        }
        for (group, files) in groups.iter().zip(&out) {
            let rows: u64 = files.iter().map(|f| f.record_count()).sum();
            if rows != group.records {
                return Err(Error::Internal(format!(
                    "compaction read {rows} rows from files holding {}: refusing to commit",
                    group.records
                )));
            }
        }
        Ok(out)
    }
}

/// The live files that may hold rows matching `sql`: iceberg's scan planning prunes by
/// partition values and column statistics, so a file is kept when any of its rows might match.
async fn matching_files(table: &Table, files: Vec<DataFile>, sql: &str) -> Result<Vec<DataFile>> {
    let predicate = crate::iceberg::predicate::parse_where(table.metadata().current_schema(), sql)?;
    let paths: HashSet<String> = table
        .scan()
        .with_filter(predicate)
        .build()?
        .plan_files()
        .await?
        .map_ok(|task| task.data_file_path)
        .try_collect()
        .await?;
    Ok(files
        .into_iter()
        .filter(|f| paths.contains(f.file_path()))
        .collect())
}

/// A partition tuple as people read it: `BTC-USD/20454`.
fn partition_label(file: &DataFile) -> String {
    use iceberg::spec::{Literal, PrimitiveLiteral as P};
    let values: Vec<String> = file
        .partition()
        .iter()
        .map(|v| match v {
            None => "null".to_string(),
            Some(Literal::Primitive(P::String(s))) => s.clone(),
            Some(Literal::Primitive(P::Int(i))) => i.to_string(),
            Some(Literal::Primitive(P::Long(i))) => i.to_string(),
            Some(other) => format!("{other:?}"),
        })
        .collect();
    if values.is_empty() {
        "(unpartitioned)".into()
    } else {
        values.join("/")
    }
}

/// Groups each partition's candidate files (under 75 % or over 180 % of `target`).
fn bin_pack(files: &[DataFile], target: u64, min_input_files: usize) -> Vec<CompactGroup> {
    let small = target * 3 / 4;
    let large = target * 9 / 5;
    let mut by_partition: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for f in files
        .iter()
        .filter(|f| f.file_size_in_bytes() < small || f.file_size_in_bytes() > large)
    {
        by_partition
            .entry(partition_label(f))
            .or_default()
            .push(f.clone());
    }
    by_partition
        .into_iter()
        .filter(|(_, fs)| {
            fs.len() >= min_input_files || fs.iter().any(|f| f.file_size_in_bytes() > large)
        })
        .map(|(partition, files)| {
            let bytes_in: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
            CompactGroup {
                partition,
                files_in: files.len(),
                bytes_in,
                records: files.iter().map(|f| f.record_count()).sum(),
                expected_files_out: bytes_in.div_ceil(target.max(1)),
                files,
            }
        })
        .collect()
}

impl crate::Job for Compact {
    type Plan = CompactPlan;
    const NAME: &'static str = "compact";

    async fn plan(&self) -> Result<CompactPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: CompactPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}
