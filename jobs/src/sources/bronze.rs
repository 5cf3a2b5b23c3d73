//! Builds bronze record batches: source fields as text plus `_raw`, `_file`, `_record` and
//! `_ingest_time`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;

use super::records::Record;
use crate::Result;

/// Accumulates bronze rows for one source.
#[derive(Debug)]
pub struct BronzeBuilder {
    schema: SchemaRef,
    fields: Vec<StringBuilder>,
    raw: StringBuilder,
    file: StringBuilder,
    record: Int64Builder,
    ingest: TimestampMicrosecondBuilder,
    ingest_us: i64,
    len: usize,
}

impl BronzeBuilder {
    /// `schema` is the bronze table's Arrow schema: `n` source columns, then the 4 metadata ones.
    pub fn new(schema: SchemaRef, ingest_us: i64) -> Self {
        let n = schema.fields().len() - 4;
        Self {
            schema,
            fields: (0..n).map(|_| StringBuilder::new()).collect(),
            raw: StringBuilder::new(),
            file: StringBuilder::new(),
            record: Int64Builder::new(),
            ingest: TimestampMicrosecondBuilder::new(),
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
            Record::Fields(values) => {
                let mut row: Vec<Option<&str>> = vec![None; self.fields.len()];
                for (col, text) in values {
                    if let Some(slot) = row.get_mut(*col) {
                        *slot = Some(text.as_ref());
                    }
                }
                for (builder, value) in self.fields.iter_mut().zip(row) {
                    builder.append_option(value);
                }
                self.raw.append_null();
            }
            Record::Raw(text) => {
                self.fields.iter_mut().for_each(|b| b.append_null());
                self.raw.append_value(text);
            }
        }
        self.file.append_value(file);
        self.record.append_value(index);
        self.ingest.append_value(self.ingest_us);
        self.len += 1;
    }

    /// Takes the rows so far as a batch.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = self
            .fields
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        columns.push(Arc::new(self.raw.finish()));
        columns.push(Arc::new(self.file.finish()));
        columns.push(Arc::new(self.record.finish()));
        columns.push(Arc::new(self.ingest.finish()));
        self.len = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
