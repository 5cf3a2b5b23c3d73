//! The lake as SQL tables: a DataFusion session with every table registered as
//! `namespace.table`, each at the snapshot a time travel picks (`cryptolake sql`).

use std::sync::Arc;

use cryptolake_catalog::Lake;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::SessionContext;
use iceberg::table::Table;

use crate::Result;
use crate::physical_plan::IcebergProvider;

/// Which snapshot of each table a session reads (time travel); the current one by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeTravel {
    /// Explicit snapshots, by `namespace.table`.
    pub snapshots: std::collections::HashMap<String, i64>,
    /// Every other table as it was at this time (epoch milliseconds).
    pub as_of_ms: Option<i64>,
}

impl TimeTravel {
    /// The snapshot to read, `Ok(None)` for the current one, or `Err` when the table had no
    /// snapshot then (it reads as empty).
    fn pick(&self, name: &str, table: &Table) -> Result<Option<i64>, ()> {
        if let Some(id) = self.snapshots.get(name) {
            return Ok(Some(*id));
        }
        match self.as_of_ms {
            None => Ok(None),
            Some(t) => table
                .metadata()
                .history()
                .iter()
                .rfind(|entry| entry.timestamp_ms <= t)
                .map(|entry| Some(entry.snapshot_id))
                .ok_or(()),
        }
    }
}

/// A DataFusion session with every table of the lake registered as `namespace.table`.
pub async fn session_with_lake(lake: &Lake) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    register_lake(&ctx, lake, &TimeTravel::default()).await?;
    Ok(ctx)
}

/// Registers every table of the lake in `ctx`, each at the snapshot `travel` picks.
pub async fn register_lake(ctx: &SessionContext, lake: &Lake, travel: &TimeTravel) -> Result<()> {
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| crate::Error::Internal("DataFusion has no default catalog".into()))?;
    let names: Vec<String> = lake
        .list_tables()
        .await?
        .iter()
        .map(|i| i.to_string())
        .collect();
    if let Some(unknown) = travel.snapshots.keys().find(|k| !names.contains(k)) {
        return Err(crate::Error::Usage(format!(
            "no table {unknown} to time-travel"
        )));
    }
    for ident in lake.list_tables().await? {
        let namespace = ident.namespace().join(".");
        if catalog.schema(&namespace).is_none() {
            catalog.register_schema(&namespace, Arc::new(MemorySchemaProvider::new()))?;
        }
        let table = lake.load_table(&ident).await?;
        let provider = match travel.pick(&ident.to_string(), &table) {
            Ok(None) => IcebergProvider::new(table)?,
            Ok(Some(id)) => {
                if table.metadata().snapshot_by_id(id).is_none() {
                    return Err(crate::Error::Usage(format!(
                        "{ident} has no snapshot {id} (expired, or never existed)"
                    )));
                }
                IcebergProvider::at_snapshot(table, id)?
            }
            Err(()) => IcebergProvider::with_files(table, Vec::new())?,
        };
        ctx.register_table(
            datafusion::sql::TableReference::partial(namespace, ident.name()),
            Arc::new(provider),
        )?;
    }
    Ok(())
}
