//! Iceberg tables as DataFusion tables: a `TableProvider` over a snapshot (or an explicit file
//! list) and `IcebergScanExec`, a scan node that spreads the snapshot's files over partitions
//! (balanced by bytes) so DataFusion reads them on every core.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::scan::FileScanTask;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use crate::iceberg::scan;
use crate::iceberg::scan::FileRange;
use crate::{Error, Result};

fn df_err(e: impl Into<crate::Error>) -> DataFusionError {
    e.into().into_datafusion()
}

/// An Iceberg table (current snapshot, a chosen snapshot, or given files) for DataFusion.
#[derive(Debug, Clone)]
pub struct IcebergProvider {
    table: Table,
    snapshot_id: Option<i64>,
    files: Option<Vec<DataFile>>,
    /// Files (or byte ranges of them) in fixed groups, one scan partition each (compaction's
    /// bin-packed groups, silver's share of new bronze).
    groups: Option<Vec<Vec<FileRange>>>,
    schema: SchemaRef,
}

impl IcebergProvider {
    /// The table's current snapshot.
    pub fn new(table: Table) -> Result<Self> {
        let schema = scan::plain_schema(&table)?;
        Ok(Self {
            table,
            snapshot_id: None,
            files: None,
            groups: None,
            schema,
        })
    }

    /// The table as of a snapshot (time travel).
    pub fn at_snapshot(table: Table, snapshot_id: i64) -> Result<Self> {
        Ok(Self {
            snapshot_id: Some(snapshot_id),
            ..Self::new(table)?
        })
    }

    /// Only these data files of the table.
    pub fn with_files(table: Table, files: Vec<DataFile>) -> Result<Self> {
        Ok(Self {
            files: Some(files),
            ..Self::new(table)?
        })
    }

    /// These data files, in these groups: group `i` is read by scan partition `i`.
    pub fn with_groups(table: Table, groups: Vec<Vec<DataFile>>) -> Result<Self> {
        let ranges = groups
            .into_iter()
            .map(|g| g.into_iter().map(FileRange::whole).collect())
            .collect();
        Self::with_ranges(table, ranges)
    }

    /// These ranges of data files, in these groups: group `i` is read by scan partition `i`.
    pub fn with_ranges(table: Table, groups: Vec<Vec<FileRange>>) -> Result<Self> {
        Ok(Self {
            groups: Some(groups),
            ..Self::new(table)?
        })
    }

    /// The table as plans carry it (no FileIO, no credentials).
    pub fn table_ref(&self) -> crate::iceberg::TableRef {
        crate::iceberg::TableRef::of(&self.table)
    }

    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot_id
    }

    pub fn files(&self) -> Option<&[DataFile]> {
        self.files.as_deref()
    }

    pub fn groups(&self) -> Option<&[Vec<FileRange>]> {
        self.groups.as_deref()
    }

    /// Rebuilds a provider from its parts (the codec's decode).
    pub fn from_parts(
        table: Table,
        snapshot_id: Option<i64>,
        files: Option<Vec<DataFile>>,
        groups: Option<Vec<Vec<FileRange>>>,
    ) -> Result<Self> {
        Ok(Self {
            snapshot_id,
            files,
            groups,
            ..Self::new(table)?
        })
    }

    async fn tasks(&self, columns: &[&str]) -> Result<Vec<FileScanTask>> {
        if let Some(files) = &self.files {
            return scan::tasks_for_files(&self.table, files, Some(columns));
        }
        let snapshot = match self.snapshot_id {
            Some(id) => Some(id),
            None => self.table.metadata().current_snapshot_id(),
        };
        let Some(snapshot) = snapshot else {
            return Ok(Vec::new());
        };
        let mut builder = self.table.scan().snapshot_id(snapshot);
        builder = if columns.is_empty() {
            builder.select_empty()
        } else {
            builder.select(columns.iter().copied())
        };
        let planned = match builder.build()?.plan_files().await {
            Ok(stream) => stream.try_collect::<Vec<FileScanTask>>().await,
            Err(e) => Err(e),
        };
        let mut tasks = match planned {
            Ok(tasks) => tasks,
            Err(e) => return Err(self.named(snapshot, e).await),
        };
        // iceberg-rust reads a selected `_file` as its metadata column (the data file's path);
        // bronze tables have a real column of that name, which is what a query means.
        if let Some(own) = self
            .table
            .metadata()
            .current_schema()
            .field_id_by_name("_file")
        {
            for task in &mut tasks {
                for id in &mut task.project_field_ids {
                    if *id == iceberg::metadata_columns::RESERVED_FIELD_ID_FILE {
                        *id = own;
                    }
                }
            }
        }
        Ok(tasks)
    }
}

impl IcebergProvider {
    /// iceberg's planning error, or, when a metadata file it read is damaged, the error of
    /// reading that file through the cache, which names it (iceberg's does not say which).
    async fn named(&self, snapshot: i64, planning: iceberg::Error) -> Error {
        let Some(snapshot) = self.table.metadata().snapshot_by_id(snapshot) else {
            return planning.into();
        };
        let list = match cryptolake_catalog::cache::manifest_list(&self.table, snapshot).await {
            Ok(list) => list,
            Err(e) => return e.into(),
        };
        for manifest in list.entries() {
            if let Err(e) =
                cryptolake_catalog::cache::manifest(manifest, self.table.file_io()).await
            {
                return e.into();
            }
        }
        planning.into()
    }
}

