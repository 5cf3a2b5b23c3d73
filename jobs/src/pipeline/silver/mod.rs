//! `silver`: new bronze rows become `silver.quotes`, `silver.trades` and `silver.quarantine`.
//!
//! Each silver table keeps, per bronze source, the last bronze snapshot it consumed (summary
//! key `cryptolake.bookmark.silver.<source>`, carried forward by every commit). A run reads
//! only the bronze snapshots appended after the oldest of those bookmarks, streams their
//! batches, and gives each output only the rows of snapshots after its own bookmark, so a
//! crash between the three commits never duplicates or loses a row. Quotes are deduplicated on
//! `(source, symbol, event_time)` and trades on `trade_id`, within the run and against what the
//! table already holds in the partitions touched.
//!
//! The run is one DataFusion plan (the nodes are [`crate::physical_plan::silver_normalize`] and
//! [`crate::physical_plan::silver_sink`], their per-record work [`crate::transform::silver`]):
//! the same in this process and on a Ballista cluster. Only planning and the commits run on
//! the driver.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use cryptolake_catalog::SnapshotCommit;
use cryptolake_catalog::commit::bookmarks_unchanged;
use cryptolake_catalog::lake::parse_ident;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use iceberg::spec::{DataFile, Operation};
use serde::Serialize;

use crate::bookmarks;
use crate::engine;
use crate::iceberg::TableRef;
use crate::iceberg::scan::{self, AppendedFiles};
use crate::job::context::JobContext;
use crate::job::fault::maybe_crash;
use crate::job::summary::{RunSummary, TableRun};
use crate::physical_plan::{IcebergProvider, pack_by_size, split_for_tasks};
use crate::physical_plan::{SilverNormalizeNode, SilverSinkNode, SinkResult, SinkSpec};
use crate::sources::BronzeInput;
pub use crate::transform::silver::Output;
use crate::transform::silver::stage::{NormalizeSpec, SinkCounts};
use crate::{Error, Result};

const JOB: &str = "silver";

/// New bronze data of one source.
#[derive(Debug, Clone, Serialize)]
pub struct SilverInput {
    pub source: String,
    pub bronze_table: String,
    pub format: String,
    /// Each output's bookmark (bronze snapshot id) when the plan was made.
    pub bookmarks: BTreeMap<Output, Option<i64>>,
    /// The bronze snapshot every output will have consumed after the run.
    pub through_snapshot: i64,
    pub snapshots: usize,
    pub files: usize,
    pub records: u64,
    #[serde(skip)]
    appended: Vec<AppendedFiles>,
    /// Per output, the bronze snapshots it still has to take.
    #[serde(skip)]
    pending: HashMap<Output, HashSet<i64>>,
}

/// The plan of a silver run.
#[derive(Debug, Clone, Serialize)]
pub struct SilverPlan {
    pub inputs: Vec<SilverInput>,
}

impl SilverPlan {
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Builder for a silver run.
#[derive(Debug, Clone)]
pub struct Silver {
    ctx: JobContext,
    sources: Vec<BronzeInput>,
}

impl Silver {
    pub fn new(ctx: JobContext) -> Self {
        Self {
            ctx,
            sources: BronzeInput::landing_sources(),
        }
    }

    /// Also reads these bronze tables (Kafka topics' tables); ones that do not exist yet are
    /// skipped.
    pub fn with_inputs(mut self, inputs: impl IntoIterator<Item = BronzeInput>) -> Self {
        for input in inputs {
            if !self.sources.iter().any(|s| s.table == input.table) {
                self.sources.push(input);
            }
        }
        self
    }

