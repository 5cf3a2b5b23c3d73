//! What a table's metadata reaches: every metadata, manifest-list, manifest and data file of
//! every snapshot, and the files-taken log, in one spelling per location. Orphan removal keeps
//! these; snapshot expiry deletes what only the expired snapshots reached.

use std::collections::HashSet;

use iceberg::table::Table;

use crate::Result;
use crate::bookmarks::EXPIRED_TAKEN_PROPERTY;

/// Every file the table's metadata reaches, as [`canonical`] locations.
pub async fn reachable(table: &Table) -> Result<HashSet<String>> {
    let metadata = table.metadata();
    let mut out: HashSet<String> = HashSet::new();
    let mut add = |location: &str| {
        out.insert(canonical(location));
    };
    if let Some(current) = table.metadata_location() {
        add(current);
    }
    for entry in metadata.metadata_log() {
        add(&entry.metadata_file);
    }
    if let Some(log) = metadata.properties().get(EXPIRED_TAKEN_PROPERTY) {
        add(log);
    }
    for snapshot in metadata.snapshots() {
        add(snapshot.manifest_list());
        let list = cryptolake_catalog::cache::manifest_list(table, snapshot).await?;
        for manifest_file in list.entries() {
            add(&manifest_file.manifest_path);
            let manifest =
                cryptolake_catalog::cache::manifest(manifest_file, table.file_io()).await?;
            for entry in manifest.entries() {
                add(entry.file_path());
            }
        }
    }
    Ok(out)
}

/// One spelling per file: `file:///a/b` and `/a/b` are `/a/b`; `s3a://` is `s3://`.
pub fn canonical(location: &str) -> String {
    if let Some(path) = location.strip_prefix("file://") {
        return path.to_string();
    }
    match location.strip_prefix("s3a://") {
        Some(rest) => format!("s3://{rest}"),
        None => location.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_have_one_spelling() {
        assert_eq!(canonical("file:///a/b"), "/a/b");
        assert_eq!(canonical("/a/b"), "/a/b");
        assert_eq!(canonical("s3a://bucket/k"), "s3://bucket/k");
        assert_eq!(canonical("s3://bucket/k"), "s3://bucket/k");
    }
}
