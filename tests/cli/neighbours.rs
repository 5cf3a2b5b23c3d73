//! Neighbours that write the same tables: PyIceberg, as Athena, Spark or a user's script would,
//! adds a column, appends a row, deletes rows, changes a partition spec and expires snapshots
//! of cryptolake's tables. Every job either goes on exactly (compared with a project no
//! neighbour touched) or refuses with a clear error and changes nothing.

use crate::common::Project;
use crate::readers::run_python;

/// One neighbour's action on one table, through the project's own SQLite catalog.
const NEIGHBOUR: &str = r#"
import sys, json, datetime
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import StringType
from pyiceberg.transforms import HourTransform
db, warehouse, name, action = sys.argv[1:5]
catalog = SqlCatalog("cryptolake", uri=f"sqlite:///{db}", warehouse=f"file://{warehouse}")
t = catalog.load_table(name)
if action == "add_column":
    with t.update_schema() as u:
        u.add_column("note", StringType())
elif action == "append_like":
    # One row like the table's first, from another source, noted.
    rows = t.scan(limit=1).to_arrow()
    for column, value in [("source", "neighbour"), ("note", "kept")]:
        i = rows.schema.get_field_index(column)
        rows = rows.set_column(i, rows.schema.field(i), pa.array([value], rows.schema.field(i).type))
    t.append(rows)
elif action == "delete":
    t.delete(sys.argv[5])
elif action == "add_hour":
    with t.update_spec() as u:
        u.add_field("event_time", HourTransform(), "event_hour")
elif action == "drop_hour":
    with t.update_spec() as u:
        u.remove_field("event_hour")
elif action == "acknowledge":
    # The operator's word that the files the expired snapshots took are in the table.
    s = t.current_snapshot()
    while s.parent_snapshot_id is not None and t.snapshot_by_id(s.parent_snapshot_id) is not None:
        s = t.snapshot_by_id(s.parent_snapshot_id)
    with t.transaction() as tx:
        tx.set_properties({"cryptolake.history-from": str(s.snapshot_id)})
elif action == "expire":
    keep = t.current_snapshot().snapshot_id
    old = [s.snapshot_id for s in t.snapshots() if s.snapshot_id != keep]
    t.maintenance.expire_snapshots().by_ids(old).commit()
t = catalog.load_table(name)
print(json.dumps({"operation": t.current_snapshot().summary.operation.value}))
"#;

/// Runs the neighbour; returns the operation of the snapshot the table is at afterwards.
fn neighbour(p: &Project, table: &str, action: &[&str]) -> String {
    let db = p.path().join("lake/catalog.db");
    let warehouse = p.path().join("lake/warehouse");
    let mut args = vec![db.to_str().unwrap(), warehouse.to_str().unwrap(), table];
    args.extend(action);
    let out = run_python(NEIGHBOUR, &args);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v["operation"].as_str().unwrap().to_string()
}

/// Minute `m` of two symbols' data, landed but not run; returns `gen`'s counts per source.
fn land(p: &Project, m: u32) -> serde_json::Map<String, serde_json::Value> {
    let start = format!("2026-01-01T00:{m:02}:00Z");
    let seed = (m + 40).to_string();
    p.generate(&[
        "--minutes",
        "1",
        "--seed",
        &seed,
        "--symbols",
        "2",
        "--start",
        &start,
    ])
}

/// Compaction of silver.quotes, whatever its files' count.
const COMPACT_QUOTES: [&str; 6] = [
    "run",
    "compact",
    "--table",
    "silver.quotes",
    "--min-input-files",
    "2",
];

const QUOTES: &str = "SELECT source, symbol, CAST(event_time AS VARCHAR) AS t, \
     CAST(price AS VARCHAR) AS price FROM silver.quotes ORDER BY source, symbol, t, price";
const QUOTE_COLUMNS: [&str; 4] = ["source", "symbol", "t", "price"];

const CANDLES: &str = "SELECT symbol, CAST(window_start AS VARCHAR) AS w, CAST(open AS VARCHAR) AS o, \
     CAST(close AS VARCHAR) AS c, quote_count, trade_count FROM gold.candles_1m ORDER BY symbol, w";
const CANDLE_COLUMNS: [&str; 6] = ["symbol", "w", "o", "c", "quote_count", "trade_count"];

fn quotes(p: &Project) -> Vec<String> {
    p.rows_text(QUOTES, &QUOTE_COLUMNS)
}

fn candles(p: &Project) -> Vec<String> {
    p.rows_text(CANDLES, &CANDLE_COLUMNS)
}

/// A project that ran minute 0.
fn first_minute() -> Project {
    let p = Project::new();
    land(&p, 0);
    p.ok(&["run", "all"]);
    p
}

/// A project that ran minutes 0 and 1 with no neighbour.
fn untouched() -> Project {
    let p = first_minute();
    land(&p, 1);
    p.ok(&["run", "all"]);
    p
}

