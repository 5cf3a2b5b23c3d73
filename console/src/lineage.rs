//! Lineage: what became of each bronze row of one landing file, or of one Kafka topic
//! partition's offsets: the silver row it became, the quarantine reason, a duplicate dropped
//! because silver already had its key, or not yet taken by silver.
//!
//! Silver rows name their bronze row (`bronze_file`, `bronze_record`), quarantine rows theirs
//! (`file`, `record`); a bronze row in neither was dropped as a duplicate once silver has taken
//! the bronze snapshot that added it (each silver table's bookmark says), and is pending before.
//! Silver rows written before `bronze_record` existed are counted as `silver_unlinked`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use cryptolake_catalog::Lake;
use cryptolake_jobs::bookmarks::{silver_key, snapshot_bookmark};
use cryptolake_jobs::iceberg::scan;
use cryptolake_jobs::physical_plan::IcebergProvider;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use iceberg::spec::DataFile;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use crate::data;
use crate::{Error, Result};

/// Bronze rows one request follows at most.
pub const MAX_ROWS: usize = 5_000;

/// `GET /v1/lineage`'s query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LineageQuery {
    /// The bronze table's name: a landing source (`coinbase_spot`) or a Kafka topic's table
    /// (`coinbase_trades`).
    pub source: String,
    /// Its rows' `_file`: a landing file's path under `<landing>/` (`coinbase_spot/2026/...`),
    /// or `<topic>/<partition>` for Kafka.
    pub file: String,
    /// Records (Kafka offsets) from `from` to `to`, both included.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: Option<usize>,
}

/// What became of one bronze row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageRow {
    /// `_record`: the record's position in the file, or the Kafka offset.
    pub record: i64,
    /// `silver`, `quarantined`, `duplicate` or `pending`.
    pub outcome: &'static str,
    /// The silver table the row went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The silver row: its key and price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The bronze row's fields as received (JSON), or its `_raw` text.
    pub bronze: String,
}

/// The lineage of one file's (or partition's) bronze rows.
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    pub source: String,
    pub file: String,
    pub bronze_rows: u64,
    pub silver: u64,
    pub quarantined: u64,
    pub duplicates: u64,
    pub pending: u64,
    /// Silver rows of the file written before silver recorded `bronze_record`.
    pub silver_unlinked: u64,
    pub rows: Vec<LineageRow>,
}

/// Follows the bronze rows of `q.file`.
pub async fn lineage(lake: &Lake, q: &LineageQuery) -> Result<Lineage> {
    let name_ok = !q.source.is_empty()
        && q.source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok || q.file.is_empty() {
        return Err(Error::BadRequest(
            "lineage needs source (a bronze table's name) and file".into(),
        ));
    }
    let bronze = data::table(lake, "bronze", &q.source)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no table bronze.{}", q.source)))?;
    let limit = q.limit.unwrap_or(1_000).min(MAX_ROWS);
    let rows = bronze_rows(lake, &bronze, q, limit).await?;
    let (silver, unlinked) = silver_rows(lake, q).await?;
    let reasons = quarantine_reasons(lake, q).await?;
    Ok(assemble(q, rows, silver, reasons, unlinked, limit))
}

/// `record` within the query's range.
fn in_range(q: &LineageQuery, record: &str) -> Expr {
    let mut e = lit(true);
    if let Some(from) = q.from {
        e = e.and(col(record).gt_eq(lit(from)));
    }
    if let Some(to) = q.to {
        e = e.and(col(record).lt_eq(lit(to)));
    }
    e
}

/// The file's bronze rows: record → (pending for silver, the row as received).
async fn bronze_rows(
    lake: &Lake,
    bronze: &Table,
    q: &LineageQuery,
    limit: usize,
) -> Result<BTreeMap<i64, (bool, String)>> {
    let pending = pending_files(lake, bronze, &q.source).await?;
    let filter = col("_file")
        .eq(lit(q.file.clone()))
        .and(in_range(q, "_record"));
    let (waiting, taken): (Vec<DataFile>, Vec<DataFile>) = scan::live_data_files(bronze)
        .await?
        .into_iter()
        .partition(|f| pending.as_ref().is_none_or(|p| p.contains(f.file_path())));
    let mut rows = BTreeMap::new();
    for (files, is_pending) in [(taken, false), (waiting, true)] {
        for b in read(bronze, files, filter.clone(), limit).await? {
            let records = longs(&b, "_record")?;
            for (i, record) in records.into_iter().enumerate() {
                rows.insert(record, (is_pending, bronze_text(&b, i)));
            }
        }
    }
    Ok(rows)
}

