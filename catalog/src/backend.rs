//! The interface every catalog implements (the embedded SQLite catalog and Glue).
//!
//! A backend only stores *where* a table's current metadata lives and swaps that pointer
//! atomically. Everything else (manifests, snapshots, summaries) is built by
//! [`crate::commit`] from iceberg's public pieces, so every catalog commits the same way.

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::table::Table;
use iceberg::{TableCreation, TableIdent};

use crate::Result;
use crate::check::Finding;

/// A catalog of Iceberg tables with compare-and-swap commits.
#[async_trait]
pub trait CatalogBackend: Send + Sync + std::fmt::Debug {
    /// The catalog's name (the SQL catalog's `catalog_name`, the Glue catalog id).
    fn name(&self) -> &str;

    /// File IO for the warehouse this catalog writes to.
    fn file_io(&self) -> &FileIO;

    /// The warehouse root, e.g. `file:///abs/lake/warehouse` or `s3://bucket/prefix`.
    fn warehouse(&self) -> &str;

    /// Creates the namespace if it does not exist.
    async fn ensure_namespace(&self, namespace: &str) -> Result<()>;

    /// Tables of one namespace, sorted by name.
    async fn list_tables(&self, namespace: &str) -> Result<Vec<TableIdent>>;

    /// Namespaces that hold at least one table or were created explicitly, sorted.
    async fn list_namespaces(&self) -> Result<Vec<String>>;

    /// Writes the first metadata file and registers the table. Fails if it exists.
    async fn create_table(&self, ident: &TableIdent, creation: TableCreation) -> Result<Table>;

    /// Loads the table's current metadata; `Error::NoSuchTable` when it does not exist (what
    /// `Lake::table_if_exists` takes for absent, in one call).
    async fn load_table(&self, ident: &TableIdent) -> Result<Table>;

    /// Points the table at `new_location` if and only if it still points at `expected`.
    /// Returns [`crate::Error::CommitConflict`] when another writer moved it first.
    async fn swap_metadata(
        &self,
        ident: &TableIdent,
        expected: &str,
        new_location: &str,
    ) -> Result<()>;

    /// What in the catalog's record of the table would mislead a reader (for `table check`);
    /// nothing for catalogs that keep only the metadata pointer.
    async fn registration_problems(&self, _table: &Table) -> Result<Vec<Finding>> {
        Ok(Vec::new())
    }
}
