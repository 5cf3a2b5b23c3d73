//! The AWS Glue Data Catalog as an Iceberg catalog, through `aws-sdk-glue`: one Glue database
//! per layer (names from `[catalog.databases]`), tables registered the way Athena reads them (`table_type=ICEBERG`,
//! `metadata_location`, `previous_metadata_location`, StorageDescriptor columns with Athena
//! types and the location), and commits that swap `metadata_location` with `UpdateTable`,
//! `VersionId` (optimistic locking) and `SkipArchive`.
//!
//! `iceberg-catalog-glue` is not used: its commit goes through iceberg's `Transaction`, which
//! cannot carry cryptolake's overwrite and replace snapshots.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use aws_sdk_glue::Client;
use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
use iceberg::io::FileIO;
use iceberg::spec::{PrimitiveType, TableMetadata, Type};
use iceberg::table::Table;
use iceberg::{MetadataLocation, NamespaceIdent, TableCreation, TableIdent};

use crate::backend::CatalogBackend;
use crate::check::Finding;
use crate::config::{CatalogConfig, Databases};
use crate::sqlite::{build_table, write_first_metadata};
use crate::{Error, Result};

const METADATA_LOCATION: &str = "metadata_location";
const PREVIOUS_METADATA_LOCATION: &str = "previous_metadata_location";

/// Glue as the catalog.
#[derive(Debug)]
pub struct GlueCatalog {
    client: Client,
    warehouse: String,
    file_io: FileIO,
    databases: Databases,
}

fn glue_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Glue(format!("{what}: {e}"))
}

/// A failed call with its whole cause chain ("dispatch failure: ... Connection refused"),
/// not the SDK's bare "unhandled error".
fn call_error<E, R>(call: &str, e: &aws_sdk_glue::error::SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    glue_error(call, aws_sdk_glue::error::DisplayErrorContext(e))
}

