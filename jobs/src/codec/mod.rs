//! Ballista codecs for cryptolake's plan nodes. Each wraps Ballista's own codec and delegates
//! every node it does not own (shuffles, file formats, functions) to it; the first byte of an
//! encoding tags who wrote it. cryptolake's nodes travel as JSON: tables as [`TableRef`]s, files
//! as iceberg's data-file JSON, Kafka settings without secrets. Decoding opens tables with the
//! decoding process's own FileIO, so credentials never ride inside a plan.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result as DfResult, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    AggregateUDF, Extension, LogicalPlan, ScalarUDF, UserDefinedLogicalNode, WindowUDF,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use iceberg::io::FileIO;
use iceberg::scan::FileScanTask;
use serde::{Deserialize, Serialize};

use crate::iceberg::{TableRef, files_from_json, files_to_json};
use crate::physical_plan::{
    FileRange, IcebergProvider, IcebergScanExec, KafkaScanExec, LandingScanExec,
    SilverNormalizeExec, SilverNormalizeNode, SilverSinkExec, SilverSinkNode, SinkSpec, SourceNode,
    SourceSpec, TableWriteExec, TableWriteNode,
};
use crate::sources::kafka::TopicScan;
use crate::sources::landing::LandingScan;
use crate::transform::silver::stage::NormalizeSpec;

/// Encoded by Ballista's codec.
const TAG_BALLISTA: u8 = 0;
/// Encoded by cryptolake's codec.
const TAG_CRYPTOLAKE: u8 = 1;

fn err(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("cryptolake codec: {e}"))
}

fn json_err(e: serde_json::Error) -> DataFusionError {
    err(e)
}

fn lib_err(e: crate::Error) -> DataFusionError {
    e.into_datafusion()
}

/// Splits a tagged buffer.
fn untag(buf: &[u8]) -> DfResult<(u8, &[u8])> {
    buf.split_first()
        .map(|(t, rest)| (*t, rest))
        .ok_or_else(|| err("empty buffer"))
}

fn encode_ours(value: &impl Serialize, buf: &mut Vec<u8>) -> DfResult<()> {
    buf.push(TAG_CRYPTOLAKE);
    serde_json::to_writer(buf, value).map_err(json_err)
}

fn delegate(buf: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>) -> DfResult<()>) -> DfResult<()> {
    let mut inner = Vec::new();
    f(&mut inner)?;
    buf.push(TAG_BALLISTA);
    buf.extend_from_slice(&inner);
    Ok(())
}

/// A file scan task as plans carry it. iceberg's own `FileScanTask` does not serialize its
/// partition value; cryptolake's tasks have no deletes and no residual predicate, and read
/// whole files whose columns are all present, so path, range, schema id and projection are all
/// there is.
#[derive(Debug, Serialize, Deserialize)]
struct TaskSpec {
    path: String,
    file_size: u64,
    start: u64,
    length: u64,
    record_count: Option<u64>,
    schema_id: i32,
    project_field_ids: Vec<i32>,
}

impl TaskSpec {
    fn of(task: &FileScanTask) -> DfResult<Self> {
        if !task.deletes.is_empty() || task.predicate.is_some() {
            return Err(err("scan tasks with deletes or predicates do not travel"));
        }
        Ok(Self {
            path: task.data_file_path.clone(),
            file_size: task.file_size_in_bytes,
            start: task.start,
            length: task.length,
            record_count: task.record_count,
            schema_id: task.schema.schema_id(),
            project_field_ids: task.project_field_ids.clone(),
        })
    }

    fn task(self, table: &TableRef) -> DfResult<FileScanTask> {
        let schema = table
            .metadata
            .schema_by_id(self.schema_id)
            .ok_or_else(|| err(format!("{} has no schema {}", table.name(), self.schema_id)))?
            .clone();
        Ok(FileScanTask {
            file_size_in_bytes: self.file_size,
            start: self.start,
            length: self.length,
            record_count: self.record_count,
            data_file_path: self.path,
            data_file_format: iceberg::spec::DataFileFormat::Parquet,
            schema,
            project_field_ids: self.project_field_ids,
            predicate: None,
            deletes: Vec::new(),
            partition: None,
            partition_spec: None,
            name_mapping: None,
            case_sensitive: true,
        })
    }
}