/// The silver rows of the file: record → (table, the row as text); and how many name no
/// record (written before `bronze_record` existed).
async fn silver_rows(
    lake: &Lake,
    q: &LineageQuery,
) -> Result<(BTreeMap<i64, (String, String)>, u64)> {
    let mut silver = BTreeMap::new();
    let mut unlinked = 0;
    for table in ["quotes", "trades"] {
        let Some(t) = data::table(lake, "silver", table).await? else {
            continue;
        };
        let filter = col("source")
            .eq(lit(q.source.clone()))
            .and(col("bronze_file").eq(lit(q.file.clone())));
        for b in read(&t, scan::live_data_files(&t).await?, filter, usize::MAX).await? {
            let Some(records) = optional_longs(&b, "bronze_record")? else {
                unlinked += b.num_rows() as u64;
                continue;
            };
            for (i, record) in records.into_iter().enumerate() {
                match record {
                    Some(r) if q.from.is_none_or(|f| r >= f) && q.to.is_none_or(|t| r <= t) => {
                        silver.insert(r, (format!("silver.{table}"), silver_text(&b, i)));
                    }
                    Some(_) => {}
                    None => unlinked += 1,
                }
            }
        }
    }
    Ok((silver, unlinked))
}

/// The file's quarantined records: record → reason.
async fn quarantine_reasons(lake: &Lake, q: &LineageQuery) -> Result<BTreeMap<i64, String>> {
    let mut reasons = BTreeMap::new();
    let Some(t) = data::table(lake, "silver", "quarantine").await? else {
        return Ok(reasons);
    };
    let filter = col("source")
        .eq(lit(q.source.clone()))
        .and(col("file").eq(lit(q.file.clone())))
        .and(in_range(q, "record"));
    for b in read(&t, scan::live_data_files(&t).await?, filter, usize::MAX).await? {
        let records = longs(&b, "record")?;
        let reason = strings(&b, "reason")?;
        for (record, reason) in records.into_iter().zip(reason) {
            reasons.insert(record, reason.unwrap_or_default());
        }
    }
    Ok(reasons)
}

/// Each bronze row with its outcome, and the counts.
fn assemble(
    q: &LineageQuery,
    bronze: BTreeMap<i64, (bool, String)>,
    silver: BTreeMap<i64, (String, String)>,
    reasons: BTreeMap<i64, String>,
    silver_unlinked: u64,
    limit: usize,
) -> Lineage {
    let mut out = Lineage {
        source: q.source.clone(),
        file: q.file.clone(),
        bronze_rows: bronze.len() as u64,
        silver: 0,
        quarantined: 0,
        duplicates: 0,
        pending: 0,
        silver_unlinked,
        rows: Vec::new(),
    };
    for (record, (pending, text)) in bronze {
        let mut row = LineageRow {
            record,
            outcome: "duplicate",
            table: None,
            silver: None,
            reason: None,
            bronze: text,
        };
        if let Some((table, s)) = silver.get(&record) {
            row.outcome = "silver";
            row.table = Some(table.clone());
            row.silver = Some(s.clone());
            out.silver += 1;
        } else if let Some(reason) = reasons.get(&record) {
            row.outcome = "quarantined";
            row.reason = Some(reason.clone());
            out.quarantined += 1;
        } else if pending {
            row.outcome = "pending";
            out.pending += 1;
        } else {
            out.duplicates += 1;
        }
        if out.rows.len() < limit {
            out.rows.push(row);
        }
    }
    out
}

/// The bronze files some silver table has not taken yet (appended after its bookmark on the
/// source); `None` when no silver table exists, so every row is pending.
async fn pending_files(
    lake: &Lake,
    bronze: &Table,
    source: &str,
) -> Result<Option<HashSet<String>>> {
    let key = silver_key(source);
    let mut pending = HashSet::new();
    let mut any = false;
    for name in ["quotes", "trades", "quarantine"] {
        let Some(t) = data::table(lake, "silver", name).await? else {
            continue;
        };
        any = true;
        let mark = snapshot_bookmark(&t, &key)?;
        for appended in scan::appended_since(bronze, mark).await? {
            pending.extend(appended.files.iter().map(|f| f.file_path().to_string()));
        }
    }
    Ok(any.then_some(pending))
}

