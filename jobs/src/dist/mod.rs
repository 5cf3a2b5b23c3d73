//! Distributed execution: cryptolake's plan nodes, their Ballista codecs, and the engine that
//! runs a job's plan in this process or on a Ballista cluster. Jobs build one DataFusion plan
//! whichever way it runs: scans of Iceberg tables, landing files or Kafka partitions, feeding an
//! Iceberg write node whose tasks write Parquet and return the files; the job's driver commits.

mod codec;
mod engine;
pub mod schema_serde;
mod table_ref;
mod write;

pub use codec::{CryptolakeLogicalCodec, CryptolakePhysicalCodec};
pub use engine::{ClusterSettings, Engine, ballista_config, cluster_slots, session_state};
pub use table_ref::{TableRef, files_from_json, files_to_json};
pub use write::{
    CryptolakePlanner, IcebergWriteExec, IcebergWriteNode, WRITTEN_SCHEMA, WrittenFile, conform,
    records_read_total, writer_id, written_files,
};
