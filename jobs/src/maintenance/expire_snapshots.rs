//! `expire-snapshots`: remove old snapshots from tables' metadata and delete the files only they
//! reached. Defaults follow Glue's and Spark's: older than 5 days, keep at least the last one.
//!
//! Never expired: the current snapshot, the last `retain_last` ancestors of it, any snapshot a
//! bookmark anywhere in the lake names (silver's position in bronze, gold's in silver), and
//! every ancestor after the oldest bookmarked one, so an incremental job always finds where it
//! stopped and what was appended since. The landing files that expired ingest
//! snapshots took are folded into a log file first ([`EXPIRED_TAKEN_PROPERTY`]), so no landing
//! file is ever taken twice. Metadata JSON files are never deleted here.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use cryptolake_catalog::MetadataCommit;
use iceberg::TableIdent;
use iceberg::table::Table;
use serde::Serialize;

use super::options::tables_or_all;
use super::reachable::reachable;
use crate::bookmarks::{
    EXPIRED_TAKEN_PROPERTY, HISTORY_FROM_PROPERTY, expired_taken, files_taken,
    is_snapshot_bookmark, snapshot_bookmark,
};
use crate::iceberg::scan;
use crate::job::context::JobContext;
use crate::job::summary::{RunSummary, TableRun};
use crate::{Error, Result};

const JOB: &str = "expire-snapshots";

/// Options of a snapshot expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpireOptions {
    pub older_than: Duration,
    pub retain_last: usize,
    /// Tables to expire; every table when empty.
    pub tables: Vec<TableIdent>,
}

impl Default for ExpireOptions {
    fn default() -> Self {
        Self {
            older_than: Duration::from_secs(5 * 24 * 3600),
            retain_last: 1,
            tables: Vec::new(),
        }
    }
}

/// What expiry will do to one table.
#[derive(Debug, Clone, Serialize)]
pub struct ExpireTablePlan {
    pub table: String,
    pub snapshots: usize,
    pub expire: Vec<i64>,
    /// Old enough, but named by a bookmark.
    pub kept_for_bookmarks: Vec<i64>,
}

/// The plan of a snapshot expiry.
#[derive(Debug, Clone, Serialize)]
pub struct ExpirePlan {
    pub tables: Vec<ExpireTablePlan>,
}

/// Builder for a snapshot expiry.
#[derive(Debug, Clone)]
pub struct ExpireSnapshots {
    ctx: JobContext,
    options: ExpireOptions,
}

impl ExpireSnapshots {
    pub fn new(ctx: JobContext, options: ExpireOptions) -> Self {
        Self { ctx, options }
    }

    /// Snapshot ids named by any bookmark of any table.
    async fn bookmarked(&self) -> Result<HashSet<i64>> {
        let mut out = HashSet::new();
        for ident in self.ctx.lake.list_tables().await? {
            let table = self.ctx.lake.load_table(&ident).await?;
            let holder = cryptolake_catalog::commit::bookmark_snapshot(table.metadata())
                .map_err(|why| Error::Bookmark(format!("{}: {why}", table.identifier())))?;
            let Some(current) = holder else {
                continue;
            };
            let keys = current.summary().additional_properties.keys();
            for key in keys.filter(|k| is_snapshot_bookmark(k)) {
                out.extend(snapshot_bookmark(&table, key)?);
            }
        }
        Ok(out)
    }

    fn plan_table(
        &self,
        table: &Table,
        bookmarked: &HashSet<i64>,
        cutoff_ms: i64,
    ) -> Result<ExpireTablePlan> {
        let metadata = table.metadata();
        let ancestors = scan::snapshots_after(table, None)?;
        // Keep the last `retain_last`, and everything from the oldest bookmarked ancestor on: an
        // incremental reader walks from its bookmark to the current snapshot and reads what each
        // append in between added.
        let from_bookmark = ancestors
            .iter()
            .position(|s| bookmarked.contains(&s.snapshot_id()))
            .unwrap_or(ancestors.len());
        let last = ancestors
            .len()
            .saturating_sub(self.options.retain_last.max(1));
        let retained: HashSet<i64> = ancestors[from_bookmark.min(last)..]
            .iter()
            .map(|s| s.snapshot_id())
            .collect();
        let mut plan = ExpireTablePlan {
            table: table.identifier().to_string(),
            snapshots: metadata.snapshots().len(),
            expire: Vec::new(),
            kept_for_bookmarks: Vec::new(),
        };
        for s in metadata.snapshots() {
            let id = s.snapshot_id();
            if s.timestamp_ms() >= cutoff_ms
                || retained.contains(&id)
                || Some(id) == metadata.current_snapshot_id()
            {
                continue;
            }
            if bookmarked.contains(&id) {
                plan.kept_for_bookmarks.push(id);
            } else {
                plan.expire.push(id);
            }
        }
        Ok(plan)
    }

