//! `gold`: candles, market snapshots and trader positions, computed only for the keys new
//! silver rows touch, replacing the old rows of those keys in one overwrite snapshot.
//!
//! Each gold table keeps a bookmark per silver table it reads (summary key
//! `cryptolake.bookmark.gold.<silver table>`). A run reads the silver files appended since the
//! bookmark, derives the touched keys (for example `(symbol, minute)`), computes those keys
//! (from every silver row of their partitions, from the minutes an hour rolls up, or from a
//! key's prior value and the new rows: [`outputs::Reads`]), and rewrites the gold partitions
//! they fall in: old rows of untouched keys are copied, old rows of touched keys are replaced.
//! The old files leave and the new ones arrive in one snapshot, with the bookmarks, so a re-run
//! never counts a silver row twice. What a per-minute run reads is bounded by its minute's
//! keys, not by how much of the hour or day has passed.

pub mod outputs;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Datelike};
use cryptolake_catalog::SnapshotCommit;
use cryptolake_catalog::commit::bookmarks_unchanged;
use datafusion::catalog::view::ViewTable;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{SessionContext, col, ident, lit};
use iceberg::spec::{DataFile, Literal, PrimitiveLiteral};
use iceberg::table::Table;
use serde::Serialize;

use self::outputs::{GoldOutput, GoldPartition, Reads, SilverTable};
use crate::engine;
use crate::iceberg::TableRef;
use crate::iceberg::scan;
use crate::job::context::JobContext;
use crate::job::fault::maybe_crash;
use crate::job::summary::{RunSummary, TableRun};
use crate::physical_plan::IcebergProvider;
use crate::physical_plan::{TableWriteNode, WrittenFile};
use crate::{Error, Result};

const JOB: &str = "gold";
const DAY_US: i64 = 86_400_000_000;

/// The bookmark key a gold table keeps for a silver table.
pub fn bookmark_key(input: SilverTable) -> String {
    let name = match input {
        SilverTable::Quotes => "silver.quotes",
        SilverTable::Trades => "silver.trades",
    };
    crate::bookmarks::gold_key(name)
}

/// New silver data for one gold table.
#[derive(Debug, Clone, Serialize)]
pub struct GoldInput {
    pub silver: SilverTable,
    /// The gold table's bookmark, which the commit requires unchanged.
    pub bookmark: Option<i64>,
    /// Where the run reads from: the bookmark, or the beginning for a rebuild.
    pub since: Option<i64>,
    pub through_snapshot: i64,
    pub new_files: usize,
    pub new_records: u64,
    #[serde(skip)]
    files: Vec<DataFile>,
}

/// What one gold table will recompute.
#[derive(Debug, Clone, Serialize)]
pub struct GoldTablePlan {
    pub table: String,
    /// Every row is computed again from silver's current rows, and the table's old files all
    /// leave: it lacks columns its layout has (created by an older cryptolake; it gains them),
    /// another writer deleted or rewrote silver rows since the bookmark, which no incremental
    /// update can follow (a deleted row's keys would keep its values), or expired the
    /// bookmark's snapshot.
    pub rebuild: bool,
    /// Why the table is rebuilt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild_reason: Option<String>,
    pub inputs: Vec<GoldInput>,
    #[serde(skip)]
    output: Option<GoldOutput>,
}

/// The plan of a gold run.
#[derive(Debug, Clone, Serialize)]
pub struct GoldPlan {
    pub tables: Vec<GoldTablePlan>,
}

/// Builder for a gold run.
#[derive(Debug, Clone)]
pub struct Gold {
    ctx: JobContext,
}

impl Gold {
    pub fn new(ctx: JobContext) -> Self {
        Self { ctx }
    }

