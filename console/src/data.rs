//! What the console shows, read from the lake: candles, market snapshots, trader positions,
//! alert firings and the tables' state. Each reader loads the one table it needs at its current snapshot and
//! filters with DataFusion expressions, never with SQL text built from a request, so a query
//! parameter can choose rows but never change the query. A table that does not exist yet reads
//! as no rows (a new lake has no gold tables until `run gold`).
//!
//! Decimals leave as JSON numbers written with the table's exact digits (`43000.1200`), not
//! through a float; times as RFC 3339 in UTC.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use cryptolake_catalog::Lake;
use cryptolake_jobs::physical_plan::IcebergProvider;
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use iceberg::TableIdent;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Error, Result};

/// Candles one request returns at most.
pub const MAX_CANDLES: usize = 10_000;

/// A candle table's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum Interval {
    #[default]
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "1h")]
    Hour,
}

impl Interval {
    pub fn table(self) -> &'static str {
        match self {
            Interval::Minute => "candles_1m",
            Interval::Hour => "candles_1h",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Minute => "1m",
            Interval::Hour => "1h",
        }
    }
}

/// `GET /v1/candles`'s query: a symbol, an interval, and an optional `[from, to)` range of
/// window starts. Without `from` the newest `limit` candles (before `to`) are returned.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CandleQuery {
    pub symbol: String,
    #[serde(default)]
    pub interval: Interval,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// At most this many candles (default 1,440, at most [`MAX_CANDLES`]).
    pub limit: Option<usize>,
}

/// One row of `gold.candles_1m` or `gold.candles_1h`.
#[derive(Debug, Clone, Serialize)]
pub struct Candle {
    pub symbol: String,
    pub window_start: String,
    pub window_end: String,
    pub open: Box<RawValue>,
    pub high: Box<RawValue>,
    pub low: Box<RawValue>,
    pub close: Box<RawValue>,
    pub volume: Option<Box<RawValue>>,
    pub vwap: Option<Box<RawValue>>,
    pub notional: Option<Box<RawValue>>,
    pub quote_count: i64,
    pub trade_count: i64,
}

impl Candle {
    /// A price as a float, for drawing only.
    pub fn float(value: &RawValue) -> f64 {
        value.get().parse().unwrap_or(f64::NAN)
    }
}

fn ident(namespace: &str, name: &str) -> TableIdent {
    TableIdent::from_strs([namespace, name]).unwrap_or_else(|_| unreachable!("two parts"))
}

/// The table, or `None` when it does not exist yet.
pub(crate) async fn table(lake: &Lake, namespace: &str, name: &str) -> Result<Option<Table>> {
    Ok(lake.table_if_exists(&ident(namespace, name)).await?)
}

/// A timestamp literal of the column's own type (Iceberg `timestamp`: microseconds, no zone).
fn time_literal(t: DateTime<Utc>) -> datafusion::prelude::Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(t.timestamp_micros()),
        None,
    ))
}

/// Reads the rows of `table` that `filter` keeps, ordered by `order` (ascending unless
/// `descending`), at most `limit`.
pub(crate) async fn read(
    table: Table,
    filter: Option<datafusion::prelude::Expr>,
    order: &[(&str, bool)],
    limit: Option<usize>,
) -> Result<Vec<RecordBatch>> {
    let ctx = SessionContext::new();
    let mut df = ctx.read_table(Arc::new(IcebergProvider::new(table)?))?;
    if let Some(filter) = filter {
        df = df.filter(filter)?;
    }
    if !order.is_empty() {
        df = df.sort(
            order
                .iter()
                .map(|(c, descending)| col(*c).sort(!descending, false))
                .collect(),
        )?;
    }
    if let Some(limit) = limit {
        df = df.limit(0, Some(limit))?;
    }
    Ok(df.collect().await?)
}

