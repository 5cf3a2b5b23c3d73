//! `gold.alerts` rows: made from firings, read back to be delivered, and written again with
//! their delivery states.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Decimal128Type, Int32Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use futures::TryStreamExt;
use iceberg::spec::{DataFile, PrimitiveLiteral};
use iceberg::table::Table;

use super::rules::{AlertRule, Firing, SCALE};
use crate::iceberg::scan;
use crate::iceberg::writer::{TableWriter, conform};
use crate::{Error, Result};

/// Delivery states.
pub const PENDING: &str = "pending";
pub const FAILED: &str = "failed";
pub const DELIVERED: &str = "delivered";
pub const NO_CHANNEL: &str = "no_channel";

/// One row of `gold.alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// The idempotency key: the same firing gets the same id in every run.
    pub alert_id: String,
    pub rule: String,
    pub symbol: String,
    pub source: String,
    pub condition: String,
    pub value: i128,
    pub price: i128,
    pub event_us: i64,
    pub fired_us: i64,
    pub delivery_state: String,
    pub sns_state: Option<String>,
    pub webhook_state: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_us: Option<i64>,
}

impl AlertRow {
    /// A firing as recorded before any delivery.
    pub fn fired(f: &Firing, rule: &AlertRule, fired_us: i64) -> Self {
        let channel = |configured: bool| configured.then(|| PENDING.to_string());
        let sns_state = channel(rule.spec.sns_topic_arn.is_some());
        let webhook_state = channel(rule.spec.webhook_url.is_some());
        let delivery_state = if sns_state.is_none() && webhook_state.is_none() {
            NO_CHANNEL
        } else {
            PENDING
        };
        Self {
            alert_id: alert_id(&f.rule, &f.symbol, &f.source, f.event_us),
            rule: f.rule.clone(),
            symbol: f.symbol.clone(),
            source: f.source.clone(),
            condition: f.condition.clone(),
            value: f.value,
            price: f.price,
            event_us: f.event_us,
            fired_us,
            delivery_state: delivery_state.into(),
            sns_state,
            webhook_state,
            attempts: 0,
            last_error: None,
            delivered_us: None,
        }
    }

    /// Waiting for a delivery (never sent, or a channel failed).
    pub fn undelivered(&self) -> bool {
        self.delivery_state == PENDING || self.delivery_state == FAILED
    }
}

/// The idempotency key of a firing: 32 hex digits of a hash of the rule, symbol, source and
/// event time, so a run that repeats a firing (after a crash) repeats its key.
pub fn alert_id(rule: &str, symbol: &str, source: &str, event_us: i64) -> String {
    let text = format!("{rule}\u{1f}{symbol}\u{1f}{source}\u{1f}{event_us}");
    format!("{:032x}", twox_hash::XxHash3_128::oneshot(text.as_bytes()))
}

/// Rows as a batch of the table's Arrow schema.
pub fn to_batch(rows: &[AlertRow], schema: &SchemaRef) -> Result<RecordBatch> {
    let text = |f: fn(&AlertRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let maybe = |f: fn(&AlertRow) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let decimal = |f: fn(&AlertRow) -> i128| -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from_iter_values(rows.iter().map(f))
                .with_precision_and_scale(38, SCALE as i8)?,
        ))
    };
    let time = |f: fn(&AlertRow) -> Option<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from_iter(rows.iter().map(f)))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("alert_id", text(|r| &r.alert_id)),
        ("rule", text(|r| &r.rule)),
        ("symbol", text(|r| &r.symbol)),
        ("source", text(|r| &r.source)),
        ("condition", text(|r| &r.condition)),
        ("value", decimal(|r| r.value)?),
        ("price", decimal(|r| r.price)?),
        ("event_time", time(|r| Some(r.event_us))),
        ("fired_at", time(|r| Some(r.fired_us))),
        ("delivery_state", text(|r| &r.delivery_state)),
        ("sns_state", maybe(|r| r.sns_state.as_deref())),
        ("webhook_state", maybe(|r| r.webhook_state.as_deref())),
        (
            "attempts",
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.attempts),
            )),
        ),
        ("last_error", maybe(|r| r.last_error.as_deref())),
        ("delivered_at", time(|r| r.delivered_us)),
    ];
    let batch = RecordBatch::try_from_iter(columns)?;
    conform(&batch, schema)
}

