//! The commit layer iceberg 0.10.1 lacks: one snapshot that adds and removes data files.
//!
//! iceberg's `Transaction` only fast-appends, and its action and commit builders are
//! crate-private, so this module builds the snapshot from the public pieces
//! (`ManifestWriterBuilder`, `ManifestListWriter`, `Snapshot::builder`, `TableMetadataBuilder`,
//! `MetadataLocation`) and publishes it with the backend's compare-and-swap.
//!
//! Every attempt starts from the table's newest metadata, so a concurrent append is carried
//! into the new snapshot instead of being lost. Before each attempt the commit states its
//! optimistic requirements against that metadata: every file it removes must still be live, and
//! the caller's own check (a bookmark not yet committed, say) must pass. A lost race is retried;
//! a failed requirement is not, because the caller has to plan again.

use std::collections::{BTreeMap, HashMap, HashSet, btree_map};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iceberg::spec::{
    DataContentType, DataFile, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter,
    ManifestWriter, ManifestWriterBuilder, NestedField, Operation, Schema, Snapshot, SnapshotRef,
    SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Summary, TableMetadata,
    TableMetadataBuilder, Type,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent};
use uuid::Uuid;

use crate::backend::CatalogBackend;
use crate::{Error, Result};

/// A check the caller states against the newest metadata before each attempt. It returns
/// `Err(reason)` when the commit must not happen (for example: the bookmark moved).
pub type Requirement = Arc<dyn Fn(&TableMetadata) -> Result<(), String> + Send + Sync>;

/// Summary keys with this prefix are bookmarks: every commit carries them forward from the
/// snapshot it builds on unless it sets them itself, so a compaction or any other writer never
/// loses a job's position.
pub const BOOKMARK_PREFIX: &str = "cryptolake.bookmark.";

/// Summary keys cryptolake writes start with this: a snapshot that has one was committed by
/// cryptolake (and carries every bookmark forward).
const OWN_PREFIX: &str = "cryptolake.";

/// The snapshot cryptolake's bookmarks are read from: the current one, or, when other writers
/// (PyIceberg, Athena, Spark) committed since, the newest ancestor cryptolake committed, as
/// they do not carry cryptolake's summary keys forward (Flink's committer finds its last
/// checkpoint in the ancestors the same way). `None` for a table cryptolake never committed
/// to. `Err` when the walk meets an ancestor that is no longer in the table's history before it
/// finds one of cryptolake's: the positions are then unknown, never taken for "none".
pub fn bookmark_snapshot(metadata: &TableMetadata) -> Result<Option<&SnapshotRef>, String> {
    let mut cursor = metadata.current_snapshot();
    while let Some(snapshot) = cursor {
        let summary = &snapshot.summary().additional_properties;
        if summary.keys().any(|k| k.starts_with(OWN_PREFIX)) {
            return Ok(Some(snapshot));
        }
        let Some(parent) = snapshot.parent_snapshot_id() else {
            return Ok(None);
        };
        cursor = Some(metadata.snapshot_by_id(parent).ok_or_else(|| {
            format!(
                "snapshot {parent}, parent of snapshot {} by another writer, is no longer in the \
                 table's history, so the snapshot holding cryptolake's bookmarks cannot be found \
                 (expired by another writer?)",
                snapshot.snapshot_id()
            )
        })?);
    }
    Ok(None)
}

/// A bookmark's raw text in [`bookmark_snapshot`]'s summary.
pub fn bookmark_text(metadata: &TableMetadata, key: &str) -> Result<Option<String>, String> {
    Ok(bookmark_snapshot(metadata)?
        .and_then(|s| s.summary().additional_properties.get(key))
        .cloned())
}

/// A snapshot-id bookmark's value in [`bookmark_snapshot`]'s summary; `Err` when it is there
/// but does not parse (never taken for "no bookmark").
pub fn bookmark(metadata: &TableMetadata, key: &str) -> Result<Option<i64>, String> {
    let Some(text) = bookmark_text(metadata, key)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| format!("{key} holds {text:?}, not a snapshot id: {e}"))
}

