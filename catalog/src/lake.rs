//! [`Lake`]: the one handle jobs hold, over whichever catalog is configured.

use std::sync::Arc;

use iceberg::TableIdent;
use iceberg::io::{FileIO, FileIOBuilder, LocalFsStorageFactory};

use crate::storage::{S3Storage, S3StorageFactory};
use iceberg::table::Table;

use crate::backend::CatalogBackend;
use crate::commit::{CommitOutcome, MetadataCommit, SnapshotCommit};
use crate::config::{CatalogConfig, CatalogKind};
use crate::glue::GlueCatalog;
use crate::layout::TableLayout;
use crate::sqlite::SqliteCatalog;
use crate::{Error, Result};

/// A catalog plus its warehouse storage.
#[derive(Debug, Clone)]
pub struct Lake {
    backend: Arc<dyn CatalogBackend>,
    s3: Option<S3Storage>,
}

impl Lake {
    /// Opens the configured catalog.
    pub async fn open(config: &CatalogConfig) -> Result<Self> {
        config.validate()?;
        let warehouse = config.warehouse_url()?;
        let (file_io, s3) = warehouse_io(config, &warehouse)?;
        let backend: Arc<dyn CatalogBackend> = match config.kind {
            CatalogKind::Sqlite => Arc::new(
                SqliteCatalog::open(&config.name, &config.path, &warehouse, file_io).await?,
            ),
            CatalogKind::Glue => Arc::new(GlueCatalog::open(config, &warehouse, file_io).await?),
        };
        Ok(Self { backend, s3 })
    }

    /// The warehouse's storage, when it is S3 (for listing, which FileIO cannot do).
    pub fn s3(&self) -> Option<&S3Storage> {
        self.s3.as_ref()
    }

    pub fn backend(&self) -> &dyn CatalogBackend {
        self.backend.as_ref()
    }

    pub fn file_io(&self) -> &FileIO {
        self.backend.file_io()
    }

    /// Loads the table, creating it from its layout when it does not exist yet. A table
    /// created by an older cryptolake whose layout has since gained optional columns gets them
    /// by schema evolution first (one metadata commit; rows written before read them as null).
    pub async fn ensure_table(&self, layout: &TableLayout) -> Result<Table> {
        let ident = layout.ident();
        // One catalog call for a table that exists (a Glue GetTable), not an existence check
        // and then the load: a per-minute run ensures every table it touches.
        if let Some(table) = self.table_if_exists(&ident).await? {
            layout.check_partition_spec(table.metadata())?;
            let missing = layout.missing_columns(table.metadata().current_schema())?;
            if missing.is_empty() {
                return Ok(table);
            }
            let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
            tracing::info!(table = %ident, columns = ?names, "adding the layout's new columns");
            let commit = MetadataCommit::new(ident.clone())
                .add_columns(missing.into_iter().map(|(n, t)| (n.to_string(), t)));
            self.commit_metadata(&commit).await?;
            return self.backend.load_table(&ident).await;
        }
        match self.backend.create_table(&ident, layout.creation()?).await {
            Ok(table) => Ok(table),
            // Another job created it between our check and our insert.
            Err(Error::CommitConflict { .. }) => self.backend.load_table(&ident).await,
            Err(e) => Err(e),
        }
    }

    pub async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        self.backend.load_table(ident).await
    }

    /// The table, or `None` when it does not exist.
    pub async fn table_if_exists(&self, ident: &TableIdent) -> Result<Option<Table>> {
        match self.backend.load_table(ident).await {
            Ok(table) => Ok(Some(table)),
            Err(Error::NoSuchTable(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every table of every namespace, sorted.
    pub async fn list_tables(&self) -> Result<Vec<TableIdent>> {
        let mut all = Vec::new();
        for namespace in self.backend.list_namespaces().await? {
            all.extend(self.backend.list_tables(&namespace).await?);
        }
        all.sort_by_key(|t| t.to_string());
        Ok(all)
    }

    /// Commits one snapshot (see [`SnapshotCommit`]).
    pub async fn commit(&self, commit: &SnapshotCommit) -> Result<CommitOutcome> {
        commit.commit(self.backend.as_ref()).await
    }

    /// Commits a metadata change without a snapshot (see [`MetadataCommit`]).
    pub async fn commit_metadata(&self, commit: &MetadataCommit) -> Result<String> {
        commit.commit(self.backend.as_ref()).await
    }
}

/// Parses `namespace.table`.
pub fn parse_ident(name: &str) -> Result<TableIdent> {
    TableIdent::from_strs(name.split('.'))
        .ok()
        .filter(|i| !i.namespace().is_empty() && !i.name().is_empty() && name.contains('.'))
        .ok_or_else(|| Error::Invalid(format!("`{name}` is not a table name (namespace.table)")))
}

/// The FileIO for a warehouse URL: S3 for `s3://` (with the config's region, endpoint and
/// credentials over the AWS default chain), the local file system otherwise (created if
/// missing).
fn warehouse_io(config: &CatalogConfig, warehouse: &str) -> Result<(FileIO, Option<S3Storage>)> {
    if warehouse.starts_with("s3://") || warehouse.starts_with("s3a://") {
        let settings = config.s3_settings();
        let io = FileIOBuilder::new(Arc::new(S3StorageFactory {
            settings: settings.clone(),
        }))
        .build();
        return Ok((io, Some(S3Storage::new(settings))));
    }
    if let Some(dir) = warehouse.strip_prefix("file://") {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: format!("creating warehouse {dir}"),
            source,
        })?;
    }
    Ok((
        FileIOBuilder::new(Arc::new(LocalFsStorageFactory)).build(),
        None,
    ))
}
