//! Parsed Iceberg metadata files, manifest lists and manifests, cached per process by path.
//!
//! Iceberg never rewrites these files in place: every writer gives a new one a new name (a
//! UUID, or a snapshot id and a UUID), so a cached copy cannot be stale and needs no
//! invalidation. Within one job a table is loaded several times (plan, execute, each sink task,
//! each commit attempt) and every gold table reads silver's manifests: from the cache each file
//! is read from storage, and parsed, once per process. The caches are bounded (by manifest
//! entries, by list entries, by metadata files), so a long-lived daemon or executor holds a
//! fixed amount, the least recently used going first.
//!
//! Errors are not cached (the next call tries storage again) and name the file they came from,
//! keeping iceberg's error kind and retryability.

use std::sync::{Arc, LazyLock};

use iceberg::io::FileIO;
use iceberg::spec::{Manifest, ManifestFile, ManifestList, SnapshotRef, TableMetadata};
use iceberg::table::Table;
use moka::sync::Cache;

use crate::Result;

/// Manifest entries (data files) held over every cached manifest: a parsed entry with its
/// column statistics is one to two kilobytes, so at most about 64 MiB.
const MANIFEST_ENTRIES: u64 = 48 * 1024;
/// Manifest-list entries (manifests) held over every cached list.
const LIST_ENTRIES: u64 = 64 * 1024;
/// Metadata files held (each with every snapshot of its table).
const METADATA_FILES: u64 = 64;

static MANIFESTS: LazyLock<Cache<String, Arc<Manifest>>> = LazyLock::new(|| {
    Cache::builder()
        .weigher(|_, m: &Arc<Manifest>| weight(m.entries().len()))
        .max_capacity(MANIFEST_ENTRIES)
        .build()
});

static LISTS: LazyLock<Cache<String, Arc<ManifestList>>> = LazyLock::new(|| {
    Cache::builder()
        .weigher(|_, l: &Arc<ManifestList>| weight(l.entries().len()))
        .max_capacity(LIST_ENTRIES)
        .build()
});

static METADATA: LazyLock<Cache<String, Arc<TableMetadata>>> =
    LazyLock::new(|| Cache::builder().max_capacity(METADATA_FILES).build());

fn weight(entries: usize) -> u32 {
    u32::try_from(entries.saturating_add(1)).unwrap_or(u32::MAX)
}

/// Names the file an iceberg error came from, keeping its kind and retryability.
fn naming(path: &str) -> impl FnOnce(iceberg::Error) -> crate::Error + '_ {
    move |e| crate::Error::Iceberg(e.with_context("file", path))
}

/// A manifest of the table's storage.
pub async fn manifest(file: &ManifestFile, io: &FileIO) -> Result<Arc<Manifest>> {
    if let Some(hit) = MANIFESTS.get(&file.manifest_path) {
        return Ok(hit);
    }
    let manifest = Arc::new(
        file.load_manifest(io)
            .await
            .map_err(naming(&file.manifest_path))?,
    );
    MANIFESTS.insert(file.manifest_path.clone(), manifest.clone());
    Ok(manifest)
}

/// The manifest list of one of the table's snapshots.
pub async fn manifest_list(table: &Table, snapshot: &SnapshotRef) -> Result<Arc<ManifestList>> {
    let path = snapshot.manifest_list();
    if let Some(hit) = LISTS.get(path) {
        return Ok(hit);
    }
    let list = Arc::new(
        table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(naming(path))?,
    );
    LISTS.insert(path.to_string(), list.clone());
    Ok(list)
}

/// A table metadata file.
pub async fn metadata(io: &FileIO, location: &str) -> Result<TableMetadata> {
    if let Some(hit) = METADATA.get(location) {
        return Ok(hit.as_ref().clone());
    }
    let metadata = TableMetadata::read_from(io, location)
        .await
        .map_err(naming(location))?;
    METADATA.insert(location.to_string(), Arc::new(metadata.clone()));
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_metadata_file_is_named_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00001-x.metadata.json");
        std::fs::write(&path, "{\"format-version\": 2").unwrap();
        let io =
            iceberg::io::FileIOBuilder::new(Arc::new(iceberg::io::LocalFsStorageFactory)).build();
        let location = path.to_str().unwrap();
        let err = metadata(&io, location).await.unwrap_err().to_string();
        assert!(err.contains(location), "{err}");
        assert!(METADATA.get(location).is_none());
    }
}
