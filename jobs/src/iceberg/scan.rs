//! Reading Iceberg tables: whole snapshots, or only what was appended after a bookmark.
//!
//! Reads go through iceberg's `ArrowReader` with `FileScanTask`s (so any FileIO storage works and
//! columns are matched by field id); the tasks are plain data that can be grouped into
//! partitions and shipped to executors.

use std::sync::Arc;

use cryptolake_catalog::cache;
use futures::{StreamExt, TryStreamExt};
use iceberg::Runtime;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::{ArrowRecordBatchStream, FileScanTask};
use iceberg::spec::{
    DataFile, Manifest, ManifestContentType, ManifestFile, ManifestStatus, Operation, SnapshotRef,
};
use iceberg::table::Table;

use crate::{Error, Result};

/// Data files appended by one snapshot.
#[derive(Debug, Clone)]
pub struct AppendedFiles {
    pub snapshot_id: i64,
    pub files: Vec<DataFile>,
}

/// The snapshots on the current branch after `after` (exclusive), oldest first. With `after`
/// `None`, every ancestor of the current snapshot.
pub fn snapshots_after(table: &Table, after: Option<i64>) -> Result<Vec<SnapshotRef>> {
    let metadata = table.metadata();
    let mut chain = Vec::new();
    let mut cursor = metadata.current_snapshot().cloned();
    while let Some(snapshot) = cursor {
        if Some(snapshot.snapshot_id()) == after {
            chain.reverse();
            return Ok(chain);
        }
        cursor = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id).cloned());
        chain.push(snapshot);
    }
    match after {
        None => {
            chain.reverse();
            Ok(chain)
        }
        Some(id) => Err(Error::Bookmark(format!(
            "bookmark snapshot {id} is not in the history of {} (expired, or the table was replaced); \
             reset the bookmark to re-read the table",
            table.identifier()
        ))),
    }
}

/// Files appended by each snapshot after `after`. `replace` snapshots (compaction) add no new
/// rows and are skipped, as Spark's incremental Iceberg reads do. So are another writer's
/// `delete` and `overwrite` snapshots (PyIceberg's or Athena's `DELETE`, an `UPDATE`), as with
/// Spark's `streaming-skip-delete-snapshots` and `streaming-skip-overwrite-snapshots`: the
/// rows they rewrite were read when they were appended, and reading them again would count
/// them twice. Jobs whose output depends on deleted rows check [`rewritten_since`].
pub async fn appended_since(table: &Table, after: Option<i64>) -> Result<Vec<AppendedFiles>> {
    let mut out = Vec::new();
    for snapshot in snapshots_after(table, after)? {
        match snapshot.summary().operation {
            Operation::Append => {}
            Operation::Replace | Operation::Delete => continue,
            Operation::Overwrite => {
                tracing::warn!(
                    table = %table.identifier(),
                    snapshot = snapshot.snapshot_id(),
                    "an overwrite by another writer: the rows it rewrote are not read again"
                );
                continue;
            }
        }
        let id = snapshot.snapshot_id();
        let list = cache::manifest_list(table, &snapshot).await?;
        let added: Vec<&ManifestFile> = list
            .entries()
            .iter()
            .filter(|m| m.added_snapshot_id == id)
            .collect();
        refuse_delete_files(table, added.iter().copied())?;
        let mut files = Vec::new();
        for manifest in manifests(table, added).await? {
            files.extend(
                manifest
                    .entries()
                    .iter()
                    .filter(|e| e.status() == ManifestStatus::Added && e.snapshot_id() == Some(id))
                    .map(|e| e.data_file().clone()),
            );
        }
        out.push(AppendedFiles {
            snapshot_id: id,
            files,
        });
    }
    Ok(out)
}

/// The first snapshot after `after` that rewrote or deleted rows (`overwrite`, `delete`: another
/// writer's, such as PyIceberg's or Athena's `DELETE`); `None` when there were only appends and
/// compactions. Jobs that keep derived rows recompute from the table's current state then.
pub fn rewritten_since(table: &Table, after: Option<i64>) -> Result<Option<SnapshotRef>> {
    Ok(snapshots_after(table, after)?.into_iter().find(|s| {
        matches!(
            s.summary().operation,
            Operation::Overwrite | Operation::Delete
        )
    }))
}

