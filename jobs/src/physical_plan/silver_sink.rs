//! silver's stage two: `SilverSinkNode` (logical) and `SilverSinkExec` ask for their input
//! hash-partitioned on the shuffle key, so the planner puts a repartition (a shuffle on a
//! cluster) in front; each task deduplicates and writes the three silver tables and returns
//! the files and its counts as rows, which [`sink_result`] adds up on the driver.

use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchemaRef, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, PlanProperties,
};
use futures::StreamExt;
use iceberg::io::FileIO;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use super::common::{df_err, df_schema, one_input, plan_properties, writer_id};
use crate::iceberg::{TableRef, files_from_json, files_to_json};
use crate::transform::silver::Output;
use crate::transform::silver::stage::{SHUFFLE, SilverSink, SinkCounts, wide_schema};
use crate::{Error, Result};

/// The rows a silver sink returns: a file it wrote, or (with `counts`) its task's counts.
pub static SINK_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("output", DataType::Utf8, true),
        Field::new("data_file", DataType::Utf8, true),
        Field::new("partition", DataType::UInt32, false),
        Field::new("writer", DataType::Utf8, false),
        Field::new("counts", DataType::Utf8, true),
    ]))
});

/// What the sink writes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkSpec {
    /// quotes, trades and quarantine, as of the plan.
    pub tables: Vec<TableRef>,
    pub target_file_size: usize,
    pub batch_size: usize,
}

impl SinkSpec {
    fn key(&self) -> (Vec<(String, Option<&str>)>, usize, usize) {
        let tables = self
            .tables
            .iter()
            .map(|t| (t.name(), t.metadata_location.as_deref()))
            .collect();
        (tables, self.target_file_size, self.batch_size)
    }

    fn open(&self, file_io: &FileIO) -> Result<Vec<Table>> {
        self.tables
            .iter()
            .map(|t| t.open(file_io.clone()))
            .collect()
    }
}

/// Deduplicates wide rows and writes the silver tables.
#[derive(Debug, Clone)]
pub struct SilverSinkNode {
    pub input: LogicalPlan,
    pub spec: Arc<SinkSpec>,
    schema: DFSchemaRef,
}

impl SilverSinkNode {
    fn key(&self) -> (Vec<(String, Option<&str>)>, usize, usize) {
        self.spec.key()
    }

    pub fn new(input: LogicalPlan, spec: Arc<SinkSpec>) -> Self {
        Self {
            input,
            spec,
            schema: df_schema(&SINK_SCHEMA),
        }
    }

    pub fn into_plan(self) -> LogicalPlan {
        super::common::into_plan(self)
    }
}

crate::physical_plan::common::keyed_node_identity!(SilverSinkNode);

impl UserDefinedLogicalNodeCore for SilverSinkNode {
    crate::physical_plan::common::logical_node_common!("SilverSink");

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SilverSink")
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = one_input("SilverSink", inputs)?;
        Ok(Self::new(input, self.spec.clone()))
    }
}

/// Stage two: deduplicates and writes one hash partition of wide rows.
#[derive(Debug)]
pub struct SilverSinkExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<SinkSpec>,
    tables: Vec<Table>,
    properties: Arc<PlanProperties>,
}

impl SilverSinkExec {
    /// Opens the spec's tables with `file_io` (this process's storage access).
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        spec: Arc<SinkSpec>,
        file_io: &FileIO,
    ) -> DfResult<Self> {
        let tables = spec.open(file_io).map_err(df_err)?;
        let partitions = input.properties().partitioning.partition_count();
        Ok(Self {
            input,
            spec,
            tables,
            properties: plan_properties(SINK_SCHEMA.clone(), partitions, EmissionType::Final),
        })
    }

    pub fn spec(&self) -> &Arc<SinkSpec> {
        &self.spec
    }
}

impl DisplayAs for SilverSinkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<String> = self.spec.tables.iter().map(TableRef::name).collect();
        write!(f, "SilverSinkExec: tables={}", names.join(","))
    }
}

impl ExecutionPlan for SilverSinkExec {
    crate::physical_plan::common::exec_node_common!("SilverSinkExec", input);