#[test]
fn a_column_and_a_row_a_neighbour_adds_are_kept_and_every_job_goes_on() {
    let clean = untouched();
    let p = first_minute();
    for table in ["silver.quotes", "bronze.coinbase_spot"] {
        neighbour(&p, table, &["add_column"]);
    }
    assert_eq!(neighbour(&p, "silver.quotes", &["append_like"]), "append");
    land(&p, 1);
    p.ok(&["run", "all"]);
    // Everything cryptolake wrote is as in the untouched project; the neighbour's row and
    // column are still there, and compaction keeps both.
    let mut want = quotes(&clean);
    let theirs: Vec<String> = quotes(&p)
        .into_iter()
        .filter(|r| r.starts_with("neighbour|"))
        .collect();
    assert_eq!(theirs.len(), 1);
    want.extend(theirs);
    want.sort();
    assert_eq!(quotes(&p), want);
    assert_eq!(
        p.count("bronze.coinbase_spot"),
        clean.count("bronze.coinbase_spot")
    );
    p.ok(&COMPACT_QUOTES);
    assert_eq!(quotes(&p), want);
    let noted = p.sql("SELECT count(*) AS n FROM silver.quotes WHERE note = 'kept'");
    assert_eq!(noted[0]["n"], 1);
    assert_eq!(
        p.count("silver.quotes"),
        p.sql("SELECT count(*) AS n FROM silver.quotes WHERE note IS NULL")[0]["n"]
            .as_u64()
            .unwrap()
            + 1
    );
}

