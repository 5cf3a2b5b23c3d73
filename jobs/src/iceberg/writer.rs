//! The Iceberg write path: record batches in, Parquet data files out (not yet committed).
//!
//! Rows are split by the table's partition spec and fanned out to one rolling writer per
//! partition, at most [`MAX_OPEN_PARTITIONS`] open at once (the least recently used is closed
//! first), and past [`SOFT_OPEN_PARTITIONS`] a file not written for [`IDLE_BATCHES`] batches is
//! closed, so memory does not grow with the partitions a run touches; files roll at the target
//! size and are compressed with zstd, which iceberg's Parquet writer does not take from the
//! table property. File names start with a fresh UUID
//! per writer, so a re-run after a crash never collides with the orphans of the crashed run.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use arrow::datatypes::SchemaRef;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::Struct;
use iceberg::spec::{DataFile, DataFileFormat, PartitionSpec};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::split::PartitionSplitter;
use crate::{Error, Result};

type Inner =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;
type InnerWriter = <Inner as IcebergWriterBuilder>::R;

/// Partition files a writer keeps open at once. Each buffers a row group. Input that is ordered
/// by time touches a day's symbols at a time; 32 is above the symbol count of every pipeline
/// cryptolake replaces (the generator's default is 20), so a file closes early only when a run
/// spans many days of many symbols, and then memory stays bounded instead.
pub const MAX_OPEN_PARTITIONS: usize = 32;

/// Open partition files above which idle ones are closed. An open file costs far more than its
/// rows: every column keeps a zstd context and its pages until the file's row group fills,
/// which a day's partition of one symbol (86,400 quotes) never does. Time-ordered input leaves
/// each day's files idle once the day has passed; closing them took silver's memory at 5 M
/// records (three days, 60 files) down by the files it held.
pub const SOFT_OPEN_PARTITIONS: usize = 8;

/// Batches a partition's file may go unwritten before it counts as idle. A partition written
/// more rarely than this (a sparse symbol among many) gets a file per visit: compaction joins
/// them.
pub const IDLE_BATCHES: u64 = 16;

/// One open writer per partition, the least recently used closed when too many are open.
struct Fanout {
    builder: Inner,
    /// Per partition its writer and the batch (`clock`) that last wrote it.
    open: std::collections::HashMap<Struct, (InnerWriter, u64)>,
    /// Ticks once a batch.
    clock: u64,
    max_open: usize,
    done: Vec<DataFile>,
}

impl Fanout {
    /// Starts a batch: first closes, past the soft limit, the files idle for too long.
    async fn tick(&mut self) -> Result<()> {
        self.clock += 1;
        if self.open.len() <= SOFT_OPEN_PARTITIONS {
            return Ok(());
        }
        let idle: Vec<Struct> = self
            .open
            .iter()
            .filter(|(_, (_, used))| used + IDLE_BATCHES < self.clock)
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some((mut writer, _)) = self.open.remove(&key) {
                self.done.extend(writer.close().await?);
            }
        }
        Ok(())
    }

    async fn write(&mut self, key: iceberg::spec::PartitionKey, batch: RecordBatch) -> Result<()> {
        if !self.open.contains_key(key.data()) {
            if self.open.len() >= self.max_open {
                let oldest = self
                    .open
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone());
                if let Some((mut writer, _)) = oldest.and_then(|k| self.open.remove(&k)) {
                    self.done.extend(writer.close().await?);
                }
            }
            // An unpartitioned table's files have no partition (iceberg's `None`).
            let partition = (!key.spec().is_unpartitioned()).then(|| key.clone());
            let writer = self.builder.build(partition).await?;
            self.open.insert(key.data().clone(), (writer, self.clock));
        }
        if let Some((writer, used)) = self.open.get_mut(key.data()) {
            *used = self.clock;
            writer.write(batch).await?;
        }
        Ok(())
    }

    async fn close(mut self) -> Result<Vec<DataFile>> {
        for (_, (mut writer, _)) in self.open.drain() {
            self.done.extend(writer.close().await?);
        }
        Ok(self.done)
    }
}

/// The Arrow schema of a table's current schema (with Parquet field ids).
pub fn arrow_schema(table: &Table) -> Result<ArrowSchemaRef> {
    Ok(Arc::new(schema_to_arrow_schema(
        table.metadata().current_schema(),
    )?))
}

/// Writes batches into a table's data files.
pub struct TableWriter {
    splitter: PartitionSplitter,
    writer: Fanout,
    schema: ArrowSchemaRef,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("rows", &self.rows)
            .finish()
    }
}

