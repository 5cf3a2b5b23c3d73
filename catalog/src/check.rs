//! `table check`: what would keep Athena (or another engine reading through Glue) from reading
//! a table. Each finding is an [`Severity::Error`] (the table cannot be read, or reads wrong)
//! or a [`Severity::Warning`] (it reads, but not as a Glue/Spark user would expect).
//!
//! The rules are Athena's documented limits for Iceberg: format v2; `timestamp` without zone
//! (read at millisecond precision), never `timestamptz`, nanosecond or `time` columns;
//! lower-case names; the partition transforms Athena plans with; Parquet files with readable
//! manifests; and for Glue, the registration Athena looks up (`table_type=ICEBERG`,
//! `metadata_location`, StorageDescriptor columns and location).

use iceberg::TableIdent;
use iceberg::spec::{FormatVersion, NestedFieldRef, PrimitiveType, TableMetadata, Transform, Type};
use iceberg::table::Table;
use serde::Serialize;

use crate::Result;
use crate::lake::Lake;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem with one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A short, stable name for the rule (`format-version`, `column-type`, ...).
    pub rule: &'static str,
    pub message: String,
}

impl Finding {
    pub fn error(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            rule,
            message: message.into(),
        }
    }

    pub fn warning(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            rule,
            message: message.into(),
        }
    }
}

/// Every finding for one table: its metadata, its manifests, and its catalog registration.
pub async fn check_table(lake: &Lake, ident: &TableIdent) -> Result<Vec<Finding>> {
    let table = match lake.load_table(ident).await {
        Ok(t) => t,
        Err(e) => return Ok(vec![Finding::error("metadata", e.to_string())]),
    };
    let mut findings = check_metadata(ident, table.metadata());
    findings.extend(check_files(&table).await);
    findings.extend(lake.backend().registration_problems(&table).await?);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(findings)
}

/// The rules that need only the metadata file.
pub fn check_metadata(ident: &TableIdent, metadata: &TableMetadata) -> Vec<Finding> {
    let mut out = Vec::new();
    if metadata.format_version() != FormatVersion::V2 {
        out.push(Finding::error(
            "format-version",
            format!(
                "format version {}: Athena reads and writes Iceberg v2 only",
                metadata.format_version()
            ),
        ));
    }
    let names = ident.namespace().iter().map(String::as_str);
    for name in names.chain(std::iter::once(ident.name())) {
        if name.to_lowercase() != name {
            out.push(Finding::error(
                "name-case",
                format!("`{name}`: Glue and Athena lower-case database and table names"),
            ));
        }
    }
    let schema = metadata.current_schema();
    let mut lowered = std::collections::BTreeMap::new();
    for field in schema.as_struct().fields() {
        check_field(field, "", &mut out);
        if let Some(other) = lowered.insert(field.name.to_lowercase(), field.name.clone()) {
            out.push(Finding::error(
                "column-name",
                format!(
                    "`{other}` and `{}` are one column to Athena (names are case-insensitive)",
                    field.name
                ),
            ));
        }
    }
    for field in metadata.default_partition_spec().fields() {
        let supported = matches!(
            field.transform,
            Transform::Identity
                | Transform::Bucket(_)
                | Transform::Truncate(_)
                | Transform::Year
                | Transform::Month
                | Transform::Day
                | Transform::Hour
        );
        if !supported {
            out.push(Finding::error(
                "partition-transform",
                format!(
                    "partition field `{}` uses the {} transform, which Athena does not support",
                    field.name, field.transform
                ),
            ));
        }
    }
    let props = metadata.properties();
    if let Some(format) = props.get("write.format.default")
        && !format.eq_ignore_ascii_case("parquet")
    {
        out.push(Finding::warning(
            "file-format",
            format!("write.format.default = {format}: Athena writes and optimizes Parquet"),
        ));
    }
    out
}