#[test]
fn rows_a_neighbour_deletes_stay_deleted_and_gold_is_rebuilt_without_them() {
    let p = first_minute();
    let before = candles(&p);
    let eth: Vec<&String> = before
        .iter()
        .filter(|r| r.starts_with("ETH-USD|"))
        .collect();
    assert!(!eth.is_empty());
    // Whole files (ETH's partition) go: a `delete` snapshot; part of BTC's: an `overwrite`.
    assert_eq!(
        neighbour(&p, "silver.quotes", &["delete", "symbol == 'ETH-USD'"]),
        "delete"
    );
    assert_eq!(
        neighbour(&p, "silver.trades", &["delete", "symbol == 'ETH-USD'"]),
        "delete"
    );
    let cut = "event_time < '2026-01-01T00:00:30'";
    assert_eq!(
        neighbour(
            &p,
            "silver.quotes",
            &["delete", &format!("symbol == 'BTC-USD' and {cut}")]
        ),
        "overwrite"
    );
    let silver_left = quotes(&p);
    p.ok(&["run", "all"]);
    // Gold now agrees with silver as the neighbour left it: no ETH candle, BTC's recounted.
    let after = candles(&p);
    assert!(after.iter().all(|r| r.starts_with("BTC-USD|")), "{after:?}");
    let btc_quotes = p.sql(
        "SELECT count(*) AS n FROM silver.quotes WHERE symbol = 'BTC-USD' \
         AND event_time < '2026-01-01T00:01:00'",
    );
    let counted =
        p.sql("SELECT sum(quote_count) AS n FROM gold.candles_1m WHERE symbol = 'BTC-USD'");
    assert_eq!(counted[0]["n"], btc_quotes[0]["n"]);
    let history = p.json(&["table", "history", "gold.candles_1m"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["operation"], "overwrite", "{last}");
    // Nothing cryptolake does brings the deleted rows back: silver's next minute, compaction.
    assert_eq!(quotes(&p), silver_left);
    land(&p, 1);
    p.ok(&["run", "all"]);
    p.ok(&COMPACT_QUOTES);
    let minute0 = p.sql(
        "SELECT count(*) AS n FROM silver.quotes WHERE event_time < '2026-01-01T00:01:00' \
         AND (symbol = 'ETH-USD' OR event_time < '2026-01-01T00:00:30')",
    );
    assert_eq!(minute0[0]["n"], 0);
    let eth_minutes = p.sql(
        "SELECT count(*) AS n FROM gold.candles_1m WHERE symbol = 'ETH-USD' \
         AND window_start < '2026-01-01T00:01:00'",
    );
    assert_eq!(eth_minutes[0]["n"], 0);
}

#[test]
fn a_partition_spec_a_neighbour_changes_is_refused_until_it_is_set_back() {
    let clean = untouched();
    let p = first_minute();
    neighbour(&p, "silver.quotes", &["add_hour"]);
    land(&p, 1);
    let quotes_before = quotes(&p);
    let out = p.output(&["run", "all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "silver.quotes is partitioned by (symbol, day(event_time), hour(event_time)) \
             (spec 1), not by (symbol, day(event_time))"
        ),
        "{err}"
    );
    let out = p.output(&[
        "run",
        "compact",
        "--table",
        "silver.quotes",
        "--min-input-files",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(quotes(&p), quotes_before);
    // Set back, the waiting minute lands exactly as in a project nobody touched.
    neighbour(&p, "silver.quotes", &["drop_hour"]);
    p.ok(&["run", "all"]);
    assert_eq!(quotes(&p), quotes(&clean));
    assert_eq!(candles(&p), candles(&clean));
}

#[test]
fn snapshots_a_neighbour_expires_leave_gold_exact() {
    let clean = untouched();
    let p = first_minute();
    // Silver moves on without gold, then the neighbour expires every snapshot but the last:
    // gold's bookmark names a snapshot silver no longer has, and gold recomputes from silver.
    land(&p, 1);
    p.ok(&["run", "ingest-files"]);
    p.ok(&["run", "silver"]);
    for table in ["silver.quotes", "silver.trades"] {
        neighbour(&p, table, &["expire"]);
    }
    p.ok(&["run", "gold"]);
    assert_eq!(candles(&p), candles(&clean));
    // The files only expired snapshots reached are orphans remove-orphans takes; nothing
    // reachable goes.
    p.ok(&["run", "remove-orphans", "--older-than", "0s"]);
    assert_eq!(quotes(&p), quotes(&clean));
    p.ok(&["table", "check"]);
}

/// A neighbour's commit that lands between silver's plan and its commit stays: the commit
/// layer builds on the newest metadata, so silver's snapshot follows the neighbour's and both
/// rows and bookmarks hold.
#[test]
fn a_neighbours_commit_between_plan_and_commit_is_kept() {
    let clean = untouched();
    let p = first_minute();
    neighbour(&p, "silver.quotes", &["add_column"]);
    land(&p, 1);
    p.ok(&["run", "ingest-files"]);
    // Silver plans, then waits; the neighbour appends meanwhile.
    let silver = p
        .command(&["run", "silver"])
        .env("CRYPTOLAKE_FAULT", "silver:before-execute:delay=6000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let neighbour_done = neighbour(&p, "silver.quotes", &["append_like"]);
    let out = silver.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(neighbour_done, "append");
    let history = p.json(&["table", "history", "silver.quotes"]);
    let jobs: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["operation"].as_str().unwrap(), s["job"]))
        .collect();
    assert_eq!(
        jobs[jobs.len() - 2..],
        ["append:null".to_string(), "append:\"silver\"".to_string()],
        "{jobs:?}"
    );
    p.ok(&["run", "gold"]);
    let mut want = quotes(&clean);
    want.extend(
        quotes(&p)
            .into_iter()
            .filter(|r| r.starts_with("neighbour|")),
    );
    want.sort();
    assert_eq!(quotes(&p), want);
    assert_eq!(want.len(), quotes(&clean).len() + 1);
    // Silver's bookmark survived the neighbour's snapshot: nothing new, nothing committed.
    let again = p.json(&["run", "silver"]);
    assert!(
        again[0]["tables"].as_object().unwrap().is_empty(),
        "{again}"
    );
}

/// Landing files are never taken twice unasked after another writer expires a bronze table's
/// snapshots (Athena's `VACUUM` would): their lists of files taken are gone, so ingest-files
/// stops, naming the new start of the history, until an operator accepts it, and with it that
/// those files are taken again. cryptolake's own expiry folds the lists into a log first and
/// records the start, so ingest goes on after it.
#[test]
fn landing_files_are_never_taken_twice_unasked_after_a_neighbour_expires_bronze_snapshots() {
    let table = "bronze.coinbase_spot";
    let p = Project::new();
    let minute0 = land(&p, 0);
    p.ok(&["run", "all"]);
    land(&p, 1);
    p.ok(&["run", "ingest-files"]);
    let before = p.count(table);
    neighbour(&p, table, &["expire"]);
    let minute2 = land(&p, 2);
    let out = p.output(&["run", "ingest-files"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(
        err.contains("bronze.coinbase_spot: snapshots before snapshot ")
            && err.contains("expired by another writer"),
        "{err}"
    );
    assert_eq!(p.count(table), before);
    // Accepted: minute 0's files (the expired snapshot's) come again with minute 2's.
    neighbour(&p, table, &["acknowledge"]);
    p.ok(&["run", "ingest-files"]);
    let field = crate::common::field;
    assert_eq!(
        p.count(table),
        before
            + field(&minute2, "coinbase_spot", "records")
            + field(&minute0, "coinbase_spot", "records")
    );
    // Silver's bookmark named the expired snapshot: it stops too, never guessing.
    let out = p.output(&["run", "silver"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(
        err.contains("is not in the history of bronze.coinbase_spot"),
        "{err}"
    );
    // cryptolake's own expiry records where the history starts: ingest goes on after it.
    p.ok(&[
        "run",
        "expire-snapshots",
        "--older-than",
        "0s",
        "--retain-last",
        "1",
    ]);
    let minute3 = land(&p, 3);
    let now = p.count(table);
    p.ok(&["run", "ingest-files"]);
    assert_eq!(
        p.count(table),
        now + field(&minute3, "coinbase_spot", "records")
    );
}
