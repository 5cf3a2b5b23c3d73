//! Arrow builders for the silver tables' rows.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Datelike, Timelike};
use cryptolake_catalog::layout::{DECIMAL_PRECISION, DECIMAL_SCALE};

use super::normalize::{Quote, Trade};
use crate::Result;

const DAY_US: i64 = 86_400_000_000;

fn decimal_builder() -> Decimal128Builder {
    Decimal128Builder::new()
        .with_precision_and_scale(DECIMAL_PRECISION as u8, DECIMAL_SCALE as i8)
        .expect("valid decimal type")
}

/// Rows accumulated for one silver table.
pub trait RowBatch {
    fn len(&self) -> usize;
    /// Takes the rows so far as a record batch.
    fn finish(&mut self) -> Result<RecordBatch>;
}

/// The `date, year, month, day, hour` columns of seed 003.
#[derive(Debug, Default)]
struct DateParts {
    date: Date32Builder,
    year: Int32Builder,
    month: Int32Builder,
    day: Int32Builder,
    hour: Int32Builder,
}

impl DateParts {
    fn push(&mut self, event_us: i64) {
        self.date.append_value(event_us.div_euclid(DAY_US) as i32);
        let t = DateTime::from_timestamp_micros(event_us).unwrap_or_default();
        self.year.append_value(t.year());
        self.month.append_value(t.month() as i32);
        self.day.append_value(t.day() as i32);
        self.hour.append_value(t.hour() as i32);
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(self.date.finish()));
        out.push(Arc::new(self.year.finish()));
        out.push(Arc::new(self.month.finish()));
        out.push(Arc::new(self.day.finish()));
        out.push(Arc::new(self.hour.finish()));
    }
}

/// Rows of `silver.quotes`.
#[derive(Debug)]
pub struct QuoteBatch {
    schema: SchemaRef,
    source: StringBuilder,
    symbol: StringBuilder,
    decimals: [Decimal128Builder; 7],
    event: TimestampMicrosecondBuilder,
    ingest: TimestampMicrosecondBuilder,
    dates: DateParts,
    file: StringBuilder,
    record: Int64Builder,
    len: usize,
}

impl QuoteBatch {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            source: StringBuilder::new(),
            symbol: StringBuilder::new(),
            decimals: std::array::from_fn(|_| decimal_builder()),
            event: TimestampMicrosecondBuilder::new(),
            ingest: TimestampMicrosecondBuilder::new(),
            dates: DateParts::default(),
            file: StringBuilder::new(),
            record: Int64Builder::new(),
            len: 0,
        }
    }

    pub fn push(&mut self, source: &str, q: &Quote, ingest_us: i64, at: (&str, i64)) {
        let (file, record) = at;
        self.source.append_value(source);
        self.symbol.append_value(&q.symbol);
        let values = [
            Some(q.price),
            q.bid,
            q.ask,
            q.bid_size,
            q.ask_size,
            q.volume_24h,
            q.market_cap,
        ];
        for (b, v) in self.decimals.iter_mut().zip(values) {
            b.append_option(v);
        }
        self.event.append_value(q.event_us);
        self.ingest.append_value(ingest_us);
        self.dates.push(q.event_us);
        self.file.append_value(file);
        self.record.append_value(record);
        self.len += 1;
    }
}

impl RowBatch for QuoteBatch {
    fn len(&self) -> usize {
        self.len
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.symbol.finish()),
        ];
        cols.extend(
            self.decimals
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        cols.push(Arc::new(self.event.finish()));
        cols.push(Arc::new(self.ingest.finish()));
        self.dates.finish(&mut cols);
        cols.push(Arc::new(self.file.finish()));
        cols.push(Arc::new(self.record.finish()));
        self.len = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// Rows of `silver.trades`.
#[derive(Debug)]
pub struct TradeBatch {
    schema: SchemaRef,
    strings: [StringBuilder; 5],
    quantity: Decimal128Builder,
    price: Decimal128Builder,
    event: TimestampMicrosecondBuilder,
    ingest: TimestampMicrosecondBuilder,
    dates: DateParts,
    file: StringBuilder,
    record: Int64Builder,
    len: usize,
}

impl TradeBatch {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            strings: std::array::from_fn(|_| StringBuilder::new()),
            quantity: decimal_builder(),
            price: decimal_builder(),
            event: TimestampMicrosecondBuilder::new(),
            ingest: TimestampMicrosecondBuilder::new(),
            dates: DateParts::default(),
            file: StringBuilder::new(),
            record: Int64Builder::new(),
            len: 0,
        }
    }

    pub fn push(&mut self, source: &str, t: &Trade, ingest_us: i64, at: (&str, i64)) {
        let (file, record) = at;
        let values = [source, &t.trade_id, &t.user_id, &t.symbol, t.side];
        for (b, v) in self.strings.iter_mut().zip(values) {
            b.append_value(v);
        }
        self.quantity.append_value(t.quantity);
        self.price.append_value(t.price);
        self.event.append_value(t.event_us);
        self.ingest.append_value(ingest_us);
        self.dates.push(t.event_us);
        self.file.append_value(file);
        self.record.append_value(record);
        self.len += 1;
    }
}

impl RowBatch for TradeBatch {
    fn len(&self) -> usize {
        self.len
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        cols.push(Arc::new(self.quantity.finish()));
        cols.push(Arc::new(self.price.finish()));
        cols.push(Arc::new(self.event.finish()));
        cols.push(Arc::new(self.ingest.finish()));
        self.dates.finish(&mut cols);
        cols.push(Arc::new(self.file.finish()));
        cols.push(Arc::new(self.record.finish()));
        self.len = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// Rows of `silver.quarantine`.
#[derive(Debug)]
pub struct QuarantineBatch {
    schema: SchemaRef,
    source: StringBuilder,
    file: StringBuilder,
    record: Int64Builder,
    raw: StringBuilder,
    reason: StringBuilder,
    ingest: TimestampMicrosecondBuilder,
    at: TimestampMicrosecondBuilder,
    now_us: i64,
    len: usize,
}

/// One quarantined record.
#[derive(Debug)]
pub struct BadRecord<'a> {
    pub source: &'a str,
    pub file: &'a str,
    pub record: i64,
    pub raw: &'a str,
    pub reason: &'a str,
    pub ingest_us: i64,
}

impl QuarantineBatch {
    pub fn new(schema: SchemaRef, now_us: i64) -> Self {
        Self {
            schema,
            source: StringBuilder::new(),
            file: StringBuilder::new(),
            record: Int64Builder::new(),
            raw: StringBuilder::new(),
            reason: StringBuilder::new(),
            ingest: TimestampMicrosecondBuilder::new(),
            at: TimestampMicrosecondBuilder::new(),
            now_us,
            len: 0,
        }
    }

    pub fn push(&mut self, bad: &BadRecord<'_>) {
        self.source.append_value(bad.source);
        self.file.append_value(bad.file);
        self.record.append_value(bad.record);
        self.raw.append_value(bad.raw);
        self.reason.append_value(bad.reason);
        self.ingest.append_value(bad.ingest_us);
        self.at.append_value(self.now_us);
        self.len += 1;
    }
}

impl RowBatch for QuarantineBatch {
    fn len(&self) -> usize {
        self.len
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.file.finish()),
            Arc::new(self.record.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.ingest.finish()),
            Arc::new(self.at.finish()),
        ];
        self.len = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}
