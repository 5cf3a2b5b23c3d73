//! `silver`: new bronze rows become `silver.quotes`, `silver.trades` and `silver.quarantine`.
//!
//! Each silver table keeps, per bronze source, the last bronze snapshot it consumed (summary
//! key `cryptolake.bookmark.silver.<source>`, carried forward by every commit). A run reads
//! only the bronze snapshots appended after the oldest of those bookmarks, streams their
//! batches, and gives each output only the rows of snapshots after its own bookmark, so a
//! crash between the three commits never duplicates or loses a row. Quotes are deduplicated on
//! `(source, symbol, event_time)` and trades on `trade_id`, within the run and against what the
//! table already holds in the partitions touched.

mod batches;
mod dedup;
pub mod normalize;
pub mod parse;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Int64Type, SchemaRef, TimestampMicrosecondType};
use cryptolake_catalog::SnapshotCommit;
use cryptolake_catalog::commit::bookmarks_unchanged;
use cryptolake_catalog::lake::parse_ident;
use cryptolake_catalog::layout::{self, TableLayout};
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::Operation;
use iceberg::table::Table;
use serde::Serialize;

use self::batches::{BadRecord, QuarantineBatch, QuoteBatch, RowBatch, TradeBatch};
use self::dedup::{KeyIndex, fingerprint, quote_fingerprint, quote_key, trade_key};
use self::normalize::{Fields, Normalized, Quote, Trade, normalize};
use crate::context::JobContext;
use crate::fault::maybe_crash;
use crate::scan::{self, AppendedFiles};
use crate::sources::BronzeInput;
use crate::summary::{RunSummary, SourceCounts, TableRun};
use crate::write::{BackgroundWriter, TableWriter, arrow_schema};
use crate::{Error, Result};

const JOB: &str = "silver";
const DAY_US: i64 = 86_400_000_000;

/// The three outputs, in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Quotes,
    Trades,
    Quarantine,
}

impl Output {
    const ALL: [Output; 3] = [Output::Quotes, Output::Trades, Output::Quarantine];

    fn layout(self) -> TableLayout {
        match self {
            Output::Quotes => layout::silver_quotes(),
            Output::Trades => layout::silver_trades(),
            Output::Quarantine => layout::silver_quarantine(),
        }
    }
}