/// A requirement that every bookmark still holds the value the job planned from: otherwise
/// another run of the job committed in between and this one must not take the same input.
pub fn bookmarks_unchanged(expected: Vec<(String, Option<i64>)>) -> Requirement {
    Arc::new(move |metadata| {
        for (key, want) in &expected {
            let have = bookmark(metadata, key)?;
            if have != *want {
                return Err(format!(
                    "{key} moved from {want:?} to {have:?}: another run committed first"
                ));
            }
        }
        Ok(())
    })
}

/// Summary keys whose totals the commit maintains (Iceberg spec, "Snapshot summary").
const TOTAL_KEYS: [(&str, &str, &str); 3] = [
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
];

/// From this many small data manifests on, a commit merges the small ones into one: a
/// per-minute schedule's tables keep at most this many (plus the full ones), so a job that
/// plans from a cold process reads a bounded number of manifests. Java Iceberg's default is 100
/// (`commit.manifest.min-count-to-merge`); on S3 every manifest is a request.
pub const MERGE_MIN_COUNT: usize = 16;

/// A data manifest of this size or more is full: merges leave it as it is, so the bytes a
/// merge rewrites do not grow with the table (Java Iceberg's `commit.manifest.target-size-bytes`).
pub const MERGE_TARGET_BYTES: i64 = 8 << 20;

/// What a successful commit produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub metadata_location: String,
    /// How many attempts it took (1 when nobody raced it).
    pub attempts: u32,
}

/// One snapshot to commit: files in, files out, snapshot properties.
#[derive(Clone)]
pub struct SnapshotCommit {
    ident: TableIdent,
    operation: Operation,
    added: Vec<DataFile>,
    removed: Vec<String>,
    properties: HashMap<String, String>,
    requirement: Option<Requirement>,
    max_attempts: u32,
    /// Merge every data manifest into one, whatever their count (`rewrite_manifests`).
    merge_all: bool,
}

impl fmt::Debug for SnapshotCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotCommit")
            .field("ident", &self.ident)
            .field("operation", &self.operation)
            .field("added", &self.added.len())
            .field("removed", &self.removed.len())
            .field("properties", &self.properties)
            .finish()
    }
}

impl SnapshotCommit {
    fn new(ident: TableIdent, operation: Operation) -> Self {
        Self {
            ident,
            operation,
            added: Vec::new(),
            removed: Vec::new(),
            properties: HashMap::new(),
            requirement: None,
            max_attempts: 10,
            merge_all: false,
        }
    }

    /// The same live files, their data manifests merged into one (`replace`, as Spark's
    /// `rewrite_manifests`): planning reads one manifest instead of many small ones.
    pub fn rewrite_manifests(ident: TableIdent) -> Self {
        Self {
            merge_all: true,
            ..Self::new(ident, Operation::Replace)
        }
    }

    /// New files only (`append`).
    pub fn append(ident: TableIdent) -> Self {
        Self::new(ident, Operation::Append)
    }

    /// Some files replaced by others with different rows (`overwrite`).
    pub fn overwrite(ident: TableIdent) -> Self {
        Self::new(ident, Operation::Overwrite)
    }

    /// Files rewritten with the same rows (`replace`, what compaction commits).
    pub fn replace(ident: TableIdent) -> Self {
        Self::new(ident, Operation::Replace)
    }

    pub fn add_files(mut self, files: impl IntoIterator<Item = DataFile>) -> Self {
        self.added.extend(files);
        self
    }

    /// Removes the data files at these paths; each must be live when the commit lands.
    pub fn remove_files(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.removed.extend(paths);
        self
    }