    /// Finds the silver snapshots each gold table has not consumed. Writes nothing.
    async fn plan_impl(&self) -> Result<GoldPlan> {
        let mut silver = BTreeMap::new();
        for s in [SilverTable::Quotes, SilverTable::Trades] {
            silver.insert(s, self.ctx.lake.table_if_exists(&s.layout().ident()).await?);
        }
        let mut tables = Vec::new();
        for output in outputs::all() {
            let gold = self
                .ctx
                .lake
                .table_if_exists(&output.layout.ident())
                .await?;
            let rebuild_reason = self.rebuild_reason(&output, gold.as_ref(), &silver)?;
            let rebuild = rebuild_reason.is_some();
            let mut inputs = Vec::new();
            for &input in output.inputs {
                let Some(table) = &silver[&input] else {
                    continue;
                };
                let Some(current) = table.metadata().current_snapshot_id() else {
                    continue;
                };
                let bookmark = match &gold {
                    Some(g) => crate::bookmarks::snapshot_bookmark(g, &bookmark_key(input))?,
                    None => None,
                };
                if !rebuild && bookmark == Some(current) {
                    continue;
                }
                // A rebuild reads silver as it is now; otherwise what was appended since.
                let files: Vec<DataFile> = if rebuild {
                    scan::live_data_files(table).await?
                } else {
                    scan::appended_since(table, bookmark)
                        .await?
                        .into_iter()
                        .flat_map(|a| a.files)
                        .collect()
                };
                if files.is_empty() && !rebuild {
                    // Only `replace` snapshots (compaction) since the bookmark: nothing new.
                    continue;
                }
                inputs.push(GoldInput {
                    silver: input,
                    bookmark,
                    since: if rebuild { None } else { bookmark },
                    through_snapshot: current,
                    new_files: files.len(),
                    new_records: files.iter().map(|f| f.record_count()).sum(),
                    files,
                });
            }
            if !inputs.is_empty() {
                tables.push(GoldTablePlan {
                    table: output.layout.ident().to_string(),
                    rebuild,
                    rebuild_reason,
                    inputs,
                    output: Some(output),
                });
            }
        }
        Ok(GoldPlan { tables })
    }

    /// Why `output`'s table must be rebuilt, if it must: columns its layout has and it lacks,
    /// a silver table it reads rewritten (rows deleted or overwritten by another writer) since
    /// its bookmark, or its bookmark's snapshot no longer in silver's history.
    fn rebuild_reason(
        &self,
        output: &GoldOutput,
        gold: Option<&Table>,
        silver: &BTreeMap<SilverTable, Option<Table>>,
    ) -> Result<Option<String>> {
        let Some(gold) = gold else {
            return Ok(None);
        };
        let missing = output
            .layout
            .missing_columns(gold.metadata().current_schema())?;
        if let Some((name, _)) = missing.first() {
            return Ok(Some(format!("the table lacks column {name}")));
        }
        for &input in output.inputs {
            let Some(table) = &silver[&input] else {
                continue;
            };
            let bookmark = crate::bookmarks::snapshot_bookmark(gold, &bookmark_key(input))?;
            if bookmark.is_none() {
                continue;
            }
            // Gold is derived: a bookmark whose snapshot another writer expired is no input
            // position lost, as silver's current rows give every gold row again.
            let rewritten = match scan::rewritten_since(table, bookmark) {
                Ok(rewritten) => rewritten,
                Err(Error::Bookmark(why)) => return Ok(Some(why)),
                Err(e) => return Err(e),
            };
            if let Some(snapshot) = rewritten {
                return Ok(Some(format!(
                    "{} snapshot {} ({:?}) deleted or rewrote rows since the bookmark",
                    table.identifier(),
                    snapshot.snapshot_id(),
                    snapshot.summary().operation
                )));
            }
        }
        Ok(None)
    }

    /// Recomputes and commits every planned gold table.
    async fn execute_impl(&self, plan: GoldPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        self.ctx
            .progress
            .start("gold: tables", plan.tables.len() as u64);
        for table_plan in plan.tables {
            let run = self.build(&table_plan).await?;
            summary.tables.insert(table_plan.table.clone(), run);
            self.ctx.progress.advance(1);
        }
        Ok(summary.finish(started.elapsed()))
    }

