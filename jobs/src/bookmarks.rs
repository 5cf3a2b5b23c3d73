//! Every key cryptolake writes into a snapshot summary or a table's properties, and the one
//! parse of each. Input positions are never guessed: a value that does not parse stops the job
//! with an error naming the table, the snapshot and the key ([`Error::Bookmark`], an internal
//! failure that running again cannot mend), never an empty or default position.
//!
//! | key | where | what |
//! | --- | --- | --- |
//! | `cryptolake.job` | every snapshot | the job that committed it |
//! | `cryptolake.bookmark.silver.<source>` | silver tables | the last bronze snapshot taken |
//! | `cryptolake.bookmark.gold.<silver table>` | gold tables | the last silver snapshot taken |
//! | `cryptolake.bookmark.kafka.<topic>` | Kafka bronze tables | partition → next offset (JSON) |
//! | `cryptolake.ingest-files.files` | bronze snapshots | the landing files taken (JSON array of `{"path","version"}`; a bare path from before versions) |
//! | `cryptolake.ingest-files.expired-taken` | bronze table property | a file listing the landing files expired snapshots took |
//! | `cryptolake.history-from` | table property | the oldest snapshot cryptolake's last expiry kept |
//!
//! Keys under `cryptolake.bookmark.` are carried forward by every commit (the catalog's commit
//! layer), so a compaction never loses a job's position; other writers' commits do not carry
//! them, so they are read from the newest snapshot cryptolake committed
//! ([`cryptolake_catalog::commit::bookmark_snapshot`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use iceberg::spec::{Snapshot, TableMetadata};
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

pub use cryptolake_catalog::commit::BOOKMARK_PREFIX;

use crate::{Error, Result};

/// The snapshot property naming the job that committed it.
pub const JOB_PROPERTY: &str = "cryptolake.job";

/// Snapshot summary key holding the landing files (relative paths, JSON array) a snapshot took.
pub const FILES_TAKEN_KEY: &str = "cryptolake.ingest-files.files";

/// Table property naming a JSON file that lists the landing files taken by snapshots that
/// were expired since (expiry folds their lists in before removing them).
pub const EXPIRED_TAKEN_PROPERTY: &str = "cryptolake.ingest-files.expired-taken";

/// Table property: the oldest snapshot cryptolake's last expiry kept, where the table's
/// history now starts. A history that starts anywhere else after an expiry was cut by another
/// writer, which kept no record of the landing files its expired snapshots took.
pub const HISTORY_FROM_PROPERTY: &str = "cryptolake.history-from";

/// A silver table's bookmark on one bronze source.
pub fn silver_key(source: &str) -> String {
    format!("{BOOKMARK_PREFIX}silver.{source}")
}

/// A gold table's bookmark on a silver table (`silver.quotes`).
pub fn gold_key(silver_table: &str) -> String {
    format!("{BOOKMARK_PREFIX}gold.{silver_table}")
}

/// A Kafka bronze table's offsets for a topic: a JSON object of partition → next offset.
pub fn kafka_offsets_key(topic: &str) -> String {
    format!("{BOOKMARK_PREFIX}kafka.{topic}")
}

/// Whether a summary key is a snapshot-id bookmark (silver's or gold's), as opposed to Kafka
/// offsets.
pub fn is_snapshot_bookmark(key: &str) -> bool {
    key.strip_prefix(BOOKMARK_PREFIX)
        .is_some_and(|rest| rest.starts_with("silver.") || rest.starts_with("gold."))
}

fn unreadable(table: &str, snapshot: i64, key: &str, why: String) -> Error {
    Error::Bookmark(format!(
        "{table}: snapshot {snapshot}'s {key} is unreadable ({why}): input positions are never \
         guessed, so nothing was read or committed; repair or remove the property"
    ))
}

/// The snapshot holding the table's bookmarks: the newest one cryptolake committed, which
/// other writers' commits since may have left behind ([`commit::bookmark_snapshot`]).
fn holder(table: &Table) -> Result<Option<&iceberg::spec::SnapshotRef>> {
    cryptolake_catalog::commit::bookmark_snapshot(table.metadata()).map_err(|why| {
        Error::Bookmark(format!(
            "{}: {why}: input positions are never guessed, so nothing was read or committed",
            table.identifier()
        ))
    })
}

