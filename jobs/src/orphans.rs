//! `remove-orphans`: delete files under a table's location that no snapshot reaches, once they
//! are older than a threshold (default 3 days, as Spark's `remove_orphan_files`), so a job still
//! writing its files is never robbed of them.
//!
//! Reachable: every metadata file in the metadata log and the current one, every snapshot's
//! manifest list, every manifest those list, and every data file any manifest entry names
//! (whatever its status): time travel to any retained snapshot keeps working. iceberg's FileIO
//! cannot list, so the local warehouse is walked directly; object-store listing comes with the
//! S3 warehouse.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use iceberg::TableIdent;
use iceberg::table::Table;
use serde::Serialize;

use crate::context::JobContext;
use crate::summary::{RunSummary, TableRun};
use crate::{Error, Result, scan};

const JOB: &str = "remove-orphans";

/// Options of an orphan removal.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoveOrphansOptions {
    /// Only files last modified longer ago than this are removed.
    pub older_than: Duration,
    /// Tables to clean; every table when empty.
    pub tables: Vec<TableIdent>,
}

impl Default for RemoveOrphansOptions {
    fn default() -> Self {
        Self {
            older_than: Duration::from_secs(3 * 24 * 3600),
            tables: Vec::new(),
        }
    }
}

/// The orphans of one table.
#[derive(Debug, Clone, Serialize)]
pub struct OrphanTablePlan {
    pub table: String,
    pub reachable_files: usize,
    /// Unreached files old enough to remove.
    pub orphans: Vec<String>,
    pub orphan_bytes: u64,
    /// Unreached files kept because they are younger than the threshold.
    pub too_young: usize,
}

/// The plan of an orphan removal.
#[derive(Debug, Clone, Serialize)]
pub struct RemoveOrphansPlan {
    pub older_than_secs: u64,
    pub tables: Vec<OrphanTablePlan>,
}

/// Builder for an orphan removal.
#[derive(Debug, Clone)]
pub struct RemoveOrphans {
    ctx: JobContext,
    options: RemoveOrphansOptions,
}

/// Every file the table's metadata reaches, as [`canonical`] locations.
pub(crate) async fn reachable(table: &Table) -> Result<HashSet<String>> {
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
    if let Some(log) = metadata
        .properties()
        .get(crate::ingest_files::EXPIRED_TAKEN_PROPERTY)
    {
        add(log);
    }
    for snapshot in metadata.snapshots() {
        add(snapshot.manifest_list());
        let list = table.manifest_list_reader(snapshot).load().await?;
        for manifest_file in list.entries() {
            add(&manifest_file.manifest_path);
            let manifest = manifest_file.load_manifest(table.file_io()).await?;
            for entry in manifest.entries() {
                add(entry.file_path());
            }
        }
    }
    Ok(out)
}

/// One spelling per file: `file:///a/b` and `/a/b` are `/a/b`; `s3a://` is `s3://`.
pub(crate) fn canonical(location: &str) -> String {
    if let Some(path) = location.strip_prefix("file://") {
        return path.to_string();
    }
    match location.strip_prefix("s3a://") {
        Some(rest) => format!("s3://{rest}"),
        None => location.to_string(),
    }
}

/// Every file under a table location: (canonical location, last modified, bytes).
async fn list_files(
    lake: &cryptolake_catalog::Lake,
    location: &str,
) -> Result<Vec<(String, SystemTime, u64)>> {
    let location = canonical(location);
    if location.starts_with("s3://") {
        let s3 = lake.s3().ok_or_else(|| {
            Error::Invalid(format!("{location} is on S3 but the warehouse is not"))
        })?;
        return Ok(s3
            .list(&location)
            .await?
            .into_iter()
            .map(|o| (o.url, SystemTime::from(o.last_modified), o.size))
            .collect());
    }
    if location.contains("://") {
        return Err(Error::Invalid(format!(
            "{location}: orphan removal lists local and S3 warehouses"
        )));
    }
    let mut files = Vec::new();
    walk(Path::new(&location), &mut files)?;
    Ok(files
        .into_iter()
        .map(|(p, m, b)| (p.to_string_lossy().into_owned(), m, b))
        .collect())
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, SystemTime, u64)>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", entry.path().display()), e))?;
        if meta.is_dir() {
            walk(&entry.path(), out)?;
        } else {
            let modified = meta.modified().unwrap_or(SystemTime::now());
            out.push((entry.path(), modified, meta.len()));
        }
    }
    Ok(())
}

impl RemoveOrphans {
    pub fn new(ctx: JobContext, options: RemoveOrphansOptions) -> Self {
        Self { ctx, options }
    }

    async fn plan_table(&self, ident: &TableIdent) -> Result<OrphanTablePlan> {
        let table = self.ctx.lake.load_table(ident).await?;
        let reached = reachable(&table).await?;
        let files = list_files(&self.ctx.lake, table.metadata().location()).await?;
        let cutoff = SystemTime::now()
            .checked_sub(self.options.older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut plan = OrphanTablePlan {
            table: ident.to_string(),
            reachable_files: reached.len(),
            orphans: Vec::new(),
            orphan_bytes: 0,
            too_young: 0,
        };
        for (path, modified, bytes) in files.into_iter().filter(|(p, _, _)| !reached.contains(p)) {
            if modified <= cutoff {
                plan.orphans.push(path);
                plan.orphan_bytes += bytes;
            } else {
                plan.too_young += 1;
            }
        }
        plan.orphans.sort();
        Ok(plan)
    }

    async fn plan_impl(&self) -> Result<RemoveOrphansPlan> {
        let idents = scan::tables_or_all(&self.ctx.lake, &self.options.tables).await?;
        let mut tables = Vec::new();
        for ident in &idents {
            tables.push(self.plan_table(ident).await?);
        }
        Ok(RemoveOrphansPlan {
            older_than_secs: self.options.older_than.as_secs(),
            tables,
        })
    }

    async fn execute_impl(&self, plan: RemoveOrphansPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        for table in plan.tables.into_iter().filter(|t| !t.orphans.is_empty()) {
            // Check again right before deleting: a commit since the plan may reach a file now.
            let ident = cryptolake_catalog::lake::parse_ident(&table.table)?;
            let current = self.ctx.lake.load_table(&ident).await?;
            let reached = reachable(&current).await?;
            let mut run = TableRun::default();
            for orphan in table.orphans.iter().filter(|o| !reached.contains(*o)) {
                current.file_io().delete(orphan).await?;
                run.files_removed += 1;
            }
            tracing::info!(table = %table.table, removed = run.files_removed, "orphan files removed");
            summary.tables.insert(table.table, run);
        }
        Ok(summary.finish(started.elapsed()))
    }
}

impl crate::Job for RemoveOrphans {
    type Plan = RemoveOrphansPlan;
    const NAME: &'static str = JOB;

    async fn plan(&self) -> Result<RemoveOrphansPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: RemoveOrphansPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}

/// Parses `3d`, `12h`, `30m`, `45s` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| Error::Invalid(format!("`{text}` is not a duration (3d, 12h, 30m, 45s)")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(Error::Invalid(format!(
                "`{text}` is not a duration (3d, 12h, 30m, 45s)"
            )));
        }
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259_200));
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43_200);
        assert_eq!(parse_duration("0s").unwrap().as_secs(), 0);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(canonical("file:///a/b"), "/a/b");
        assert_eq!(canonical("/a/b"), "/a/b");
        assert_eq!(canonical("s3a://bucket/k"), "s3://bucket/k");
        assert_eq!(canonical("s3://bucket/k"), "s3://bucket/k");
    }
}
