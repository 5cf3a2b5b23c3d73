//! Options maintenance jobs share: durations (`--older-than 3d`) and table selection.

use crate::Result;

pub use crate::job::duration::parse_duration;

/// `tables`, or every table of the lake when it is empty (maintenance's `--table` default).
pub async fn tables_or_all(
    lake: &cryptolake_catalog::Lake,
    tables: &[iceberg::TableIdent],
) -> Result<Vec<iceberg::TableIdent>> {
    if tables.is_empty() {
        Ok(lake.list_tables().await?)
    } else {
        Ok(tables.to_vec())
    }
}