/// cryptolake's logical nodes and table providers.
#[derive(Debug, Serialize, Deserialize)]
enum LogicalNode {
    TableWrite {
        table: TableRef,
        target_file_size: usize,
        #[serde(default)]
        single_task: bool,
    },
    IcebergTable {
        table: TableRef,
        snapshot_id: Option<i64>,
        files: Option<Vec<String>>,
        groups: Option<Vec<Vec<RangeSpec>>>,
    },
    SilverNormalize(NormalizeSpec),
    SilverSink(SinkSpec),
    Source(SourceSpec),
}

/// A byte range of a data file as plans carry it: the file as Iceberg's JSON.
#[derive(Debug, Serialize, Deserialize)]
struct RangeSpec {
    file: String,
    start: u64,
    length: u64,
}

fn ranges_to_json(
    metadata: &iceberg::spec::TableMetadata,
    ranges: &[FileRange],
) -> crate::Result<Vec<RangeSpec>> {
    let files: Vec<_> = ranges.iter().map(|r| r.file.clone()).collect();
    Ok(files_to_json(metadata, &files)?
        .into_iter()
        .zip(ranges)
        .map(|(file, r)| RangeSpec {
            file,
            start: r.start,
            length: r.length,
        })
        .collect())
}

fn ranges_from_json(
    metadata: &iceberg::spec::TableMetadata,
    specs: &[RangeSpec],
) -> crate::Result<Vec<FileRange>> {
    let json: Vec<String> = specs.iter().map(|s| s.file.clone()).collect();
    Ok(files_from_json(metadata, &json)?
        .into_iter()
        .zip(specs)
        .map(|(file, s)| FileRange {
            file,
            start: s.start,
            length: s.length,
        })
        .collect())
}

/// cryptolake's physical nodes.
#[derive(Debug, Serialize, Deserialize)]
enum PhysicalNode {
    IcebergScan {
        table: TableRef,
        groups: Vec<Vec<TaskSpec>>,
        #[serde(with = "crate::job::wire")]
        schema: SchemaRef,
        batch_size: usize,
        limit: Option<usize>,
    },
    TableWrite {
        table: TableRef,
        target_file_size: usize,
        #[serde(default)]
        single_task: bool,
    },
    KafkaScan(TopicScan),
    LandingScan(LandingScan),
    SilverNormalize(NormalizeSpec),
    SilverSink(SinkSpec),
}

/// The logical codec: the client encodes, the scheduler decodes.
#[derive(Debug)]
pub struct CryptolakeLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
    file_io: FileIO,
}

impl CryptolakeLogicalCodec {
    /// Tables decode with `file_io` (this process's storage access).
    pub fn new(file_io: FileIO) -> Self {
        Self {
            inner: BallistaLogicalExtensionCodec::default(),
            file_io,
        }
    }
}