    /// A snapshot summary property (bookmarks live here).
    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// A requirement checked against the newest metadata before every attempt.
    pub fn require(mut self, requirement: Requirement) -> Self {
        self.requirement = Some(requirement);
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn ident(&self) -> &TableIdent {
        &self.ident
    }

    /// Commits, retrying lost races with a short backoff.
    pub async fn commit(&self, backend: &dyn CatalogBackend) -> Result<CommitOutcome> {
        let (outcome, attempts) =
            with_retries(&self.ident, self.max_attempts, || self.attempt(backend)).await?;
        Ok(CommitOutcome {
            attempts,
            ..outcome
        })
    }

    async fn attempt(&self, backend: &dyn CatalogBackend) -> Result<CommitOutcome> {
        let table = backend.load_table(&self.ident).await?;
        let metadata = table.metadata();
        if let Some(requirement) = &self.requirement {
            requirement(metadata).map_err(|reason| self.requirement_failed(reason))?;
        }
        let mut producer = Producer::new(&table, self)?;
        let mut manifests = producer
            .carry_manifests(&self.removed, self.merge_all)
            .await?;
        if !self.added.is_empty() {
            manifests.push(producer.write_added(&self.added).await?);
        }
        let summary = producer.summary(self)?;
        let snapshot = producer.write_snapshot(manifests, summary).await?;
        let new_metadata = TableMetadataBuilder::new_from_metadata(
            metadata.clone(),
            table.metadata_location().map(str::to_string),
        )
        .add_snapshot(snapshot)?
        .set_ref(
            MAIN_BRANCH,
            SnapshotReference::new(
                producer.snapshot_id,
                SnapshotRetention::branch(None, None, None),
            ),
        )?
        .build()?
        .metadata;
        let current_location = table.metadata_location_result()?;
        let new_location = MetadataLocation::from_str(current_location)?
            .with_next_version()
            .with_new_metadata(&new_metadata);
        new_metadata
            .write_to(table.file_io(), &new_location)
            .await?;
        let new_location = new_location.to_string();
        backend
            .swap_metadata(&self.ident, current_location, &new_location)
            .await?;
        Ok(CommitOutcome {
            snapshot_id: producer.snapshot_id,
            sequence_number: producer.sequence_number,
            metadata_location: new_location,
            attempts: 0,
        })
    }

    fn requirement_failed(&self, reason: impl Into<String>) -> Error {
        Error::RequirementFailed {
            table: self.ident.to_string(),
            reason: reason.into(),
        }
    }
}

/// The state of one commit attempt against one base metadata.
struct Producer<'a> {
    table: &'a Table,
    snapshot_id: i64,
    sequence_number: i64,
    commit_uuid: Uuid,
    manifest_counter: u32,
    removed_files: Vec<DataFile>,
}

impl<'a> Producer<'a> {
    fn new(table: &'a Table, commit: &SnapshotCommit) -> Result<Self> {
        let metadata = table.metadata();
        for file in &commit.added {
            if file.content_type() != DataContentType::Data {
                return Err(commit.requirement_failed("only data files can be added"));
            }
            // `partition_spec_id` has no public getter in 0.10.1; the tuple's arity is the check
            // we can make (files are always written for the table's default spec).
            let want = metadata.default_partition_type().fields().len();
            if file.partition().fields().len() != want {
                return Err(commit.requirement_failed(format!(
                    "file {} has a partition tuple of {} fields, the table's spec has {want}",
                    file.file_path(),
                    file.partition().fields().len(),
                )));
            }
        }
        Ok(Self {
            table,
            snapshot_id: unique_snapshot_id(metadata),
            sequence_number: metadata.next_sequence_number(),
            commit_uuid: Uuid::now_v7(),
            manifest_counter: 0,
            removed_files: Vec::new(),
        })
    }