/// Delete files (merge-on-read, as Athena and Spark write for `DELETE` and `UPDATE`) are not
/// applied by cryptolake's reads: a read that met them would return deleted rows, so it stops
/// with a usage error instead.
fn refuse_delete_files<'a>(
    table: &Table,
    manifests: impl IntoIterator<Item = &'a ManifestFile>,
) -> Result<()> {
    let deletes = count_delete_manifests(manifests);
    if deletes == 0 {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} has delete files (merge-on-read deletes, in {deletes} manifest(s)), which cryptolake \
         does not apply: rewrite them into the data files first (Athena `OPTIMIZE {} REWRITE \
         DATA USING BIN_PACK`, Spark `rewrite_data_files` with `delete-file-threshold` 1)",
        table.identifier(),
        table.identifier()
    )))
}

/// Scan tasks for whole data files of the table's current schema, projecting `columns` (all
/// when `None`).
pub fn tasks_for_files(
    table: &Table,
    files: &[DataFile],
    columns: Option<&[&str]>,
) -> Result<Vec<FileScanTask>> {
    tasks_of(
        table,
        files.iter().map(|f| (f, 0, f.file_size_in_bytes())),
        columns,
    )
}

/// Scan tasks for `(file, start, length)` byte ranges; iceberg knows a count only for a whole
/// file.
fn tasks_of<'a>(
    table: &Table,
    ranges: impl Iterator<Item = (&'a DataFile, u64, u64)>,
    columns: Option<&[&str]>,
) -> Result<Vec<FileScanTask>> {
    let schema = table.metadata().current_schema().clone();
    let project: Vec<i32> = match columns {
        None => schema.as_struct().fields().iter().map(|f| f.id).collect(),
        Some(names) => {
            let mut ids = names
                .iter()
                .map(|n| {
                    schema.field_id_by_name(n).ok_or_else(|| {
                        Error::Internal(format!("{} has no column {n}", table.identifier()))
                    })
                })
                .collect::<Result<Vec<i32>>>()?;
            // iceberg 0.10's reader returns the columns in the schema's order but names them
            // in the projection's: a projection out of schema order would mislabel them.
            let position = |id: &i32| schema.as_struct().fields().iter().position(|f| f.id == *id);
            ids.sort_by_key(position);
            ids
        }
    };
    Ok(ranges
        .map(|(f, start, length)| FileScanTask {
            file_size_in_bytes: f.file_size_in_bytes(),
            start,
            length,
            record_count: (start == 0 && length == f.file_size_in_bytes())
                .then(|| f.record_count()),
            data_file_path: f.file_path().to_string(),
            data_file_format: f.file_format(),
            schema: schema.clone(),
            project_field_ids: project.clone(),
            predicate: None,
            deletes: Vec::new(),
            partition: Some(f.partition().clone()),
            partition_spec: None,
            name_mapping: None,
            case_sensitive: true,
        })
        .collect())
}

/// A byte range of a data file for one scan task. iceberg's reader takes the row groups whose
/// midpoints fall in the range, so ranges that tile a file read each of its rows once: a large
/// file is read by several tasks, as Spark splits files by their row groups.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: DataFile,
    pub start: u64,
    pub length: u64,
}

impl FileRange {
    /// The whole file.
    pub fn whole(file: DataFile) -> Self {
        let length = file.file_size_in_bytes();
        Self {
            file,
            start: 0,
            length,
        }
    }

    /// The file in `pieces` contiguous ranges of about equal bytes that tile it.
    pub fn split(file: DataFile, pieces: u64) -> Vec<Self> {
        let size = file.file_size_in_bytes();
        let pieces = pieces.clamp(1, size.max(1));
        (0..pieces)
            .map(|i| {
                let (start, end) = (size * i / pieces, size * (i + 1) / pieces);
                Self {
                    file: file.clone(),
                    start,
                    length: end - start,
                }
            })
            .collect()
    }
}

/// Files as ranges for `n` tasks: a file larger than an even share of all the bytes is cut into
/// ranges of about that share, so one large file keeps every task busy.
pub fn split_for_tasks(files: Vec<DataFile>, n: usize) -> Vec<FileRange> {
    let total: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
    let share = total.div_ceil(n.max(1) as u64).max(1);
    files
        .into_iter()
        .flat_map(|f| {
            let pieces = f.file_size_in_bytes().div_ceil(share);
            FileRange::split(f, pieces)
        })
        .collect()
}