#[async_trait]
impl TableProvider for IcebergProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let groups = match &self.groups {
            Some(groups) => groups
                .iter()
                .map(|g| scan::tasks_for_ranges(&self.table, g, Some(&columns)))
                .collect::<Result<Vec<_>>>()
                .map_err(df_err)?,
            None => {
                let tasks = self.tasks(&columns).await.map_err(df_err)?;
                group_by_size(tasks, state.config().target_partitions().max(1))
            }
        };
        Ok(Arc::new(IcebergScanExec::new(
            self.table.clone(),
            groups,
            schema,
            state.config().batch_size(),
            limit,
        )))
    }
}

/// Splits tasks into at most `n` groups of about equal bytes (largest first, to the lightest).
pub fn group_by_size(tasks: Vec<FileScanTask>, n: usize) -> Vec<Vec<FileScanTask>> {
    use super::common::pack_by_size;
    pack_by_size(tasks, n, |t| t.length)
}

/// Reads groups of Iceberg file scan tasks, one group per output partition.
#[derive(Debug)]
pub struct IcebergScanExec {
    table: Table,
    groups: Vec<Vec<FileScanTask>>,
    schema: SchemaRef,
    batch_size: usize,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl IcebergScanExec {
    pub fn new(
        table: Table,
        groups: Vec<Vec<FileScanTask>>,
        schema: SchemaRef,
        batch_size: usize,
        limit: Option<usize>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(groups.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            table,
            groups,
            schema,
            batch_size,
            limit,
            properties,
        }
    }

    /// The task groups, one per partition.
    pub fn groups(&self) -> &[Vec<FileScanTask>] {
        &self.groups
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl DisplayAs for IcebergScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let files: usize = self.groups.iter().map(Vec::len).sum();
        write!(
            f,
            "IcebergScanExec: table={}, partitions={}, files={files}",
            self.table.identifier(),
            self.groups.len()
        )
    }
}

impl ExecutionPlan for IcebergScanExec {
    crate::physical_plan::common::exec_node_common!("IcebergScanExec", leaf);

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let tasks = self.groups.get(partition).cloned().unwrap_or_default();
        let schema = self.schema.clone();
        let batches = scan::read(&self.table, tasks, self.batch_size).map_err(df_err)?;
        let out_schema = schema.clone();
        let stream = batches.map(move |batch| {
            let batch = batch.map_err(df_err)?;
            // Same columns, under the provider's plain schema (no Parquet field-id metadata);
            // the row count keeps zero-column batches (`count(*)`) meaningful.
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                out_schema.clone(),
                batch.columns().to_vec(),
                &options,
            )?)
        });
        let stream: SendableRecordBatchStream = match self.limit {
            Some(limit) => Box::pin(RecordBatchStreamAdapter::new(
                schema,
                limit_rows(stream, limit),
            )),
            None => Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        };
        Ok(stream)
    }
}

/// Stops a stream after `limit` rows.
fn limit_rows(
    stream: impl futures::Stream<Item = DfResult<RecordBatch>> + Send + 'static,
    limit: usize,
) -> impl futures::Stream<Item = DfResult<RecordBatch>> + Send + 'static {
    let mut left = limit;
    stream
        .take_while(move |_| {
            let go = left > 0;
            futures::future::ready(go)
        })
        .map(move |b| {
            let b = b?;
            let n = b.num_rows().min(left);
            left -= n;
            Ok(b.slice(0, n))
        })
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataFileFormat, NestedField, PrimitiveType, Schema, Type};

    use super::*;

    fn task(length: u64) -> FileScanTask {
        let schema = Schema::builder()
            .with_fields(vec![Arc::new(NestedField::required(
                1,
                "a",
                Type::Primitive(PrimitiveType::Long),
            ))])
            .build()
            .unwrap();
        FileScanTask {
            file_size_in_bytes: length,
            start: 0,
            length,
            record_count: None,
            data_file_path: format!("f{length}.parquet"),
            data_file_format: DataFileFormat::Parquet,
            schema: Arc::new(schema),
            project_field_ids: vec![1],
            predicate: None,
            deletes: Vec::new(),
            partition: None,
            partition_spec: None,
            name_mapping: None,
            case_sensitive: true,
        }
    }

    #[test]
    fn files_are_spread_over_partitions_by_size() {
        let tasks = [100, 90, 60, 50, 40, 10].map(task).to_vec();
        let groups = group_by_size(tasks, 2);
        let sizes: Vec<u64> = groups
            .iter()
            .map(|g| g.iter().map(|t| t.length).sum())
            .collect();
        assert_eq!(sizes, [100 + 50 + 40, 90 + 60 + 10]);
        assert_eq!(group_by_size(vec![task(5)], 8).len(), 1);
        assert_eq!(group_by_size(Vec::new(), 8).len(), 1);
    }
}
