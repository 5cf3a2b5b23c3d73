//! Compaction through the binary: many small files become few, every row stays, and the jobs
//! that read incrementally do not take compacted rows again.

use crate::common::Project;

const TRADES: &str = "SELECT trade_id || '|' || CAST(price AS VARCHAR) || '|' || CAST(quantity AS VARCHAR) AS r \
                      FROM silver.trades ORDER BY r";

#[test]
fn small_files_compact_to_the_expected_count_and_rows_stay_identical() {
    let p = Project::new();
    for minute in 0..8 {
        p.minute(minute, "3", &[]);
    }
    let files = |t: &str| p.json(&["table", "files", t]).as_array().unwrap().len();
    // 8 appends: one file per run and partition (3 symbols x 1 day for silver).
    assert_eq!(files("silver.quotes"), 8 * 3);
    assert_eq!(files("bronze.coinbase_spot"), 8);
    let counts = p.table_counts();
    let trades = p.sql(TRADES);
    let quotes = p.sql("SELECT CAST(sum(price) AS VARCHAR) AS s, count(DISTINCT (source, symbol, event_time)) AS k FROM silver.quotes");

    let plan: serde_json::Value =
        serde_json::from_str(&p.ok(&["run", "compact", "--target-size", "1048576", "--dry-run"]))
            .unwrap();
    let silver = crate::common::find(&plan["compact"]["tables"], "table", "silver.quotes");
    assert_eq!(silver["groups"].as_array().unwrap().len(), 3, "{silver}");
    assert_eq!(silver["groups"][0]["files_in"], 8);
    assert_eq!(silver["groups"][0]["expected_files_out"], 1);

    let before_compaction = p.snapshots()["silver.quotes"].to_string();
    p.ok(&["run", "compact", "--target-size", "1048576"]);
    assert_eq!(files("silver.quotes"), 3);
    assert_eq!(files("silver.trades"), 3);
    assert_eq!(files("bronze.coinbase_spot"), 1);
    // Gold tables had one file per partition already: nothing to do there.
    assert_eq!(files("gold.candles_1m"), 1);
    assert_eq!(p.table_counts(), counts);
    assert_eq!(p.sql(TRADES), trades);
    assert_eq!(p.sql("SELECT CAST(sum(price) AS VARCHAR) AS s, count(DISTINCT (source, symbol, event_time)) AS k FROM silver.quotes"), quotes);
    let history = p.json(&["table", "history", "silver.quotes"]);
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["operation"], "replace");
    assert_eq!(last["job"], "compact");

    // Time travel to the snapshot before compaction reads the same rows from the old files.
    let pin = format!("silver.quotes={before_compaction}");
    let q = "SELECT CAST(sum(price) AS VARCHAR) AS s, count(DISTINCT (source, symbol, event_time)) AS k FROM silver.quotes";
    let old: Vec<crate::common::Row> =
        serde_json::from_str(&p.ok(&["sql", q, "--snapshot", &pin, "-o", "json"])).unwrap();
    assert_eq!(old, quotes);

    // Compaction is not new data: the incremental jobs find nothing, then keep working.
    let before = p.snapshots();
    p.ok(&["run", "all"]);
    assert_eq!(p.snapshots(), before);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let moment = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(20));
    p.generate(&[
        "--minutes",
        "1",
        "--seed",
        "50",
        "--symbols",
        "3",
        "--start",
        "2026-01-01T00:08:00Z",
    ]);
    p.ok(&["run", "all"]);
    assert_eq!(p.count("gold.candles_1m"), 3 * 9);
    // As of a moment before those appends, every table reads as it was then.
    let then: Vec<crate::common::Row> = serde_json::from_str(&p.ok(&[
        "sql",
        "SELECT (SELECT count(*) FROM gold.candles_1m) AS c, (SELECT count(*) FROM silver.trades) AS t",
        "--as-of",
        &moment,
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(then[0]["c"], 3 * 8);
    assert_eq!(then[0]["t"].as_u64().unwrap(), counts["silver.trades"]);
    let dup = p.sql("SELECT count(*) - count(DISTINCT trade_id) AS n FROM silver.trades");
    assert_eq!(dup[0]["n"], 0);
    // A second compaction has only one new small file per partition: below the threshold.
    let plan: serde_json::Value = serde_json::from_str(&p.ok(&[
        "run",
        "compact",
        "--target-size",
        "1048576",
        "--dry-run",
        "--table",
        "silver.quotes",
    ]))
    .unwrap();
    assert!(
        plan["compact"]["tables"][0]["groups"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{plan}"
    );
}

#[test]
fn maintain_compacts_and_removes_the_orphans_of_a_killed_run() {
    let p = Project::new();
    for minute in 0..5 {
        p.minute(minute, "2", &[]);
    }
    // A killed silver run leaves files no snapshot reaches.
    kill_silver_after_write(&p, "2026-01-01T00:05:00Z");
    let counts = p.table_counts();
    let runs = p.json(&[
        "run",
        "maintain",
        "--target-size",
        "1048576",
        "--older-than",
        "0s",
    ]);
    let jobs: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        jobs,
        [
            "compact",
            "rewrite-manifests",
            "expire-snapshots",
            "remove-orphans"
        ]
    );
    let removed = &runs[3]["tables"]["silver.quotes"]["files_removed"];
    assert!(
        removed.as_u64().unwrap() >= 2,
        "the killed run's quote files: {removed}"
    );
    assert_eq!(
        p.json(&["table", "files", "silver.quotes"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(p.table_counts(), counts);
    // The pipeline carries on exactly.
    p.ok(&["run", "silver"]);
    p.ok(&["run", "gold"]);
    assert_eq!(p.count("gold.candles_1m"), 2 * 6);
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                parquet_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|e| e == "parquet"))
            }
        })
        .sum()
}

