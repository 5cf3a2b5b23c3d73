//! silver's two stages, as functions over record batches.
//!
//! Stage one ([`widen`]) parses and normalizes a bronze batch into "wide" rows: every row is a
//! silver quote, trade or quarantine record, with its dedup key and a shuffle key, in one
//! schema that holds the three tables' columns side by side (the other two sections null).
//! The plan hash-partitions wide rows on the shuffle key: `symbol/day` for quotes and trades,
//! the source for quarantine. Every `(symbol, day)` partition, the scope of deduplication, so
//! lands in exactly one task of stage two ([`SilverSink`]), which drops keys already seen in the
//! run or in the table and writes the three tables' files.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeBinaryArray, Int32Array, RecordBatch,
    RecordBatchOptions, StringArray, StringBuilder, UInt8Array, new_null_array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{
    DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimestampMicrosecondType, UInt8Type,
};
use cryptolake_catalog::layout;
use datafusion::execution::disk_manager::DiskManager;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use super::Output;
use super::batches::{BadRecord, QuarantineBatch, QuoteBatch, RowBatch, TradeBatch};
use super::dedup::{KeyIndex, PartId, quote_fingerprint, quote_key, trade_fingerprint, trade_key};
use super::key_files::Probe;
use super::normalize::{Fields, Normalized, normalize};
use crate::iceberg::writer::conform;
use crate::iceberg::writer::{BackgroundWriter, TableWriter};
use crate::job::summary::SourceCounts;
use crate::sources::BronzeInput;
use crate::{Error, Result};

const DAY_US: i64 = 86_400_000_000;
/// Partitions a sink batch remembers by borrowed symbol (past them, a row's partition is looked
/// up in the index): more than the symbols a task's batch usually holds.
const MET_PARTITIONS: usize = 64;

/// Which table a wide row belongs to (`Output as u8`).
pub const KIND: &str = "_kind";
/// The hash-partitioning key.
pub const SHUFFLE: &str = "_shuffle";
/// The bronze source the row came from.
pub const SOURCE: &str = "_source";
/// The source holds trades (where a quarantined record was meant to go).
pub const TRADES: &str = "_trades";
/// The 128-bit dedup key fingerprint (quotes and trades).
pub const KEY: &str = "_key";
/// Days since the epoch of the event (quotes and trades).
pub const DAY: &str = "_day";
const HEADER: usize = 6;

/// The silver tables' plain Arrow schemas (from their layouts) and the wide schema.
struct Schemas {
    sections: [SchemaRef; 3],
    wide: SchemaRef,
}

fn plain(layout: &layout::TableLayout) -> SchemaRef {
    let schema = layout
        .schema()
        .and_then(|s| Ok(iceberg::arrow::schema_to_arrow_schema(&s)?))
        .expect("silver layouts convert to Arrow");
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    Arc::new(Schema::new(fields))
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    let sections = Output::ALL.map(|o| plain(&o.layout()));
    let mut fields = vec![
        Field::new(KIND, DataType::UInt8, false),
        Field::new(SHUFFLE, DataType::Utf8, false),
        Field::new(SOURCE, DataType::Utf8, false),
        Field::new(TRADES, DataType::Boolean, false),
        Field::new(KEY, DataType::FixedSizeBinary(16), true),
        Field::new(DAY, DataType::Int32, true),
    ];
    for (out, schema) in Output::ALL.iter().zip(&sections) {
        for f in schema.fields() {
            let name = format!("{}.{}", out.name(), f.name());
            fields.push(Field::new(name, f.data_type().clone(), true));
        }
    }
    Schemas {
        sections,
        wide: Arc::new(Schema::new(fields)),
    }
});

/// The schema of stage one's rows.
pub fn wide_schema() -> SchemaRef {
    SCHEMAS.wide.clone()
}

/// The columns of one output's section in the wide schema.
fn section_range(out: Output) -> std::ops::Range<usize> {
    let mut start = HEADER;
    for o in Output::ALL {
        let len = SCHEMAS.sections[o.index()].fields().len();
        if o == out {
            return start..start + len;
        }
        start += len;
    }
    unreachable!("every output has a section")
}

/// What stage one needs to know about its bronze input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct NormalizeSpec {
    pub source: String,
    pub format: String,
    /// The outputs that take these bronze rows (the others consumed them already).
    pub takes: Vec<Output>,
    /// The run's clock: `quarantined_at`, and the ingest time of rows without one.
    pub now_us: i64,
}