/// The candles of one symbol, oldest first.
pub async fn candles(lake: &Lake, q: &CandleQuery) -> Result<Vec<Candle>> {
    if q.symbol.is_empty() {
        return Err(Error::BadRequest("symbol is required".into()));
    }
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(Error::BadRequest("from must be before to".into()));
    }
    let limit = q.limit.unwrap_or(1_440).clamp(1, MAX_CANDLES);
    let Some(table) = table(lake, "gold", q.interval.table()).await? else {
        return Ok(Vec::new());
    };
    let mut filter = col("symbol").eq(lit(q.symbol.clone()));
    if let Some(from) = q.from {
        filter = filter.and(col("window_start").gt_eq(time_literal(from)));
    }
    if let Some(to) = q.to {
        filter = filter.and(col("window_start").lt(time_literal(to)));
    }
    // Without a start, the newest candles: read newest first, then turn the page around.
    let newest_first = q.from.is_none();
    let batches = read(
        table,
        Some(filter),
        &[("window_start", newest_first)],
        Some(limit),
    )
    .await?;
    let mut out = Vec::new();
    for batch in &batches {
        let row = Rows::new(batch);
        for i in 0..batch.num_rows() {
            out.push(Candle {
                symbol: row.text("symbol", i)?.unwrap_or_default(),
                window_start: row.time("window_start", i)?.unwrap_or_default(),
                window_end: row.time("window_end", i)?.unwrap_or_default(),
                open: row.number("open", i)?.unwrap_or_else(null),
                high: row.number("high", i)?.unwrap_or_else(null),
                low: row.number("low", i)?.unwrap_or_else(null),
                close: row.number("close", i)?.unwrap_or_else(null),
                volume: row.number("volume", i)?,
                vwap: row.number("vwap", i)?,
                notional: row.number("notional", i)?,
                quote_count: row.long("quote_count", i)?.unwrap_or(0),
                trade_count: row.long("trade_count", i)?.unwrap_or(0),
            });
        }
    }
    if newest_first {
        out.reverse();
    }
    Ok(out)
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// The symbols that have candles, for the Markets page's picker.
pub async fn symbols(lake: &Lake, interval: Interval) -> Result<Vec<String>> {
    let Some(table) = table(lake, "gold", interval.table()).await? else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    let df = ctx
        .read_table(Arc::new(IcebergProvider::new(table)?))?
        .select(vec![col("symbol")])?
        .distinct()?
        .sort(vec![col("symbol").sort(true, false)])?;
    let mut out = Vec::new();
    for batch in df.collect().await? {
        let rows = Rows::new(&batch);
        for i in 0..batch.num_rows() {
            out.extend(rows.text("symbol", i)?);
        }
    }
    Ok(out)
}

/// A row of `gold.market_snapshot`: one asset's share of the market at a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Share {
    pub snapshot_time: String,
    pub source: String,
    pub symbol: String,
    pub price: Option<Box<RawValue>>,
    pub market_cap: Option<Box<RawValue>>,
    pub volume_24h: Option<Box<RawValue>>,
    pub dominance_pct: Option<f64>,
    pub volume_pct: Option<f64>,
}

/// The newest snapshot's shares, largest dominance first (`GET /v1/market-snapshot`).
pub async fn market_snapshot(lake: &Lake) -> Result<Vec<Share>> {
    let Some(table) = table(lake, "gold", "market_snapshot").await? else {
        return Ok(Vec::new());
    };
    let newest = read(table.clone(), None, &[("snapshot_time", true)], Some(1)).await?;
    let Some(latest) = newest
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.column_by_name("snapshot_time").cloned())
    else {
        return Ok(Vec::new());
    };
    let at = ScalarValue::try_from_array(&latest, 0)?;
    let batches = read(
        table,
        Some(col("snapshot_time").eq(lit(at))),
        &[("dominance_pct", true), ("symbol", false)],
        None,
    )
    .await?;
    shares_of(&batches)
}

/// An asset's current row in `silver.assets` (`GET /v1/assets`).
#[derive(Debug, Clone, Serialize)]
pub struct Asset {
    pub id: String,
    pub symbol: Option<String>,
    pub name: Option<String>,
    pub rank: Option<i64>,
    pub market_cap_usd: Option<Box<RawValue>>,
    pub icon_url: Option<String>,
    pub updated_at: Option<String>,
}

/// The assets dimension's current rows (`valid_to` null), by rank.
pub async fn assets(lake: &Lake) -> Result<Vec<Asset>> {
    let Some(table) = table(lake, "silver", "assets").await? else {
        return Ok(Vec::new());
    };
    let filter = col("valid_to").is_null();
    let batches = read(table, Some(filter), &[("rank", false), ("id", false)], None).await?;
    let mut out = Vec::new();
    for b in &batches {
        let rows = Rows::new(b);
        for i in 0..b.num_rows() {
            out.push(Asset {
                id: rows.text("id", i)?.unwrap_or_default(),
                symbol: rows.text("symbol", i)?,
                name: rows.text("name", i)?,
                rank: rows.long("rank", i)?,
                market_cap_usd: rows.number("market_cap_usd", i)?,
                icon_url: rows.text("icon_url", i)?,
                updated_at: rows.time("updated_at", i)?,
            });
        }
    }
    Ok(out)
}

