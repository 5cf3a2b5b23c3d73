//! cryptolake-catalog knows Iceberg and catalogs: the embedded SQLite catalog and its local
//! warehouse, the layouts of every table, the commit layer (append, overwrite, replace with
//! compare-and-swap and bookmarks in snapshot summaries) and the [`Lake`] handle jobs use.
//! No other crate touches catalog internals.

pub mod backend;
pub mod cache;
pub mod check;
pub mod commit;
pub mod config;
mod error;
pub mod glue;
pub mod lake;
pub mod layout;
pub mod sqlite;
pub mod storage;

pub use backend::CatalogBackend;
pub use commit::{CommitOutcome, MetadataCommit, Requirement, SnapshotCommit};
pub use config::CatalogConfig;
pub use error::{Error, Result};
pub use lake::Lake;
pub use layout::TableLayout;
