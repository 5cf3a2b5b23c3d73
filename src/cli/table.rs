//! `cryptolake table list|describe T|history T|files T|check [T]`.

use chrono::DateTime;
use cryptolake_catalog::Lake;
use cryptolake_catalog::lake::parse_ident;
use cryptolake_jobs::iceberg::scan::live_data_files;
use iceberg::table::Table;
use serde_json::{Value, json};

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, clap::Subcommand)]
pub enum TableCommand {
    /// Every table with its current snapshot, rows, files and bytes.
    List,
    /// Columns, partition spec, properties and location of a table.
    Describe { table: String },
    /// The table's snapshots, oldest first.
    History { table: String },
    /// The live data files of the current snapshot.
    Files { table: String },
    /// What would keep Athena (or another engine) from reading a table, or every table; exits
    /// with 5 when it finds an error.
    Check {
        table: Option<String>,
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
    },
}

pub async fn run(cmd: &TableCommand, config: &Config, format: Format) -> Result<(), CliError> {
    let lake = Lake::open(&config.catalog).await?;
    match cmd {
        TableCommand::List => list(&lake, format).await,
        TableCommand::Describe { table } => {
            describe(&lake.load_table(&parse_ident(table)?).await?, format)
        }
        TableCommand::History { table } => {
            history(&lake.load_table(&parse_ident(table)?).await?, format)
        }
        TableCommand::Files { table } => {
            files(&lake.load_table(&parse_ident(table)?).await?, format).await
        }
        TableCommand::Check { table, strict } => {
            check(&lake, table.as_deref(), *strict, format).await
        }
    }
}

/// One row per finding, or one `ok` row for a table with none.
async fn check(
    lake: &Lake,
    table: Option<&str>,
    strict: bool,
    format: Format,
) -> Result<(), CliError> {
    use cryptolake_catalog::check::{Severity, check_table};
    let tables = match table {
        Some(t) => vec![parse_ident(t)?],
        None => lake.list_tables().await?,
    };
    let mut rows = Vec::new();
    let mut failed = 0;
    for ident in tables {
        let findings = check_table(lake, &ident).await?;
        if findings
            .iter()
            .any(|f| f.severity == Severity::Error || strict)
        {
            failed += 1;
        }
        if findings.is_empty() {
            rows.push(row([
                ("table", ident.to_string().into()),
                ("severity", "ok".into()),
                ("rule", Value::Null),
                ("message", "readable by Athena".into()),
            ]));
        }
        for f in findings {
            rows.push(row([
                ("table", ident.to_string().into()),
                ("severity", json!(f.severity)),
                ("rule", f.rule.into()),
                ("message", f.message.into()),
            ]));
        }
    }
    print_rows(&rows, &["table", "severity", "rule", "message"], format);
    if failed > 0 {
        return Err(CliError::Check(failed));
    }
    Ok(())
}

fn summary_num(table: &Table, key: &str) -> Value {
    table
        .metadata()
        .current_snapshot()
        .and_then(|s| s.summary().additional_properties.get(key))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(json!(0), Value::from)
}

fn time_ms(ms: i64) -> Value {
    DateTime::from_timestamp_millis(ms).map_or(Value::Null, |t| t.to_rfc3339().into())
}

async fn list(lake: &Lake, format: Format) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for ident in lake.list_tables().await? {
        let t = lake.load_table(&ident).await?;
        rows.push(row([
            ("table", ident.to_string().into()),
            (
                "snapshot_id",
                t.metadata()
                    .current_snapshot_id()
                    .map_or(Value::Null, Value::from),
            ),
            ("records", summary_num(&t, "total-records")),
            ("files", summary_num(&t, "total-data-files")),
            ("bytes", summary_num(&t, "total-files-size")),
            ("last_updated", time_ms(t.metadata().last_updated_ms())),
        ]));
    }
    print_rows(
        &rows,
        &[
            "table",
            "snapshot_id",
            "records",
            "files",
            "bytes",
            "last_updated",
        ],
        format,
    );
    Ok(())
}

fn describe(table: &Table, format: Format) -> Result<(), CliError> {
    let m = table.metadata();
    let spec = m.default_partition_spec();
    let schema = m.current_schema();
    let partition_of = |id: i32| -> Value {
        spec.fields()
            .iter()
            .filter(|p| p.source_id == id)
            .map(|p| format!("{}({})", p.transform, p.name))
            .collect::<Vec<_>>()
            .join(", ")
            .into()
    };
    let rows: Vec<_> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            row([
                ("column", f.name.clone().into()),
                ("type", f.field_type.to_string().into()),
                ("required", f.required.into()),
                ("partition", partition_of(f.id)),
            ])
        })
        .collect();
    if format == Format::Json {
        let doc = json!({
            "table": table.identifier().to_string(),
            "location": m.location(),
            "metadata_location": table.metadata_location(),
            "format_version": m.format_version().to_string(),
            "current_snapshot_id": m.current_snapshot_id(),
            "schema_id": m.current_schema_id(),
            "properties": m.properties(),
            "columns": rows,
        });
        println!("{}", super::output::to_json(&doc)?);
        return Ok(());
    }
    println!("table:     {}", table.identifier());
    println!("location:  {}", m.location());
    println!("metadata:  {}", table.metadata_location().unwrap_or(""));
    println!("schema:    {}", m.current_schema_id());
    println!(
        "snapshot:  {}",
        m.current_snapshot_id()
            .map_or("none".into(), |s| s.to_string())
    );
    println!();
    print_rows(&rows, &["column", "type", "required", "partition"], format);
    Ok(())
}

