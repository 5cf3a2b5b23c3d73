//! Iceberg tables without DataFusion plans: which files and snapshots to read ([`scan`]),
//! DataFusion filters as Iceberg predicates ([`predicate`]), writing partitioned, rolling
//! Parquet data files ([`writer`], split by partition in [`split`]), and a table as a self-contained reference that travels to
//! other processes ([`table_ref`]).

pub mod predicate;
pub mod scan;
pub mod split;
pub mod table_ref;
pub mod writer;

pub use table_ref::{TableRef, files_from_json, files_to_json};