impl LogicalExtensionCodec for CryptolakeLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        let (tag, rest) = untag(buf)?;
        if tag == TAG_BALLISTA {
            return self.inner.try_decode(rest, inputs, ctx);
        }
        let input = || {
            inputs
                .first()
                .cloned()
                .ok_or_else(|| err("a cryptolake node without input"))
        };
        let node: Arc<dyn UserDefinedLogicalNode> =
            match serde_json::from_slice(rest).map_err(json_err)? {
                LogicalNode::TableWrite {
                    table,
                    target_file_size,
                    single_task,
                } => Arc::new(
                    TableWriteNode::new(input()?, Arc::new(table), target_file_size)
                        .single_task(single_task),
                ),
                LogicalNode::SilverNormalize(spec) => {
                    Arc::new(SilverNormalizeNode::new(input()?, spec))
                }
                LogicalNode::SilverSink(spec) => {
                    Arc::new(SilverSinkNode::new(input()?, Arc::new(spec)))
                }
                LogicalNode::Source(spec) => Arc::new(SourceNode::new(spec).map_err(lib_err)?),
                other => return Err(err(format!("{other:?} is not a plan node"))),
            };
        Ok(Extension { node })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        let any = node.node.as_any();
        let ours = if let Some(write) = any.downcast_ref::<TableWriteNode>() {
            LogicalNode::TableWrite {
                table: write.table.as_ref().clone(),
                target_file_size: write.target_file_size,
                single_task: write.single_task,
            }
        } else if let Some(n) = any.downcast_ref::<SilverNormalizeNode>() {
            LogicalNode::SilverNormalize(n.spec.clone())
        } else if let Some(n) = any.downcast_ref::<SilverSinkNode>() {
            LogicalNode::SilverSink(n.spec.as_ref().clone())
        } else if let Some(n) = any.downcast_ref::<SourceNode>() {
            LogicalNode::Source(n.spec.clone())
        } else {
            return delegate(buf, |b| self.inner.try_encode(node, b));
        };
        encode_ours(&ours, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let (tag, rest) = untag(buf)?;
        if tag == TAG_BALLISTA {
            return self
                .inner
                .try_decode_table_provider(rest, table_ref, schema, ctx);
        }
        match serde_json::from_slice(rest).map_err(json_err)? {
            LogicalNode::IcebergTable {
                table,
                snapshot_id,
                files,
                groups,
            } => {
                let files = files
                    .map(|f| files_from_json(&table.metadata, &f))
                    .transpose()
                    .map_err(lib_err)?;
                let groups = groups
                    .map(|gs| {
                        gs.iter()
                            .map(|g| ranges_from_json(&table.metadata, g))
                            .collect::<crate::Result<Vec<_>>>()
                    })
                    .transpose()
                    .map_err(lib_err)?;
                let opened = table.open(self.file_io.clone()).map_err(lib_err)?;
                let provider = IcebergProvider::from_parts(opened, snapshot_id, files, groups)
                    .map_err(lib_err)?;
                Ok(Arc::new(provider))
            }
            other => Err(err(format!("{other:?} is not a table"))),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let Some(provider) = node.as_any().downcast_ref::<IcebergProvider>() else {
            return delegate(buf, |b| {
                self.inner.try_encode_table_provider(table_ref, node, b)
            });
        };
        let table = provider.table_ref();
        let files = provider
            .files()
            .map(|f| files_to_json(&table.metadata, f))
            .transpose()
            .map_err(lib_err)?;
        let groups = provider
            .groups()
            .map(|gs| {
                gs.iter()
                    .map(|g| ranges_to_json(&table.metadata, g))
                    .collect::<crate::Result<Vec<_>>>()
            })
            .transpose()
            .map_err(lib_err)?;
        encode_ours(
            &LogicalNode::IcebergTable {
                snapshot_id: provider.snapshot_id(),
                table,
                files,
                groups,
            },
            buf,
        )
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        let (_, rest) = untag(buf)?;
        self.inner.try_decode_file_format(rest, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        delegate(buf, |b| self.inner.try_encode_file_format(b, node))
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// The physical codec: the scheduler encodes stages, executors decode tasks.
#[derive(Debug)]
pub struct CryptolakePhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    file_io: FileIO,
}

impl CryptolakePhysicalCodec {
    /// Tables decode with `file_io` (this process's storage access).
    pub fn new(file_io: FileIO) -> Self {
        Self {
            inner: BallistaPhysicalExtensionCodec::default(),
            file_io,
        }
    }

    fn encode_node(&self, node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<PhysicalNode>> {
        let any = node.as_any();
        if let Some(scan) = any.downcast_ref::<IcebergScanExec>() {
            let groups = scan
                .groups()
                .iter()
                .map(|g| g.iter().map(TaskSpec::of).collect::<DfResult<Vec<_>>>())
                .collect::<DfResult<Vec<_>>>()?;
            return Ok(Some(PhysicalNode::IcebergScan {
                table: TableRef::of(scan.table()),
                groups,
                schema: scan.schema(),
                batch_size: scan.batch_size(),
                limit: scan.limit(),
            }));
        }
        if let Some(write) = any.downcast_ref::<TableWriteExec>() {
            return Ok(Some(PhysicalNode::TableWrite {
                table: write.table_ref().as_ref().clone(),
                target_file_size: write.target_file_size(),
                single_task: write.single_task(),
            }));
        }
        if let Some(kafka) = any.downcast_ref::<KafkaScanExec>() {
            return Ok(Some(PhysicalNode::KafkaScan(kafka.scan().clone())));
        }
        if let Some(landing) = any.downcast_ref::<LandingScanExec>() {
            return Ok(Some(PhysicalNode::LandingScan(landing.scan().clone())));
        }
        if let Some(n) = any.downcast_ref::<SilverNormalizeExec>() {
            return Ok(Some(PhysicalNode::SilverNormalize(n.spec().clone())));
        }
        if let Some(n) = any.downcast_ref::<SilverSinkExec>() {
            return Ok(Some(PhysicalNode::SilverSink(n.spec().as_ref().clone())));
        }
        Ok(None)
    }

    fn decode_node(
        &self,
        node: PhysicalNode,
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(match node {
            PhysicalNode::IcebergScan {
                table,
                groups,
                schema,
                batch_size,
                limit,
            } => {
                let groups = groups
                    .into_iter()
                    .map(|g| g.into_iter().map(|t| t.task(&table)).collect())
                    .collect::<DfResult<Vec<Vec<_>>>>()?;
                let opened = table.open(self.file_io.clone()).map_err(lib_err)?;
                Arc::new(IcebergScanExec::new(
                    opened, groups, schema, batch_size, limit,
                ))
            }
            PhysicalNode::TableWrite {
                table,
                target_file_size,
                single_task,
            } => {
                let input = inputs
                    .first()
                    .cloned()
                    .ok_or_else(|| err("TableWriteExec without input"))?;
                let opened = table.open(self.file_io.clone()).map_err(lib_err)?;
                Arc::new(TableWriteExec::new(
                    input,
                    Arc::new(table),
                    opened,
                    target_file_size,
                    single_task,
                ))
            }
            PhysicalNode::KafkaScan(scan) => Arc::new(KafkaScanExec::new(scan)),
            PhysicalNode::LandingScan(scan) => Arc::new(LandingScanExec::new(scan)),
            PhysicalNode::SilverNormalize(spec) => {
                let input = inputs
                    .first()
                    .cloned()
                    .ok_or_else(|| err("SilverNormalizeExec without input"))?;
                Arc::new(SilverNormalizeExec::new(input, spec))
            }
            PhysicalNode::SilverSink(spec) => {
                let input = inputs
                    .first()
                    .cloned()
                    .ok_or_else(|| err("SilverSinkExec without input"))?;
                Arc::new(SilverSinkExec::new(input, Arc::new(spec), &self.file_io)?)
            }
        })
    }
}

impl PhysicalExtensionCodec for CryptolakePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (tag, rest) = untag(buf)?;
        if tag == TAG_BALLISTA {
            return self.inner.try_decode(rest, inputs, ctx);
        }
        let node: PhysicalNode = serde_json::from_slice(rest).map_err(json_err)?;
        self.decode_node(node, inputs)
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> DfResult<()> {
        match self.encode_node(&node)? {
            Some(ours) => encode_ours(&ours, buf),
            None => delegate(buf, |b| self.inner.try_encode(node, b)),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

#[cfg(test)]
mod tests;
