//! Bronze sources as plan nodes. [`SourceNode`] is a logical leaf that plans into
//! [`LandingScanExec`] (one task per group of whole landing files) or
//! [`crate::sources::kafka::KafkaScanExec`] (one task per Kafka partition range). Both travel
//! to a cluster as JSON specs without secrets; each task reports how many source records it
//! read, so the write above it can return the count with its files.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use cryptolake_catalog::layout;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::bronze::BronzeBuilder;
use super::kafka::{KafkaScanExec, TopicScan};
use super::landing::{self, LandingFile};
use super::records::{Record, RecordDecoder};
use crate::{Error, Result};

/// Landing files of one source to read, in groups: group `i` is plan partition `i`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandingScan {
    pub source: String,
    pub groups: Vec<Vec<LandingFile>>,
    /// The bronze table's Arrow schema.
    #[serde(with = "crate::dist::schema_serde")]
    pub schema: SchemaRef,
    pub ingest_us: i64,
    pub batch_size: usize,
}

/// What a source node reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceSpec {
    Landing(LandingScan),
    Kafka(Box<TopicScan>),
}

impl SourceSpec {
    fn schema(&self) -> &SchemaRef {
        match self {
            SourceSpec::Landing(s) => &s.schema,
            SourceSpec::Kafka(s) => &s.schema,
        }
    }

    /// The physical scan.
    pub fn exec(&self) -> Arc<dyn ExecutionPlan> {
        match self {
            SourceSpec::Landing(s) => Arc::new(LandingScanExec::new(s.clone())),
            SourceSpec::Kafka(s) => Arc::new(KafkaScanExec::new(s.as_ref().clone())),
        }
    }
}

/// A bronze source as a logical leaf.
#[derive(Debug, Clone)]
pub struct SourceNode {
    pub spec: SourceSpec,
    /// The spec's JSON: what equality, order and hashing compare.
    key: String,
    schema: DFSchemaRef,
}

impl SourceNode {
    pub fn new(spec: SourceSpec) -> Result<Self> {
        let key = serde_json::to_string(&spec)
            .map_err(|e| Error::Invalid(format!("source spec: {e}")))?;
        let schema = Arc::new(DFSchema::try_from(spec.schema().as_ref().clone())?);
        Ok(Self { spec, key, schema })
    }

    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }
}

impl PartialEq for SourceNode {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SourceNode {}

impl PartialOrd for SourceNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.key.partial_cmp(&other.key)
    }
}

impl Hash for SourceNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for SourceNode {
    fn name(&self) -> &str {
        "Source"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.spec {
            SourceSpec::Landing(s) => write!(f, "Source: landing={}", s.source),
            SourceSpec::Kafka(s) => write!(f, "Source: topic={}", s.topic),
        }
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(self.clone())
    }
}

/// Plans a [`SourceNode`]; `None` for other nodes.
pub fn plan_extension(node: &dyn UserDefinedLogicalNode) -> Option<Arc<dyn ExecutionPlan>> {
    let source = node.as_any().downcast_ref::<SourceNode>()?;
    Some(source.spec.exec())
}

/// Source records a scan's plan partition read, for scans that count them. Looks through the
/// `CooperativeExec` DataFusion puts over leaves (it keeps their partitions).
pub fn records_read(plan: &dyn ExecutionPlan, partition: usize) -> Option<u64> {
    let any = plan.as_any();
    if let Some(coop) = any.downcast_ref::<CooperativeExec>() {
        return records_read(coop.input().as_ref(), partition);
    }
    if let Some(kafka) = any.downcast_ref::<KafkaScanExec>() {
        return Some(kafka.messages_read_in(partition));
    }
    any.downcast_ref::<LandingScanExec>()
        .map(|landing| landing.records_read_in(partition))
}

/// Reads groups of landing files into bronze rows, one group per plan partition, a file at a
/// time (decoded on the blocking pool, the next one while the previous one's batches go up).
#[derive(Debug)]
pub struct LandingScanExec {
    scan: Arc<LandingScan>,
    records: Arc<Vec<AtomicU64>>,
    properties: Arc<PlanProperties>,
}

impl LandingScanExec {
    pub fn new(scan: LandingScan) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(scan.schema.clone()),
            Partitioning::UnknownPartitioning(scan.groups.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            records: Arc::new((0..scan.groups.len()).map(|_| AtomicU64::new(0)).collect()),
            scan: Arc::new(scan),
            properties,
        }
    }

    pub fn scan(&self) -> &LandingScan {
        &self.scan
    }

    /// Records read so far by one plan partition.
    pub fn records_read_in(&self, partition: usize) -> u64 {
        self.records
            .get(partition)
            .map_or(0, |r| r.load(AtomicOrdering::Relaxed))
    }
}