#[test]
fn expiry_keeps_rows_bookmarks_and_taken_files_and_deletes_what_only_old_snapshots_reached() {
    let p = Project::new();
    let minute = |m: u32| p.minute(m, "2", &[]);
    (0..4).for_each(minute);
    p.ok(&[
        "run",
        "compact",
        "--target-size",
        "1048576",
        "--min-input-files",
        "2",
    ]);
    minute(4);
    let history = |t: &str| p.json(&["table", "history", t]).as_array().unwrap().clone();
    let old_quotes = history("silver.quotes")[0]["snapshot_id"].to_string();
    let counts = p.table_counts();
    let bronze_before = history("bronze.trades").len();

    let plan: serde_json::Value = serde_json::from_str(&p.ok(&[
        "run",
        "expire-snapshots",
        "--older-than",
        "0s",
        "--dry-run",
    ]))
    .unwrap();
    let trades = crate::common::find(
        &plan["expire-snapshots"]["tables"],
        "table",
        "bronze.trades",
    );
    assert_eq!(
        trades["kept_for_bookmarks"].as_array().unwrap().len(),
        0,
        "silver's bookmark is the current snapshot"
    );
    assert_eq!(
        trades["expire"].as_array().unwrap().len(),
        bronze_before - 1,
        "{trades}"
    );

    p.ok(&["run", "expire-snapshots", "--older-than", "0s"]);
    assert_eq!(p.table_counts(), counts);
    assert_eq!(history("bronze.trades").len(), 1);
    // gold's bookmark names silver.quotes' last append, the current snapshot; one left.
    assert_eq!(history("silver.quotes").len(), 1);
    // Files only the expired snapshots reached are gone: what is on disk is what is live.
    let live = p
        .json(&["table", "files", "silver.quotes"])
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        parquet_files(&p.path().join("lake/warehouse/silver/quotes")),
        live
    );
    // The landing files the expired snapshots took are still taken.
    let plan: serde_json::Value =
        serde_json::from_str(&p.ok(&["run", "ingest-files", "--dry-run"])).unwrap();
    let new: usize = plan["ingest-files"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["new_files"].as_array().unwrap().len())
        .sum();
    assert_eq!(new, 0, "{plan}");
    // Time travel to an expired snapshot says so.
    let out = p.output(&[
        "sql",
        "SELECT count(*) FROM silver.quotes",
        "--snapshot",
        &format!("silver.quotes={old_quotes}"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no snapshot"));
    // And the pipeline carries on exactly.
    minute(5);
    assert_eq!(p.count("gold.candles_1m"), 2 * 6);
    let dup = p.sql("SELECT count(*) - count(DISTINCT trade_id) AS n FROM silver.trades");
    assert_eq!(dup[0]["n"], 0);
}

/// Appends `appends` snapshots of `rows` trades each to `silver.trades`, one data file each,
/// alternating between two symbols (two partitions), through the library as streaming would.
fn append_small_files(p: &Project, appends: usize, rows: usize) {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, TimeUnit};
    use cryptolake_catalog::{CatalogConfig, Lake, SnapshotCommit, layout};
    use cryptolake_jobs::iceberg::writer::{TableWriter, arrow_schema};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = CatalogConfig {
            path: p.path().join("lake/catalog.db"),
            warehouse: p.path().join("lake/warehouse").display().to_string(),
            ..CatalogConfig::default()
        };
        let lake = Lake::open(&config).await.unwrap();
        let trades = layout::silver_trades();
        let table = lake.ensure_table(&trades).await.unwrap();
        let schema = arrow_schema(&table).unwrap();
        // 2026-01-01T00:00:00Z in microseconds.
        let day_start = 1_767_225_600_000_000_i64;
        for a in 0..appends {
            let ids: Vec<i64> = (0..rows).map(|r| (a * rows + r) as i64).collect();
            let symbol = if a % 2 == 0 { "BTC-USD" } else { "ETH-USD" };
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| -> ArrayRef {
                    match (f.name().as_str(), f.data_type()) {
                        ("symbol", _) => Arc::new(StringArray::from(vec![symbol; rows])),
                        (name, DataType::Utf8) => Arc::new(StringArray::from_iter_values(
                            ids.iter().map(|i| format!("{name}-{i}")),
                        )),
                        // quantity i/1000, price 40000 + i/100 (scale 16).
                        (name, DataType::Decimal128(precision, scale)) => {
                            let unit = 10_i128.pow(*scale as u32);
                            let value = |i: i64| match name {
                                "quantity" => i128::from(i) * unit / 1000,
                                _ => 40_000 * unit + i128::from(i) * unit / 100,
                            };
                            Arc::new(
                                Decimal128Array::from_iter_values(ids.iter().map(|&i| value(i)))
                                    .with_precision_and_scale(*precision, *scale)
                                    .unwrap(),
                            )
                        }
                        (_, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
                            Arc::new(TimestampMicrosecondArray::from_iter_values(
                                ids.iter().map(|i| day_start + i * 1_000_000),
                            ))
                        }
                        (_, DataType::Date32) => Arc::new(Date32Array::from(vec![20_454; rows])),
                        (_, DataType::Int32) => Arc::new(Int32Array::from(vec![1; rows])),
                        (_, DataType::Int64) => Arc::new(Int64Array::from(ids.clone())),
                        (name, other) => panic!("no generator for {name}: {other}"),
                    }
                })
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
            let mut writer = TableWriter::new(&table, 512 << 20).unwrap();
            writer.write(batch).await.unwrap();
            let files = writer.close().await.unwrap();
            lake.commit(&SnapshotCommit::append(trades.ident()).add_files(files))
                .await
                .unwrap();
        }
    });
}