    /// A writer of a new data manifest for partition spec `spec_id` (the table's default for
    /// added files; an older spec's for entries carried from a manifest written under it).
    fn manifest_writer(&mut self, spec_id: i32) -> Result<ManifestWriter> {
        let metadata = self.table.metadata();
        let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
            Error::invalid(format!(
                "{}: a manifest names partition spec {spec_id}, which the table does not have",
                self.table.identifier()
            ))
        })?;
        let path = format!(
            "{}/metadata/{}-m{}.avro",
            metadata.location(),
            self.commit_uuid,
            self.manifest_counter
        );
        self.manifest_counter += 1;
        let output = self.table.file_io().new_output(path)?;
        Ok(ManifestWriterBuilder::new(
            output,
            Some(self.snapshot_id),
            metadata.current_schema().clone(),
            spec.as_ref().clone(),
        )
        .build_v2_data())
    }

    /// The base snapshot's data manifests for the new snapshot. Manifests that hold a removed
    /// file are merged into one new manifest where those files are marked deleted and the rest
    /// stay as existing; once there are [`MERGE_MIN_COUNT`] or more small ones, those are merged
    /// (as Java Iceberg merges manifests on commit), so planning never reads many tiny manifests;
    /// manifests left with no live file (a previous commit's deletions) are dropped. Merging
    /// keeps partition specs apart: one new manifest per spec the merged ones were written
    /// under.
    async fn carry_manifests(
        &mut self,
        removed: &[String],
        force_merge: bool,
    ) -> Result<Vec<ManifestFile>> {
        let Some(current) = self.table.metadata().current_snapshot() else {
            return match removed.first() {
                None => Ok(Vec::new()),
                Some(path) => Err(self.missing(path)),
            };
        };
        let list = crate::cache::manifest_list(self.table, current).await?;
        let wanted: HashSet<&str> = removed.iter().map(String::as_str).collect();
        let small = |m: &ManifestFile| {
            m.content == ManifestContentType::Data && m.manifest_length < MERGE_TARGET_BYTES
        };
        let merge_small = list.entries().iter().filter(|m| small(m)).count() >= MERGE_MIN_COUNT;
        let mut found: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut merged: BTreeMap<i32, (ManifestWriter, usize)> = BTreeMap::new();
        for manifest_file in list.entries() {
            if manifest_file.content != ManifestContentType::Data {
                out.push(manifest_file.clone());
                continue;
            }
            let live = manifest_file.added_files_count.unwrap_or(1)
                + manifest_file.existing_files_count.unwrap_or(1);
            if live == 0 {
                continue;
            }
            let merge_all = force_merge || (merge_small && small(manifest_file));
            if wanted.is_empty() && !merge_all {
                out.push(manifest_file.clone());
                continue;
            }
            let manifest = crate::cache::manifest(manifest_file, self.table.file_io()).await?;
            let touched = manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && wanted.contains(e.file_path()));
            if !touched && !merge_all {
                out.push(manifest_file.clone());
                continue;
            }
            // Entries keep the partition spec they were written under (another writer may
            // have changed the table's since): one merged manifest per spec.
            let spec_id = manifest_file.partition_spec_id;
            let (writer, entries) = match merged.entry(spec_id) {
                btree_map::Entry::Occupied(e) => e.into_mut(),
                btree_map::Entry::Vacant(e) => e.insert((self.manifest_writer(spec_id)?, 0)),
            };
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                let seq = entry
                    .sequence_number
                    .unwrap_or(manifest_file.sequence_number);
                let file_seq = entry.file_sequence_number.or(Some(seq));
                let data_file = entry.data_file.clone();
                if wanted.contains(entry.file_path()) {
                    found.insert(entry.file_path().to_string());
                    self.removed_files.push(data_file.clone());
                    writer.add_delete_file(data_file, seq, file_seq)?;
                } else {
                    let added_by = entry.snapshot_id.unwrap_or(manifest_file.added_snapshot_id);
                    writer.add_existing_file(data_file, added_by, seq, file_seq)?;
                }
                *entries += 1;
            }
        }
        for (writer, entries) in merged.into_values() {
            if entries > 0 {
                out.push(writer.write_manifest_file().await?);
            }
        }
        if let Some(path) = removed.iter().find(|p| !found.contains(p.as_str())) {
            return Err(self.missing(path));
        }
        Ok(out)
    }

    fn missing(&self, path: &str) -> Error {
        Error::RequirementFailed {
            table: self.table.identifier().to_string(),
            reason: format!("file to remove is no longer in the table: {path}"),
        }
    }

    async fn write_added(&mut self, added: &[DataFile]) -> Result<ManifestFile> {
        let mut writer = self.manifest_writer(self.table.metadata().default_partition_spec_id())?;
        for file in added {
            writer.add_file(file.clone(), self.sequence_number)?;
        }
        Ok(writer.write_manifest_file().await?)
    }

    /// The summary: operation, added/deleted figures, running totals, the caller's properties.
    fn summary(&self, commit: &SnapshotCommit) -> Result<Summary> {
        let metadata = self.table.metadata();
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        let mut collector = SnapshotSummaryCollector::default();
        for file in &commit.added {
            collector.add_file(file, schema.clone(), spec.clone());
        }
        for file in &self.removed_files {
            collector.remove_file(file, schema.clone(), spec.clone());
        }
        let mut properties = commit.properties.clone();
        properties.extend(collector.build());
        let previous = metadata
            .current_snapshot()
            .map(|s| s.summary().additional_properties.clone())
            .unwrap_or_default();
        // Bookmarks come from cryptolake's newest snapshot, which another writer's commits
        // since did not carry forward; totals from the current one.
        let ours = bookmark_snapshot(metadata)
            .map_err(|reason| Error::RequirementFailed {
                table: self.table.identifier().to_string(),
                reason,
            })?
            .map(|s| s.summary().additional_properties.clone())
            .unwrap_or_default();
        for (key, value) in &ours {
            if key.starts_with(BOOKMARK_PREFIX) && !properties.contains_key(key) {
                properties.insert(key.clone(), value.clone());
            }
        }
        for (total, added, deleted) in TOTAL_KEYS {
            let get = |map: &HashMap<String, String>, key: &str| -> i128 {
                map.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
            };
            let value = get(&previous, total) + get(&properties, added) - get(&properties, deleted);
            properties.insert(total.to_string(), value.max(0).to_string());
        }
        for key in [
            "total-delete-files",
            "total-position-deletes",
            "total-equality-deletes",
        ] {
            let value = previous.get(key).cloned().unwrap_or_else(|| "0".into());
            properties.insert(key.to_string(), value);
        }
        Ok(Summary {
            operation: commit.operation.clone(),
            additional_properties: properties,
        })
    }

    async fn write_snapshot(
        &self,
        manifests: Vec<ManifestFile>,
        summary: Summary,
    ) -> Result<Snapshot> {
        let metadata = self.table.metadata();
        let path = format!(
            "{}/metadata/snap-{}-1-{}.avro",
            metadata.location(),
            self.snapshot_id,
            self.commit_uuid
        );
        let output = self.table.file_io().new_output(&path)?;
        let mut list = ManifestListWriter::v2(
            output.writer().await?,
            self.snapshot_id,
            metadata.current_snapshot_id(),
            self.sequence_number,
        );
        list.add_manifests(manifests.into_iter())?;
        list.close().await?;
        Ok(Snapshot::builder()
            .with_manifest_list(path)
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(metadata.current_snapshot_id())
            .with_sequence_number(self.sequence_number)
            .with_summary(summary)
            .with_schema_id(metadata.current_schema_id())
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .build())
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has run `max_attempts` times; lost
/// races wait an exponential backoff with jitter (20 ms doubling, at most 1.3 s), so racing
/// writers spread out instead of colliding again.
async fn with_retries<T, F, Fut>(
    table: &TableIdent,
    max_attempts: u32,
    attempt: F,
) -> Result<(T, u32)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    use backon::{ExponentialBuilder, Retryable};

    let attempts = std::sync::atomic::AtomicU32::new(0);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(1280))
        .with_jitter()
        .with_max_times(max_attempts.saturating_sub(1) as usize);
    let value = (|| {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        attempt()
    })
    .retry(backoff)
    .when(Error::is_retryable)
    .notify(|e, wait| tracing::info!(%table, error = %e, ?wait, "commit retried"))
    .await?;
    Ok((value, attempts.load(std::sync::atomic::Ordering::Relaxed)))
}

