//! The embedded catalog: Iceberg tables registered in a SQLite file.
//!
//! It uses the schema of iceberg's SQL catalog (`iceberg_tables`, `iceberg_namespace_properties`),
//! which PyIceberg's `SqlCatalog` and iceberg-rust's `iceberg-catalog-sql` read as well. Commits
//! are a single `UPDATE ... WHERE metadata_location = <expected>`, so two writers can never both
//! win. iceberg-catalog-sql cannot be used for our commits (its `update_table` takes a
//! `TableCommit`, whose builder is crate-private), so this module talks to the database itself.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{MetadataLocation, NamespaceIdent, TableCreation, TableIdent};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::backend::CatalogBackend;
use crate::{Error, Result};

/// An Iceberg catalog kept in one SQLite file, with a local (or any FileIO) warehouse.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    name: String,
    pool: SqlitePool,
    warehouse: String,
    file_io: FileIO,
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog database at `db_path`.
    pub async fn open(
        name: &str,
        db_path: &Path,
        warehouse: &str,
        file_io: FileIO,
    ) -> Result<Self> {
        if let Some(dir) = db_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(db_path)
            .create_if_missing(true)
            // WAL lets readers (PyIceberg, `cryptolake sql`) run beside a committing job.
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS iceberg_tables (
                catalog_name VARCHAR(255) NOT NULL,
                table_namespace VARCHAR(255) NOT NULL,
                table_name VARCHAR(255) NOT NULL,
                metadata_location VARCHAR(1000),
                previous_metadata_location VARCHAR(1000),
                iceberg_type VARCHAR(5),
                PRIMARY KEY (catalog_name, table_namespace, table_name))",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
                catalog_name VARCHAR(255) NOT NULL,
                namespace VARCHAR(255) NOT NULL,
                property_key VARCHAR(255),
                property_value VARCHAR(1000),
                PRIMARY KEY (catalog_name, namespace, property_key))",
        )
        .execute(&pool)
        .await?;
        Ok(Self {
            name: name.to_string(),
            pool,
            warehouse: warehouse.trim_end_matches('/').to_string(),
            file_io,
        })
    }

    fn namespace_of(ident: &TableIdent) -> String {
        ident.namespace().join(".")
    }

    async fn metadata_location(&self, ident: &TableIdent) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?
               AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
        )
        .bind(&self.name)
        .bind(Self::namespace_of(ident))
        .bind(ident.name())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }
}

#[async_trait]
impl CatalogBackend for SqliteCatalog {
    fn name(&self) -> &str {
        &self.name
    }

    fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    fn warehouse(&self) -> &str {
        &self.warehouse
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        // PyIceberg marks a namespace's existence with an `exists` property row.
        sqlx::query(
            "INSERT OR IGNORE INTO iceberg_namespace_properties
             (catalog_name, namespace, property_key, property_value) VALUES (?, ?, 'exists', 'true')",
        )
        .bind(&self.name)
        .bind(namespace)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_tables(&self, namespace: &str) -> Result<Vec<TableIdent>> {
        let rows = sqlx::query(
            "SELECT table_name FROM iceberg_tables
             WHERE catalog_name = ? AND table_namespace = ? ORDER BY table_name",
        )
        .bind(&self.name)
        .bind(namespace)
        .fetch_all(&self.pool)
        .await?;
        let ns = NamespaceIdent::from_strs(namespace.split('.'))?;
        Ok(rows
            .into_iter()
            .map(|r| TableIdent::new(ns.clone(), r.get::<String, _>(0)))
            .collect())
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT table_namespace FROM iceberg_tables WHERE catalog_name = ?1
             UNION SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?1
             ORDER BY 1",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.get::<String, _>(0)).collect())
    }

    async fn create_table(&self, ident: &TableIdent, creation: TableCreation) -> Result<Table> {
        let namespace = Self::namespace_of(ident);
        self.ensure_namespace(&namespace).await?;
        let default_location = format!("{}/{}/{}", self.warehouse, namespace, ident.name());
        let (metadata, metadata_location) =
            write_first_metadata(&self.file_io, creation, default_location).await?;
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO iceberg_tables
             (catalog_name, table_namespace, table_name, metadata_location, iceberg_type)
             VALUES (?, ?, ?, ?, 'TABLE')",
        )
        .bind(&self.name)
        .bind(&namespace)
        .bind(ident.name())
        .bind(&metadata_location)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::CommitConflict {
                table: ident.to_string(),
            });
        }
        build_table(ident, metadata, metadata_location, &self.file_io)
    }

    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        let location = self
            .metadata_location(ident)
            .await?
            .ok_or_else(|| Error::NoSuchTable(ident.to_string()))?;
        let metadata = crate::cache::metadata(&self.file_io, &location).await?;
        build_table(ident, metadata, location, &self.file_io)
    }

    async fn swap_metadata(
        &self,
        ident: &TableIdent,
        expected: &str,
        new_location: &str,
    ) -> Result<()> {
        // Validate the new location's form before publishing it.
        MetadataLocation::from_str(new_location)?;
        let updated = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?
               AND metadata_location = ?",
        )
        .bind(new_location)
        .bind(expected)
        .bind(&self.name)
        .bind(Self::namespace_of(ident))
        .bind(ident.name())
        .bind(expected)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::CommitConflict {
                table: ident.to_string(),
            });
        }
        Ok(())
    }
}

/// Builds an iceberg [`Table`] handle from loaded metadata.
/// Writes a new table's first metadata file (at `default_location` unless the creation names
/// one) and returns the metadata and where it was written; registering it is the catalog's.
pub(crate) async fn write_first_metadata(
    file_io: &FileIO,
    mut creation: TableCreation,
    default_location: String,
) -> Result<(TableMetadata, String)> {
    let location = creation.location.get_or_insert(default_location).clone();
    let metadata = TableMetadataBuilder::from_table_creation(creation)?
        .build()?
        .metadata;
    let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
    metadata.write_to(file_io, &metadata_location).await?;
    Ok((metadata, metadata_location.to_string()))
}

pub(crate) fn build_table(
    ident: &TableIdent,
    metadata: TableMetadata,
    metadata_location: String,
    file_io: &FileIO,
) -> Result<Table> {
    Ok(Table::builder()
        .identifier(ident.clone())
        .metadata(metadata)
        .metadata_location(metadata_location)
        .file_io(file_io.clone())
        .runtime(iceberg::Runtime::try_current()?)
        .build()?)
}