/// Every row of silver.trades, hashed in order: equal only when every value of every row is.
const ROW_CHECKSUM: &str = "SELECT count(*) AS n, CAST(sum(quantity) AS VARCHAR) AS q, \
     md5(string_agg(trade_id || '|' || user_id || '|' || symbol || '|' || CAST(quantity AS VARCHAR) \
       || '|' || CAST(price AS VARCHAR) || '|' || CAST(event_time AS VARCHAR), ',' ORDER BY trade_id)) AS h \
     FROM silver.trades";

#[test]
fn two_thousand_small_appends_compact_to_one_file_per_partition() {
    let p = Project::new();
    append_small_files(&p, 2_000, 5);
    let files = || {
        p.json(&["table", "files", "silver.trades"])
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(files(), 2_000);
    let before = p.sql(ROW_CHECKSUM);
    assert_eq!(before[0]["n"], 10_000);
    // sum(i/1000) for i in 0..10000 = 49_995.
    assert_eq!(before[0]["q"], "49995.0000000000000000");

    let plan: serde_json::Value =
        serde_json::from_str(&p.ok(&["run", "compact", "--dry-run"])).unwrap();
    let trades = crate::common::find(&plan["compact"]["tables"], "table", "silver.trades");
    let groups = trades["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{trades}");
    for g in groups {
        assert_eq!(g["files_in"], 1_000);
        assert_eq!(g["records"], 5_000);
        assert_eq!(g["expected_files_out"], 1);
    }
    p.ok(&["run", "compact"]);
    // The default 512 MiB target: one file per partition (symbol, day).
    assert_eq!(files(), 2);
    assert_eq!(p.sql(ROW_CHECKSUM), before);
    crate::readers::compare_tables_with_independent_readers(&p, &[("silver.trades", "quantity")]);
}

#[test]
fn remove_orphans_keeps_every_file_an_old_snapshot_still_reaches() {
    let p = Project::new();
    for minute in 0..3 {
        p.minute(minute, "2", &[]);
    }
    let q = "SELECT count(*) AS n, CAST(sum(price) AS VARCHAR) AS s FROM silver.quotes";
    let old_rows = p.sql(q);
    let old = format!("silver.quotes={}", p.snapshots()["silver.quotes"]);
    // After compaction only the old snapshots reach the 3 x 2 small quote files.
    p.ok(&[
        "run",
        "compact",
        "--target-size",
        "1048576",
        "--min-input-files",
        "2",
    ]);
    let quotes_dir = p.path().join("lake/warehouse/silver/quotes");
    let reachable = parquet_files(&quotes_dir);
    assert_eq!(reachable, 3 * 2 + 2);
    // A killed run leaves two quote files (one per symbol) that nothing reaches.
    kill_silver_after_write(&p, "2026-01-01T00:03:00Z");
    assert_eq!(parquet_files(&quotes_dir), reachable + 2);

    let runs = p.json(&[
        "run",
        "remove-orphans",
        "--older-than",
        "0s",
        "--table",
        "silver.quotes",
    ]);
    assert_eq!(runs[0]["tables"]["silver.quotes"]["files_removed"], 2);
    assert_eq!(parquet_files(&quotes_dir), reachable);
    // The old snapshot still reads its rows from the old files.
    let rows: Vec<crate::common::Row> =
        serde_json::from_str(&p.ok(&["sql", q, "--snapshot", &old, "-o", "json"])).unwrap();
    assert_eq!(rows, old_rows);
    assert_eq!(p.sql(q), old_rows);
}

/// Ingests one more minute (seed 9, 2 symbols) starting at `start`, then runs silver killed
/// with SIGKILL after it wrote its files: they are orphans no snapshot reaches.
fn kill_silver_after_write(p: &Project, start: &str) {
    use std::os::unix::process::ExitStatusExt;
    let args = [
        "--minutes",
        "1",
        "--seed",
        "9",
        "--symbols",
        "2",
        "--start",
        start,
    ];
    p.generate(&args);
    p.ok(&["run", "ingest-files"]);
    let out = p
        .command(&["run", "silver"])
        .env("CRYPTOLAKE_FAULT", "silver:after-write")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9));
}
