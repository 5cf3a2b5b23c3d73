//! One table's health, for its page and `GET /v1/tables/{name}`: what `table check` finds, the
//! small files compaction would rewrite now (compaction's own plan), the last maintenance
//! snapshot, and, on silver's tables, the quarantine's reasons with their counts.

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use cryptolake_catalog::check::{Finding, check_table};
use cryptolake_catalog::lake::parse_ident;
use cryptolake_jobs::Job;
use cryptolake_jobs::maintenance::compact::{Compact, CompactOptions};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{SessionContext, col, lit};
use serde::Serialize;

use crate::data::{self, SnapshotPoint, TableInfo};
use crate::{ConsoleState, Error, Result};

/// Quarantine reasons a page lists at most.
const MAX_REASONS: usize = 50;

/// One table's state and health.
#[derive(Debug, Clone, Serialize)]
pub struct TableDetail {
    #[serde(flatten)]
    pub info: TableInfo,
    /// `table check`'s findings; empty when Athena reads the table as it is.
    pub findings: Vec<Finding>,
    /// Live data files compaction would rewrite now, and their share of the live files;
    /// `None` where the console has no job settings to plan with.
    pub small_files: Option<u64>,
    pub small_file_share: Option<f64>,
    /// The newest `replace` snapshot (a compaction or a manifest rewrite) still kept.
    pub last_maintenance: Option<SnapshotPoint>,
    /// On `silver.*`: the quarantine's reasons, most records first.
    pub quarantine: Vec<ReasonCount>,
}

/// Records quarantined from one source for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub source: String,
    pub reason: String,
    pub records: i64,
}

/// The table named `name`; `Error::NotFound` when the lake has none.
pub async fn table_detail(state: &ConsoleState, name: &str) -> Result<TableDetail> {
    let info = data::tables(&state.lake)
        .await?
        .into_iter()
        .find(|t| t.table == name)
        .ok_or_else(|| Error::NotFound(format!("no table {name}")))?;
    let ident = parse_ident(name)?;
    let findings = check_table(&state.lake, &ident).await?;
    let (small_files, small_file_share) = match &state.probes.jobs {
        Some(ctx) => {
            let options = CompactOptions {
                tables: vec![ident],
                ..CompactOptions::default()
            };
            let plan = Compact::new(ctx.clone(), options).plan().await?;
            let small: usize = plan
                .tables
                .iter()
                .flat_map(|t| &t.groups)
                .map(|g| g.files_in)
                .sum();
            let share = if info.files == 0 {
                0.0
            } else {
                small as f64 / info.files as f64
            };
            (Some(small as u64), Some(share))
        }
        None => (None, None),
    };
    let last_maintenance = info
        .history
        .iter()
        .rev()
        .find(|s| s.operation == "replace")
        .cloned();
    let quarantine = if name.starts_with("silver.") {
        quarantine_reasons(state).await?
    } else {
        Vec::new()
    };
    Ok(TableDetail {
        info,
        findings,
        small_files,
        small_file_share,
        last_maintenance,
        quarantine,
    })
}

/// `silver.quarantine` grouped by source and reason, most records first.
pub async fn quarantine_reasons(state: &ConsoleState) -> Result<Vec<ReasonCount>> {
    let Some(table) = data::table(&state.lake, "silver", "quarantine").await? else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    let provider = cryptolake_jobs::physical_plan::IcebergProvider::new(table)?;
    let batches = ctx
        .read_table(std::sync::Arc::new(provider))?
        .aggregate(
            vec![col("source"), col("reason")],
            vec![count(lit(1)).alias("records")],
        )?
        .sort(vec![
            col("records").sort(false, false),
            col("source").sort(true, false),
            col("reason").sort(true, false),
        ])?
        .limit(0, Some(MAX_REASONS))?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let text = |name: &str| -> Result<arrow::array::ArrayRef> {
            let c = b
                .column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("no column {name}")))?;
            Ok(cast(c, &DataType::Utf8).map_err(cryptolake_jobs::Error::from)?)
        };
        let (source, reason) = (text("source")?, text("reason")?);
        let records = cast(
            b.column_by_name("records")
                .ok_or_else(|| Error::Internal("no column records".into()))?,
            &DataType::Int64,
        )
        .map_err(cryptolake_jobs::Error::from)?;
        let records = records.as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            out.push(ReasonCount {
                source: source.as_string::<i32>().value(i).to_string(),
                reason: reason.as_string::<i32>().value(i).to_string(),
                records: if records.is_null(i) {
                    0
                } else {
                    records.value(i)
                },
            });
        }
    }
    Ok(out)
}
