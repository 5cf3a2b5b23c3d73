//! silver's plan nodes. `SilverNormalize` turns a bronze scan into wide rows (stage one, one task
//! per bronze file group); `SilverSink` asks for its input hash-partitioned on the shuffle key,
//! so the planner puts a repartition (a shuffle on a cluster) in between, then deduplicates and
//! writes the three silver tables (stage two) and returns the files and counts as rows.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::io::FileIO;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use super::Output;
use super::stage::{NormalizeSpec, SHUFFLE, SilverSink, SinkCounts, wide_schema, widen};
use crate::dist::{TableRef, files_from_json, files_to_json, writer_id};
use crate::{Error, Result};

fn df_err(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn df_schema(schema: &Schema) -> DFSchemaRef {
    Arc::new(DFSchema::try_from(schema.clone()).expect("static schemas are valid"))
}

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

/// Parses and normalizes bronze rows into wide rows.
#[derive(Debug, Clone)]
pub struct SilverNormalizeNode {
    pub input: LogicalPlan,
    pub spec: NormalizeSpec,
    schema: DFSchemaRef,
}

impl SilverNormalizeNode {
    fn key(&self) -> &NormalizeSpec {
        &self.spec
    }

    pub fn new(input: LogicalPlan, spec: NormalizeSpec) -> Self {
        Self {
            input,
            spec,
            schema: df_schema(&wide_schema()),
        }
    }

    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }
}

crate::dist::keyed_node_identity!(SilverNormalizeNode);

impl UserDefinedLogicalNodeCore for SilverNormalizeNode {
    fn name(&self) -> &str {
        "SilverNormalize"
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
        write!(f, "SilverNormalize: source={}", self.spec.source)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Plan("SilverNormalize needs one input".into()))?;
        Ok(Self::new(input, self.spec.clone()))
    }
}

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
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }
}

crate::dist::keyed_node_identity!(SilverSinkNode);

impl UserDefinedLogicalNodeCore for SilverSinkNode {
    fn name(&self) -> &str {
        "SilverSink"
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
        write!(f, "SilverSink")
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Plan("SilverSink needs one input".into()))?;
        Ok(Self::new(input, self.spec.clone()))
    }
}

/// Plans the silver nodes; `None` for other nodes.
pub fn plan_extension(
    node: &dyn datafusion::logical_expr::UserDefinedLogicalNode,
    inputs: &[Arc<dyn ExecutionPlan>],
    file_io: &FileIO,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let input = || {
        inputs
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("{} needs one input", node.name())))
    };
    if let Some(n) = node.as_any().downcast_ref::<SilverNormalizeNode>() {
        return Ok(Some(Arc::new(SilverNormalizeExec::new(
            input()?,
            n.spec.clone(),
        ))));
    }
    if let Some(n) = node.as_any().downcast_ref::<SilverSinkNode>() {
        return Ok(Some(Arc::new(SilverSinkExec::new(
            input()?,
            n.spec.clone(),
            file_io,
        )?)));
    }
    Ok(None)
}

fn properties(schema: SchemaRef, partitions: usize, emission: EmissionType) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions.max(1)),
        emission,
        Boundedness::Bounded,
    ))
}

/// Stage one: each input partition's bronze batches become wide rows.
#[derive(Debug)]
pub struct SilverNormalizeExec {
    input: Arc<dyn ExecutionPlan>,
    spec: NormalizeSpec,
    properties: Arc<PlanProperties>,
}

impl SilverNormalizeExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: NormalizeSpec) -> Self {
        let partitions = input.properties().partitioning.partition_count();
        Self {
            input,
            spec,
            properties: properties(wide_schema(), partitions, EmissionType::Incremental),
        }
    }

    pub fn spec(&self) -> &NormalizeSpec {
        &self.spec
    }
}

impl DisplayAs for SilverNormalizeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SilverNormalizeExec: source={}, format={}, takes={:?}",
            self.spec.source, self.spec.format, self.spec.takes
        )
    }
}

impl ExecutionPlan for SilverNormalizeExec {
    fn name(&self) -> &str {
        "SilverNormalizeExec"
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

    // One task per bronze file group: no round-robin in front of the parse.
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
            .ok_or_else(|| DataFusionError::Plan("SilverNormalizeExec needs one input".into()))?;
        Ok(Arc::new(Self::new(input, self.spec.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let spec = self.spec.clone();
        let rows = self
            .input
            .execute(partition, context)?
            .map(move |batch| {
                let wide = widen(&spec, batch?).map_err(df_err)?;
                Ok::<_, DataFusionError>(futures::stream::iter(wide.into_iter().map(Ok)))
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(wide_schema(), rows)))
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
            properties: properties(SINK_SCHEMA.clone(), partitions, EmissionType::Final),
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
    fn name(&self) -> &str {
        "SilverSinkExec"
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
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Plan("SilverSinkExec needs one input".into()))?;
        let partitions = input.properties().partitioning.partition_count();
        Ok(Arc::new(Self {
            input,
            spec: self.spec.clone(),
            tables: self.tables.clone(),
            properties: properties(SINK_SCHEMA.clone(), partitions, EmissionType::Final),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let spec = self.spec.clone();
        let tables = self.tables.clone();
        let out = futures::stream::once(async move {
            crate::fault::maybe_crash_async("silver", "sink").await;
            let mut sink = SilverSink::new(&tables, spec.target_file_size, spec.batch_size)
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
    counts_col.push(Some(
        serde_json::to_string(counts).map_err(|e| Error::Invalid(format!("silver counts: {e}")))?,
    ));
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
    /// Tasks that reported counts (one per sink partition).
    pub tasks: usize,
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
                .ok_or_else(|| Error::Invalid("silver sink rows have unexpected types".into()))
        };
        let (outputs, json, writers, counts) = (text(0)?, text(1)?, text(3)?, text(4)?);
        for row in 0..batch.num_rows() {
            result.writers.insert(writers.value(row).to_string());
            if counts.is_valid(row) {
                let task: SinkCounts = serde_json::from_str(counts.value(row))
                    .map_err(|e| Error::Invalid(format!("silver counts: {e}")))?;
                result.counts.add(&task);
                result.tasks += 1;
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