    async fn plan_impl(&self) -> Result<ExpirePlan> {
        let idents = tables_or_all(&self.ctx.lake, &self.options.tables).await?;
        let bookmarked = self.bookmarked().await?;
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cutoff_ms = now_ms - self.options.older_than.as_millis() as i64;
        let mut tables = Vec::new();
        for ident in idents {
            let table = self.ctx.lake.load_table(&ident).await?;
            tables.push(self.plan_table(&table, &bookmarked, cutoff_ms)?);
        }
        Ok(ExpirePlan { tables })
    }

    async fn expire_table(&self, plan: &ExpireTablePlan) -> Result<TableRun> {
        let ident = cryptolake_catalog::lake::parse_ident(&plan.table)?;
        let before = self.ctx.lake.load_table(&ident).await?;
        let expiring: HashSet<i64> = plan.expire.iter().copied().collect();
        let mut commit = MetadataCommit::new(ident.clone()).remove_snapshots(plan.expire.clone());
        // Where the history will start: ingest-files then knows the cut is cryptolake's, whose
        // expiry folds the landing files the removed snapshots took into the log.
        if let Some(start) = history_start_after(&before, &expiring) {
            commit = commit.set_property(HISTORY_FROM_PROPERTY, start.to_string());
        }
        // Fold the landing files the expiring snapshots took into the log first.
        // An unreadable list stops the expiry: dropping it would let ingest-files take those
        // landing files again.
        let mut lists: Vec<Vec<crate::bookmarks::TakenFile>> = Vec::new();
        for snapshot in before.metadata().snapshots() {
            if expiring.contains(&snapshot.snapshot_id()) {
                lists.extend(files_taken(&plan.table, snapshot)?);
            }
        }
        if !lists.is_empty() {
            let mut taken = expired_taken(&before).await?;
            taken.extend(lists.into_iter().flatten());
            taken.sort();
            taken.dedup();
            let path = format!(
                "{}/metadata/ingest-taken-{}.json",
                before.metadata().location(),
                uuid::Uuid::now_v7()
            );
            let body = serde_json::to_vec(&taken).map_err(|e| Error::Internal(e.to_string()))?;
            before
                .file_io()
                .new_output(&path)?
                .write(body.into())
                .await?;
            let previous = before
                .metadata()
                .properties()
                .get(EXPIRED_TAKEN_PROPERTY)
                .cloned();
            commit =
                commit
                    .set_property(EXPIRED_TAKEN_PROPERTY, path)
                    .require(std::sync::Arc::new(move |m| {
                        match m.properties().get(EXPIRED_TAKEN_PROPERTY) == previous.as_ref() {
                            true => Ok(()),
                            false => {
                                Err("another expiry folded taken landing files meanwhile".into())
                            }
                        }
                    }));
        }
        // Every file the table reaches now, read before the commit: a manifest that cannot be
        // read stops the expiry with the table unchanged, never after snapshots are gone.
        let reached_before = reachable(&before).await?;
        self.ctx.lake.commit_metadata(&commit).await?;
        let after = self.ctx.lake.load_table(&ident).await?;
        let keep = reachable(&after).await?;
        let mut run = TableRun::default();
        let io = after.file_io();
        for path in reached_before.difference(&keep) {
            if path.ends_with(".metadata.json") || !io.exists(path).await? {
                continue;
            }
            io.delete(path).await?;
            run.files_removed += 1;
        }
        tracing::info!(table = %ident, expired = plan.expire.len(), files_removed = run.files_removed, "snapshots expired");
        Ok(run)
    }

    async fn execute_impl(&self, plan: ExpirePlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        for table in plan.tables.iter().filter(|t| !t.expire.is_empty()) {
            summary
                .tables
                .insert(table.table.clone(), self.expire_table(table).await?);
        }
        Ok(summary.finish(started.elapsed()))
    }
}

/// The oldest ancestor of the current snapshot that `expiring` keeps, when it removes that
/// ancestor's parent; `None` when the expiry leaves the current history whole.
fn history_start_after(table: &Table, expiring: &HashSet<i64>) -> Option<i64> {
    let metadata = table.metadata();
    let mut cursor = metadata.current_snapshot();
    while let Some(snapshot) = cursor {
        let parent = snapshot.parent_snapshot_id()?;
        if expiring.contains(&parent) {
            return Some(snapshot.snapshot_id());
        }
        cursor = metadata.snapshot_by_id(parent);
    }
    None
}

impl crate::Job for ExpireSnapshots {
    type Plan = ExpirePlan;
    const NAME: &'static str = JOB;

    async fn plan(&self) -> Result<ExpirePlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: ExpirePlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}
