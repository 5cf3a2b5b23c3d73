//! `KafkaScanExec`: fixed offset ranges of a topic, one plan partition per Kafka partition, so
//! each task (on a cluster, each executor) reads its own partitions with
//! [`crate::sources::kafka::PartitionReader`]. Each task counts its messages in the
//! [`RECORDS_READ`](super::common::RECORDS_READ) metric.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::common::{df_err, plan_properties, records_read_counter};
use crate::sources::kafka::{PartitionReader, TopicScan};

/// Scans fixed offset ranges of a topic: one plan partition per Kafka partition.
#[derive(Debug)]
pub struct KafkaScanExec {
    scan: TopicScan,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl KafkaScanExec {
    pub fn new(scan: TopicScan) -> Self {
        let properties = plan_properties(
            scan.schema.clone(),
            scan.ranges.len(),
            EmissionType::Incremental,
        );
        Self {
            scan,
            metrics: ExecutionPlanMetricsSet::new(),
            properties,
        }
    }

    /// What the node reads.
    pub fn scan(&self) -> &TopicScan {
        &self.scan
    }
}

impl DisplayAs for KafkaScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let messages: i64 = self.scan.ranges.iter().map(|r| r.end - r.start).sum();
        write!(
            f,
            "KafkaScanExec: topic={}, partitions={}, messages={messages}",
            self.scan.topic,
            self.scan.ranges.len()
        )
    }
}

impl ExecutionPlan for KafkaScanExec {
    crate::physical_plan::common::exec_node_common!("KafkaScanExec", leaf);

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.scan.schema.clone();
        let messages = records_read_counter(&self.metrics, partition);
        let Some(range) = self.scan.ranges.get(partition).copied() else {
            let empty = futures::stream::empty();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, empty)));
        };
        let reader = PartitionReader::new(self.scan.clone(), range, messages);
        let stream = futures::stream::try_unfold(reader, |mut reader| async move {
            let batch = reader.next_batch().await.map_err(df_err)?;
            Ok(batch.map(|b| (b, reader)))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use cryptolake_catalog::layout;

    use super::*;
    use crate::sources::kafka::OffsetRange;
    use crate::sources::kafka_config::KafkaConfig;

    fn scan() -> TopicScan {
        let layout = layout::kafka_bronze("coinbase_trades", "trades").unwrap();
        let schema = iceberg::arrow::schema_to_arrow_schema(&layout.schema().unwrap()).unwrap();
        TopicScan {
            config: KafkaConfig::default(),
            topic: "coinbase-trades".into(),
            format: "trades".into(),
            ranges: Vec::new(),
            schema: Arc::new(schema),
            ingest_us: 7,
            batch_size: 100,
        }
    }

    #[test]
    fn the_scan_has_one_plan_partition_per_kafka_partition() {
        let mut s = scan();
        s.ranges = (0..3)
            .map(|p| OffsetRange {
                partition: p,
                start: 0,
                end: 5,
            })
            .collect();
        let exec = KafkaScanExec::new(s);
        assert_eq!(exec.properties().partitioning.partition_count(), 3);
        let shown = datafusion::physical_plan::displayable(&exec)
            .one_line()
            .to_string();
        assert!(shown.contains("partitions=3, messages=15"), "{shown}");
    }
}