/// The dedup key, day and shuffle key of each row of one section.
#[derive(Default)]
struct Heads {
    keys: Vec<Option<[u8; 16]>>,
    days: Vec<Option<i32>>,
    shuffle: StringBuilder,
}

impl Heads {
    /// A quote's or trade's: its key, day and `symbol/day` (written into the column's buffer,
    /// not a string of its own per row).
    fn push_keyed(&mut self, key: u128, day: i32, symbol: &str) {
        use std::fmt::Write;
        self.keys.push(Some(key.to_le_bytes()));
        self.days.push(Some(day));
        // Writing into the builder cannot fail.
        let _ = write!(self.shuffle, "{symbol}/{day}");
        self.shuffle.append_value("");
    }

    /// A quarantined record's: no key or day; shuffled by its source.
    fn push_bad(&mut self, source: &str) {
        self.keys.push(None);
        self.days.push(None);
        self.shuffle.append_value(source);
    }
}

/// Stage one: a bronze batch as wide rows, one batch per output that has rows.
pub fn widen(spec: &NormalizeSpec, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
    let mut fields = RowFields::new(&spec.format, &batch)?;
    let raw = string_column(&batch, "_raw")?;
    let file = string_column(&batch, "_file")?;
    let record = batch
        .column_by_name("_record")
        .map(|c| c.as_primitive::<Int64Type>().clone())
        .ok_or_else(|| Error::Internal("bronze batch has no _record".into()))?;
    let ingest = batch
        .column_by_name("_ingest_time")
        .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone())
        .ok_or_else(|| Error::Internal("bronze batch has no _ingest_time".into()))?;
    let [qs, ts, xs] = SCHEMAS.sections.clone();
    let (mut quotes, mut trades) = (QuoteBatch::new(qs), TradeBatch::new(ts));
    let mut bad = QuarantineBatch::new(xs, spec.now_us);
    let mut heads: [Heads; 3] = Default::default();
    // Each row's outcome goes straight into its section's builders: no batch of outcomes
    // (a few hundred bytes a row) is gathered first.
    for row in 0..batch.num_rows() {
        let outcome = outcome_of(&spec.format, &mut fields, &raw, row);
        let out = outcome.output();
        if !spec.takes.contains(&out) {
            continue;
        }
        let ingest_us = if ingest.is_null(row) {
            spec.now_us
        } else {
            ingest.value(row)
        };
        let f = file.value(row);
        let head = &mut heads[out.index()];
        match &outcome {
            RowOutcome::Quote(q) => {
                let day = q.event_us.div_euclid(DAY_US) as i32;
                let key = quote_fingerprint(&spec.source, &q.symbol, q.event_us);
                head.push_keyed(key, day, &q.symbol);
                quotes.push(&spec.source, q, ingest_us, (f, record.value(row)));
            }
            RowOutcome::Trade(t) => {
                let day = t.event_us.div_euclid(DAY_US) as i32;
                let key = trade_fingerprint(&t.trade_id);
                head.push_keyed(key, day, &t.symbol);
                trades.push(&spec.source, t, ingest_us, (f, record.value(row)));
            }
            RowOutcome::Bad { reason, raw } => {
                head.push_bad(&spec.source);
                bad.push(&BadRecord {
                    source: &spec.source,
                    file: f,
                    record: record.value(row),
                    raw,
                    reason,
                    ingest_us,
                });
            }
        }
    }
    let sections: [&mut dyn RowBatch; 3] = [&mut quotes, &mut trades, &mut bad];
    let mut out = Vec::new();
    for ((section, heads), kind) in sections.into_iter().zip(heads).zip(Output::ALL) {
        if section.len() > 0 {
            out.push(wide_batch(spec, kind, heads, section.finish()?)?);
        }
    }
    Ok(out)
}