    async fn build(&self, plan: &GoldTablePlan) -> Result<TableRun> {
        let output = plan
            .output
            .as_ref()
            .ok_or_else(|| Error::Internal("plan without output".into()))?;
        let gold = self.ctx.lake.ensure_table(&output.layout).await?;
        let df = engine::session(&self.ctx).await?;
        let mut silver_tables = BTreeMap::new();
        for s in [SilverTable::Quotes, SilverTable::Trades] {
            let table = self.ctx.lake.ensure_table(&s.layout()).await?;
            let new = plan
                .inputs
                .iter()
                .find(|i| i.silver == s)
                .map(|i| i.files.clone())
                .unwrap_or_default();
            df.register_table(
                s.new_view(),
                Arc::new(IcebergProvider::with_files(table.clone(), new)?),
            )?;
            silver_tables.insert(s, table);
        }
        // The touched keys come to the driver to choose the silver and gold files to read; the
        // plans below read them as a view (it travels to a cluster, a table of rows would not):
        // the keys themselves as VALUES when there are few, else the query that finds them.
        let query = df.sql(&output.touched_sql).await?;
        let touched =
            engine::collect(&self.ctx.engine, &df, query.clone().into_unoptimized_plan()).await?;
        let view = inline_keys(&touched)?.unwrap_or_else(|| query.into_unoptimized_plan());
        df.register_table("t", Arc::new(ViewTable::new(view, None)))?;
        if output.layout.columns.iter().any(|c| c.name == "asset_name") {
            self.register_asset_names(&df).await?;
        }
        let keys = Touched {
            days: days_of(&touched, output.time_column)?,
            spans: Spans::of(&touched, output.time_column, output.span_us)?,
            symbols: if output.by_symbol {
                Some(strings_of(&touched, "symbol")?)
            } else {
                None
            },
        };
        let mut run = TableRun::default();
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        // A rebuild replaces the whole table, even when silver has no rows left.
        if !keys.days.is_empty() || plan.rebuild {
            run.rows_in = match output.reads {
                Reads::Silver => self.register_silver(&df, &silver_tables, &keys).await?,
                Reads::Minutes => self.register_minutes(&df, plan, &keys).await?,
                Reads::Prior => plan.inputs.iter().map(|i| i.new_records).sum(),
            };
            let old = if plan.rebuild {
                scan::live_data_files(&gold).await?
            } else {
                files_in(&gold, &keys.days, None, output.partition).await?
            };
            df.register_table(
                "old",
                Arc::new(IcebergProvider::with_files(gold.clone(), old.clone())?),
            )?;
            // A rebuild computes every key from all of silver: no prior value counts.
            let prior = if plan.rebuild {
                Vec::new()
            } else {
                old.clone()
            };
            df.register_table(
                "prior",
                Arc::new(IcebergProvider::with_files(gold.clone(), prior)?),
            )?;
            let written = self.rewrite(&df, &gold, output, !plan.rebuild).await?;
            run.writers = written.iter().map(|w| w.writer.clone()).collect();
            added = written.into_iter().map(|w| w.file).collect::<Vec<_>>();
            run.rows_out = added.iter().map(|f| f.record_count()).sum();
            run.files_written = added.len() as u64;
            run.bytes_written = added.iter().map(|f| f.file_size_in_bytes()).sum();
            run.files_removed = old.len() as u64;
            removed = old.iter().map(|f| f.file_path().to_string()).collect();
        }
        maybe_crash(JOB, "after-write");
        let commit = self.commit(&gold, plan, added, removed);
        let outcome = self.ctx.lake.commit(&commit).await?;
        tracing::info!(
            table = %gold.identifier(),
            rows = run.rows_out,
            files_removed = run.files_removed,
            snapshot = outcome.snapshot_id,
            "gold committed"
        );
        // After the first table's commit (candles_1m): the others must catch up on the re-run.
        maybe_crash(JOB, "after-commit");
        run.snapshot_id = Some(outcome.snapshot_id);
        run.commit_attempts = outcome.attempts;
        Ok(run)
    }

    /// View `asset_names` (`base`, `asset_name`): each current asset's name by its symbol in
    /// upper case, the best-ranked one where two assets share a symbol; empty until `run
    /// assets` has made `silver.assets`. Names are what the table says when a candle is
    /// computed: a rename reaches the candles recomputed after it.
    async fn register_asset_names(&self, df: &SessionContext) -> Result<()> {
        let assets = cryptolake_catalog::layout::silver_assets();
        let sql = match self.ctx.lake.table_if_exists(&assets.ident()).await? {
            Some(table) => {
                df.register_table("assets", Arc::new(IcebergProvider::new(table)?))?;
                "SELECT upper(symbol) AS base, \
                   first_value(name ORDER BY rank ASC NULLS LAST, id) AS asset_name \
                 FROM assets WHERE valid_to IS NULL AND symbol IS NOT NULL AND name IS NOT NULL \
                 GROUP BY upper(symbol)"
            }
            None => {
                "SELECT base, asset_name FROM (VALUES (CAST(NULL AS VARCHAR), \
                 CAST(NULL AS VARCHAR))) AS v(base, asset_name) WHERE base IS NOT NULL"
            }
        };
        let view = df.sql(sql).await?.into_unoptimized_plan();
        df.register_table("asset_names", Arc::new(ViewTable::new(view, None)))?;
        Ok(())
    }

