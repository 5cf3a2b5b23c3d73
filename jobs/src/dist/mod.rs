//! Distributed execution: cryptolake's plan nodes, their Ballista codecs, and the engine that
//! runs a job's plan in this process or on a Ballista cluster. Jobs build one DataFusion plan
//! whichever way it runs: scans of Iceberg tables, landing files or Kafka partitions, feeding an
//! Iceberg write node whose tasks write Parquet and return the files; the job's driver commits.

/// Equality, order and hashing of a logical node with one `input`, by its `key()` (what its
/// spec is) and its input; ordered by the key alone. DataFusion needs all three of every
/// `UserDefinedLogicalNodeCore`.
macro_rules! keyed_node_identity {
    ($node:ty) => {
        impl PartialEq for $node {
            fn eq(&self, other: &Self) -> bool {
                self.key() == other.key() && self.input == other.input
            }
        }

        impl Eq for $node {}

        impl PartialOrd for $node {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                self.key().partial_cmp(&other.key())
            }
        }

        impl std::hash::Hash for $node {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.key().hash(state);
                self.input.hash(state);
            }
        }
    };
}
pub(crate) use keyed_node_identity;

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
