//! The Iceberg write as a plan node: `IcebergWriteNode` (logical) and `IcebergWriteExec`
//! (physical). Each task writes its input partition as Parquet straight to the table's
//! location and returns the files it wrote as rows; nothing is committed. The job's driver
//! collects the rows and commits once, as Spark commits on its driver.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result as DfResult};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::table_ref::{TableRef, files_from_json, files_to_json};
use crate::write::{BackgroundWriter, TableWriter};
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
    ]))
});

/// Writes its input into a table's data files.
#[derive(Debug, Clone)]
pub struct IcebergWriteNode {
    pub input: LogicalPlan,
    pub table: Arc<TableRef>,
    pub target_file_size: usize,
    schema: DFSchemaRef,
}

impl IcebergWriteNode {
    pub fn new(input: LogicalPlan, table: Arc<TableRef>, target_file_size: usize) -> Self {
        let schema = Arc::new(
            DFSchema::try_from(WRITTEN_SCHEMA.as_ref().clone()).expect("static schema is valid"),
        );
        Self {
            input,
            table,
            target_file_size,
            schema,
        }
    }

    /// The node as a logical plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    fn key(&self) -> (String, Option<&str>, usize) {
        (
            self.table.name(),
            self.table.metadata_location.as_deref(),
            self.target_file_size,
        )
    }
}

impl PartialEq for IcebergWriteNode {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && self.input == other.input
    }
}

impl Eq for IcebergWriteNode {}

impl PartialOrd for IcebergWriteNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.key().partial_cmp(&other.key())
    }
}

impl Hash for IcebergWriteNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
        self.input.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for IcebergWriteNode {
    fn name(&self) -> &str {
        "IcebergWrite"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "IcebergWrite: table={}", self.table.name())
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Plan("IcebergWrite needs one input".into()))?;
        Ok(Self::new(input, self.table.clone(), self.target_file_size))
    }
}

/// Writes each input partition into data files; emits one row per file when the partition ends.
#[derive(Debug)]
pub struct IcebergWriteExec {
    input: Arc<dyn ExecutionPlan>,
    table_ref: Arc<TableRef>,
    table: Table,
    target_file_size: usize,
    properties: Arc<PlanProperties>,
}

impl IcebergWriteExec {
    /// `table` must be `table_ref` opened with this process's FileIO.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        table_ref: Arc<TableRef>,
        table: Table,
        target_file_size: usize,
    ) -> Self {
        let partitions = input.properties().partitioning.partition_count().max(1);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(WRITTEN_SCHEMA.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            table_ref,
            table,
            target_file_size,
            properties,
        }
    }

    pub fn table_ref(&self) -> &Arc<TableRef> {
        &self.table_ref
    }

    pub fn target_file_size(&self) -> usize {
        self.target_file_size
    }
}

impl DisplayAs for IcebergWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "IcebergWriteExec: table={}, target_file_size={}",
            self.table_ref.name(),
            self.target_file_size
        )
    }
}

impl ExecutionPlan for IcebergWriteExec {
    fn name(&self) -> &str {
        "IcebergWriteExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    // Each input partition becomes one write task: no repartitioning in between, which on a
    // cluster would add a shuffle stage.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Plan("IcebergWriteExec needs one input".into()))?;
        Ok(Arc::new(Self::new(
            input,
            self.table_ref.clone(),
            self.table.clone(),
            self.target_file_size,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let writer = TableWriter::new(&self.table, self.target_file_size)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let metadata = self.table_ref.clone();
        let written = futures::stream::once(async move {
            let files = write_partition(writer, input)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            written_batch(&metadata, &files, partition as u32)
                .map_err(|e| DataFusionError::External(Box::new(e)))
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

/// A batch under the table's exact Arrow schema (types, field ids, nullability), by name.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                Error::Invalid(format!("the input lacks column {}", field.name()))
            })?;
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

fn written_batch(table: &TableRef, files: &[DataFile], partition: u32) -> Result<RecordBatch> {
    let json = files_to_json(&table.metadata, files)?;
    let writer = writer_id();
    Ok(RecordBatch::try_new(
        WRITTEN_SCHEMA.clone(),
        vec![
            Arc::new(StringArray::from(json)),
            Arc::new(UInt32Array::from(vec![partition; files.len()])),
            Arc::new(StringArray::from(vec![writer; files.len()])),
        ],
    )?)
}

/// `host:pid` of this process: who wrote a file.
pub fn writer_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// One data file a write returned.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub file: DataFile,
    /// The input partition it was written from.
    pub partition: u32,
    /// host:pid of the writing process.
    pub writer: String,
}

/// Decodes a write's result rows.
pub fn written_files(table: &TableRef, batches: &[RecordBatch]) -> Result<Vec<WrittenFile>> {
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Invalid(format!("write result lacks {name}")))
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
        let (Some(json), Some(parts), Some(writers)) = (json, parts, writers) else {
            return Err(Error::Invalid(
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
            });
        }
    }
    Ok(out)
}

/// Plans cryptolake's logical nodes; opens tables with the FileIO of the process it runs in.
#[derive(Debug, Clone)]
pub struct CryptolakePlanner {
    file_io: iceberg::io::FileIO,
}

impl CryptolakePlanner {
    pub fn new(file_io: iceberg::io::FileIO) -> Self {
        Self { file_io }
    }
}

#[async_trait]
impl ExtensionPlanner for CryptolakePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _state: &SessionState,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(write) = node.as_any().downcast_ref::<IcebergWriteNode>() else {
            return crate::silver::nodes::plan_extension(node, physical_inputs, &self.file_io);
        };
        let input = physical_inputs
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan("IcebergWrite needs one input".into()))?;
        let table = write
            .table
            .open(self.file_io.clone())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(Arc::new(IcebergWriteExec::new(
            input,
            write.table.clone(),
            table,
            write.target_file_size,
        ))))
    }
}

#[async_trait]
impl QueryPlanner for CryptolakePlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(self.clone())])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