/// A positive snapshot id the table has not used.
fn unique_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (hi, lo) = Uuid::new_v4().as_u64_pair();
        let id = ((hi ^ lo) >> 1) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// A commit that changes table metadata without a new snapshot: snapshots removed (expiry),
/// properties set. Like [`SnapshotCommit`] it starts each attempt from the newest metadata,
/// checks its requirement there, and swaps the pointer by compare-and-swap.
#[derive(Clone)]
pub struct MetadataCommit {
    ident: TableIdent,
    remove_snapshots: Vec<i64>,
    properties: HashMap<String, String>,
    /// Optional columns to add to the current schema where it lacks them (by name).
    add_columns: Vec<(String, Type)>,
    requirement: Option<Requirement>,
    max_attempts: u32,
}

impl fmt::Debug for MetadataCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataCommit")
            .field("ident", &self.ident)
            .field("remove_snapshots", &self.remove_snapshots.len())
            .field("properties", &self.properties)
            .field("add_columns", &self.add_columns)
            .finish()
    }
}

impl MetadataCommit {
    pub fn new(ident: TableIdent) -> Self {
        Self {
            ident,
            remove_snapshots: Vec::new(),
            properties: HashMap::new(),
            add_columns: Vec::new(),
            requirement: None,
            max_attempts: 10,
        }
    }