/// The summary key of a silver table's bookmark on one bronze source.
pub fn bookmark_key(source: &str) -> String {
    format!(
        "{}silver.{source}",
        cryptolake_catalog::commit::BOOKMARK_PREFIX
    )
}

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
            let key = bookmark_key(source);
            let mut bookmarks = BTreeMap::new();
            let mut pending = HashMap::new();
            let mut oldest: Option<Option<i64>> = None;
            for out in Output::ALL {
                let mark = outputs[&out].as_ref().and_then(|t| scan::bookmark(t, &key));
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

    /// Transforms the planned bronze rows and commits the three silver tables.
    async fn execute_impl(&self, plan: SilverPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        if plan.is_empty() {
            return Ok(summary.finish(started.elapsed()));
        }
        let mut run = Run::new(&self.ctx).await?;
        let files = plan.inputs.iter().map(|i| i.files as u64).sum();
        self.ctx.progress.start("silver: bronze files", files);
        for input in &plan.inputs {
            let bronze = self
                .ctx
                .lake
                .load_table(&parse_ident(&input.bronze_table)?)
                .await?;
            let mut counts = SourceCounts::default();
            for appended in &input.appended {
                let takes: HashMap<Output, bool> = Output::ALL
                    .iter()
                    .map(|o| (*o, input.pending[o].contains(&appended.snapshot_id)))
                    .collect();
                counts.files += appended.files.len() as u64;
                let tasks = scan::tasks_for_files(&bronze, &appended.files, None)?;
                // Normalizing is pure CPU work: batches go to the blocking pool, a few at a
                // time and in order, while this task deduplicates and routes.
                let format = input.format.clone();
                let mut batches = scan::read(&bronze, tasks, self.ctx.settings.batch_size)?
                    .map(move |batch| {
                        let format = format.clone();
                        async move {
                            let batch = batch?;
                            tokio::task::spawn_blocking(move || normalize_batch(&format, batch))
                                .await
                                .map_err(|e| {
                                    Error::Invalid(format!("normalize task failed: {e}"))
                                })?
                        }
                    })
                    .buffered(self.ctx.settings.parallelism.max(1));
                while let Some(rows) = batches.try_next().await? {
                    run.process(input, &rows, &takes, &mut counts).await?;
                }
            }
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
        let written = run.close().await?;
        maybe_crash(JOB, "after-write");
        for (out, (files, mut table_run)) in written {
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
            .map(|i| (bookmark_key(&i.source), i.bookmarks[&out]))
            .collect();
        let requirement = bookmarks_unchanged(expected);
        let mut commit = SnapshotCommit::append(out.layout().ident())
            .add_files(files)
            .set_property("cryptolake.job", JOB)
            .require(requirement);
        for input in advancing {
            commit = commit.set_property(
                bookmark_key(&input.source),
                input.through_snapshot.to_string(),
            );
        }
        Some(commit)
    }
}

/// One output's writer, pending rows and figures.
struct Sink<B> {
    writer: BackgroundWriter,
    rows: B,
    run: TableRun,
}

impl<B: RowBatch> Sink<B> {
    /// Writes the pending rows once there are at least `limit` of them.
    async fn flush(&mut self, limit: usize) -> Result<()> {
        if self.rows.len() >= limit.max(1) {
            self.writer.write(self.rows.finish()?).await?;
        }
        Ok(())
    }

    /// Writes what is pending and closes the files: the data files and the figures.
    async fn close(mut self) -> Result<(Vec<iceberg::spec::DataFile>, TableRun)> {
        self.flush(1).await?;
        let mut run = self.run;
        let (files, rows) = self.writer.close().await?;
        run.rows_out = rows;
        run.files_written = files.len() as u64;
        run.bytes_written = files.iter().map(|f| f.file_size_in_bytes()).sum();
        Ok((files, run))
    }
}

/// The writers and dedup state of one run.
struct Run {
    batch_size: usize,
    ingest_now_us: i64,
    quotes: Sink<QuoteBatch>,
    trades: Sink<TradeBatch>,
    quarantine: Sink<QuarantineBatch>,
    quote_keys: KeyIndex,
    trade_keys: KeyIndex,
}

async fn sink<B>(
    ctx: &JobContext,
    out: Output,
    rows: impl FnOnce(SchemaRef) -> B,
) -> Result<(Table, Sink<B>)> {
    let table = ctx.lake.ensure_table(&out.layout()).await?;
    let writer =
        BackgroundWriter::spawn(TableWriter::new(&table, ctx.settings.target_file_size)?, 2);
    let rows = rows(arrow_schema(&table)?);
    let run = TableRun::default();
    Ok((table, Sink { writer, rows, run }))
}

impl Run {
    async fn new(ctx: &JobContext) -> Result<Self> {
        let bs = ctx.settings.batch_size;
        let now = chrono::Utc::now().timestamp_micros();
        let (qt, quotes) = sink(ctx, Output::Quotes, QuoteBatch::new).await?;
        let (tt, trades) = sink(ctx, Output::Trades, TradeBatch::new).await?;
        let (_, quarantine) =
            sink(ctx, Output::Quarantine, |s| QuarantineBatch::new(s, now)).await?;
        Ok(Self {
            batch_size: bs,
            ingest_now_us: now,
            quotes,
            trades,
            quarantine,
            quote_keys: KeyIndex::new(Some(qt), &["source", "symbol", "event_time"], bs).await?,
            trade_keys: KeyIndex::new(Some(tt), &["trade_id"], bs).await?,
        })
    }

    /// Routes each row of a normalized bronze batch to quotes, trades or quarantine.
    async fn process(
        &mut self,
        input: &SilverInput,
        rows: &NormalizedBatch,
        takes: &HashMap<Output, bool>,
        counts: &mut SourceCounts,
    ) -> Result<()> {
        let batch = &rows.batch;
        let file = string_column(batch, "_file")?;
        let record = batch
            .column_by_name("_record")
            .map(|c| c.as_primitive::<Int64Type>().clone())
            .ok_or_else(|| Error::Invalid("bronze batch has no _record".into()))?;
        let ingest = batch
            .column_by_name("_ingest_time")
            .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone())
            .ok_or_else(|| Error::Invalid("bronze batch has no _ingest_time".into()))?;
        for (row, outcome) in rows.outcomes.iter().enumerate() {
            let out = match outcome {
                RowOutcome::Quote(_) => Output::Quotes,
                RowOutcome::Trade(_) => Output::Trades,
                RowOutcome::Bad { .. } => Output::Quarantine,
            };
            if !takes[&out] {
                continue;
            }
            counts.records += 1;
            let origin = Origin {
                source: &input.source,
                trades: BronzeInput::is_trades(&input.format),
                file: file.value(row),
                ingest_us: if ingest.is_null(row) {
                    self.ingest_now_us
                } else {
                    ingest.value(row)
                },
            };
            match outcome {
                RowOutcome::Quote(q) => self.keep_quote(&origin, q, counts).await?,
                RowOutcome::Trade(t) => self.keep_trade(&origin, t, counts).await?,
                RowOutcome::Bad { reason, raw } => {
                    self.quarantine(&origin, record.value(row), raw, reason, counts)
                }
            }
            self.flush().await?;
        }
        Ok(())
    }

    async fn keep_quote(
        &mut self,
        at: &Origin<'_>,
        q: &Quote,
        counts: &mut SourceCounts,
    ) -> Result<()> {
        let part = (q.symbol.clone(), q.event_us.div_euclid(DAY_US) as i32);
        let key = quote_fingerprint(at.source, &q.symbol, q.event_us);
        self.quotes.run.rows_in += 1;
        if self.quote_keys.insert(&part, key, quote_key).await? {
            self.quotes.rows.push(at.source, q, at.ingest_us, at.file);
            counts.good += 1;
        } else {
            counts.duplicates_dropped += 1;
            self.quotes.run.duplicates_dropped += 1;
        }
        Ok(())
    }

    async fn keep_trade(
        &mut self,
        at: &Origin<'_>,
        t: &Trade,
        counts: &mut SourceCounts,
    ) -> Result<()> {
        let part = (t.symbol.clone(), t.event_us.div_euclid(DAY_US) as i32);
        let key = fingerprint(t.trade_id.as_str());
        self.trades.run.rows_in += 1;
        if self.trade_keys.insert(&part, key, trade_key).await? {
            self.trades.rows.push(at.source, t, at.ingest_us, at.file);
            counts.good += 1;
        } else {
            counts.duplicates_dropped += 1;
            self.trades.run.duplicates_dropped += 1;
        }
        Ok(())
    }

    fn quarantine(
        &mut self,
        at: &Origin<'_>,
        record: i64,
        raw: &str,
        reason: &str,
        counts: &mut SourceCounts,
    ) {
        self.quarantine.rows.push(&BadRecord {
            source: at.source,
            file: at.file,
            record,
            raw,
            reason,
            ingest_us: at.ingest_us,
        });
        counts.quarantined += 1;
        self.quarantine.run.rows_in += 1;
        // Also shown against the table the record was meant for.
        let meant_for = if at.trades {
            &mut self.trades.run
        } else {
            &mut self.quotes.run
        };
        meant_for.quarantined += 1;
    }

    async fn flush(&mut self) -> Result<()> {
        self.quotes.flush(self.batch_size).await?;
        self.trades.flush(self.batch_size).await?;
        self.quarantine.flush(self.batch_size).await
    }

    /// Closes the writers: per output, the files written and the figures.
    async fn close(self) -> Result<Vec<(Output, (Vec<iceberg::spec::DataFile>, TableRun))>> {
        Ok(vec![
            (Output::Quotes, self.quotes.close().await?),
            (Output::Trades, self.trades.close().await?),
            (Output::Quarantine, self.quarantine.close().await?),
        ])
    }
}

fn string_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    batch
        .column_by_name(name)
        .map(|c| c.as_string::<i32>().clone())
        .ok_or_else(|| Error::Invalid(format!("bronze batch has no {name}")))
}