/// A snapshot-id bookmark (silver's, gold's): `None` when the table has none yet.
pub fn snapshot_bookmark(table: &Table, key: &str) -> Result<Option<i64>> {
    let name = table.identifier().to_string();
    let Some(current) = holder(table)? else {
        return Ok(None);
    };
    let Some(text) = current.summary().additional_properties.get(key) else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| unreadable(&name, current.snapshot_id(), key, format!("{text:?}: {e}")))
}

/// A topic's committed offsets, and the bookmark's raw text (what the commit requires
/// unchanged).
pub fn kafka_offsets(table: &Table, topic: &str) -> Result<(BTreeMap<i32, i64>, Option<String>)> {
    let key = kafka_offsets_key(topic);
    let name = table.identifier().to_string();
    let Some(current) = holder(table)? else {
        return Ok((BTreeMap::new(), None));
    };
    let Some(text) = current.summary().additional_properties.get(&key) else {
        return Ok((BTreeMap::new(), None));
    };
    let offsets = serde_json::from_str(text)
        .map_err(|e| unreadable(&name, current.snapshot_id(), &key, format!("{text:?}: {e}")))?;
    Ok((offsets, Some(text.clone())))
}

/// One landing file a snapshot took: its path relative to `<landing>/<source>/` and the
/// version it had (a local file's size and modification time, an object's ETag).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TakenFile {
    /// Taken before versions were recorded: the path, whatever its content.
    Path(String),
    Version {
        path: String,
        version: String,
    },
}

impl TakenFile {
    pub fn path(&self) -> &str {
        match self {
            TakenFile::Path(p) | TakenFile::Version { path: p, .. } => p,
        }
    }
}

/// The landing files a table has taken: per path, the versions taken (`None`: any version, a
/// path recorded before versions were).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken(HashMap<String, Option<HashSet<String>>>);

impl Taken {
    pub fn insert(&mut self, file: TakenFile) {
        match file {
            TakenFile::Path(path) => {
                self.0.insert(path, None);
            }
            TakenFile::Version { path, version } => {
                let entry = self.0.entry(path).or_insert_with(|| Some(HashSet::new()));
                if let Some(versions) = entry {
                    versions.insert(version);
                }
            }
        }
    }

    /// True when this version of `path` was taken.
    pub fn contains(&self, path: &str, version: &str) -> bool {
        match self.0.get(path) {
            Some(None) => true,
            Some(Some(versions)) => versions.contains(version),
            None => false,
        }
    }

