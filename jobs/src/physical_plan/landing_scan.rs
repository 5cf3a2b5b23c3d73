//! `LandingScanExec`, the landing-file source: one task per group of whole landing files, each
//! file read where the task runs (a local path, or S3 straight from the executor) as a stream,
//! split and decoded into bronze rows on the blocking pool a few megabytes at a time
//! ([`scan_files`]). Each task counts its records in the
//! [`RECORDS_READ`](super::common::RECORDS_READ) metric.

use std::fmt;
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use super::common::{df_err, plan_properties, records_read_counter};
use crate::sources::landing::LandingScan;
use crate::sources::landing_stream::scan_files;

/// Reads groups of landing files into bronze rows, one group per plan partition, a file at a
/// time, each in segments decoded on the blocking pool while the previous ones' batches go up.
#[derive(Debug)]
pub struct LandingScanExec {
    scan: Arc<LandingScan>,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl LandingScanExec {
    pub fn new(scan: LandingScan) -> Self {
        let properties = plan_properties(
            scan.schema.clone(),
            scan.groups.len(),
            EmissionType::Incremental,
        );
        Self {
            scan: Arc::new(scan),
            metrics: ExecutionPlanMetricsSet::new(),
            properties,
        }
    }

    pub fn scan(&self) -> &LandingScan {
        &self.scan
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
    crate::physical_plan::common::exec_node_common!("LandingScanExec", leaf);

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let files = self.scan.groups.get(partition).cloned().unwrap_or_default();
        // Registered before the first file, so a task that reads nothing reports 0.
        let records = records_read_counter(&self.metrics, partition);
        let decoded = scan_files(self.scan.clone(), files).map(move |item| {
            let (batch, n) = item.map_err(df_err)?;
            records.add(n as usize);
            Ok::<_, DataFusionError>(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.scan.schema.clone(),
            decoded,
        )))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, RecordBatch};
    use cryptolake_catalog::layout;
    use futures::TryStreamExt;

    use super::*;
    use crate::physical_plan::common::records_read;
    use crate::sources::landing;

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
            landing: crate::job::landing::Landing::Local(dir.to_path_buf()),
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
        // a.json's 3 records in batches of at most 2; the empty c.json adds none.
        assert!(first.iter().all(|b| b.num_rows() <= 2));
        let first = arrow::compute::concat_batches(&first[0].schema(), &first).unwrap();
        assert_eq!(first.num_rows(), 3);
        let files = first.column_by_name("_file").unwrap().as_string::<i32>();
        assert_eq!(files.value(0), "trades/a.json");
        let raw = first.column_by_name("_raw").unwrap().as_string::<i32>();
        assert_eq!(raw.value(1), "not json");
        let numbers = first.column_by_name("_record").unwrap();
        let numbers = numbers.as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(numbers.values().to_vec(), [0, 1, 2]);
        assert_eq!(records_read(&exec, 0), Some(3));
        let second: Vec<RecordBatch> = exec.execute(1, ctx).unwrap().try_collect().await.unwrap();
        let ids = second[0]
            .column_by_name("trade_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), "t3");
        assert_eq!(records_read(&exec, 1), Some(1));
        assert_eq!(records_read(&exec, 0), Some(3));
    }
}
