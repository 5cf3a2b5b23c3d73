//! Catalog configuration: which catalog, where its warehouse is.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which catalog implementation holds the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// The embedded default: a SQLite file with iceberg's SQL catalog schema.
    #[default]
    Sqlite,
    /// The AWS Glue Data Catalog (one database per namespace), read by Athena.
    Glue,
}

/// Where the tables live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    #[serde(rename = "type")]
    pub kind: CatalogKind,
    /// The catalog name (`catalog_name` in the SQL catalog).
    pub name: String,
    /// The SQLite database file (SQLite catalog).
    pub path: PathBuf,
    /// The warehouse root: a local directory, `file:///...` or `s3://bucket/prefix`.
    pub warehouse: String,
    /// AWS region for S3; the AWS default chain's (`AWS_REGION`) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An endpoint serving S3 instead of AWS (a local emulator such as moto); path-style.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Static credentials; prefer the AWS default chain (environment, web identity, ECS,
    /// instance metadata), which is used when these are absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// The Glue database that holds each layer's tables.
    pub databases: Databases,
}

/// Glue database names per layer (`[catalog.databases]`); cryptolake names tables
/// `layer.table` whatever the database is called, Athena sees `database.table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Databases {
    pub bronze: String,
    pub silver: String,
    pub gold: String,
}

impl Default for Databases {
    fn default() -> Self {
        Self {
            bronze: "bronze".into(),
            silver: "silver".into(),
            gold: "gold".into(),
        }
    }
}

impl Databases {
    /// The database of a layer; other namespaces keep their own name.
    pub fn database<'a>(&'a self, namespace: &'a str) -> &'a str {
        match namespace {
            "bronze" => &self.bronze,
            "silver" => &self.silver,
            "gold" => &self.gold,
            other => other,
        }
    }

    /// The layers and their databases.
    pub fn layers(&self) -> [(&str, &str); 3] {
        [
            ("bronze", &self.bronze),
            ("silver", &self.silver),
            ("gold", &self.gold),
        ]
    }

    /// Glue database names: lower-case letters, digits and underscores, at most 255.
    fn validate(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for (layer, db) in self.layers() {
            let valid = !db.is_empty()
                && db.len() <= 255
                && db
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(Error::invalid(format!(
                    "catalog.databases.{layer} = {db:?}: Glue and Athena need lower-case \
                     letters, digits and underscores"
                )));
            }
            if !seen.insert(db) {
                return Err(Error::invalid(format!(
                    "catalog.databases: {db:?} is named for two layers"
                )));
            }
        }
        Ok(())
    }
}

/// A value that is never printed (`Debug` shows `****`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            kind: CatalogKind::Sqlite,
            name: "cryptolake".into(),
            path: PathBuf::from("lake/catalog.db"),
            warehouse: "lake/warehouse".into(),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            databases: Databases::default(),
        }
    }
}

impl CatalogConfig {
    /// How this catalog's S3 is reached (the warehouse's, and an S3 landing zone's): its
    /// region, endpoint (path-style, as emulators answer) and static credentials, if any.
    pub fn s3_settings(&self) -> crate::storage::S3Settings {
        crate::storage::S3Settings {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            // Emulators answer path-style; AWS itself prefers virtual-hosted.
            path_style: self.endpoint.is_some(),
            credentials: self
                .access_key_id
                .clone()
                .zip(self.secret_access_key.clone()),
        }
    }

    /// Checks that the configuration can be used.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("catalog.name must not be empty"));
        }
        if self.warehouse.trim().is_empty() {
            return Err(Error::invalid("catalog.warehouse must not be empty"));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Error::invalid(
                "catalog.access_key_id and catalog.secret_access_key go together",
            ));
        }
        self.databases.validate()?;
        if self.kind == CatalogKind::Glue && !self.warehouse.starts_with("s3://") {
            return Err(Error::invalid(format!(
                "catalog.type = \"glue\" needs an s3:// warehouse (Athena reads S3), not {:?}",
                self.warehouse
            )));
        }
        if self.kind == CatalogKind::Sqlite && self.path.as_os_str().is_empty() {
            return Err(Error::invalid("catalog.path must name the SQLite file"));
        }
        Ok(())
    }

    /// Resolves relative paths against `base` (the directory of the config file).
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.path.is_relative() {
            self.path = base.join(&self.path);
        }
        if !self.warehouse.contains("://") && Path::new(&self.warehouse).is_relative() {
            self.warehouse = base.join(&self.warehouse).to_string_lossy().into_owned();
        }
    }

    /// The warehouse as a URL: local paths become `file:///abs/path`.
    pub fn warehouse_url(&self) -> Result<String> {
        if self.warehouse.contains("://") {
            return Ok(self.warehouse.trim_end_matches('/').to_string());
        }
        let path = Path::new(&self.warehouse);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|source| Error::Io {
                    context: "reading the current directory".into(),
                    source,
                })?
                .join(path)
        };
        Ok(format!(
            "file://{}",
            abs.to_string_lossy().trim_end_matches('/')
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let mut c = CatalogConfig::default();
        c.resolve_paths(Path::new("/srv/lake1"));
        assert_eq!(c.path, PathBuf::from("/srv/lake1/lake/catalog.db"));
        assert_eq!(
            c.warehouse_url().unwrap(),
            "file:///srv/lake1/lake/warehouse"
        );
        c.warehouse = "s3://bucket/prefix/".into();
        assert_eq!(c.warehouse_url().unwrap(), "s3://bucket/prefix");
        c.validate().unwrap();
        c.name = " ".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn layers_map_to_their_glue_databases() {
        let mut c = CatalogConfig {
            kind: CatalogKind::Glue,
            warehouse: "s3://b/p".into(),
            ..CatalogConfig::default()
        };
        c.validate().unwrap();
        assert_eq!(c.databases.database("silver"), "silver");
        c.databases.silver = "crypto_silver".into();
        assert_eq!(c.databases.database("silver"), "crypto_silver");
        assert_eq!(c.databases.database("scratch"), "scratch");
        c.validate().unwrap();
        c.databases.gold = "Gold".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("catalog.databases.gold"), "{err}");
        c.databases.gold = "crypto_silver".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("two layers"), "{err}");
        c.databases.gold = "gold".into();
        c.warehouse = "/tmp/w".into();
        assert!(c.validate().unwrap_err().to_string().contains("s3://"));
    }
}