/// Why a raw (non-object) record was kept aside.
fn raw_reason(raw: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Err(e) => format!("invalid JSON: {e}"),
        Ok(_) => "record is not a JSON object".to_string(),
    }
}

/// What one bronze row becomes.
enum RowOutcome {
    Quote(Quote),
    Trade(Trade),
    Bad { reason: String, raw: String },
}

/// A bronze batch with every row's outcome worked out.
struct NormalizedBatch {
    batch: RecordBatch,
    outcomes: Vec<RowOutcome>,
}

/// Parses and checks every row of a bronze batch (pure; runs on the blocking pool).
fn normalize_batch(format: &str, batch: RecordBatch) -> Result<NormalizedBatch> {
    let mut fields = RowFields::new(format, &batch)?;
    let raw = string_column(&batch, "_raw")?;
    let outcomes = (0..batch.num_rows())
        .map(|row| {
            fields.row = row;
            if raw.is_valid(row) {
                let text = raw.value(row);
                return RowOutcome::Bad {
                    reason: raw_reason(text),
                    raw: text.to_string(),
                };
            }
            match normalize(format, &fields) {
                Ok(Normalized::Quote(q)) => RowOutcome::Quote(q),
                Ok(Normalized::Trade(t)) => RowOutcome::Trade(t),
                Err(reason) => RowOutcome::Bad {
                    reason,
                    raw: fields.to_json(),
                },
            }
        })
        .collect();
    Ok(NormalizedBatch { batch, outcomes })
}

/// Where a bronze row came from.
struct Origin<'a> {
    source: &'a str,
    /// The bronze rows hold trades (else quotes).
    trades: bool,
    file: &'a str,
    ingest_us: i64,
}

/// One bronze row's source fields, by column name (`row` moves along the batch).
struct RowFields {
    names: std::sync::Arc<Vec<&'static str>>,
    arrays: std::sync::Arc<Vec<Option<StringArray>>>,
    row: usize,
}

impl RowFields {
    fn new(source: &str, batch: &RecordBatch) -> Result<Self> {
        let names: Vec<&'static str> = layout::bronze_source_fields(source)
            .ok_or_else(|| Error::Invalid(format!("unknown source {source}")))?
            .to_vec();
        let arrays = names
            .iter()
            .map(|n| {
                batch
                    .column_by_name(n)
                    .map(|c| c.as_string::<i32>().clone())
            })
            .collect();
        Ok(Self {
            names: std::sync::Arc::new(names),
            arrays: std::sync::Arc::new(arrays),
            row: 0,
        })
    }

    /// The row as a JSON object of its non-null fields (what quarantine keeps as `raw`).
    fn to_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .names
            .iter()
            .filter_map(|n| Some((n.to_string(), serde_json::Value::from(self.get(n)?))))
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

impl Fields for RowFields {
    fn get(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| *n == name)?;
        let a = self.arrays[i].as_ref()?;
        a.is_valid(self.row).then(|| a.value(self.row))
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