    // Every row of a `(symbol, day)` partition in one task: deduplication is exact per task.
    fn required_input_distribution(&self) -> Vec<Distribution> {
        let shuffle = wide_schema()
            .index_of(SHUFFLE)
            .expect("the wide schema has it");
        vec![Distribution::HashPartitioned(vec![Arc::new(Column::new(
            SHUFFLE, shuffle,
        ))])]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = one_input("SilverSinkExec", children)?;
        let partitions = input.properties().partitioning.partition_count();
        Ok(Arc::new(Self {
            input,
            spec: self.spec.clone(),
            tables: self.tables.clone(),
            properties: plan_properties(SINK_SCHEMA.clone(), partitions, EmissionType::Final),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let disk = context.runtime_env().disk_manager.clone();
        let mut input = self.input.execute(partition, context)?;
        let spec = self.spec.clone();
        let tables = self.tables.clone();
        let out = futures::stream::once(async move {
            crate::job::fault::maybe_crash_async("silver", "sink")
                .await
                .map_err(df_err)?;
            let mut sink = SilverSink::new(&tables, spec.target_file_size, spec.batch_size, disk)
                .await
                .map_err(df_err)?;
            while let Some(batch) = input.next().await {
                sink.take(&batch?).await.map_err(df_err)?;
            }
            let (files, counts) = sink.close().await.map_err(df_err)?;
            sink_batch(&spec, &files, &counts, partition as u32).map_err(df_err)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            SINK_SCHEMA.clone(),
            out.boxed(),
        )))
    }
}

/// One row per file written, then one row with the task's counts.
fn sink_batch(
    spec: &SinkSpec,
    files: &[(Output, Vec<iceberg::spec::DataFile>)],
    counts: &SinkCounts,
    partition: u32,
) -> Result<RecordBatch> {
    let mut outputs: Vec<Option<&str>> = Vec::new();
    let mut json: Vec<Option<String>> = Vec::new();
    for (out, written) in files {
        let table = &spec.tables[out.index()];
        for file in files_to_json(&table.metadata, written)? {
            outputs.push(Some(out.name()));
            json.push(Some(file));
        }
    }
    outputs.push(None);
    json.push(None);
    let n = json.len();
    let mut counts_col: Vec<Option<String>> = vec![None; n - 1];
    counts_col
        .push(Some(serde_json::to_string(counts).map_err(|e| {
            Error::Internal(format!("silver counts: {e}"))
        })?));
    Ok(RecordBatch::try_new(
        SINK_SCHEMA.clone(),
        vec![
            Arc::new(StringArray::from(outputs)),
            Arc::new(StringArray::from(json)),
            Arc::new(UInt32Array::from(vec![partition; n])),
            Arc::new(StringArray::from(vec![writer_id(); n])),
            Arc::new(StringArray::from(counts_col)),
        ],
    )?)
}

/// What a silver plan returned, added up over its tasks.
#[derive(Debug, Default)]
pub struct SinkResult {
    pub files: [Vec<iceberg::spec::DataFile>; 3],
    pub counts: SinkCounts,
    pub writers: std::collections::BTreeSet<String>,
}

/// Decodes the rows of a silver plan.
pub fn sink_result(spec: &SinkSpec, batches: &[RecordBatch]) -> Result<SinkResult> {
    let mut result = SinkResult::default();
    for batch in batches {
        let text = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| Error::Internal("silver sink rows have unexpected types".into()))
        };
        let (outputs, json, writers, counts) = (text(0)?, text(1)?, text(3)?, text(4)?);
        for row in 0..batch.num_rows() {
            result.writers.insert(writers.value(row).to_string());
            if counts.is_valid(row) {
                let task: SinkCounts = serde_json::from_str(counts.value(row))
                    .map_err(|e| Error::Internal(format!("silver counts: {e}")))?;
                result.counts.add(&task);
                continue;
            }
            let out = Output::from_name(outputs.value(row))?;
            let table = &spec.tables[out.index()];
            let file = files_from_json(&table.metadata, &[json.value(row).to_string()])?;
            result.files[out.index()].extend(file);
        }
    }
    Ok(result)
}