    /// Views `quotes` and `trades`: the silver files of the touched partitions whose
    /// `event_time` bounds meet a touched span. Returns their row count.
    async fn register_silver(
        &self,
        df: &SessionContext,
        silver_tables: &BTreeMap<SilverTable, Table>,
        keys: &Touched,
    ) -> Result<u64> {
        let mut rows = 0;
        for (s, table) in silver_tables {
            let files = files_in(table, &keys.days, keys.symbols.as_ref(), GoldPartition::Day)
                .await?
                .into_iter()
                .filter(|f| keys.spans.may_hold(table, f))
                .collect::<Vec<_>>();
            rows += files.iter().map(|f| f.record_count()).sum::<u64>();
            df.register_table(
                s.view(),
                Arc::new(IcebergProvider::with_files(table.clone(), files)?),
            )?;
        }
        Ok(rows)
    }

    /// View `minutes`: `gold.candles_1m`'s files of the touched days, once it is known to
    /// have consumed exactly the silver snapshots this table is about to (it is built first in
    /// the same run; a run that stopped between the two leaves it ahead, and this table then
    /// catches up). Returns their row count.
    async fn register_minutes(
        &self,
        df: &SessionContext,
        plan: &GoldTablePlan,
        keys: &Touched,
    ) -> Result<u64> {
        let minutes = self
            .ctx
            .lake
            .ensure_table(&cryptolake_catalog::layout::gold_candles_1m())
            .await?;
        for input in &plan.inputs {
            let key = bookmark_key(input.silver);
            let have = crate::bookmarks::snapshot_bookmark(&minutes, &key)?;
            if have != Some(input.through_snapshot) {
                return Err(cryptolake_catalog::Error::RequirementFailed {
                    table: plan.table.clone(),
                    reason: format!(
                        "{} has consumed {key} through {have:?}, not snapshot {}: it is rolled \
                         up from those minutes, so run gold again",
                        minutes.identifier(),
                        input.through_snapshot
                    ),
                }
                .into());
            }
        }
        let files = files_in(&minutes, &keys.days, None, GoldPartition::Day).await?;
        let rows = files.iter().map(|f| f.record_count()).sum();
        df.register_table(
            "minutes",
            Arc::new(IcebergProvider::with_files(minutes, files)?),
        )?;
        Ok(rows)
    }

    /// One plan that writes the recomputed rows of the touched keys and, with `keep_old`, the
    /// old rows of the untouched ones (views `t`, `quotes`, `trades` and `old` registered in
    /// `df`). The rows meet in one write task, so a run leaves one file per gold partition, as
    /// before.
    async fn rewrite(
        &self,
        df: &SessionContext,
        gold: &Table,
        output: &GoldOutput,
        keep_old: bool,
    ) -> Result<Vec<WrittenFile>> {
        let new_rows = df.sql(&output.compute_sql).await?;
        let table_ref = Arc::new(TableRef::of(gold));
        let target = self.ctx.settings.target_file_size;
        if !keep_old {
            let rows = new_rows.into_unoptimized_plan();
            let write = TableWriteNode::new(rows, table_ref.clone(), target).single_task(true);
            return engine::write(&self.ctx.engine, df, &table_ref, write.into_plan()).await;
        }
        // The old rows under the new rows' column order and types, so the two can be unioned.
        let columns: Vec<Expr> = new_rows
            .schema()
            .fields()
            .iter()
            .map(|f| {
                datafusion::logical_expr::cast(ident(f.name()), f.data_type().clone())
                    .alias(f.name())
            })
            .collect();
        let kept = df.sql(&anti_join_sql(output.keys)).await?.select(columns)?;
        let rows = new_rows.union(kept)?.into_unoptimized_plan();
        let write = TableWriteNode::new(rows, table_ref.clone(), target).single_task(true);
        engine::write(&self.ctx.engine, df, &table_ref, write.into_plan()).await
    }

    fn commit(
        &self,
        gold: &Table,
        plan: &GoldTablePlan,
        added: Vec<DataFile>,
        removed: Vec<String>,
    ) -> SnapshotCommit {
        let expected: Vec<(String, Option<i64>)> = plan
            .inputs
            .iter()
            .map(|i| (bookmark_key(i.silver), i.bookmark))
            .collect();
        let requirement = bookmarks_unchanged(expected);
        let ident = gold.identifier().clone();
        let mut commit = if removed.is_empty() {
            SnapshotCommit::append(ident)
        } else {
            SnapshotCommit::overwrite(ident)
        }
        .add_files(added)
        .remove_files(removed)
        .set_property(crate::bookmarks::JOB_PROPERTY, JOB)
        .require(requirement);
        for input in &plan.inputs {
            commit = commit.set_property(
                bookmark_key(input.silver),
                input.through_snapshot.to_string(),
            );
        }
        commit
    }
}

