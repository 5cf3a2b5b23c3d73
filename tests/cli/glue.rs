//! The CLI on AWS stand-ins: Glue and S3 served by moto (with Glue's `VersionId` check), the
//! project made by `init --catalog glue --warehouse s3://... --endpoint URL`, credentials and
//! region from the standard AWS variables. The whole pipeline is read back through Glue by
//! PyIceberg and DuckDB; a compaction overlaps an ingest; Glue and S3 go away mid-job.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::Project;
use crate::moto::Moto;
use crate::proxy::Proxy;
use crate::readers::{CHECKS, compare_tables_with_independent_readers, run_python};

const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    // No instance-metadata probing on a machine that is not in EC2.
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A Glue project on `endpoint`, its layers in databases named as a team would name them.
fn glue_project(endpoint: &str) -> Project {
    let p = Project::init(
        &[
            "--catalog",
            "glue",
            "--warehouse",
            "s3://lake/warehouse",
            "--endpoint",
            endpoint,
        ],
        &AWS_ENV,
    );
    let text = std::fs::read_to_string(&p.config).unwrap();
    let renamed = ["bronze", "silver", "gold"].iter().fold(text, |t, layer| {
        t.replace(
            &format!("{layer} = \"{layer}\""),
            &format!("{layer} = \"crypto_{layer}\""),
        )
    });
    assert_eq!(renamed.matches("\"crypto_").count(), 3, "{renamed}");
    std::fs::write(&p.config, renamed).unwrap();
    p
}

/// PyIceberg, through its own Glue client, creates `crypto_silver.events` with a `timestamptz`
/// column: a table Athena cannot read.
fn create_timestamptz_table(endpoint: &str) {
    let script = r#"
import sys
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType, TimestamptzType
ep = sys.argv[1]
catalog = GlueCatalog("glue", **{"glue.endpoint": ep, "glue.region": "us-east-1",
    "glue.access-key-id": "testing", "glue.secret-access-key": "testing",
    "s3.endpoint": ep, "s3.region": "us-east-1",
    "s3.access-key-id": "testing", "s3.secret-access-key": "testing"})
catalog.create_table("crypto_silver.events",
    Schema(NestedField(1, "id", StringType(), required=False),
           NestedField(2, "seen_at", TimestamptzType(), required=False)),
    location="s3://lake/warehouse/crypto_silver/events")
"#;
    run_python(script, &[endpoint]);
}