/// One output's rows under the wide schema: its section filled, the others null.
fn wide_batch(
    spec: &NormalizeSpec,
    kind: Output,
    mut heads: Heads,
    rows: RecordBatch,
) -> Result<RecordBatch> {
    let n = rows.num_rows();
    let trades = BronzeInput::is_trades(&spec.format);
    let keys = FixedSizeBinaryArray::try_from_sparse_iter_with_size(heads.keys.into_iter(), 16)?;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt8Array::from(vec![kind as u8; n])),
        Arc::new(heads.shuffle.finish()),
        Arc::new(StringArray::from(vec![spec.source.as_str(); n])),
        Arc::new(BooleanArray::from(vec![trades; n])),
        Arc::new(keys),
        Arc::new(Int32Array::from(heads.days)),
    ];
    for out in Output::ALL {
        if out == kind {
            columns.extend(rows.columns().iter().cloned());
        } else {
            let fields = SCHEMAS.sections[out.index()].fields();
            columns.extend(fields.iter().map(|f| new_null_array(f.data_type(), n)));
        }
    }
    Ok(RecordBatch::try_new(SCHEMAS.wide.clone(), columns)?)
}

/// How one stage-two task accounted for its rows; the driver adds up all tasks'.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkCounts {
    pub sources: BTreeMap<String, SourceCounts>,
    pub tables: BTreeMap<Output, TableCounts>,
}

/// One table's share of [`SinkCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub rows_in: u64,
    pub duplicates_dropped: u64,
    /// Records meant for this table that went to quarantine.
    pub quarantined: u64,
}

impl SinkCounts {
    /// Adds another task's counts.
    pub fn add(&mut self, other: &SinkCounts) {
        for (source, c) in &other.sources {
            let mine = self.sources.entry(source.clone()).or_default();
            mine.records += c.records;
            mine.good += c.good;
            mine.quarantined += c.quarantined;
            mine.duplicates_dropped += c.duplicates_dropped;
        }
        for (out, c) in &other.tables {
            let mine = self.tables.entry(*out).or_default();
            mine.rows_in += c.rows_in;
            mine.duplicates_dropped += c.duplicates_dropped;
            mine.quarantined += c.quarantined;
        }
    }
}

/// One batch's counts, gathered beside the loop over its rows (which nearly always share one
/// source) and added to the task's once a batch.
#[derive(Default)]
struct Tally<'a> {
    sources: Vec<(&'a str, SourceCounts)>,
    last: usize,
    tables: [TableCounts; 3],
}

impl<'a> Tally<'a> {
    fn source(&mut self, name: &'a str) -> &mut SourceCounts {
        if self.sources.get(self.last).is_none_or(|(s, _)| *s != name) {
            self.last = match self.sources.iter().position(|(s, _)| *s == name) {
                Some(i) => i,
                None => {
                    self.sources.push((name, SourceCounts::default()));
                    self.sources.len() - 1
                }
            };
        }
        &mut self.sources[self.last].1
    }

    /// A quarantined row: counted in quarantine and against the table it was meant for.
    fn bad(&mut self, trades: bool) {
        self.tables[Output::Quarantine.index()].rows_in += 1;
        let meant_for = if trades {
            Output::Trades
        } else {
            Output::Quotes
        };
        self.tables[meant_for.index()].quarantined += 1;
    }

    /// A quote or trade row: new, or a duplicate dropped.
    fn row(&mut self, source: &'a str, out: Output, new: bool) {
        let table = &mut self.tables[out.index()];
        table.rows_in += 1;
        if !new {
            table.duplicates_dropped += 1;
        }
        let counts = self.source(source);
        if new {
            counts.good += 1;
        } else {
            counts.duplicates_dropped += 1;
        }
    }

    /// Adds the batch's counts to the task's (tables and sources the batch touched only).
    fn into(self, counts: &mut SinkCounts) {
        let mut batch = SinkCounts::default();
        for (name, c) in self.sources {
            batch.sources.insert(name.to_string(), c);
        }
        for (out, c) in Output::ALL.into_iter().zip(self.tables) {
            if c != TableCounts::default() {
                batch.tables.insert(out, c);
            }
        }
        counts.add(&batch);
    }
}

/// The wide rows' values of the columns dedup prunes table files by: a quote's `event_time`,
/// a trade's `trade_id`.
fn probe_columns(
    wide: &RecordBatch,
) -> Result<(
    arrow::array::PrimitiveArray<TimestampMicrosecondType>,
    StringArray,
)> {
    let column = |name: &str| {
        wide.column_by_name(name)
            .ok_or_else(|| Error::Internal(format!("wide rows lack {name}")))
    };
    let times = column("quotes.event_time")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| Error::Internal("quotes.event_time is not in microseconds".into()))?
        .clone();
    let ids = column("trades.trade_id")?
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::Internal("trades.trade_id is not text".into()))?
        .clone();
    Ok((times, ids))
}