/// Up to this many touched keys are inlined into the plans that join on them.
const INLINE_KEYS_MAX: usize = 50_000;

/// The touched keys as a VALUES plan with their names and types, so that the plans joining on
/// them do not read the new silver files again to find them (a per-minute run's few dozen
/// keys); `None` when there are none, or too many to ship inside a plan.
fn inline_keys(batches: &[RecordBatch]) -> Result<Option<LogicalPlan>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 || rows > INLINE_KEYS_MAX {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(rows);
    for b in batches {
        for row in 0..b.num_rows() {
            let literals = b
                .columns()
                .iter()
                .map(|c| Ok(lit(ScalarValue::try_from_array(c, row)?)))
                .collect::<Result<Vec<Expr>>>()?;
            values.push(literals);
        }
    }
    let schema = batches[0].schema();
    let named = schema.fields().iter().enumerate().map(|(i, f)| {
        datafusion::logical_expr::cast(col(format!("column{}", i + 1)), f.data_type().clone())
            .alias(f.name())
    });
    Ok(Some(
        LogicalPlanBuilder::values(values)?
            .project(named)?
            .build()?,
    ))
}

/// The touched keys as the files to read are chosen by: their days, event-time spans and
/// (for tables keyed by symbol) symbols.
#[derive(Debug)]
struct Touched {
    days: HashSet<i32>,
    spans: Spans,
    symbols: Option<HashSet<String>>,
}

/// The old rows whose keys were not touched.
fn anti_join_sql(keys: &[&str]) -> String {
    let on: Vec<String> = keys.iter().map(|k| format!("t.{k} = o.{k}")).collect();
    format!(
        "SELECT o.* FROM old o WHERE NOT EXISTS (SELECT 1 FROM t WHERE {})",
        on.join(" AND ")
    )
}

/// The event-time spans of the touched keys, merged and sorted: `[start, end)` in microseconds.
#[derive(Debug, Default)]
struct Spans(Vec<(i64, i64)>);

impl Spans {
    fn of(batches: &[RecordBatch], column: &str, span_us: i64) -> Result<Self> {
        let mut starts = Vec::new();
        for b in batches {
            let Some(c) = b.column_by_name(column) else {
                continue;
            };
            let c = match c.data_type() {
                DataType::Date32 => {
                    let days = c.as_primitive::<Date32Type>();
                    starts.extend(days.iter().flatten().map(|d| i64::from(d) * DAY_US));
                    continue;
                }
                DataType::Timestamp(TimeUnit::Microsecond, _) => c.clone(),
                DataType::Timestamp(_, _) => {
                    cast(c, &DataType::Timestamp(TimeUnit::Microsecond, None))?
                }
                other => return Err(Error::Internal(format!("{column} is {other}, not a time"))),
            };
            starts.extend(
                c.as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .flatten(),
            );
        }
        starts.sort_unstable();
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for start in starts {
            let end = start.saturating_add(span_us);
            match spans.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => spans.push((start, end)),
            }
        }
        Ok(Self(spans))
    }

    /// False only when the file's `event_time` bounds are known and miss every span.
    fn may_hold(&self, table: &Table, file: &DataFile) -> bool {
        let Some((lower, upper)) = table
            .metadata()
            .current_schema()
            .field_id_by_name("event_time")
            .and_then(|id| scan::long_bounds(file, id))
        else {
            return true;
        };
        // The first span that ends after the file's first row; it must start by its last.
        let i = self.0.partition_point(|(_, end)| *end <= lower);
        self.0.get(i).is_some_and(|(start, _)| *start <= upper)
    }
}

