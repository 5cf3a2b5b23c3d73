//! Iceberg `FileIO` storage for `s3://` warehouses, on `object_store` (the store DataFusion
//! uses), and the listing FileIO lacks (orphan-file removal needs it).
//!
//! iceberg 0.10.1 ships local and in-memory storage only. This one serializes its
//! non-secret settings (region, endpoint, path-style) so a FileIO can travel to executors;
//! credentials never do: each process takes them from its own environment (the AWS
//! variables, web identity, ECS container credentials, instance metadata), as Glue and EMR
//! jobs do.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, S3_ENDPOINT, S3_PATH_STYLE_ACCESS,
    S3_REGION, Storage, StorageConfig, StorageFactory,
};
use iceberg::{Error as IcebergError, ErrorKind};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::Secret;

/// Where and how to reach S3. Static credentials from the config file are kept for this
/// process only: they are never serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Settings {
    pub region: Option<String>,
    /// An S3-compatible endpoint (a local emulator such as moto).
    pub endpoint: Option<String>,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`.
    pub path_style: bool,
    #[serde(skip)]
    pub credentials: Option<(String, Secret)>,
}

impl S3Settings {
    /// Reads `s3.region`, `s3.endpoint`, `s3.path-style-access` over these settings.
    fn merged(&self, props: &HashMap<String, String>) -> Self {
        Self {
            region: props
                .get(S3_REGION)
                .cloned()
                .or_else(|| self.region.clone()),
            endpoint: props
                .get(S3_ENDPOINT)
                .cloned()
                .or_else(|| self.endpoint.clone()),
            path_style: props
                .get(S3_PATH_STYLE_ACCESS)
                .map_or(self.path_style, |v| v == "true"),
            credentials: self.credentials.clone(),
        }
    }

    /// A client for `bucket`: these settings over the `AWS_*` environment, credentials from
    /// the config or else the default chain (environment, web identity, ECS container
    /// credentials, instance metadata).
    pub fn store(&self, bucket: &str) -> iceberg::Result<AmazonS3> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some((key, secret)) = &self.credentials {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(&secret.0);
        }
        if self.path_style {
            builder = builder.with_virtual_hosted_style_request(false);
        }
        builder.build().map_err(to_iceberg)
    }
}

fn to_iceberg(e: object_store::Error) -> IcebergError {
    let kind = match e {
        object_store::Error::NotFound { .. } => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    IcebergError::new(kind, format!("object store: {e}")).with_source(e)
}

/// `s3://bucket/key` (or `s3a://`) split into bucket and key.
pub fn split_s3_url(url: &str) -> iceberg::Result<(&str, &str)> {
    let rest = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("s3a://"))
        .ok_or_else(|| {
            IcebergError::new(ErrorKind::DataInvalid, format!("not an s3:// URL: {url}"))
        })?;
    Ok(rest.split_once('/').unwrap_or((rest, "")))
}

/// Iceberg storage for `s3://` paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Storage {
    settings: S3Settings,
    /// One client per bucket, built on first use (and again after deserializing).
    #[serde(skip)]
    stores: Arc<Mutex<HashMap<String, Arc<AmazonS3>>>>,
}

/// An object found by [`S3Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// `s3://bucket/key`.
    pub url: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl S3Storage {
    pub fn new(settings: S3Settings) -> Self {
        Self {
            settings,
            stores: Arc::default(),
        }
    }

    fn locate(&self, url: &str) -> iceberg::Result<(Arc<AmazonS3>, StorePath)> {
        let (bucket, key) = split_s3_url(url)?;
        let store = {
            let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
            match stores.get(bucket) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(self.settings.store(bucket)?);
                    stores.insert(bucket.to_string(), s.clone());
                    s
                }
            }
        };
        Ok((store, StorePath::from(key)))
    }

    /// Every object under `prefix` (an `s3://bucket/prefix` URL).
    pub async fn list(&self, prefix: &str) -> iceberg::Result<Vec<ListedObject>> {
        let (bucket, _) = split_s3_url(prefix)?;
        let bucket = bucket.to_string();
        let (store, path) = self.locate(prefix)?;
        store
            .list(Some(&path))
            .map_ok(|meta| ListedObject {
                url: format!("s3://{bucket}/{}", meta.location),
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .try_collect()
            .await
            .map_err(to_iceberg)
    }
}

struct S3Reader {
    store: Arc<AmazonS3>,
    path: StorePath,
}

#[async_trait]
impl FileRead for S3Reader {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(to_iceberg)
    }
}

/// Buffers and uploads (one PUT for small files, multipart for large ones).
struct S3Writer(BufWriter);

#[async_trait]
impl FileWrite for S3Writer {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        self.0.put(bs).await.map_err(to_iceberg)
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        self.0.shutdown().await.map_err(|e| {
            IcebergError::new(ErrorKind::Unexpected, format!("object store upload: {e}"))
        })
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for S3Storage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let (store, key) = self.locate(path)?;
        match store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(to_iceberg(e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let (store, key) = self.locate(path)?;
        let meta = store.head(&key).await.map_err(to_iceberg)?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let (store, key) = self.locate(path)?;
        let got = store.get(&key).await.map_err(to_iceberg)?;
        got.bytes().await.map_err(to_iceberg)
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (store, path) = self.locate(path)?;
        Ok(Box::new(S3Reader { store, path }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let (store, key) = self.locate(path)?;
        store.put(&key, bs.into()).await.map_err(to_iceberg)?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (store, key) = self.locate(path)?;
        let store: Arc<dyn ObjectStore> = store;
        Ok(Box::new(S3Writer(BufWriter::new(store, key))))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let (store, key) = self.locate(path)?;
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(to_iceberg(e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        for object in self.list(path).await? {
            self.delete(&object.url).await?;
        }
        Ok(())
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let paths: Vec<String> = paths.collect().await;
        for path in paths {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Builds [`S3Storage`] from a FileIO's properties over default settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct S3StorageFactory {
    pub settings: S3Settings,
}

#[typetag::serde]
impl StorageFactory for S3StorageFactory {
    fn build(&self, config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(S3Storage::new(
            self.settings.merged(config.props()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_settings() {
        assert_eq!(
            split_s3_url("s3://b/wh/t/x.parquet").unwrap(),
            ("b", "wh/t/x.parquet")
        );
        assert_eq!(split_s3_url("s3a://b").unwrap(), ("b", ""));
        assert!(split_s3_url("file:///tmp/x").is_err());
        let props = HashMap::from([
            (S3_ENDPOINT.to_string(), "http://127.0.0.1:5000".to_string()),
            (S3_PATH_STYLE_ACCESS.to_string(), "true".to_string()),
        ]);
        let base = S3Settings {
            region: Some("eu-west-1".into()),
            ..S3Settings::default()
        };
        let merged = base.merged(&props);
        assert_eq!(merged.region.as_deref(), Some("eu-west-1"));
        assert_eq!(merged.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(merged.path_style);
        // Settings travel; a cache of clients does not.
        let with_secret = S3Settings {
            credentials: Some(("AKIA".into(), Secret("hush".into()))),
            ..merged
        };
        let json = serde_json::to_string(&S3Storage::new(with_secret.clone())).unwrap();
        assert!(!json.contains("stores") && !json.contains("hush"), "{json}");
        assert!(!format!("{with_secret:?}").contains("hush"));
    }
}