/// A batch read from the table back into rows.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<AlertRow>> {
    let column = |name: &str, ty: &DataType| -> Result<ArrayRef> {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| Error::Internal(format!("gold.alerts has no column {name}")))?;
        Ok(if c.data_type() == ty {
            c.clone()
        } else {
            cast(c, ty)?
        })
    };
    let utf8 = |name: &str| column(name, &DataType::Utf8);
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let dec = DataType::Decimal128(38, SCALE as i8);
    let (id, rule, symbol, source, condition) = (
        utf8("alert_id")?,
        utf8("rule")?,
        utf8("symbol")?,
        utf8("source")?,
        utf8("condition")?,
    );
    let (state, sns, webhook, error) = (
        utf8("delivery_state")?,
        utf8("sns_state")?,
        utf8("webhook_state")?,
        utf8("last_error")?,
    );
    let (value, price) = (column("value", &dec)?, column("price", &dec)?);
    let (event, fired, delivered) = (
        column("event_time", &ts)?,
        column("fired_at", &ts)?,
        column("delivered_at", &ts)?,
    );
    let attempts = column("attempts", &DataType::Int32)?;
    let s = |a: &ArrayRef, i: usize| a.as_string::<i32>().value(i).to_string();
    let o = |a: &ArrayRef, i: usize| a.is_valid(i).then(|| s(a, i));
    let d = |a: &ArrayRef, i: usize| a.as_primitive::<Decimal128Type>().value(i);
    let t = |a: &ArrayRef, i: usize| a.as_primitive::<TimestampMicrosecondType>().value(i);
    Ok((0..batch.num_rows())
        .map(|i| AlertRow {
            alert_id: s(&id, i),
            rule: s(&rule, i),
            symbol: s(&symbol, i),
            source: s(&source, i),
            condition: s(&condition, i),
            value: d(&value, i),
            price: d(&price, i),
            event_us: t(&event, i),
            fired_us: t(&fired, i),
            delivery_state: s(&state, i),
            sns_state: o(&sns, i),
            webhook_state: o(&webhook, i),
            attempts: attempts.as_primitive::<Int32Type>().value(i),
            last_error: o(&error, i),
            delivered_us: delivered.is_valid(i).then(|| t(&delivered, i)),
        })
        .collect())
}

/// The table's live files that may hold undelivered rows: all but those whose
/// `delivery_state` bounds say every row is delivered (or has no channel), so a run reads only
/// the files of recent or failed firings, not the table's history.
pub async fn files_to_deliver(table: &Table) -> Result<Vec<DataFile>> {
    let Some(id) = table
        .metadata()
        .current_schema()
        .field_id_by_name("delivery_state")
    else {
        return Err(Error::Internal(format!(
            "{} has no delivery_state column",
            table.identifier()
        )));
    };
    let text = |d: Option<&iceberg::spec::Datum>| match d.map(|d| d.literal()) {
        Some(PrimitiveLiteral::String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(scan::live_data_files(table)
        .await?
        .into_iter()
        .filter(|f| {
            let (lower, upper) = (text(f.lower_bounds().get(&id)), text(f.upper_bounds().get(&id)));
            !matches!((lower, upper), (Some(l), Some(u)) if l == u && (l == DELIVERED || l == NO_CHANNEL))
        })
        .collect())
}

/// Every row of one data file.
pub async fn read_file(table: &Table, file: &DataFile, batch_size: usize) -> Result<Vec<AlertRow>> {
    let tasks = scan::tasks_for_files(table, std::slice::from_ref(file), None)?;
    let batches: Vec<RecordBatch> = scan::read(table, tasks, batch_size)?.try_collect().await?;
    let mut rows = Vec::new();
    for b in &batches {
        rows.extend(from_batch(b)?);
    }
    Ok(rows)
}

/// Writes rows as new data files of the table (not committed).
pub async fn write(
    table: &Table,
    rows: &[AlertRow],
    target_file_size: usize,
) -> Result<Vec<DataFile>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut writer = TableWriter::new(table, target_file_size)?;
    let batch = to_batch(rows, writer.schema())?;
    writer.write(batch).await?;
    writer.close().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptolake_catalog::layout::gold_alerts;

    #[test]
    fn rows_survive_a_batch_of_the_table_schema() {
        let schema = gold_alerts().schema().unwrap();
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
        let row = AlertRow {
            alert_id: alert_id("up", "BTC-USD", "coinbase_spot", 60_000_000),
            rule: "up".into(),
            symbol: "BTC-USD".into(),
            source: "coinbase_spot".into(),
            condition: "price > 100".into(),
            value: 1_015_000_000_000_000_000,
            price: 1_015_000_000_000_000_000,
            event_us: 60_000_000,
            fired_us: 120_000_000,
            delivery_state: FAILED.into(),
            sns_state: Some(DELIVERED.into()),
            webhook_state: Some(FAILED.into()),
            attempts: 1,
            last_error: Some("webhook: connection refused".into()),
            delivered_us: None,
        };
        let mut other = row.clone();
        other.sns_state = None;
        other.delivered_us = Some(130_000_000);
        let batch = to_batch(&[row.clone(), other.clone()], &arrow).unwrap();
        assert_eq!(from_batch(&batch).unwrap(), vec![row.clone(), other]);
        assert_eq!(row.alert_id.len(), 32);
        assert_ne!(
            row.alert_id,
            alert_id("up", "BTC-USD", "coinbase_spot", 60_000_001)
        );
        assert!(row.undelivered());
    }
}