async fn read(
    table: &Table,
    files: Vec<DataFile>,
    filter: Expr,
    limit: usize,
) -> Result<Vec<RecordBatch>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    let provider = IcebergProvider::with_files(table.clone(), files)?;
    let mut df = ctx.read_table(Arc::new(provider))?.filter(filter)?;
    if limit != usize::MAX {
        df = df.limit(0, Some(limit))?;
    }
    Ok(df.collect().await?)
}

fn column(b: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("no column {name}")))?;
    Ok(cast(c, ty).map_err(cryptolake_jobs::Error::from)?)
}

fn longs(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = column(b, name, &DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(-1))
        .collect())
}

/// A column that tables written before it existed lack (`None`).
fn optional_longs(b: &RecordBatch, name: &str) -> Result<Option<Vec<Option<i64>>>> {
    if b.column_by_name(name).is_none() {
        return Ok(None);
    }
    let c = column(b, name, &DataType::Int64)?;
    Ok(Some(c.as_primitive::<Int64Type>().iter().collect()))
}

fn strings(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let c = column(b, name, &DataType::Utf8)?;
    Ok(c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// A bronze row as received: `_raw` when it was not a JSON object, else its text fields.
fn bronze_text(b: &RecordBatch, i: usize) -> String {
    let text = |c: &ArrayRef| -> Option<String> {
        let c = cast(c, &DataType::Utf8).ok()?;
        let c = c.as_string::<i32>();
        c.is_valid(i).then(|| c.value(i).to_string())
    };
    if let Some(raw) = b.column_by_name("_raw").and_then(text) {
        return raw;
    }
    let mut fields = serde_json::Map::new();
    for (field, c) in b.schema().fields().iter().zip(b.columns()) {
        let textual = matches!(
            c.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        if field.name().starts_with('_') || !textual {
            continue;
        }
        if let Some(v) = text(c) {
            fields.insert(field.name().clone(), v.into());
        }
    }
    serde_json::Value::Object(fields).to_string()
}

/// A silver row as its key and price: `BTC-USD 2026-01-01T00:00:01 price 43001.00`, with the
/// trade id for a trade.
fn silver_text(b: &RecordBatch, i: usize) -> String {
    let get = |name: &str| -> String {
        b.column_by_name(name)
            .and_then(|c| cast(c, &DataType::Utf8).ok())
            .map(|c| {
                let c = c.as_string::<i32>();
                if c.is_valid(i) {
                    c.value(i).to_string()
                } else {
                    String::new()
                }
            })
            .unwrap_or_default()
    };
    let trade = get("trade_id");
    let key = format!(
        "{} {} price {}",
        get("symbol"),
        get("event_time"),
        get("price")
    );
    if trade.is_empty() {
        key
    } else {
        format!("trade {trade}: {key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bronze_row_gets_one_outcome_and_the_counts_add_up() {
        let q = LineageQuery {
            source: "coinbase_spot".into(),
            file: "a.json".into(),
            ..Default::default()
        };
        let bronze: BTreeMap<i64, (bool, String)> = [
            (0, (false, "r0".to_string())),
            (1, (false, "r1".to_string())),
            (2, (false, "r2".to_string())),
            (3, (true, "r3".to_string())),
        ]
        .into();
        let silver = [(0, ("silver.quotes".to_string(), "BTC-USD ...".to_string()))].into();
        let reasons = [(1, "amount is missing".to_string())].into();
        let l = assemble(&q, bronze, silver, reasons, 0, 10);
        let outcomes: Vec<&str> = l.rows.iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, ["silver", "quarantined", "duplicate", "pending"]);
        assert_eq!(
            (l.silver, l.quarantined, l.duplicates, l.pending),
            (1, 1, 1, 1)
        );
        assert_eq!(l.rows[1].reason.as_deref(), Some("amount is missing"));
        assert_eq!(l.bronze_rows, 4);
    }
}