/// zstd level 1 on 32 KiB pages, 128 Ki-row row groups, and dictionaries only for text columns
/// and for the few-valued ones below.
///
/// Every column of every open partition file keeps its own zstd contexts: a compression context
/// sized by the level and the page (at level 3 on 128 KiB pages about 0.9 MB, at level 1 on
/// 32 KiB pages about 0.2 MB) and a decompression context of about 0.16 MB that a writer never
/// uses (parquet's codec makes both). Silver keeps tens of files open (a symbol's day never
/// fills a row group), so contexts were most of its memory: about 160 MB of a 5 M-record run,
/// measured with heaptrack. Columns of few values (32-bit integers and dates: silver's date
/// parts) and a table's identity-partition columns (one value per file) are therefore
/// dictionary-encoded and left uncompressed: their pages are a dictionary of a few values and
/// run lengths, which zstd would not shrink, and they cost no context. A dictionary per column
/// would cost memory for nothing on prices and times, which are nearly all distinct.
fn writer_properties(schema: &iceberg::spec::Schema, spec: &PartitionSpec) -> WriterProperties {
    use iceberg::spec::{PrimitiveType, Transform, Type};
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_dictionary_page_size_limit(256 * 1024)
        .set_data_page_size_limit(32 * 1024);
    let constant: Vec<i32> = spec
        .fields()
        .iter()
        .filter(|f| f.transform == Transform::Identity)
        .map(|f| f.source_id)
        .collect();
    for field in schema.as_struct().fields() {
        let path = ColumnPath::from(field.name.as_str());
        let few = constant.contains(&field.id)
            || matches!(
                field.field_type.as_ref(),
                Type::Primitive(PrimitiveType::Int | PrimitiveType::Date)
            );
        let text = matches!(
            field.field_type.as_ref(),
            Type::Primitive(PrimitiveType::String)
        );
        builder = builder.set_column_dictionary_enabled(path.clone(), text || few);
        if few {
            builder = builder.set_column_compression(path, Compression::UNCOMPRESSED);
        }
    }
    builder.build()
}

impl TableWriter {
    pub fn new(table: &Table, target_file_size: usize) -> Result<Self> {
        let metadata = table.metadata();
        let props = writer_properties(metadata.current_schema(), metadata.default_partition_spec());
        let parquet = ParquetWriterBuilder::new(props, metadata.current_schema().clone());
        let names = DefaultFileNameGenerator::new(
            uuid::Uuid::now_v7().to_string(),
            None,
            DataFileFormat::Parquet,
        );
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            target_file_size,
            table.file_io().clone(),
            DefaultLocationGenerator::new(metadata)?,
            names,
        );
        let splitter = PartitionSplitter::new(metadata)?;
        Ok(Self {
            splitter,
            writer: Fanout {
                builder: DataFileWriterBuilder::new(rolling),
                open: Default::default(),
                clock: 0,
                max_open: MAX_OPEN_PARTITIONS,
                done: Vec::new(),
            },
            schema: arrow_schema(table)?,
            rows: 0,
        })
    }

    /// The schema batches must have.
    pub fn schema(&self) -> &ArrowSchemaRef {
        &self.schema
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Partition files open now.
    pub fn open_partitions(&self) -> usize {
        self.writer.open.len()
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.writer.tick().await?;
        for (key, part) in self.splitter.split(&batch)? {
            self.writer.write(key, part).await?;
        }
        Ok(())
    }

    /// Closes every open file and returns the data files written.
    pub async fn close(self) -> Result<Vec<DataFile>> {
        self.writer.close().await
    }
}

/// A [`TableWriter`] on its own task: `write` hands batches over a bounded channel (so memory
/// stays bounded and a slow encoder slows the producer), and Parquet encoding runs beside the
/// decoding and transforming that feed it.
#[derive(Debug)]
pub struct BackgroundWriter {
    tx: tokio::sync::mpsc::Sender<RecordBatch>,
    task: tokio::task::JoinHandle<Result<(Vec<DataFile>, u64)>>,
    schema: ArrowSchemaRef,
}

impl BackgroundWriter {
    /// Moves `writer` to a task that accepts at most `capacity` pending batches.
    pub fn spawn(mut writer: TableWriter, capacity: usize) -> Self {
        let schema = writer.schema().clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(capacity.max(1));
        let task = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                writer.write(batch).await?;
            }
            let rows = writer.rows();
            Ok((writer.close().await?, rows))
        });
        Self { tx, task, schema }
    }

    /// The schema batches must have.
    pub fn schema(&self) -> &ArrowSchemaRef {
        &self.schema
    }

    /// Queues a batch; waits while the queue is full.
    pub async fn write(&self, batch: RecordBatch) -> Result<()> {
        if self.tx.send(batch).await.is_err() {
            // The task ended early: `close` reports why.
            return Err(crate::Error::Internal("the writer task stopped".into()));
        }
        Ok(())
    }

    /// Waits for every queued batch to be written; returns the data files and the row count.
    pub async fn close(self) -> Result<(Vec<DataFile>, u64)> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| crate::Error::Internal(format!("the writer task failed: {e}")))?
    }
}

/// A batch under the table's exact Arrow schema (types, field ids, nullability), by name. An
/// optional column the input lacks (one another writer added, such as Athena's `ALTER TABLE ADD
/// COLUMNS`) is written null; a required one is an error.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let Some(column) = batch.column_by_name(field.name()) else {
                if field.is_nullable() {
                    return Ok(arrow::array::new_null_array(
                        field.data_type(),
                        batch.num_rows(),
                    ));
                }
                return Err(Error::Internal(format!(
                    "the input lacks column {}",
                    field.name()
                )));
            };
            Ok(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast(column, field.data_type())?
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}