    /// Finds the bronze snapshots each output has not consumed. Writes nothing.
    async fn plan_impl(&self) -> Result<SilverPlan> {
        let mut outputs = HashMap::new();
        for out in Output::ALL {
            outputs.insert(
                out,
                self.ctx.lake.table_if_exists(&out.layout().ident()).await?,
            );
        }
        let mut inputs = Vec::new();
        for input in &self.sources {
            input.validate()?;
            let source = &input.name;
            let ident = parse_ident(&input.table)?;
            let Some(bronze) = self.ctx.lake.table_if_exists(&ident).await? else {
                continue;
            };
            let Some(current) = bronze.metadata().current_snapshot_id() else {
                continue;
            };
            let key = bookmarks::silver_key(source);
            let mut bookmarks = BTreeMap::new();
            let mut pending = HashMap::new();
            let mut oldest: Option<Option<i64>> = None;
            for out in Output::ALL {
                let mark = match &outputs[&out] {
                    Some(t) => bookmarks::snapshot_bookmark(t, &key)?,
                    None => None,
                };
                let after = scan::snapshots_after(&bronze, mark)?;
                // Only appends bring rows; a compaction's `replace` is nothing to consume.
                let ids: HashSet<i64> = after
                    .iter()
                    .filter(|s| s.summary().operation == Operation::Append)
                    .map(|s| s.snapshot_id())
                    .collect();
                let is_older = oldest.as_ref().is_none_or(|o| {
                    scan::snapshots_after(&bronze, *o).map_or(true, |s| s.len() < ids.len())
                });
                if is_older {
                    oldest = Some(mark);
                }
                bookmarks.insert(out, mark);
                pending.insert(out, ids);
            }
            if pending.values().all(HashSet::is_empty) {
                continue;
            }
            let appended = scan::appended_since(&bronze, oldest.flatten()).await?;
            inputs.push(SilverInput {
                source: source.clone(),
                bronze_table: ident.to_string(),
                format: input.format.clone(),
                bookmarks,
                through_snapshot: current,
                snapshots: appended.len(),
                files: appended.iter().map(|a| a.files.len()).sum(),
                records: appended
                    .iter()
                    .flat_map(|a| &a.files)
                    .map(|f| f.record_count())
                    .sum(),
                appended,
                pending,
            });
        }
        Ok(SilverPlan { inputs })
    }

    /// Transforms the planned bronze rows and commits the three silver tables: one plan (scan,
    /// normalize, shuffle, dedup and write) on the engine, then the commits on this driver.
    async fn execute_impl(&self, plan: SilverPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        if plan.is_empty() {
            return Ok(summary.finish(started.elapsed()));
        }
        let files = plan.inputs.iter().map(|i| i.files as u64).sum();
        self.ctx.progress.start("silver: bronze files", files);
        let mut tables = Vec::new();
        for out in Output::ALL {
            tables.push(TableRef::of(
                &self.ctx.lake.ensure_table(&out.layout()).await?,
            ));
        }
        let spec = Arc::new(SinkSpec {
            tables,
            target_file_size: self.ctx.settings.target_file_size,
            batch_size: self.ctx.settings.batch_size,
        });
        let session = engine::session(&self.ctx).await?;
        let logical = self.logical_plan(&plan, &session, spec.clone()).await?;
        let batches = engine::collect(&self.ctx.engine, &session, logical).await?;
        let result = crate::physical_plan::sink_result(&spec, &batches)?;
        self.ctx.progress.advance(files);
        for input in &plan.inputs {
            let mut counts = result
                .counts
                .sources
                .get(&input.source)
                .cloned()
                .unwrap_or_default();
            counts.files = input.files as u64;
            summary.sources.insert(input.source.clone(), counts);
        }
        let (records, bad) = summary
            .sources
            .values()
            .fold((0, 0), |(r, b), c| (r + c.records, b + c.quarantined));
        if bad as f64 > self.ctx.settings.max_bad_fraction * records as f64 {
            return Err(Error::TooManyBadRecords {
                bad,
                total: records,
                max_fraction: self.ctx.settings.max_bad_fraction,
            });
        }
        maybe_crash(JOB, "after-write");
        let SinkResult {
            files: written,
            counts,
            writers,
            ..
        } = result;
        for (out, files) in Output::ALL.into_iter().zip(written) {
            let mut table_run = table_run(&counts, out, &files);
            table_run.writers = writers.clone();
            let commit = self.commit_for(&plan, out, files);
            let Some(commit) = commit else { continue };
            let outcome = self.ctx.lake.commit(&commit).await?;
            tracing::info!(
                table = %commit.ident(),
                rows = table_run.rows_out,
                duplicates = table_run.duplicates_dropped,
                snapshot = outcome.snapshot_id,
                "silver committed"
            );
            table_run.snapshot_id = Some(outcome.snapshot_id);
            table_run.commit_attempts = outcome.attempts;
            summary
                .tables
                .insert(out.layout().ident().to_string(), table_run);
        }
        maybe_crash(JOB, "after-commit");
        Ok(summary.finish(started.elapsed()))
    }

