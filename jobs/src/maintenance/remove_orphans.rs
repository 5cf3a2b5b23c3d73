//! `remove-orphans`: delete files under a table's location that no snapshot reaches, once they
//! are older than a threshold (default 3 days, as Spark's `remove_orphan_files`), so a job still
//! writing its files is never robbed of them.
//!
//! Reachable: every metadata file in the metadata log and the current one, every snapshot's
//! manifest list, every manifest those list, and every data file any manifest entry names
//! (whatever its status): time travel to any retained snapshot keeps working. iceberg's FileIO
//! cannot list, so the local warehouse is walked directly; object-store listing comes with the
//! S3 warehouse.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use iceberg::TableIdent;
use serde::Serialize;

use super::options::tables_or_all;
use super::reachable::{canonical, reachable};
use crate::job::context::JobContext;
use crate::job::summary::{RunSummary, TableRun};
use crate::{Error, Result};

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

/// Every file under a table location: (canonical location, last modified, bytes).
async fn list_files(
    lake: &cryptolake_catalog::Lake,
    location: &str,
) -> Result<Vec<(String, SystemTime, u64)>> {
    let location = canonical(location);
    if location.starts_with("s3://") {
        let s3 = lake
            .s3()
            .ok_or_else(|| Error::Usage(format!("{location} is on S3 but the warehouse is not")))?;
        return Ok(s3
            .list(&location)
            .await?
            .into_iter()
            .map(|o| (o.url, SystemTime::from(o.last_modified), o.size))
            .collect());
    }
    if location.contains("://") {
        return Err(Error::Usage(format!(
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

/// Every file below `dir`. A directory that cannot be read is an error, never taken for an
/// empty one (which would hide what it holds); only a table folder that does not exist at all
/// holds nothing.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, SystemTime, u64)>) -> Result<()> {
    if !dir
        .try_exists()
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
    {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).display().to_string();
            Error::io(format!("listing {path}"), e.into())
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", entry.path().display()), e.into()))?;
        let modified = meta.modified().unwrap_or(SystemTime::now());
        out.push((entry.into_path(), modified, meta.len()));
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
        let idents = tables_or_all(&self.ctx.lake, &self.options.tables).await?;
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