/// A row of `gold.trader_positions`.
#[derive(Debug, Clone, Serialize)]
pub struct Position {
    pub user_id: String,
    pub symbol: String,
    pub day: String,
    pub buy_quantity: Box<RawValue>,
    pub sell_quantity: Box<RawValue>,
    pub net_quantity: Box<RawValue>,
    pub buy_notional: Box<RawValue>,
    pub sell_notional: Box<RawValue>,
    pub trade_count: i64,
}

/// Positions of the newest day, by user and symbol (`GET /v1/positions`); `user` narrows to one.
pub async fn positions(lake: &Lake, user: Option<&str>) -> Result<Vec<Position>> {
    let Some(table) = table(lake, "gold", "trader_positions").await? else {
        return Ok(Vec::new());
    };
    let newest = read(table.clone(), None, &[("day", true)], Some(1)).await?;
    let Some(day) = newest
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.column_by_name("day").cloned())
    else {
        return Ok(Vec::new());
    };
    let mut filter = col("day").eq(lit(ScalarValue::try_from_array(&day, 0)?));
    if let Some(user) = user {
        filter = filter.and(col("user_id").eq(lit(user.to_string())));
    }
    let batches = read(
        table,
        Some(filter),
        &[("user_id", false), ("symbol", false)],
        Some(MAX_CANDLES),
    )
    .await?;
    let mut out = Vec::new();
    for batch in &batches {
        let row = Rows::new(batch);
        for i in 0..batch.num_rows() {
            out.push(Position {
                user_id: row.text("user_id", i)?.unwrap_or_default(),
                symbol: row.text("symbol", i)?.unwrap_or_default(),
                day: row.date("day", i)?.unwrap_or_default(),
                buy_quantity: row.number("buy_quantity", i)?.unwrap_or_else(null),
                sell_quantity: row.number("sell_quantity", i)?.unwrap_or_else(null),
                net_quantity: row.number("net_quantity", i)?.unwrap_or_else(null),
                buy_notional: row.number("buy_notional", i)?.unwrap_or_else(null),
                sell_notional: row.number("sell_notional", i)?.unwrap_or_else(null),
                trade_count: row.long("trade_count", i)?.unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// Rows of `gold.market_snapshot` as shares.
fn shares_of(batches: &[RecordBatch]) -> Result<Vec<Share>> {
    let mut out = Vec::new();
    for batch in batches {
        let row = Rows::new(batch);
        for i in 0..batch.num_rows() {
            out.push(Share {
                snapshot_time: row.time("snapshot_time", i)?.unwrap_or_default(),
                source: row.text("source", i)?.unwrap_or_default(),
                symbol: row.text("symbol", i)?.unwrap_or_default(),
                price: row.number("price", i)?,
                market_cap: row.number("market_cap", i)?,
                volume_24h: row.number("volume_24h", i)?,
                dominance_pct: row.double("dominance_pct", i)?,
                volume_pct: row.double("volume_pct", i)?,
            });
        }
    }
    Ok(out)
}

/// Market-snapshot rows one history request returns at most.
pub const MAX_SHARES: usize = 10_000;

/// One source's market snapshots over time, oldest first: the newest `limit` rows of
/// `source`, by default the source that comes first in the newest snapshot.
pub async fn share_history(lake: &Lake, source: Option<&str>, limit: usize) -> Result<Vec<Share>> {
    let source = match source {
        Some(s) => s.to_string(),
        None => {
            let mut newest: Vec<String> = market_snapshot(lake)
                .await?
                .into_iter()
                .map(|s| s.source)
                .collect();
            newest.sort();
            match newest.into_iter().next() {
                Some(s) => s,
                None => return Ok(Vec::new()),
            }
        }
    };
    let Some(table) = table(lake, "gold", "market_snapshot").await? else {
        return Ok(Vec::new());
    };
    let batches = read(
        table,
        Some(col("source").eq(lit(source))),
        &[("snapshot_time", true), ("symbol", false)],
        Some(limit.min(MAX_SHARES)),
    )
    .await?;
    let mut out = shares_of(&batches)?;
    out.reverse();
    Ok(out)
}

/// One firing of `gold.alerts`.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule: String,
    pub symbol: String,
    pub source: String,
    pub condition: String,
    pub value: Box<RawValue>,
    pub price: Box<RawValue>,
    pub event_time: String,
    pub fired_at: String,
    pub delivery_state: String,
    pub sns_state: Option<String>,
    pub webhook_state: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

/// Firings one request returns at most.
pub const MAX_ALERTS: usize = 1_000;

/// The newest `limit` firings (of `rule`, when given), newest first.
pub async fn alerts(lake: &Lake, rule: Option<&str>, limit: usize) -> Result<Vec<Alert>> {
    let Some(table) = table(lake, "gold", "alerts").await? else {
        return Ok(Vec::new());
    };
    let filter = rule.map(|r| col("rule").eq(lit(r.to_string())));
    let order = [("event_time", true), ("rule", false)];
    let batches = read(table, filter, &order, Some(limit.min(MAX_ALERTS))).await?;
    let mut out = Vec::new();
    for batch in &batches {
        let row = Rows::new(batch);
        for i in 0..batch.num_rows() {
            out.push(Alert {
                alert_id: row.text("alert_id", i)?.unwrap_or_default(),
                rule: row.text("rule", i)?.unwrap_or_default(),
                symbol: row.text("symbol", i)?.unwrap_or_default(),
                source: row.text("source", i)?.unwrap_or_default(),
                condition: row.text("condition", i)?.unwrap_or_default(),
                value: row.number("value", i)?.unwrap_or_else(null),
                price: row.number("price", i)?.unwrap_or_else(null),
                event_time: row.time("event_time", i)?.unwrap_or_default(),
                fired_at: row.time("fired_at", i)?.unwrap_or_default(),
                delivery_state: row.text("delivery_state", i)?.unwrap_or_default(),
                sns_state: row.text("sns_state", i)?,
                webhook_state: row.text("webhook_state", i)?,
                attempts: row.long("attempts", i)?.unwrap_or(0),
                last_error: row.text("last_error", i)?,
                delivered_at: row.time("delivered_at", i)?,
            });
        }
    }
    Ok(out)
}

/// Typed access to a batch's columns by name; a column of another type than the table's layout
/// says is an error naming it, not a panic.
struct Rows<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Rows<'a> {
    fn new(batch: &'a RecordBatch) -> Self {
        Self { batch }
    }

    fn column(&self, name: &str) -> Result<Option<&ArrayRef>> {
        Ok(self.batch.column_by_name(name))
    }

    fn mismatch(name: &str, column: &ArrayRef) -> Error {
        Error::Internal(format!(
            "column {name} is {}, not what the console reads",
            column.data_type()
        ))
    }

    fn text(&self, name: &str, i: usize) -> Result<Option<String>> {
        let Some(c) = self.column(name)? else {
            return Ok(None);
        };
        if c.is_null(i) {
            return Ok(None);
        }
        let value = match c.data_type() {
            DataType::Utf8 => c.as_string::<i32>().value(i),
            DataType::LargeUtf8 => c.as_string::<i64>().value(i),
            DataType::Utf8View => c.as_string_view().value(i),
            _ => return Err(Self::mismatch(name, c)),
        };
        Ok(Some(value.to_string()))
    }

    fn number(&self, name: &str, i: usize) -> Result<Option<Box<RawValue>>> {
        let Some(c) = self.column(name)? else {
            return Ok(None);
        };
        if c.is_null(i) {
            return Ok(None);
        }
        let text = match c.data_type() {
            DataType::Decimal128(_, _) => c
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value_as_string(i),
            DataType::Float64 => c
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(i)
                .to_string(),
            _ => return Err(Self::mismatch(name, c)),
        };
        RawValue::from_string(text)
            .map(Some)
            .map_err(|e| Error::Internal(format!("column {name}: not a JSON number: {e}")))
    }

    fn double(&self, name: &str, i: usize) -> Result<Option<f64>> {
        let Some(c) = self.column(name)? else {
            return Ok(None);
        };
        match c.data_type() {
            _ if c.is_null(i) => Ok(None),
            DataType::Float64 => Ok(Some(
                c.as_primitive::<arrow::datatypes::Float64Type>().value(i),
            )),
            _ => Err(Self::mismatch(name, c)),
        }
    }

    fn long(&self, name: &str, i: usize) -> Result<Option<i64>> {
        let Some(c) = self.column(name)? else {
            return Ok(None);
        };
        match c.data_type() {
            _ if c.is_null(i) => Ok(None),
            DataType::Int64 => Ok(Some(
                c.as_primitive::<arrow::datatypes::Int64Type>().value(i),
            )),
            DataType::Int32 => Ok(Some(i64::from(
                c.as_primitive::<arrow::datatypes::Int32Type>().value(i),
            ))),
            _ => Err(Self::mismatch(name, c)),
        }
    }

    fn time(&self, name: &str, i: usize) -> Result<Option<String>> {
        let Some(c) = self.column(name)? else {
            return Ok(None);
        };
        match c.data_type() {
            _ if c.is_null(i) => Ok(None),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let us = c
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .value(i);
                Ok(DateTime::<Utc>::from_timestamp_micros(us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
            }
            _ => Err(Self::mismatch(name, c)),
        }
    }

    fn date(&self, name: &str, i: usize) -> Result<Option<String>> {
        let Some(c) = self.column(name)? else {
            return Ok(None);
        };
        match c.data_type() {
            _ if c.is_null(i) => Ok(None),
            DataType::Date32 => Ok(c
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value_as_date(i)
                .map(|d| d.to_string())),
            _ => Err(Self::mismatch(name, c)),
        }
    }
}

/// One table's state for the Tables page and `GET /v1/tables`.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub table: String,
    pub snapshot_id: Option<i64>,
    pub snapshots: usize,
    pub records: u64,
    pub files: u64,
    pub bytes: u64,
    pub last_updated: Option<String>,
    /// The newest snapshot's operation (`append`, `replace` for a compaction, ...).
    pub last_operation: Option<String>,
    /// Snapshots over time: (commit time, total records, total data files).
    pub history: Vec<SnapshotPoint>,
}

/// A snapshot's totals, from its summary.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotPoint {
    pub snapshot_id: i64,
    pub committed_at: String,
    pub operation: String,
    /// The cryptolake job that committed it; `None` for another writer.
    pub job: Option<String>,
    pub records: u64,
    pub files: u64,
    pub bytes: u64,
}

fn summary_number(summary: &iceberg::spec::Summary, key: &str) -> u64 {
    summary
        .additional_properties
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn point(s: &iceberg::spec::Snapshot) -> SnapshotPoint {
    let summary = s.summary();
    SnapshotPoint {
        snapshot_id: s.snapshot_id(),
        committed_at: DateTime::<Utc>::from_timestamp_millis(s.timestamp_ms())
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        operation: summary.operation.as_str().to_string(),
        job: summary.additional_properties.get("cryptolake.job").cloned(),
        records: summary_number(summary, "total-records"),
        files: summary_number(summary, "total-data-files"),
        bytes: summary_number(summary, "total-files-size"),
    }
}

/// Every table of the lake with its totals and snapshot history, by name.
pub async fn tables(lake: &Lake) -> Result<Vec<TableInfo>> {
    let mut out = Vec::new();
    for ident in lake.list_tables().await? {
        let table = lake.load_table(&ident).await?;
        let m = table.metadata();
        let mut history: Vec<SnapshotPoint> = m.snapshots().map(|s| point(s)).collect();
        history.sort_by(|a, b| a.committed_at.cmp(&b.committed_at));
        let current = m.current_snapshot().map(|s| point(s));
        out.push(TableInfo {
            table: ident.to_string(),
            snapshot_id: m.current_snapshot_id(),
            snapshots: history.len(),
            records: current.as_ref().map_or(0, |p| p.records),
            files: current.as_ref().map_or(0, |p| p.files),
            bytes: current.as_ref().map_or(0, |p| p.bytes),
            last_updated: DateTime::<Utc>::from_timestamp_millis(m.last_updated_ms())
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            last_operation: current.map(|p| p.operation),
            history,
        });
    }
    out.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_queries_parse_as_the_api_documents() {
        let q: CandleQuery = serde_json::from_value(serde_json::json!({
            "symbol": "BTC-USD", "interval": "1h", "from": "2026-11-30T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(q.interval, Interval::Hour);
        assert_eq!(q.interval.table(), "candles_1h");
        assert_eq!(q.from.unwrap().timestamp(), 1_796_032_800);
        let q: CandleQuery = serde_json::from_value(serde_json::json!({"symbol": "X"})).unwrap();
        assert_eq!(q.interval, Interval::Minute);
        assert!(
            serde_json::from_value::<CandleQuery>(
                serde_json::json!({"symbol": "X", "interval": "5m"})
            )
            .is_err()
        );
    }

    #[test]
    fn decimals_leave_with_their_exact_digits() {
        let prices = arrow::array::Decimal128Array::from(vec![Some(4_300_012_345_678), None])
            .with_precision_and_scale(38, 8)
            .unwrap();
        let batch = RecordBatch::try_from_iter([("open", Arc::new(prices) as ArrayRef)]).unwrap();
        let rows = Rows::new(&batch);
        assert_eq!(
            rows.number("open", 0).unwrap().unwrap().get(),
            "43000.12345678"
        );
        assert!(rows.number("open", 1).unwrap().is_none());
        assert!(rows.number("absent", 0).unwrap().is_none());
        let err = rows.text("open", 0).unwrap_err().to_string();
        assert!(err.contains("column open is Decimal128(38, 8)"), "{err}");
        assert_eq!(
            Candle::float(&rows.number("open", 0).unwrap().unwrap()),
            43000.12345678
        );
    }
}