impl GlueCatalog {
    /// Connects with the AWS default credential chain, the config's region, endpoint and
    /// static credentials over it.
    pub async fn open(config: &CatalogConfig, warehouse: &str, file_io: FileIO) -> Result<Self> {
        // A Glue that stops answering fails the call (and the SDK retries it) instead of
        // hanging the job: the SDK sets no read timeout by default.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .operation_attempt_timeout(std::time::Duration::from_secs(60))
            .build();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(aws_sdk_glue::config::Credentials::new(
                key,
                &secret.0,
                None,
                None,
                "cryptolake-config",
            ));
        }
        let client = Client::new(&loader.load().await);
        Ok(Self {
            client,
            warehouse: warehouse.to_string(),
            file_io,
            databases: config.databases.clone(),
        })
    }

    /// The Glue database of a namespace (a layer's configured name).
    fn database_of(&self, namespace: &str) -> String {
        self.databases.database(namespace).to_string()
    }

    fn database(&self, ident: &TableIdent) -> String {
        self.database_of(&ident.namespace().join("."))
    }

    /// The table's Glue record: its parameters and version, `None` when it does not exist.
    async fn get(&self, ident: &TableIdent) -> Result<Option<aws_sdk_glue::types::Table>> {
        let got = self
            .client
            .get_table()
            .database_name(self.database(ident))
            .name(ident.name())
            .send()
            .await;
        match got {
            Ok(out) => Ok(out.table),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(call_error("GetTable", &e)),
        }
    }

    fn metadata_location_of(
        ident: &TableIdent,
        table: &aws_sdk_glue::types::Table,
    ) -> Result<String> {
        table
            .parameters()
            .and_then(|p| p.get(METADATA_LOCATION))
            .cloned()
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{ident} in Glue has no metadata_location: not an Iceberg table"
                ))
            })
    }

    /// The TableInput Athena needs: parameters, columns with Athena types, location.
    fn table_input(
        ident: &TableIdent,
        metadata: &TableMetadata,
        metadata_location: &str,
        previous: Option<&str>,
    ) -> Result<TableInput> {
        let mut parameters = HashMap::from([
            ("table_type".to_string(), "ICEBERG".to_string()),
            (METADATA_LOCATION.to_string(), metadata_location.to_string()),
        ]);
        if let Some(p) = previous {
            parameters.insert(PREVIOUS_METADATA_LOCATION.to_string(), p.to_string());
        }
        let columns = metadata
            .current_schema()
            .as_struct()
            .fields()
            .iter()
            .map(|f| {
                Column::builder()
                    .name(f.name.to_lowercase())
                    .r#type(athena_type(&f.field_type))
                    .set_comment(f.doc.clone())
                    .build()
                    .map_err(|e| glue_error("column", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let descriptor = StorageDescriptor::builder()
            .location(metadata.location())
            .set_columns(Some(columns))
            .build();
        TableInput::builder()
            .name(ident.name())
            .table_type("EXTERNAL_TABLE")
            .set_parameters(Some(parameters))
            .storage_descriptor(descriptor)
            .build()
            .map_err(|e| glue_error("table input", e))
    }
}

/// Compares Glue's record of a table with its metadata, as Athena would find it.
fn registration_findings(glue: &aws_sdk_glue::types::Table, table: &Table) -> Vec<Finding> {
    let mut out = Vec::new();
    let params = glue.parameters();
    let param = |k: &str| params.and_then(|p| p.get(k)).map(String::as_str);
    if !param("table_type").is_some_and(|v| v.eq_ignore_ascii_case("ICEBERG")) {
        out.push(Finding::error(
            "glue-table-type",
            "Glue parameter table_type is not ICEBERG: Athena reads it as a Hive table",
        ));
    }
    let metadata = table.metadata();
    match glue.storage_descriptor() {
        None => out.push(Finding::error(
            "glue-storage-descriptor",
            "no StorageDescriptor: Athena finds neither columns nor location",
        )),
        Some(sd) => {
            if sd.location().map(|l| l.trim_end_matches('/'))
                != Some(metadata.location().trim_end_matches('/'))
            {
                out.push(Finding::error(
                    "glue-location",
                    format!(
                        "StorageDescriptor location {:?} is not the table location {}",
                        sd.location(),
                        metadata.location()
                    ),
                ));
            }
            let glue_columns: Vec<(String, String)> = sd
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.r#type().unwrap_or("").to_string()))
                .collect();
            let expected: Vec<(String, String)> = metadata
                .current_schema()
                .as_struct()
                .fields()
                .iter()
                .map(|f| (f.name.to_lowercase(), athena_type(&f.field_type)))
                .collect();
            if glue_columns != expected {
                out.push(Finding::warning(
                    "glue-columns",
                    format!(
                        "StorageDescriptor columns {glue_columns:?} differ from the schema's \
                         {expected:?}: Athena's DDL and the console show the stale ones"
                    ),
                ));
            }
        }
    }
    out
}

/// The Hive/Athena type name of an Iceberg type.
pub fn athena_type(ty: &Type) -> String {
    match ty {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => "boolean".into(),
            PrimitiveType::Int => "int".into(),
            PrimitiveType::Long => "bigint".into(),
            PrimitiveType::Float => "float".into(),
            PrimitiveType::Double => "double".into(),
            PrimitiveType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            PrimitiveType::Date => "date".into(),
            PrimitiveType::Timestamp | PrimitiveType::TimestampNs => "timestamp".into(),
            // Athena cannot read these; `table check` reports them.
            PrimitiveType::Timestamptz | PrimitiveType::TimestamptzNs => {
                "timestamp with time zone".into()
            }
            PrimitiveType::String | PrimitiveType::Uuid => "string".into(),
            PrimitiveType::Time => "string".into(),
            PrimitiveType::Fixed(_) | PrimitiveType::Binary => "binary".into(),
        },
        Type::Struct(_) | Type::List(_) | Type::Map(_) => "string".into(),
    }
}

#[async_trait]
impl CatalogBackend for GlueCatalog {
    fn name(&self) -> &str {
        "glue"
    }

    fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    fn warehouse(&self) -> &str {
        &self.warehouse
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        let input = DatabaseInput::builder()
            .name(self.database_of(namespace))
            .build()
            .map_err(|e| glue_error("database input", e))?;
        match self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(call_error("CreateDatabase", &e)),
        }
    }

    async fn list_tables(&self, namespace: &str) -> Result<Vec<TableIdent>> {
        let ns = NamespaceIdent::from_strs(namespace.split('.'))?;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = match self
                .client
                .get_tables()
                .database_name(self.database_of(namespace))
                .set_next_token(token)
                .send()
                .await
            {
                Ok(page) => page,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_entity_not_found_exception()) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(call_error("GetTables", &e)),
            };
            for t in page.table_list() {
                let iceberg = t
                    .parameters()
                    .and_then(|p| p.get("table_type"))
                    .is_some_and(|v| v.eq_ignore_ascii_case("ICEBERG"));
                if iceberg {
                    out.push(TableIdent::new(ns.clone(), t.name().to_string()));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(out)
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        // Only the layers' databases are cryptolake's: ask for those three, not for every
        // database in the account.
        let mut out = Vec::new();
        for (layer, database) in self.databases.layers() {
            match self.client.get_database().name(database).send().await {
                Ok(_) => out.push(layer.to_string()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_entity_not_found_exception()) => {}
                Err(e) => return Err(call_error("GetDatabase", &e)),
            }
        }
        Ok(out)
    }

    async fn create_table(&self, ident: &TableIdent, creation: TableCreation) -> Result<Table> {
        let database = self.database(ident);
        self.ensure_namespace(&ident.namespace().join(".")).await?;
        let default_location = format!("{}/{}/{}", self.warehouse, database, ident.name());
        let (metadata, metadata_location) =
            write_first_metadata(&self.file_io, creation, default_location).await?;
        let input = Self::table_input(ident, &metadata, &metadata_location, None)?;
        match self
            .client
            .create_table()
            .database_name(&database)
            .table_input(input)
            .send()
            .await
        {
            Ok(_) => build_table(ident, metadata, metadata_location, &self.file_io),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Err(Error::CommitConflict {
                    table: ident.to_string(),
                })
            }
            Err(e) => Err(call_error("CreateTable", &e)),
        }
    }

    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        let table = self
            .get(ident)
            .await?
            .ok_or_else(|| Error::NoSuchTable(ident.to_string()))?;
        let location = Self::metadata_location_of(ident, &table)?;
        let metadata = crate::cache::metadata(&self.file_io, &location).await?;
        build_table(ident, metadata, location, &self.file_io)
    }

    async fn registration_problems(&self, table: &Table) -> Result<Vec<Finding>> {
        let ident = table.identifier();
        let Some(glue) = self.get(ident).await? else {
            return Err(Error::NoSuchTable(ident.to_string()));
        };
        Ok(registration_findings(&glue, table))
    }

    async fn swap_metadata(
        &self,
        ident: &TableIdent,
        expected: &str,
        new_location: &str,
    ) -> Result<()> {
        MetadataLocation::from_str(new_location)?;
        let conflict = || Error::CommitConflict {
            table: ident.to_string(),
        };
        let current = self
            .get(ident)
            .await?
            .ok_or_else(|| Error::NoSuchTable(ident.to_string()))?;
        if Self::metadata_location_of(ident, &current)? != expected {
            return Err(conflict());
        }
        let metadata = crate::cache::metadata(&self.file_io, new_location).await?;
        let input = Self::table_input(ident, &metadata, new_location, Some(expected))?;
        let updated = self
            .client
            .update_table()
            .database_name(self.database(ident))
            .table_input(input)
            .set_version_id(current.version_id().map(str::to_string))
            .skip_archive(true)
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_concurrent_modification_exception()) =>
            {
                Err(conflict())
            }
            // The outcome of a call cut off in flight is unknown: the job fails, and its re-run
            // finds its bookmark in the table if the update did land.
            Err(e) => Err(call_error("UpdateTable", &e)),
        }
    }
}