/// Stage two for one task: deduplicates its wide rows and writes the three tables' files.
pub struct SilverSink {
    writers: Vec<BackgroundWriter>,
    quote_keys: KeyIndex,
    trade_keys: KeyIndex,
    counts: SinkCounts,
}

impl SilverSink {
    /// `tables` are quotes, trades and quarantine as of the plan; their live files hold the
    /// keys rows are deduplicated against. Dedup keys past the budget spill to `disk`.
    pub async fn new(
        tables: &[Table],
        target_file_size: usize,
        batch_size: usize,
        disk: Arc<DiskManager>,
    ) -> Result<Self> {
        let [quotes, trades, quarantine] = tables else {
            return Err(Error::Internal("the silver sink needs three tables".into()));
        };
        let writers = [quotes, trades, quarantine]
            .into_iter()
            .map(|t| {
                Ok(BackgroundWriter::spawn(
                    TableWriter::new(t, target_file_size)?,
                    2,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let key_columns: &[&str] = &["source", "symbol", "event_time"];
        Ok(Self {
            writers,
            quote_keys: KeyIndex::new(
                Some(quotes.clone()),
                key_columns,
                "event_time",
                batch_size,
                disk.clone(),
            )
            .await?,
            trade_keys: KeyIndex::new(
                Some(trades.clone()),
                &["trade_id"],
                "trade_id",
                batch_size,
                disk,
            )
            .await?,
            counts: SinkCounts::default(),
        })
    }

    /// Takes one batch of wide rows: counts every row, keeps new keys, writes what it keeps.
    pub async fn take(&mut self, wide: &RecordBatch) -> Result<()> {
        let n = wide.num_rows();
        let kind = wide.column(0).as_primitive::<UInt8Type>().clone();
        let source = wide.column(2).as_string::<i32>().clone();
        let trades = wide.column(3).as_boolean().clone();
        let keys = wide.column(4).as_fixed_size_binary().clone();
        let days = wide.column(5).as_primitive::<Int32Type>().clone();
        let symbols = [Output::Quotes, Output::Trades].map(|o| {
            wide.column_by_name(&format!("{}.symbol", o.name()))
                .map(|c| c.as_string::<i32>().clone())
        });
        let (times, trade_ids) = probe_columns(wide)?;
        // Per row: kept (a quarantine row, or a key not seen before).
        let mut kept = vec![false; n];
        let mut tally = Tally::default();
        // The partitions this batch has met: time-ordered rows interleave a few symbols, so a
        // short scan of borrowed symbols finds a row's partition without a `String` a row.
        let mut met: Vec<(Output, &str, i32, PartId)> = Vec::new();
        for (row, keep) in kept.iter_mut().enumerate() {
            let out = Output::from_index(kind.value(row) as usize)?;
            let counts = tally.source(source.value(row));
            counts.records += 1;
            if out == Output::Quarantine {
                *keep = true;
                counts.quarantined += 1;
                tally.bad(trades.value(row));
                continue;
            }
            let symbol = symbols[out.index()]
                .as_ref()
                .ok_or_else(|| Error::Internal("wide rows lack a symbol".into()))?
                .value(row);
            let day = days.value(row);
            let index = match out {
                Output::Quotes => &mut self.quote_keys,
                _ => &mut self.trade_keys,
            };
            let part = match met
                .iter()
                .find(|(o, s, d, _)| *o == out && *d == day && *s == symbol)
            {
                Some((.., id)) => *id,
                None => {
                    let id = index.partition(&(symbol.to_string(), day));
                    if met.len() < MET_PARTITIONS {
                        met.push((out, symbol, day, id));
                    }
                    id
                }
            };
            let key = u128::from_le_bytes(
                keys.value(row)
                    .try_into()
                    .map_err(|_| Error::Internal("a wide row's key is not 16 bytes".into()))?,
            );
            let new = match out {
                Output::Quotes => {
                    let probe = Probe::Long(times.value(row));
                    index.insert(part, key, probe, quote_key).await?
                }
                _ => {
                    let probe = Probe::Str(trade_ids.value(row));
                    index.insert(part, key, probe, trade_key).await?
                }
            };
            tally.row(source.value(row), out, new);
            *keep = new;
        }
        tally.into(&mut self.counts);
        for out in Output::ALL {
            let keep: BooleanArray = kind
                .iter()
                .zip(&kept)
                .map(|(k, kept)| Some(*kept && k == Some(out as u8)))
                .collect();
            self.write(out, wide, keep).await?;
        }
        self.quote_keys.release()?;
        self.trade_keys.release()
    }

    /// Writes the kept rows of one output's section.
    async fn write(&mut self, out: Output, wide: &RecordBatch, keep: BooleanArray) -> Result<()> {
        if keep.true_count() == 0 {
            return Ok(());
        }
        let section = SCHEMAS.sections[out.index()].clone();
        let columns = wide.columns()[section_range(out)].to_vec();
        let options = RecordBatchOptions::new().with_row_count(Some(wide.num_rows()));
        let rows = RecordBatch::try_new_with_options(wide_section(out), columns, &options)?;
        let rows = filter_record_batch(&rows, &keep)?;
        let rows = RecordBatch::try_new(section, rows.columns().to_vec())?;
        let writer = &self.writers[out.index()];
        writer.write(conform(&rows, writer.schema())?).await
    }

    /// Closes the writers: each output's files, and this task's counts.
    pub async fn close(self) -> Result<(Vec<(Output, Vec<DataFile>)>, SinkCounts)> {
        let mut files = Vec::new();
        for (out, writer) in Output::ALL.into_iter().zip(self.writers) {
            files.push((out, writer.close().await?.0));
        }
        Ok((files, self.counts))
    }
}

/// One section's columns as they sit in the wide schema (nullable).
fn wide_section(out: Output) -> SchemaRef {
    let fields: Vec<Field> = SCHEMAS.wide.fields()[section_range(out)]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    Arc::new(Schema::new(fields))
}

fn string_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    batch
        .column_by_name(name)
        .map(|c| c.as_string::<i32>().clone())
        .ok_or_else(|| Error::Internal(format!("bronze batch has no {name}")))
}

/// Why a raw (non-object) record was kept aside.
fn raw_reason(raw: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Err(e) => format!("invalid JSON: {e}"),
        // Only a configured source keeps a whole object raw: its pointer found no records.
        Ok(serde_json::Value::Object(_)) => {
            "no records where the source's `records` pointer points".to_string()
        }
        Ok(_) => "record is not a JSON object".to_string(),
    }
}

/// What one bronze row becomes.
enum RowOutcome {
    Quote(super::normalize::Quote),
    Trade(super::normalize::Trade),
    Bad { reason: String, raw: String },
}

impl RowOutcome {
    fn output(&self) -> Output {
        match self {
            RowOutcome::Quote(_) => Output::Quotes,
            RowOutcome::Trade(_) => Output::Trades,
            RowOutcome::Bad { .. } => Output::Quarantine,
        }
    }
}

/// What bronze row `row` becomes (pure CPU work).
fn outcome_of(format: &str, fields: &mut RowFields, raw: &StringArray, row: usize) -> RowOutcome {
    fields.row = row;
    if raw.is_valid(row) {
        let text = raw.value(row);
        return RowOutcome::Bad {
            reason: raw_reason(text),
            raw: text.to_string(),
        };
    }
    match normalize(format, &*fields) {
        Ok(Normalized::Quote(q)) => RowOutcome::Quote(q),
        Ok(Normalized::Trade(t)) => RowOutcome::Trade(t),
        Err(reason) => RowOutcome::Bad {
            reason,
            raw: fields.to_json(),
        },
    }
}

/// One bronze row's source fields, by column name (`row` moves along the batch).
struct RowFields {
    names: Vec<&'static str>,
    arrays: Vec<Option<StringArray>>,
    row: usize,
}

impl RowFields {
    fn new(source: &str, batch: &RecordBatch) -> Result<Self> {
        let names: Vec<&'static str> = layout::bronze_source_fields(source)
            .ok_or_else(|| Error::Internal(format!("unknown source {source}")))?
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
            names,
            arrays,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_tile_the_wide_schema() {
        let wide = wide_schema();
        let ranges = Output::ALL.map(section_range);
        assert_eq!(ranges[0].start, HEADER);
        assert_eq!(ranges[0].end, ranges[1].start);
        assert_eq!(ranges[1].end, ranges[2].start);
        assert_eq!(ranges[2].end, wide.fields().len());
        assert_eq!(wide.field(ranges[1].start + 3).name(), "trades.symbol");
    }
}