/// Day numbers (since 1970-01-01) of a timestamp or date column.
fn days_of(batches: &[RecordBatch], column: &str) -> Result<HashSet<i32>> {
    let mut days = HashSet::new();
    for b in batches {
        let Some(c) = b.column_by_name(column) else {
            continue;
        };
        match c.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let a = c.as_primitive::<TimestampMicrosecondType>();
                days.extend(a.iter().flatten().map(|us| us.div_euclid(DAY_US) as i32));
            }
            DataType::Timestamp(_, _) => {
                let c = cast(c, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                let a = c.as_primitive::<TimestampMicrosecondType>();
                days.extend(a.iter().flatten().map(|us| us.div_euclid(DAY_US) as i32));
            }
            DataType::Date32 => days.extend(c.as_primitive::<Date32Type>().iter().flatten()),
            other => return Err(Error::Internal(format!("{column} is {other}, not a time"))),
        }
    }
    Ok(days)
}

fn strings_of(batches: &[RecordBatch], column: &str) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for b in batches {
        let c = b
            .column_by_name(column)
            .ok_or_else(|| Error::Internal(format!("touched keys lack {column}")))?;
        let c = cast(c, &DataType::Utf8)?;
        out.extend(c.as_string::<i32>().iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// Month ordinal (months since 1970-01) of a day number, as Iceberg's month transform gives.
fn month_of(day: i32) -> i32 {
    let d = DateTime::from_timestamp(i64::from(day) * 86_400, 0).unwrap_or_default();
    (d.year() - 1970) * 12 + d.month0() as i32
}

/// Live files whose partition (optional symbol first, then a day or month value) matches.
async fn files_in(
    table: &Table,
    days: &HashSet<i32>,
    symbols: Option<&HashSet<String>>,
    partition: GoldPartition,
) -> Result<Vec<DataFile>> {
    let wanted: HashSet<i32> = match partition {
        GoldPartition::Day => days.clone(),
        GoldPartition::Month => days.iter().map(|d| month_of(*d)).collect(),
    };
    let arity = table.metadata().default_partition_type().fields().len();
    let mut out = Vec::new();
    for f in scan::live_data_files(table).await? {
        // A file written under another partition spec (another writer changed the table's
        // and set it back) is always read: its tuple is not the one pruned by here.
        if f.partition().fields().len() != arity {
            out.push(f);
            continue;
        }
        let mut symbol = None;
        let mut time = None;
        for value in f.partition().iter().flatten() {
            match value {
                Literal::Primitive(PrimitiveLiteral::String(s)) => symbol = Some(s.clone()),
                Literal::Primitive(PrimitiveLiteral::Int(i)) => time = Some(i),
                _ => {}
            }
        }
        let time_ok = time.is_none_or(|t| wanted.contains(t));
        let symbol_ok = match (symbols, symbol) {
            (Some(set), Some(s)) => set.contains(&s),
            _ => true,
        };
        if time_ok && symbol_ok {
            out.push(f);
        }
    }
    Ok(out)
}

impl crate::Job for Gold {
    type Plan = GoldPlan;
    const NAME: &'static str = "gold";

    async fn plan(&self) -> Result<GoldPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: GoldPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inlined_keys_keep_their_names_types_and_rows() {
        use arrow::array::{StringArray, TimestampMicrosecondArray};
        use arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
        ]));
        let batch = |symbols: Vec<&str>, starts: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(symbols)),
                    Arc::new(TimestampMicrosecondArray::from(starts)),
                ],
            )
            .unwrap()
        };
        let batches = vec![
            batch(vec!["BTC-USD", "ETH-USD"], vec![60_000_000, 120_000_000]),
            batch(vec![], vec![]),
            batch(vec!["SOL-USD"], vec![180_000_000]),
        ];
        let plan = inline_keys(&batches).unwrap().unwrap();
        let ctx = SessionContext::new();
        let out = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let out = arrow::compute::concat_batches(&out[0].schema(), &out).unwrap();
        assert_eq!(out.schema().field(0).name(), "symbol");
        assert_eq!(
            out.schema().field(1).data_type(),
            schema.field(1).data_type()
        );
        let expected = arrow::compute::concat_batches(&schema, &batches).unwrap();
        assert_eq!(out.columns(), expected.columns());
        assert!(inline_keys(&[batch(vec![], vec![])]).unwrap().is_none());
    }

    #[test]
    fn months_follow_icebergs_month_transform() {
        assert_eq!(month_of(0), 0);
        assert_eq!(month_of(20_454), (2026 - 1970) * 12); // 2026-01-01
        assert_eq!(month_of(20_454 + 31), (2026 - 1970) * 12 + 1);
        assert_eq!(
            anti_join_sql(&["a", "b"]),
            "SELECT o.* FROM old o WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.a = o.a AND t.b = o.b)"
        );
    }
}
