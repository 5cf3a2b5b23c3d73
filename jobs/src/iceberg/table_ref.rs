//! A table as plans carry it between processes: its name, metadata location and metadata, but
//! never its storage credentials. The process that decodes a plan opens the table's files with
//! its own `FileIO`, built from its own configuration and environment (the AWS default chain).

use iceberg::TableIdent;
use iceberg::io::FileIO;
use iceberg::spec::{DataFile, TableMetadata};
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An Iceberg table pinned to one metadata version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRef {
    pub ident: TableIdent,
    pub metadata_location: Option<String>,
    pub metadata: TableMetadata,
}

impl TableRef {
    /// The table as it is loaded now.
    pub fn of(table: &Table) -> Self {
        Self {
            ident: table.identifier().clone(),
            metadata_location: table.metadata_location().map(str::to_string),
            metadata: table.metadata().clone(),
        }
    }

    /// A read-only handle on the table's files through `file_io`, on the current Tokio runtime.
    pub fn open(&self, file_io: FileIO) -> Result<Table> {
        let mut builder = Table::builder()
            .identifier(self.ident.clone())
            .metadata(self.metadata.clone())
            .file_io(file_io)
            .runtime(iceberg::Runtime::try_current()?)
            .readonly(true);
        if let Some(location) = &self.metadata_location {
            builder = builder.metadata_location(location.clone());
        }
        Ok(builder.build()?)
    }

    /// `namespace.table`.
    pub fn name(&self) -> String {
        self.ident.to_string()
    }
}

/// Data files as JSON (iceberg's manifest-entry serde), for plans and result rows.
pub fn files_to_json(metadata: &TableMetadata, files: &[DataFile]) -> Result<Vec<String>> {
    let spec = metadata.default_partition_spec();
    let partition_type = spec.partition_type(metadata.current_schema())?;
    files
        .iter()
        .map(|f| {
            Ok(iceberg::spec::serialize_data_file_to_json(
                f.clone(),
                &partition_type,
                metadata.format_version(),
            )?)
        })
        .collect()
}

/// The inverse of [`files_to_json`].
pub fn files_from_json(metadata: &TableMetadata, json: &[String]) -> Result<Vec<DataFile>> {
    let spec = metadata.default_partition_spec();
    let schema = metadata.current_schema();
    let partition_type = spec.partition_type(schema)?;
    json.iter()
        .map(|j| {
            iceberg::spec::deserialize_data_file_from_json(
                j,
                spec.spec_id(),
                &partition_type,
                schema,
            )
            .map_err(|e| Error::Internal(format!("a written data file does not decode: {e}")))
        })
        .collect()
}