/// Scan tasks for byte ranges of data files (whole files, or a large file's share for one task).
pub fn tasks_for_ranges(
    table: &Table,
    ranges: &[FileRange],
    columns: Option<&[&str]>,
) -> Result<Vec<FileScanTask>> {
    tasks_of(
        table,
        ranges.iter().map(|r| (&r.file, r.start, r.length)),
        columns,
    )
}

/// Reads the tasks' rows as a stream of record batches.
pub fn read(
    table: &Table,
    tasks: Vec<FileScanTask>,
    batch_size: usize,
) -> Result<ArrowRecordBatchStream> {
    let reader = ArrowReaderBuilder::new(table.file_io().clone(), Runtime::try_current()?)
        .with_batch_size(batch_size)
        .with_data_file_concurrency_limit(4)
        .build();
    let stream = futures::stream::iter(tasks.into_iter().map(Ok)).boxed();
    Ok(reader.read(stream)?.stream())
}

/// Manifests of delete files that still hold live ones.
fn count_delete_manifests<'a>(manifests: impl IntoIterator<Item = &'a ManifestFile>) -> usize {
    manifests
        .into_iter()
        .filter(|m| m.content == ManifestContentType::Deletes)
        .filter(|m| m.added_files_count.unwrap_or(1) + m.existing_files_count.unwrap_or(1) > 0)
        .count()
}

/// How many manifests of live delete files the current snapshot has (0: reads see every row
/// as the data files hold it).
pub async fn delete_manifests(table: &Table) -> Result<usize> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(0);
    };
    let list = cache::manifest_list(table, snapshot).await?;
    Ok(count_delete_manifests(list.entries()))
}

/// Live data files of the current snapshot, read from its manifests; a usage error when the
/// table has delete files, which no caller would apply.
pub async fn live_data_files(table: &Table) -> Result<Vec<DataFile>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    let list = cache::manifest_list(table, snapshot).await?;
    refuse_delete_files(table, list.entries())?;
    let mut out = Vec::new();
    for manifest in manifests(table, list.entries()).await? {
        out.extend(
            manifest
                .entries()
                .iter()
                .filter(|e| e.is_alive())
                .map(|e| e.data_file().clone()),
        );
    }
    Ok(out)
}

/// Manifests a table reads at once: a snapshot's manifests come from storage side by side, not
/// one round trip after another.
const MANIFEST_CONCURRENCY: usize = 8;

/// The manifests, in the order given, read concurrently through the process's cache.
async fn manifests<'a>(
    table: &Table,
    files: impl IntoIterator<Item = &'a ManifestFile>,
) -> Result<Vec<Arc<Manifest>>> {
    // Owned inputs: the futures then borrow nothing, so the job's future stays `Send` for
    // every lifetime the callers have.
    let files: Vec<ManifestFile> = files.into_iter().cloned().collect();
    let io = table.file_io().clone();
    let loads = files.into_iter().map(move |f| {
        let io = io.clone();
        async move { cache::manifest(&f, &io).await }
    });
    Ok(futures::stream::iter(loads)
        .buffered(MANIFEST_CONCURRENCY)
        .try_collect()
        .await?)
}

/// A file's lower and upper bounds of an integer or timestamp column, when its manifest
/// records both.
pub fn long_bounds(file: &DataFile, field_id: i32) -> Option<(i64, i64)> {
    let long = |d: &iceberg::spec::Datum| match d.literal() {
        iceberg::spec::PrimitiveLiteral::Long(v) => Some(*v),
        iceberg::spec::PrimitiveLiteral::Int(v) => Some(i64::from(*v)),
        _ => None,
    };
    let lower = file.lower_bounds().get(&field_id).and_then(long)?;
    let upper = file.upper_bounds().get(&field_id).and_then(long)?;
    Some((lower, upper))
}

/// The table's Arrow schema without field metadata, as query engines want it.
pub fn plain_schema(table: &Table) -> Result<arrow::datatypes::SchemaRef> {
    let schema = crate::iceberg::writer::arrow_schema(table)?;
    let fields: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_metadata(Default::default())))
        .collect();
    Ok(Arc::new(arrow::datatypes::Schema::new(fields)))
}