    /// The run as one logical plan: per bronze source (and set of outputs taking its
    /// snapshots), a scan of the new files in groups normalized into wide rows; their union
    /// into the sink.
    async fn logical_plan(
        &self,
        plan: &SilverPlan,
        session: &datafusion::prelude::SessionContext,
        spec: Arc<SinkSpec>,
    ) -> Result<LogicalPlan> {
        let partitions = session.state().config().target_partitions().max(1);
        let now_us = chrono::Utc::now().timestamp_micros();
        let mut branches = Vec::new();
        for input in &plan.inputs {
            let bronze = self
                .ctx
                .lake
                .load_table(&parse_ident(&input.bronze_table)?)
                .await?;
            // Usually every output takes every new snapshot; after a crash between the three
            // commits, some outputs have taken some already.
            let mut by_takes: BTreeMap<Vec<Output>, Vec<DataFile>> = BTreeMap::new();
            for appended in &input.appended {
                let takes: Vec<Output> = Output::ALL
                    .into_iter()
                    .filter(|o| input.pending[o].contains(&appended.snapshot_id))
                    .collect();
                if !takes.is_empty() {
                    by_takes
                        .entry(takes)
                        .or_default()
                        .extend(appended.files.clone());
                }
            }
            for (takes, files) in by_takes {
                // Each file (or a large file's byte range) read in order within its group.
                let ranges = split_for_tasks(files, partitions);
                let groups = pack_by_size(ranges, partitions, |r| r.length);
                let provider = IcebergProvider::with_ranges(bronze.clone(), groups)?;
                let scan = LogicalPlanBuilder::scan(
                    input.bronze_table.clone(),
                    provider_as_source(Arc::new(provider)),
                    None,
                )?
                .build()?;
                let spec = NormalizeSpec {
                    source: input.source.clone(),
                    format: input.format.clone(),
                    takes,
                    now_us,
                };
                branches.push(SilverNormalizeNode::new(scan, spec).into_plan());
            }
        }
        let mut branches = branches.into_iter();
        let first = branches
            .next()
            .ok_or_else(|| Error::Internal("a silver plan with no input".into()))?;
        let mut builder = LogicalPlanBuilder::from(first);
        for branch in branches {
            builder = builder.union(branch)?;
        }
        Ok(SilverSinkNode::new(builder.build()?, spec).into_plan())
    }

    /// The commit of one output: its files and its advanced bookmarks, requiring that the
    /// bookmarks are still those the plan read.
    fn commit_for(
        &self,
        plan: &SilverPlan,
        out: Output,
        files: Vec<iceberg::spec::DataFile>,
    ) -> Option<SnapshotCommit> {
        let advancing: Vec<&SilverInput> = plan
            .inputs
            .iter()
            .filter(|i| !i.pending[&out].is_empty())
            .collect();
        if advancing.is_empty() && files.is_empty() {
            return None;
        }
        let expected: Vec<(String, Option<i64>)> = advancing
            .iter()
            .map(|i| (bookmarks::silver_key(&i.source), i.bookmarks[&out]))
            .collect();
        let requirement = bookmarks_unchanged(expected);
        let mut commit = SnapshotCommit::append(out.layout().ident())
            .add_files(files)
            .set_property(crate::bookmarks::JOB_PROPERTY, JOB)
            .require(requirement);
        for input in advancing {
            commit = commit.set_property(
                bookmarks::silver_key(&input.source),
                input.through_snapshot.to_string(),
            );
        }
        Some(commit)
    }
}

/// One output's figures: the sink's counts and the files written.
fn table_run(counts: &SinkCounts, out: Output, files: &[DataFile]) -> TableRun {
    let c = counts.tables.get(&out).copied().unwrap_or_default();
    TableRun {
        rows_in: c.rows_in,
        duplicates_dropped: c.duplicates_dropped,
        quarantined: c.quarantined,
        rows_out: files.iter().map(|f| f.record_count()).sum(),
        files_written: files.len() as u64,
        bytes_written: files.iter().map(|f| f.file_size_in_bytes()).sum(),
        ..Default::default()
    }
}

impl crate::Job for Silver {
    type Plan = SilverPlan;
    const NAME: &'static str = "silver";

    async fn plan(&self) -> Result<SilverPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: SilverPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}