    /// Removes these snapshots (those still present; the current one never).
    pub fn remove_snapshots(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.remove_snapshots.extend(ids);
        self
    }

    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Adds these columns, optional and last, to the current schema where it has no column of
    /// the name (Iceberg schema evolution: new field ids after the table's last, a new current
    /// schema; files written before read the columns as null). A column another writer added
    /// first is left as it is.
    pub fn add_columns(mut self, columns: impl IntoIterator<Item = (String, Type)>) -> Self {
        self.add_columns.extend(columns);
        self
    }

    pub fn require(mut self, requirement: Requirement) -> Self {
        self.requirement = Some(requirement);
        self
    }

    /// Commits; returns the new metadata location.
    pub async fn commit(&self, backend: &dyn CatalogBackend) -> Result<String> {
        let (location, _) =
            with_retries(&self.ident, self.max_attempts, || self.attempt(backend)).await?;
        Ok(location)
    }

    async fn attempt(&self, backend: &dyn CatalogBackend) -> Result<String> {
        let table = backend.load_table(&self.ident).await?;
        let metadata = table.metadata();
        if let Some(requirement) = &self.requirement {
            requirement(metadata).map_err(|reason| Error::RequirementFailed {
                table: self.ident.to_string(),
                reason,
            })?;
        }
        let current = metadata.current_snapshot_id();
        let remove: Vec<i64> = self
            .remove_snapshots
            .iter()
            .copied()
            .filter(|id| Some(*id) != current && metadata.snapshot_by_id(*id).is_some())
            .collect();
        let mut builder = TableMetadataBuilder::new_from_metadata(
            metadata.clone(),
            table.metadata_location().map(str::to_string),
        )
        .remove_snapshots(&remove)
        .set_properties(self.properties.clone())?;
        if let Some(schema) = evolved_schema(metadata, &self.add_columns)? {
            builder = builder.add_current_schema(schema)?;
        }
        let new_metadata = builder.build()?.metadata;
        let current_location = table.metadata_location_result()?;
        let new_location = MetadataLocation::from_str(current_location)?
            .with_next_version()
            .with_new_metadata(&new_metadata);
        new_metadata
            .write_to(table.file_io(), &new_location)
            .await?;
        let new_location = new_location.to_string();
        backend
            .swap_metadata(&self.ident, current_location, &new_location)
            .await?;
        Ok(new_location)
    }
}

/// The current schema with `columns` it lacks added as optional fields numbered after the
/// table's last column id; `None` when it has them all.
fn evolved_schema(metadata: &TableMetadata, columns: &[(String, Type)]) -> Result<Option<Schema>> {
    let current = metadata.current_schema();
    let mut next_id = metadata.last_column_id();
    let mut fields = current.as_struct().fields().to_vec();
    for (name, ty) in columns {
        if current.field_by_name(name).is_none() && !fields.iter().any(|f| &f.name == name) {
            next_id += 1;
            fields.push(Arc::new(NestedField::optional(next_id, name, ty.clone())));
        }
    }
    if fields.len() == current.as_struct().fields().len() {
        return Ok(None);
    }
    let schema = Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_identifier_field_ids(current.identifier_field_ids())
        .with_fields(fields)
        .build()?;
    Ok(Some(schema))
}
