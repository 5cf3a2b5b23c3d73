//! The table write as a plan node: `TableWriteNode` (logical) and `TableWriteExec`
//! (physical). Each task writes its input partition as Parquet straight to the table's
//! location and returns the files it wrote as rows, with the records its source scan read;
//! nothing is committed. The job's driver collects the rows ([`written_files`]) and commits
//! once, as Spark commits on its driver.

use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchemaRef, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, PlanProperties,
};
use futures::StreamExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::common::{df_err, df_schema, one_input, plan_properties, records_read, writer_id};
use crate::iceberg::writer::{BackgroundWriter, TableWriter, conform};
use crate::iceberg::{TableRef, files_from_json, files_to_json};
use crate::{Error, Result};

/// The rows a write returns: one per data file written.
pub static WRITTEN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        // iceberg's JSON form of the DataFile.
        Field::new("data_file", DataType::Utf8, false),
        // The input partition the file came from (a compaction group, a Kafka partition).
        Field::new("partition", DataType::UInt32, false),
        // host:pid of the process that wrote it.
        Field::new("writer", DataType::Utf8, false),
        // Source records (landing records, Kafka messages) the partition read, when its
        // input is a source scan; on every file row of the partition.
        Field::new("records_read", DataType::UInt64, true),
    ]))
});

/// Writes its input into a table's data files.
#[derive(Debug, Clone)]
pub struct TableWriteNode {
    pub input: LogicalPlan,
    pub table: Arc<TableRef>,
    pub target_file_size: usize,
    /// All rows go through one write task (its input is coalesced): one file per table
    /// partition, for small outputs such as gold's.
    pub single_task: bool,
    schema: DFSchemaRef,
}

impl TableWriteNode {
    pub fn new(input: LogicalPlan, table: Arc<TableRef>, target_file_size: usize) -> Self {
        let schema = df_schema(&WRITTEN_SCHEMA);
        Self {
            input,
            table,
            target_file_size,
            single_task: false,
            schema,
        }
    }

    /// Writes through one task.
    pub fn single_task(mut self, single: bool) -> Self {
        self.single_task = single;
        self
    }

    /// The node as a logical plan.
    pub fn into_plan(self) -> LogicalPlan {
        super::common::into_plan(self)
    }

    fn key(&self) -> (String, Option<&str>, usize, bool) {
        (
            self.table.name(),
            self.table.metadata_location.as_deref(),
            self.target_file_size,
            self.single_task,
        )
    }
}

crate::physical_plan::common::keyed_node_identity!(TableWriteNode);

impl UserDefinedLogicalNodeCore for TableWriteNode {
    crate::physical_plan::common::logical_node_common!("TableWrite");

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TableWrite: table={}", self.table.name())
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = one_input("TableWrite", inputs)?;
        Ok(Self::new(input, self.table.clone(), self.target_file_size)
            .single_task(self.single_task))
    }
}

/// Writes each input partition into data files; emits one row per file when the partition ends.
#[derive(Debug)]
pub struct TableWriteExec {
    input: Arc<dyn ExecutionPlan>,
    table_ref: Arc<TableRef>,
    table: Table,
    target_file_size: usize,
    single_task: bool,
    properties: Arc<PlanProperties>,
}

impl TableWriteExec {
    /// `table` must be `table_ref` opened with this process's FileIO. `single_task`: the input
    /// must be one partition (the planner coalesces it).
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        table_ref: Arc<TableRef>,
        table: Table,
        target_file_size: usize,
        single_task: bool,
    ) -> Self {
        let partitions = input.properties().partitioning.partition_count();
        let properties = plan_properties(WRITTEN_SCHEMA.clone(), partitions, EmissionType::Final);
        Self {
            input,
            table_ref,
            table,
            target_file_size,
            single_task,
            properties,
        }
    }

    pub fn single_task(&self) -> bool {
        self.single_task
    }

    pub fn table_ref(&self) -> &Arc<TableRef> {
        &self.table_ref
    }

    pub fn target_file_size(&self) -> usize {
        self.target_file_size
    }
}

impl DisplayAs for TableWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TableWriteExec: table={}, target_file_size={}{}",
            self.table_ref.name(),
            self.target_file_size,
            if self.single_task {
                ", single_task"
            } else {
                ""
            }
        )
    }
}

