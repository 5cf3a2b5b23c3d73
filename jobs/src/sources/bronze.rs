//! Builds bronze record batches: source fields as text plus `_raw`, `_file`, `_record`,
//! `_ingest_time` and `_extra` (the fields no column names).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;

use super::records::Record;
use crate::Result;

/// Bronze's own columns (and the Kafka ones, which [`super::kafka`] fills), never a source
/// field.
const META: [&str; 10] = [
    "_raw",
    "_file",
    "_record",
    "_ingest_time",
    "_extra",
    "_kafka_partition",
    "_kafka_offset",
    "_kafka_timestamp",
    "_kafka_key",
    "_kafka_headers",
];

/// Accumulates bronze rows for one source.
#[derive(Debug)]
pub struct BronzeBuilder {
    schema: SchemaRef,
    /// One builder per source column of the schema, in its order.
    fields: Vec<StringBuilder>,
    /// Per record field (the decoder's numbering), its builder; `None` for a field the table
    /// has no column for.
    slots: Vec<Option<usize>>,
    raw: StringBuilder,
    file: StringBuilder,
    record: Int64Builder,
    ingest: TimestampMicrosecondBuilder,
    /// `_extra`, when the table has it (one written before it gets it by schema evolution).
    extra: Option<StringBuilder>,
    ingest_us: i64,
    len: usize,
}

impl BronzeBuilder {
    /// `schema` is the bronze table's Arrow schema: the source columns, `_raw`, `_file`,
    /// `_record`, `_ingest_time` and, in tables that have it, `_extra`, found by name (a column
    /// a table gained by schema evolution comes after them). `fields` are the source's fields
    /// in the order a [`Record`] numbers them.
    pub fn new(schema: SchemaRef, fields: &[&str], ingest_us: i64) -> Self {
        let extra = schema.index_of("_extra").ok().map(|_| StringBuilder::new());
        // The schema's source columns, in its order; each record field's builder among them.
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !META.contains(&n.as_str()))
            .collect();
        let slots = fields
            .iter()
            .map(|f| columns.iter().position(|c| c == f))
            .collect();
        Self {
            schema,
            fields: columns.iter().map(|_| StringBuilder::new()).collect(),
            slots,
            raw: StringBuilder::new(),
            file: StringBuilder::new(),
            record: Int64Builder::new(),
            ingest: TimestampMicrosecondBuilder::new(),
            extra,
            ingest_us,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one record read from `file` at position `index`.
    pub fn push(&mut self, file: &str, index: i64, record: &Record<'_>) {
        match record {
            Record::Fields { values, extra } => {
                let mut row: Vec<Option<&str>> = vec![None; self.fields.len()];
                for (col, text) in values {
                    if let Some(Some(i)) = self.slots.get(*col) {
                        row[*i] = Some(text.as_ref());
                    }
                }
                for (builder, value) in self.fields.iter_mut().zip(row) {
                    builder.append_option(value);
                }
                self.raw.append_null();
                if let Some(b) = &mut self.extra {
                    b.append_option(extra.as_deref());
                }
            }
            Record::Raw(text) => {
                self.fields.iter_mut().for_each(|b| b.append_null());
                self.raw.append_value(text);
                if let Some(b) = &mut self.extra {
                    b.append_null();
                }
            }
        }
        self.file.append_value(file);
        self.record.append_value(index);
        self.ingest.append_value(self.ingest_us);
        self.len += 1;
    }

    /// Takes the rows so far as a batch, its columns in the schema's order.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut sources = self.fields.iter_mut();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let builder = match field.name().as_str() {
                "_raw" => &mut self.raw,
                "_file" => &mut self.file,
                "_extra" => match &mut self.extra {
                    Some(b) => b,
                    None => continue,
                },
                "_record" => {
                    columns.push(Arc::new(self.record.finish()));
                    continue;
                }
                "_ingest_time" => {
                    columns.push(Arc::new(self.ingest.finish()));
                    continue;
                }
                name => sources.next().ok_or_else(|| {
                    crate::Error::Internal(format!("bronze column {name} has no builder"))
                })?,
            };
            columns.push(Arc::new(builder.finish()));
        }
        self.len = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