fn severities(check: &serde_json::Value) -> Vec<(String, String, String)> {
    check
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["table"].as_str().unwrap().to_string(),
                r["severity"].as_str().unwrap().to_string(),
                r["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn the_whole_pipeline_runs_on_glue_and_s3_and_independent_readers_agree() {
    let moto = Moto::start();
    moto.create_bucket("lake");
    let p = glue_project(&moto.endpoint());
    p.generate(&[
        "--minutes",
        "2",
        "--seed",
        "4",
        "--symbols",
        "4",
        "--bad-rate",
        "0.05",
        "--dup-rate",
        "0.02",
    ]);
    p.ok(&["run", "all"]);
    let tables: Vec<String> = CHECKS.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(p.table_counts().into_keys().collect::<Vec<_>>(), {
        let mut sorted = tables.clone();
        sorted.sort();
        sorted
    });
    // Every table cryptolake writes passes the Athena check.
    let check = p.json(&["table", "check"]);
    let mut want: Vec<_> = tables
        .iter()
        .map(|t| (t.clone(), "ok".to_string(), String::new()))
        .collect();
    want.sort();
    assert_eq!(severities(&check), want);

    compare_tables_with_independent_readers(&p, &CHECKS);

    // A table made deliberately non-Athena is flagged, with exit code 5.
    create_timestamptz_table(&moto.endpoint());
    let out = p.output(&["table", "check", "--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = severities(&serde_json::from_slice(&out.stdout).unwrap());
    let events: Vec<_> = found
        .iter()
        .filter(|(t, _, _)| t == "silver.events")
        .collect();
    assert!(
        events.contains(&&("silver.events".into(), "error".into(), "column-type".into())),
        "{found:?}"
    );
    assert_eq!(
        found.iter().filter(|(_, s, _)| s == "ok").count(),
        tables.len(),
        "the other tables stay fine: {found:?}"
    );
    let single = p.output(&["table", "check", "silver.trades"]);
    assert_eq!(single.status.code(), Some(0));
}

/// Starts `cryptolake ARGS` with a fault delay and returns once the job has reached it.
fn paused_at(
    p: &Project,
    args: &[&str],
    fault: &str,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = p
        .command(args)
        .env("CRYPTOLAKE_FAULT", fault)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "{args:?} ended before reaching {fault}");
        if line.contains("fault injected") {
            break;
        }
    }
    // Keep reading stderr so the child never blocks on a full pipe; the rest is returned.
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    (child, rest)
}

#[test]
fn a_compaction_overlapping_an_ingest_on_glue_keeps_both() {
    let moto = Moto::start();
    moto.create_bucket("lake");
    let p = glue_project(&moto.endpoint());
    for minute in 0..3 {
        p.minute(minute, "2", &[]);
    }
    let before = p.count("bronze.trades");
    let files_before = p.json(&["table", "files", "bronze.trades"]);
    // A fourth minute lands while the compaction sits between its rewrite and its commit.
    let new = p.generate(&[
        "--minutes",
        "1",
        "--seed",
        "3",
        "--symbols",
        "2",
        "--start",
        "2026-01-01T00:03:00Z",
    ]);
    let (compact, _) = paused_at(
        &p,
        &[
            "run",
            "compact",
            "--table",
            "bronze.trades",
            "--target-size",
            "1048576",
            "--min-input-files",
            "2",
            "--output",
            "json",
        ],
        "compact:after-write:delay=4000",
    );
    let ingest: serde_json::Value =
        serde_json::from_str(&p.ok(&["run", "ingest-files", "--output", "json"])).unwrap();
    let out = compact.wait_with_output().unwrap();
    assert!(out.status.success(), "compact failed: {:?}", out.status);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = &summary[0]["tables"]["bronze.trades"];
    // The ingest landed while the compaction waited: its commit starts from the new base and
    // checks that every file it replaces is still live. (The race inside one commit, which
    // only Glue's VersionId catches, is the catalog suite's
    // `a_glue_update_with_a_stale_version_id_conflicts_and_is_retried`.)
    assert_eq!(
        table["files_removed"],
        files_before.as_array().unwrap().len(),
        "{table}"
    );

    // Nothing lost, nothing doubled: the old rows compacted, the new ones appended.
    let added = crate::common::field(&new, "trades", "records");
    assert!(added > 0);
    assert_eq!(p.count("bronze.trades"), before + added);
    let history = p.json(&["table", "history", "bronze.trades"]);
    let ops: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops[ops.len() - 2..],
        ["append", "replace"],
        "{ops:?} {ingest}"
    );
    // The compacted files plus the appended ones.
    let files_after = p.json(&["table", "files", "bronze.trades"]);
    let appended = &ingest[0]["tables"]["bronze.trades"]["files_written"];
    assert_eq!(
        files_after.as_array().unwrap().len() as u64,
        table["files_written"].as_u64().unwrap() + appended.as_u64().unwrap(),
        "{ingest}"
    );
}

#[test]
fn glue_and_s3_unreachable_mid_job_fail_clearly_and_change_nothing() {
    let args = [
        "--minutes",
        "2",
        "--seed",
        "9",
        "--symbols",
        "3",
        "--bad-rate",
        "0.05",
    ];
    let clean = Project::new();
    clean.generate(&args);
    clean.ok(&["run", "all"]);

    let moto = Moto::start();
    moto.create_bucket("lake");
    let mut proxy = Proxy::start(moto.port);
    let p = glue_project(&proxy.endpoint());
    p.generate(&args);
    p.ok(&["run", "ingest-files"]);
    let before = p.snapshots();

    let (silver, stderr) = paused_at(&p, &["run", "silver"], "silver:after-write:delay=2000");
    proxy.cut();
    let started = std::time::Instant::now();
    let out = silver.wait_with_output().unwrap();
    eprintln!(
        "silver failed after {:?} without Glue and S3",
        started.elapsed()
    );
    let stderr = stderr.join().unwrap();
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    // The cause is named, not a bare "unhandled error".
    assert!(stderr.contains("Connection refused"), "{stderr}");
    proxy.restore();
    assert_eq!(p.snapshots(), before, "a failed commit changes no table");

    p.ok(&["run", "silver"]);
    p.ok(&["run", "gold"]);
    assert_eq!(p.table_counts(), clean.table_counts());
}