impl ExecutionPlan for TableWriteExec {
    crate::physical_plan::common::exec_node_common!("TableWriteExec", input);

    // Each input partition becomes one write task: no repartitioning in between, which on a
    // cluster would add a shuffle stage.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.single_task {
            vec![Distribution::SinglePartition]
        } else {
            vec![Distribution::UnspecifiedDistribution]
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = one_input("TableWriteExec", children)?;
        Ok(Arc::new(Self::new(
            input,
            self.table_ref.clone(),
            self.table.clone(),
            self.target_file_size,
            self.single_task,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let writer = TableWriter::new(&self.table, self.target_file_size).map_err(df_err)?;
        let metadata = self.table_ref.clone();
        let source = self.input.clone();
        let written = futures::stream::once(async move {
            let files = write_partition(writer, input).await.map_err(df_err)?;
            let records = records_read(source.as_ref(), partition);
            written_batch(&metadata, &files, partition as u32, records).map_err(df_err)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            WRITTEN_SCHEMA.clone(),
            written.boxed(),
        )))
    }
}

/// Writes one input partition (Parquet encoding on its own task, beside the input's work).
async fn write_partition(
    writer: TableWriter,
    mut input: SendableRecordBatchStream,
) -> Result<Vec<DataFile>> {
    let writer = BackgroundWriter::spawn(writer, 2);
    let schema = writer.schema().clone();
    while let Some(batch) = input.next().await {
        writer.write(conform(&batch?, &schema)?).await?;
    }
    Ok(writer.close().await?.0)
}

fn written_batch(
    table: &TableRef,
    files: &[DataFile],
    partition: u32,
    records: Option<u64>,
) -> Result<RecordBatch> {
    if files.is_empty() && records.is_some_and(|n| n > 0) {
        // Every source record becomes at least one row, so a partition that read some wrote
        // some; without a file row the count would be lost.
        return Err(Error::Internal(format!(
            "write task {partition} read {records:?} source records but wrote no rows"
        )));
    }
    let json = files_to_json(&table.metadata, files)?;
    let writer = writer_id();
    Ok(RecordBatch::try_new(
        WRITTEN_SCHEMA.clone(),
        vec![
            Arc::new(StringArray::from(json)),
            Arc::new(UInt32Array::from(vec![partition; files.len()])),
            Arc::new(StringArray::from(vec![writer; files.len()])),
            Arc::new(UInt64Array::from(vec![records; files.len()])),
        ],
    )?)
}

/// One data file a write returned.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub file: DataFile,
    /// The input partition it was written from.
    pub partition: u32,
    /// host:pid of the writing process.
    pub writer: String,
    /// Source records its partition read, when the write's input is a source scan.
    pub records_read: Option<u64>,
}

/// Source records the written partitions read, each partition counted once; `None` when the
/// write's input was not a source scan.
pub fn records_read_total(files: &[WrittenFile]) -> Option<u64> {
    let mut per_partition = std::collections::BTreeMap::new();
    for f in files {
        per_partition.insert(f.partition, f.records_read?);
    }
    Some(per_partition.values().sum())
}

/// Decodes a write's result rows.
pub fn written_files(table: &TableRef, batches: &[RecordBatch]) -> Result<Vec<WrittenFile>> {
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("write result lacks {name}")))
        };
        let json = column("data_file")?
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned();
        let parts = column("partition")?
            .as_any()
            .downcast_ref::<UInt32Array>()
            .cloned();
        let writers = column("writer")?
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned();
        let records = column("records_read")?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .cloned();
        let (Some(json), Some(parts), Some(writers), Some(records)) =
            (json, parts, writers, records)
        else {
            return Err(Error::Internal(
                "write result has unexpected column types".into(),
            ));
        };
        let texts: Vec<String> = (0..json.len()).map(|i| json.value(i).to_string()).collect();
        for (i, file) in files_from_json(&table.metadata, &texts)?
            .into_iter()
            .enumerate()
        {
            out.push(WrittenFile {
                file,
                partition: parts.value(i),
                writer: writers.value(i).to_string(),
                records_read: records.is_valid(i).then(|| records.value(i)),
            });
        }
    }
    Ok(out)
}