    /// True when some version of `path` was taken.
    pub fn contains_path(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// The greatest path taken (listing starts from its directory).
    pub fn newest(&self) -> Option<&str> {
        self.0.keys().max().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Extend<TakenFile> for Taken {
    fn extend<I: IntoIterator<Item = TakenFile>>(&mut self, iter: I) {
        for file in iter {
            self.insert(file);
        }
    }
}

/// The landing files one snapshot of `table` took (`None` for a snapshot ingest-files did not
/// write).
pub fn files_taken(table: &str, snapshot: &Snapshot) -> Result<Option<Vec<TakenFile>>> {
    let Some(text) = snapshot
        .summary()
        .additional_properties
        .get(FILES_TAKEN_KEY)
    else {
        return Ok(None);
    };
    serde_json::from_str(text).map(Some).map_err(|e| {
        unreadable(
            table,
            snapshot.snapshot_id(),
            FILES_TAKEN_KEY,
            e.to_string(),
        )
    })
}

/// The landing files the snapshots in `table`'s metadata took.
pub fn taken_in_snapshots(table: &str, metadata: &TableMetadata) -> Result<Taken> {
    let mut taken = Taken::default();
    for snapshot in metadata.snapshots() {
        taken.extend(files_taken(table, snapshot)?.into_iter().flatten());
    }
    Ok(taken)
}

/// The landing files taken by expired snapshots (empty when nothing was expired).
pub async fn expired_taken(table: &Table) -> Result<Vec<TakenFile>> {
    let Some(path) = table.metadata().properties().get(EXPIRED_TAKEN_PROPERTY) else {
        return Ok(Vec::new());
    };
    let bytes = table.file_io().new_input(path)?.read().await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Bookmark(format!(
            "{}: {EXPIRED_TAKEN_PROPERTY} {path} (landing files taken by expired snapshots) is \
             unreadable ({e}): nothing was read or committed",
            table.identifier()
        ))
    })
}

/// The oldest ancestor of the current snapshot still in the table, and whether snapshots
/// before it were expired: its parent is gone, or (as PyIceberg's expiry clears the parent)
/// it has none yet is not a v2 table's first commit (sequence number 1).
pub fn history_start(metadata: &TableMetadata) -> Option<(i64, bool)> {
    let mut oldest = metadata.current_snapshot()?;
    loop {
        match oldest.parent_snapshot_id() {
            None => return Some((oldest.snapshot_id(), oldest.sequence_number() > 1)),
            Some(parent) => match metadata.snapshot_by_id(parent) {
                Some(p) => oldest = p,
                None => return Some((oldest.snapshot_id(), true)),
            },
        }
    }
}

/// That the table's history reaches back to its first snapshot, or starts where cryptolake's
/// own expiry left it (which folded the removed snapshots' lists into the log). Where another
/// writer expired snapshots (Athena's `VACUUM`, Spark's or PyIceberg's expiry), the landing
/// files they took are unknown: taking files again would duplicate them, so nothing is taken
/// until an operator accepts the new start ([`HISTORY_FROM_PROPERTY`]), and with it that the
/// files those snapshots took are taken again.
pub fn check_history(table: &Table) -> Result<()> {
    let metadata = table.metadata();
    let Some((start, cut)) = history_start(metadata) else {
        return Ok(());
    };
    if !cut {
        return Ok(());
    }
    let properties = metadata.properties();
    match properties.get(HISTORY_FROM_PROPERTY) {
        Some(from) if *from == start.to_string() => Ok(()),
        // Cut by a cryptolake from before the property (it folded every list it removed).
        None if properties.contains_key(EXPIRED_TAKEN_PROPERTY) => Ok(()),
        _ => Err(Error::Bookmark(format!(
            "{}: snapshots before snapshot {start} were expired by another writer, which kept no \
             record of the landing files they took: input positions are never guessed, so \
             nothing was taken. To take the landing files those snapshots took again (bronze \
             then holds their records twice; silver keeps each once), set the table property \
             {HISTORY_FROM_PROPERTY} = {start} (Athena `ALTER TABLE ... SET TBLPROPERTIES`, \
             PyIceberg `set_properties`); or move those files out of the landing zone first",
            table.identifier()
        ))),
    }
}

/// Every landing file the table has taken: its snapshots' lists and the expired ones' log.
/// A history another writer cut is an error ([`check_history`]).
pub async fn taken_files(table: &Table) -> Result<Taken> {
    check_history(table)?;
    let name = table.identifier().to_string();
    let mut taken = taken_in_snapshots(&name, table.metadata())?;
    taken.extend(expired_taken(table).await?);
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bookmarks_where_they_must_be_carried_forward() {
        assert_eq!(
            silver_key("coinbase"),
            "cryptolake.bookmark.silver.coinbase"
        );
        assert_eq!(
            gold_key("silver.quotes"),
            "cryptolake.bookmark.gold.silver.quotes"
        );
        assert_eq!(
            kafka_offsets_key("coinbase-trades"),
            "cryptolake.bookmark.kafka.coinbase-trades"
        );
        assert!(!FILES_TAKEN_KEY.starts_with(BOOKMARK_PREFIX));
    }

    #[test]
    fn a_path_taken_without_a_version_is_taken_in_every_version() {
        let list: Vec<TakenFile> =
            serde_json::from_str(r#"["old/a.json", {"path": "new/b.json", "version": "\"e1\""}]"#)
                .unwrap();
        let mut taken = Taken::default();
        taken.extend(list);
        assert!(taken.contains("old/a.json", "anything"));
        assert!(taken.contains("new/b.json", "\"e1\""));
        assert!(!taken.contains("new/b.json", "\"e2\""));
        assert!(taken.contains_path("new/b.json"));
        assert!(!taken.contains_path("new/c.json"));
        assert_eq!(taken.newest(), Some("old/a.json"));
        taken.insert(TakenFile::Path("new/b.json".into()));
        assert!(taken.contains("new/b.json", "\"e2\""));
        let json = serde_json::to_string(&TakenFile::Version {
            path: "p".into(),
            version: "v".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"path":"p","version":"v"}"#);
    }
}
