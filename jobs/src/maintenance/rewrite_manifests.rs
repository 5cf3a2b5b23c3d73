//! `rewrite-manifests`: merge a table's many small data manifests into one, as Spark's
//! `rewrite_manifests` does, so that planning a scan opens one file instead of hundreds.
//!
//! The rewrite is a `replace` snapshot with the same live files: it is built on whatever the
//! newest snapshot is at commit time, so an append that lands meanwhile is merged in too and
//! nothing needs re-checking.

use std::time::Instant;

use cryptolake_catalog::SnapshotCommit;
use iceberg::TableIdent;
use iceberg::spec::ManifestContentType;
use iceberg::table::Table;
use serde::Serialize;

use super::options::tables_or_all;
use crate::Result;
use crate::job::context::JobContext;
use crate::job::summary::{RunSummary, TableRun};

const JOB: &str = "rewrite-manifests";

/// Options of a manifest rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteManifestsOptions {
    /// Rewrite a table only when it has at least this many data manifests.
    pub min_manifests: usize,
    /// Tables to rewrite; every table when empty.
    pub tables: Vec<TableIdent>,
}

impl Default for RewriteManifestsOptions {
    fn default() -> Self {
        Self {
            min_manifests: 10,
            tables: Vec::new(),
        }
    }
}

/// One table's manifests as planning found them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ManifestsTablePlan {
    pub table: String,
    pub snapshot_id: Option<i64>,
    pub data_manifests: usize,
    pub manifest_bytes: u64,
    pub live_files: u64,
    /// Whether the table has enough manifests to be rewritten.
    pub rewrite: bool,
}

/// The plan of a manifest rewrite.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RewriteManifestsPlan {
    pub tables: Vec<ManifestsTablePlan>,
}

/// Builder for a manifest rewrite.
#[derive(Debug, Clone)]
pub struct RewriteManifests {
    ctx: JobContext,
    options: RewriteManifestsOptions,
}

impl RewriteManifests {
    pub fn new(ctx: JobContext, options: RewriteManifestsOptions) -> Self {
        Self { ctx, options }
    }

    async fn plan_table(&self, ident: &TableIdent, table: &Table) -> Result<ManifestsTablePlan> {
        let metadata = table.metadata();
        let mut plan = ManifestsTablePlan {
            table: ident.to_string(),
            snapshot_id: metadata.current_snapshot_id(),
            data_manifests: 0,
            manifest_bytes: 0,
            live_files: 0,
            rewrite: false,
        };
        let Some(current) = metadata.current_snapshot() else {
            return Ok(plan);
        };
        let list = cryptolake_catalog::cache::manifest_list(table, current).await?;
        for m in list
            .entries()
            .iter()
            .filter(|m| m.content == ManifestContentType::Data)
        {
            plan.data_manifests += 1;
            plan.manifest_bytes += m.manifest_length.max(0) as u64;
            plan.live_files += u64::from(m.added_files_count.unwrap_or(0))
                + u64::from(m.existing_files_count.unwrap_or(0));
        }
        plan.rewrite = plan.data_manifests >= self.options.min_manifests.max(2);
        Ok(plan)
    }

    async fn rewrite(&self, plan: &ManifestsTablePlan) -> Result<TableRun> {
        let ident = cryptolake_catalog::lake::parse_ident(&plan.table)?;
        let commit = SnapshotCommit::rewrite_manifests(ident)
            .set_property(crate::bookmarks::JOB_PROPERTY, JOB)
            .set_property("manifests-replaced", plan.data_manifests.to_string());
        let outcome = self.ctx.lake.commit(&commit).await?;
        Ok(TableRun {
            snapshot_id: Some(outcome.snapshot_id),
            commit_attempts: outcome.attempts,
            ..TableRun::default()
        })
    }
}

impl crate::Job for RewriteManifests {
    type Plan = RewriteManifestsPlan;
    const NAME: &'static str = JOB;

    async fn plan(&self) -> Result<RewriteManifestsPlan> {
        let mut tables = Vec::new();
        for ident in tables_or_all(&self.ctx.lake, &self.options.tables).await? {
            let table = self.ctx.lake.load_table(&ident).await?;
            tables.push(self.plan_table(&ident, &table).await?);
        }
        Ok(RewriteManifestsPlan { tables })
    }

    async fn execute(&self, plan: RewriteManifestsPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        let todo: Vec<_> = plan.tables.iter().filter(|t| t.rewrite).collect();
        self.ctx
            .progress
            .start("rewrite-manifests: tables", todo.len() as u64);
        for table in todo {
            summary
                .tables
                .insert(table.table.clone(), self.rewrite(table).await?);
            self.ctx.progress.advance(1);
        }
        Ok(summary.finish(started.elapsed()))
    }
}
