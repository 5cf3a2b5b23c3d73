//! cryptolake's plan nodes, every `ExecutionPlan` of the crate, one file per node (its logical
//! node beside it), and the planner that turns the logical nodes into physical ones. Jobs build
//! one DataFusion plan whichever way it runs: scans of Iceberg tables, landing files or Kafka
//! partitions feed a table write (or silver's normalize → shuffle → sink), whose tasks write
//! Parquet and return the files as rows; the job's driver commits.
//!
//! Nodes run the logic of the layers below (`sources`, `iceberg`, `transform`); the codecs that
//! carry them to a cluster are in `serde`.

pub mod common;
pub mod iceberg_scan;
pub mod kafka_scan;
pub mod landing_scan;
pub mod planner;
pub mod silver_normalize;
pub mod silver_sink;
pub mod source;
pub mod table_write;

pub use crate::iceberg::scan::{FileRange, split_for_tasks};
pub use common::{pack_by_size, writer_id};
pub use iceberg_scan::{IcebergProvider, IcebergScanExec};
pub use kafka_scan::KafkaScanExec;
pub use landing_scan::LandingScanExec;
pub use planner::CryptolakePlanner;
pub use silver_normalize::{SilverNormalizeExec, SilverNormalizeNode};
pub use silver_sink::{SilverSinkExec, SilverSinkNode, SinkResult, SinkSpec, sink_result};
pub use source::{SourceNode, SourceSpec};
pub use table_write::{
    TableWriteExec, TableWriteNode, WRITTEN_SCHEMA, WrittenFile, records_read_total, written_files,
};