fn check_field(field: &NestedFieldRef, parent: &str, out: &mut Vec<Finding>) {
    let path = format!("{parent}{}", field.name);
    if field.name.to_lowercase() != field.name {
        out.push(Finding::error(
            "column-name",
            format!("column `{path}` is not lower-case: Athena and Glue lower-case column names"),
        ));
    }
    match field.field_type.as_ref() {
        Type::Primitive(p) => {
            let problem = match p {
                PrimitiveType::Timestamptz => Some(
                    "timestamptz: Glue and Athena have no Iceberg timestamp with zone; store UTC \
                     as `timestamp`",
                ),
                PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs => {
                    Some("nanosecond timestamps are Iceberg v3: Athena cannot read them")
                }
                PrimitiveType::Time => Some("time: Athena has no Iceberg time type"),
                _ => None,
            };
            if let Some(why) = problem {
                out.push(Finding::error(
                    "column-type",
                    format!("column `{path}`: {why}"),
                ));
            }
            if matches!(p, PrimitiveType::Uuid | PrimitiveType::Fixed(_)) {
                out.push(Finding::warning(
                    "column-type",
                    format!("column `{path}`: Athena reads {p} as binary or string"),
                ));
            }
        }
        Type::Struct(s) => {
            for f in s.fields() {
                check_field(f, &format!("{path}."), out);
            }
        }
        Type::List(l) => check_field(&l.element_field, &format!("{path}."), out),
        Type::Map(m) => {
            check_field(&m.key_field, &format!("{path}."), out);
            check_field(&m.value_field, &format!("{path}."), out);
        }
    }
}

/// Reads the current snapshot's manifest list and manifests (as a reader's planning does;
/// through the cache, whose errors name the file) and looks at the data files' formats.
async fn check_files(table: &Table) -> Vec<Finding> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Vec::new();
    };
    let entries = async {
        let list = crate::cache::manifest_list(table, snapshot).await?;
        let mut files = Vec::new();
        for manifest_file in list.entries() {
            let manifest = crate::cache::manifest(manifest_file, table.file_io()).await?;
            files.extend(
                manifest
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| (e.content_type(), e.file_format())),
            );
        }
        Ok::<_, crate::Error>(files)
    };
    let files = match entries.await {
        Ok(files) => files,
        Err(e) => {
            return vec![Finding::error(
                "manifests",
                format!("the current snapshot cannot be planned: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    let odd = files
        .iter()
        .filter(|(_, format)| *format != iceberg::spec::DataFileFormat::Parquet)
        .count();
    if odd > 0 {
        out.push(Finding::warning(
            "file-format",
            format!("{odd} data files are not Parquet"),
        ));
    }
    let deletes = files
        .iter()
        .filter(|(content, _)| *content != iceberg::spec::DataContentType::Data)
        .count();
    if deletes > 0 {
        out.push(Finding::warning(
            "delete-files",
            format!(
                "{deletes} delete files (merge-on-read): Athena applies them; cryptolake's jobs \
                 refuse to read the table, and compaction skips it, until they are rewritten \
                 into the data files"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout;

    fn metadata(layout: &crate::TableLayout) -> TableMetadata {
        let mut creation = layout.creation().unwrap();
        creation.location = Some("file:///tmp/w".into());
        iceberg::spec::TableMetadataBuilder::from_table_creation(creation)
            .unwrap()
            .build()
            .unwrap()
            .metadata
    }

    #[test]
    fn timestamptz_upper_case_and_v1_are_errors() {
        use iceberg::spec::{NestedField, Schema};
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "Symbol", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(2, "seen_at", Type::Primitive(PrimitiveType::Timestamptz))
                    .into(),
            ])
            .build()
            .unwrap();
        let creation = iceberg::TableCreation::builder()
            .name("events".into())
            .schema(schema)
            .location("file:///tmp/w".into())
            .format_version(FormatVersion::V1)
            .build();
        let metadata = iceberg::spec::TableMetadataBuilder::from_table_creation(creation)
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        let ident = TableIdent::from_strs(["silver", "Events"]).unwrap();
        let rules: Vec<_> = check_metadata(&ident, &metadata)
            .into_iter()
            .map(|f| (f.severity, f.rule))
            .collect();
        assert_eq!(
            rules,
            vec![
                (Severity::Error, "format-version"),
                (Severity::Error, "name-case"),
                (Severity::Error, "column-name"),
                (Severity::Error, "column-type"),
            ]
        );
    }

    #[test]
    fn every_cryptolake_layout_passes() {
        for layout in layout::all_layouts() {
            let findings = check_metadata(&layout.ident(), &metadata(&layout));
            assert_eq!(findings, vec![], "{}", layout.ident());
        }
    }
}