impl DisplayAs for LandingScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let files: usize = self.scan.groups.iter().map(Vec::len).sum();
        write!(
            f,
            "LandingScanExec: source={}, groups={}, files={files}",
            self.scan.source,
            self.scan.groups.len()
        )
    }
}

impl ExecutionPlan for LandingScanExec {
    fn name(&self) -> &str {
        "LandingScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let files = self.scan.groups.get(partition).cloned().unwrap_or_default();
        let (scan, records) = (self.scan.clone(), self.records.clone());
        let decoded = futures::stream::iter(files)
            .map(move |file| {
                let scan = scan.clone();
                tokio::task::spawn_blocking(move || decode_file(&scan, &file))
            })
            .buffered(2)
            .map(move |joined| {
                let (batches, n) = joined
                    .map_err(|e| Error::Invalid(format!("decoding task failed: {e}")))
                    .and_then(|decoded| decoded)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                if let Some(counter) = records.get(partition) {
                    counter.fetch_add(n, AtomicOrdering::Relaxed);
                }
                Ok::<_, DataFusionError>(futures::stream::iter(batches.into_iter().map(Ok)))
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.scan.schema.clone(),
            decoded,
        )))
    }
}

/// Reads, splits and decodes one landing file into bronze batches (CPU work). Returns the
/// batches and the number of records, one bronze row each.
pub fn decode_file(scan: &LandingScan, file: &LandingFile) -> Result<(Vec<RecordBatch>, u64)> {
    let bytes = landing::read_file(&file.path)?;
    let fields = layout::bronze_source_fields(&scan.source).unwrap_or(&[]);
    let decoder = RecordDecoder::new(&scan.source, fields);
    let mut records: Vec<Record<'_>> = Vec::new();
    for piece in landing::split_values(&bytes) {
        decoder.decode(&piece, &mut records);
    }
    let file_id = format!("{}/{}", scan.source, file.rel_path);
    let mut builder = BronzeBuilder::new(scan.schema.clone(), scan.ingest_us);
    let mut batches = Vec::new();
    for (index, record) in records.iter().enumerate() {
        builder.push(&file_id, index as i64, record);
        if builder.len() >= scan.batch_size {
            batches.push(builder.finish()?);
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish()?);
    }
    Ok((batches, records.len() as u64))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;

    fn landing_scan(dir: &std::path::Path) -> LandingScan {
        let src = dir.join("trades");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("a.json"),
            "{\"trade_id\":\"t1\",\"symbol\":\"BTC\"}\nnot json\n{\"trade_id\":\"t2\"}\n",
        )
        .unwrap();
        std::fs::write(src.join("b.json"), "[{\"trade_id\":\"t3\"}]").unwrap();
        std::fs::write(src.join("c.json"), "").unwrap();
        let files = landing::list_source(dir, "trades").unwrap();
        let table = layout::bronze("trades").unwrap().schema().unwrap();
        LandingScan {
            source: "trades".into(),
            groups: vec![
                vec![files[0].clone(), files[2].clone()],
                vec![files[1].clone()],
            ],
            schema: Arc::new(iceberg::arrow::schema_to_arrow_schema(&table).unwrap()),
            ingest_us: 5,
            batch_size: 2,
        }
    }

    #[tokio::test]
    async fn each_group_is_one_partition_and_counts_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let exec = LandingScanExec::new(landing_scan(dir.path()));
        assert_eq!(exec.properties().partitioning.partition_count(), 2);
        let ctx = Arc::new(TaskContext::default());
        let first: Vec<RecordBatch> = exec
            .execute(0, ctx.clone())
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        // a.json's 3 records in batches of 2; the empty c.json adds none.
        assert_eq!(
            first.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
        let files = first[0].column_by_name("_file").unwrap().as_string::<i32>();
        assert_eq!(files.value(0), "trades/a.json");
        let raw = first[0].column_by_name("_raw").unwrap().as_string::<i32>();
        assert_eq!(raw.value(1), "not json");
        assert_eq!(exec.records_read_in(0), 3);
        let second: Vec<RecordBatch> = exec.execute(1, ctx).unwrap().try_collect().await.unwrap();
        let ids = second[0]
            .column_by_name("trade_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), "t3");
        assert_eq!(records_read(&exec, 1), Some(1));
        assert_eq!(records_read(&exec, 0), Some(3));
    }

    #[test]
    fn equal_specs_make_equal_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SourceSpec::Landing(landing_scan(dir.path()));
        let a = SourceNode::new(spec.clone()).unwrap();
        let b = SourceNode::new(spec).unwrap();
        assert_eq!(a, b);
        assert_eq!(UserDefinedLogicalNodeCore::schema(&a).fields().len(), 7 + 4);
        let plan = a.into_plan();
        assert_eq!(plan.display().to_string(), "Source: landing=trades");
    }
}