fn history(table: &Table, format: Format) -> Result<(), CliError> {
    let mut snapshots: Vec<_> = table.metadata().snapshots().cloned().collect();
    snapshots.sort_by_key(|s| (s.sequence_number(), s.timestamp_ms()));
    let current = table.metadata().current_snapshot_id();
    let mut previous_schema: Option<i32> = None;
    let rows: Vec<_> = snapshots
        .iter()
        .map(|s| {
            let schema_id = s.schema_id();
            let change = schema_change(table, previous_schema, schema_id);
            previous_schema = schema_id.or(previous_schema);
            let p = &s.summary().additional_properties;
            let num = |k: &str| {
                p.get(k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(json!(0), Value::from)
            };
            row([
                ("snapshot_id", s.snapshot_id().into()),
                (
                    "parent_id",
                    s.parent_snapshot_id().map_or(Value::Null, Value::from),
                ),
                ("sequence_number", s.sequence_number().into()),
                ("committed_at", time_ms(s.timestamp_ms())),
                ("operation", s.summary().operation.as_str().into()),
                ("added_records", num("added-records")),
                ("deleted_records", num("deleted-records")),
                ("total_records", num("total-records")),
                (
                    "job",
                    p.get(cryptolake_jobs::bookmarks::JOB_PROPERTY)
                        .cloned()
                        .map_or(Value::Null, Value::from),
                ),
                ("current", (Some(s.snapshot_id()) == current).into()),
                ("schema_id", schema_id.map_or(Value::Null, Value::from)),
                ("schema_change", change.map_or(Value::Null, Value::from)),
            ])
        })
        .collect();
    print_rows(
        &rows,
        &[
            "snapshot_id",
            "sequence_number",
            "committed_at",
            "operation",
            "added_records",
            "deleted_records",
            "total_records",
            "job",
            "schema_id",
            "schema_change",
            "current",
        ],
        format,
    );
    Ok(())
}

/// How the schema a snapshot was written with differs from the one before it (by field id):
/// `+name` added, `-name` dropped, `old type -> new type` retyped or renamed; `None` when the
/// same.
fn schema_change(table: &Table, before: Option<i32>, now: Option<i32>) -> Option<String> {
    let m = table.metadata();
    let (before, now) = (m.schema_by_id(before?)?, m.schema_by_id(now?)?);
    if before.schema_id() == now.schema_id() {
        return None;
    }
    let (old, new) = (before.as_struct().fields(), now.as_struct().fields());
    let mut changes: Vec<String> = Vec::new();
    for f in new {
        match old.iter().find(|o| o.id == f.id) {
            None => changes.push(format!("+{}", f.name)),
            Some(o) if o.name != f.name || o.field_type != f.field_type => changes.push(format!(
                "{} {} -> {} {}",
                o.name, o.field_type, f.name, f.field_type
            )),
            Some(_) => {}
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|f| f.id == o.id)) {
        changes.push(format!("-{}", o.name));
    }
    Some(changes.join(", "))
}

async fn files(table: &Table, format: Format) -> Result<(), CliError> {
    let spec = table.metadata().default_partition_spec();
    let mut files = live_data_files(table).await?;
    files.sort_by(|a, b| a.file_path().cmp(b.file_path()));
    let rows: Vec<_> = files
        .iter()
        .map(|f| {
            let partition: serde_json::Map<String, Value> = spec
                .fields()
                .iter()
                .zip(f.partition().iter())
                .map(|(field, value)| {
                    let v = value.map_or(Value::Null, literal_json);
                    (field.name.clone(), v)
                })
                .collect();
            row([
                ("path", f.file_path().into()),
                ("partition", Value::Object(partition)),
                ("record_count", f.record_count().into()),
                ("file_size_bytes", f.file_size_in_bytes().into()),
            ])
        })
        .collect();
    print_rows(
        &rows,
        &["path", "partition", "record_count", "file_size_bytes"],
        format,
    );
    Ok(())
}

fn literal_json(l: &iceberg::spec::Literal) -> Value {
    use iceberg::spec::{Literal, PrimitiveLiteral as P};
    match l {
        Literal::Primitive(P::String(s)) => s.clone().into(),
        Literal::Primitive(P::Int(i)) => (*i).into(),
        Literal::Primitive(P::Long(i)) => (*i).into(),
        Literal::Primitive(P::Boolean(b)) => (*b).into(),
        other => format!("{other:?}").into(),
    }
}
