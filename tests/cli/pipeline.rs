//! The whole pipeline with exact counts: first run, idempotent re-run, incremental run, bad
//! records accounted for, the error threshold.

use crate::common::{Project, SOURCES, field};

#[test]
fn pipeline_counts_are_exact_reruns_commit_nothing_and_new_files_add_exactly_their_rows() {
    let p = Project::new();
    let gen1 = p.generate(&["--minutes", "10", "--seed", "42"]);
    p.ok(&["run", "all"]);
    let counts = p.table_counts();

    // Bronze keeps every record, one row each.
    for s in SOURCES {
        assert_eq!(
            counts[&format!("bronze.{s}")],
            field(&gen1, s, "records"),
            "bronze.{s}"
        );
    }
    // 20 symbols, 10 minutes: CoinCap assets, CoinCap rates and CoinGecko give one quote per
    // symbol and minute (600), Coinbase 5 symbols every 10 s (300), Alpaca 4 symbols every 5 s
    // (480).
    assert_eq!(field(&gen1, "coincap_assets", "records"), 200);
    assert_eq!(field(&gen1, "coinbase_spot", "records"), 300);
    assert_eq!(field(&gen1, "alpaca_quotes", "records"), 480);
    assert_eq!(counts["silver.quotes"], 600 + 300 + 480);
    assert_eq!(counts["silver.trades"], field(&gen1, "trades", "records"));
    assert_eq!(counts["silver.trades"], 190);
    assert_eq!(counts["silver.quarantine"], 0);
    // One candle per symbol and minute; one hour.
    assert_eq!(counts["gold.candles_1m"], 20 * 10);
    assert_eq!(counts["gold.candles_1h"], 20);
    // CoinCap assets and CoinGecko carry market caps: 20 assets x 10 snapshots each.
    assert_eq!(counts["gold.market_snapshot"], 2 * 20 * 10);
    assert_eq!(counts["gold.trader_positions"], 88);
    let positions = p.sql("SELECT count(DISTINCT (user_id, symbol, day)) AS n FROM silver.trades");
    assert_eq!(positions[0]["n"], 88);

    // Nothing new: no table gets a new snapshot.
    let before = p.snapshots();
    let summary = p.json(&["run", "all"]);
    assert!(
        summary
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["tables"].as_object().unwrap().is_empty()),
        "{summary}"
    );
    assert_eq!(p.snapshots(), before);

    // Five more minutes: exactly their rows, no duplicate candle.
    let gen2 = p.generate(&[
        "--minutes",
        "5",
        "--seed",
        "43",
        "--start",
        "2026-01-01T00:10:00Z",
    ]);
    p.ok(&["run", "all"]);
    let after = p.table_counts();
    for s in SOURCES {
        let table = format!("bronze.{s}");
        assert_eq!(
            after[&table],
            counts[&table] + field(&gen2, s, "records"),
            "{table}"
        );
    }
    assert_eq!(after["silver.quotes"], counts["silver.quotes"] + 690);
    assert_eq!(
        after["silver.trades"],
        counts["silver.trades"] + field(&gen2, "trades", "records")
    );
    assert_eq!(after["gold.candles_1m"], 20 * 15);
    assert_eq!(after["gold.candles_1h"], 20);
    let dup = p.sql("SELECT count(*) AS n FROM (SELECT symbol, window_start FROM gold.candles_1m GROUP BY 1, 2 HAVING count(*) > 1)");
    assert_eq!(dup[0]["n"], 0);
    // The hourly candle now covers 15 minutes of quotes.
    let hour = p.sql("SELECT quote_count FROM gold.candles_1h WHERE symbol = 'BTC-USD'");
    let minutes =
        p.sql("SELECT sum(quote_count) AS n FROM gold.candles_1m WHERE symbol = 'BTC-USD'");
    assert_eq!(hour[0]["quote_count"], minutes[0]["n"]);
}

#[test]
fn every_bad_or_duplicate_record_is_accounted_for_per_source() {
    let p = Project::new();
    let generated = p.generate(&[
        "--minutes",
        "6",
        "--seed",
        "9",
        "--symbols",
        "8",
        "--bad-rate",
        "0.05",
        "--dup-rate",
        "0.03",
    ]);
    let runs = p.json(&["run", "all", "--max-bad-fraction", "0.5"]);
    let silver = crate::common::find(&runs, "job", "silver");
    let quarantined = p.sql("SELECT source, count(*) AS n FROM silver.quarantine GROUP BY source");
    let kept = p.sql(
        "SELECT source, count(*) AS n FROM silver.quotes GROUP BY source \
         UNION ALL SELECT source, count(*) AS n FROM silver.trades GROUP BY source",
    );
    let by_source = |rows: &[crate::common::Row], s: &str| {
        rows.iter()
            .find(|r| r["source"] == s)
            .map_or(0, |r| r["n"].as_u64().unwrap())
    };
    let mut total_bad = 0;
    for s in SOURCES {
        let good = by_source(&kept, s);
        let bad = by_source(&quarantined, s);
        let dups = silver["sources"][s]["duplicates_dropped"].as_u64().unwrap();
        assert_eq!(good, field(&generated, s, "good"), "{s} good");
        assert_eq!(bad, field(&generated, s, "bad"), "{s} quarantined");
        assert_eq!(dups, field(&generated, s, "duplicates"), "{s} duplicates");
        assert_eq!(
            good + bad + dups,
            field(&generated, s, "records"),
            "{s} accounted"
        );
        total_bad += bad;
    }
    assert!(
        total_bad > 10,
        "the generator must have produced bad records: {total_bad}"
    );
    // Every quarantined row says why and keeps the raw record.
    let empty = p.sql("SELECT count(*) AS n FROM silver.quarantine WHERE reason = '' OR raw = ''");
    assert_eq!(empty[0]["n"], 0);
    let reasons = p.sql("SELECT count(DISTINCT reason) AS n FROM silver.quarantine");
    assert!(
        reasons[0]["n"].as_u64().unwrap() >= 8,
        "many kinds of bad records: {reasons:?}"
    );
}

#[test]
fn too_many_bad_records_fail_the_run_and_commit_nothing() {
    let p = Project::new();
    p.generate(&[
        "--minutes",
        "2",
        "--seed",
        "5",
        "--symbols",
        "4",
        "--bad-rate",
        "0.4",
    ]);
    p.ok(&["run", "ingest-files"]);
    let out = p.output(&["run", "silver", "--max-bad-fraction", "0.1"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("over the threshold of 10.00%"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one-line cause: {stderr}");
    let snapshots = p.snapshots();
    for t in ["silver.quotes", "silver.trades", "silver.quarantine"] {
        assert!(
            !snapshots.contains_key(t),
            "{t} must have no snapshot: {snapshots:?}"
        );
    }
    // Under a looser threshold the same data lands.
    p.ok(&["run", "silver", "--max-bad-fraction", "0.6"]);
    assert!(p.count("silver.quarantine") > 0);
}

#[test]
fn dry_run_prints_the_plan_and_commits_nothing() {
    let p = Project::new();
    p.generate(&["--minutes", "1", "--seed", "3", "--symbols", "2"]);
    let plan: serde_json::Value =
        serde_json::from_str(&p.ok(&["run", "all", "--dry-run"])).unwrap();
    let sources = plan["ingest-files"]["sources"].as_array().unwrap();
    // The six market sources have their generated file; alpaca_trades and coinapi_icons none.
    let files: Vec<(&str, usize)> = sources
        .iter()
        .map(|s| {
            let n = s["new_files"].as_array().unwrap().len();
            (s["source"].as_str().unwrap(), n)
        })
        .collect();
    assert_eq!(
        files,
        [
            ("coincap_assets", 1),
            ("coincap_rates", 1),
            ("coinbase_spot", 1),
            ("coingecko_markets", 1),
            ("alpaca_quotes", 1),
            ("trades", 1),
            ("alpaca_trades", 0),
            ("coinapi_icons", 0),
        ],
        "{plan}"
    );
    assert!(p.table_counts().is_empty(), "a dry run creates no table");
}

#[test]
fn landing_files_of_every_layout_are_read() {
    use std::io::Write;
    let p = Project::new();
    let trades = p.path().join("lake/landing/trades");
    let trade = |id: u32| {
        format!(
            r#"{{"trade_id":"t{id}","user_id":"u1","symbol":"BTC/USD","side":"buy","quantity":"0.5","price":"43000.25","timestamp":"2026-01-01T00:00:0{id}Z"}}"#
        )
    };
    std::fs::create_dir_all(trades.join("2026/01/01/00")).unwrap();
    std::fs::write(trades.join("empty.json"), "").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    write!(gz, "\u{feff}{}{}", trade(1), trade(2)).unwrap();
    std::fs::write(
        trades.join("2026/01/01/00/stream-1-2026-01-01-00-00-00-abc"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::write(
        trades.join("array.json"),
        format!("[{},{}]", trade(3), trade(4)),
    )
    .unwrap();
    std::fs::write(
        trades.join("lines.jsonl"),
        format!("{}\n{}\n", trade(5), trade(6)),
    )
    .unwrap();
    std::fs::write(trades.join("_SUCCESS"), "").unwrap();

    let plan: serde_json::Value =
        serde_json::from_str(&p.ok(&["run", "ingest-files", "--dry-run"])).unwrap();
    let trades_plan = crate::common::find(&plan["ingest-files"]["sources"], "source", "trades");
    assert_eq!(
        trades_plan["new_files"].as_array().unwrap().len(),
        4,
        "{trades_plan}"
    );
    p.ok(&["run", "all"]);
    assert_eq!(p.count("bronze.trades"), 6);
    assert_eq!(p.count("silver.trades"), 6);
    let rows = p.sql("SELECT CAST(sum(quantity) AS VARCHAR) AS q, CAST(max(price) AS VARCHAR) AS p FROM silver.trades");
    assert_eq!(rows[0]["q"], "3.0000000000000000");
    assert_eq!(rows[0]["p"], "43000.2500000000000000");
    // The empty file was taken too: nothing is left to ingest.
    let before = p.snapshots();
    p.ok(&["run", "ingest-files"]);
    assert_eq!(p.snapshots(), before);
}

#[test]
fn a_record_delivered_again_in_a_later_run_is_dropped_as_a_duplicate() {
    let p = Project::new();
    let generated = p.generate(&["--minutes", "2", "--seed", "8", "--symbols", "3"]);
    p.ok(&["run", "all"]);
    let quotes = p.count("silver.quotes");
    let trades = p.count("silver.trades");
    let candles = p
        .sql("SELECT CAST(sum(close) AS VARCHAR) AS s, sum(quote_count) AS q FROM gold.candles_1m");
    // The producer delivers every trades file and one Coinbase file again, under new names.
    let landing = p.path().join("lake/landing");
    let mut copied = 0;
    for source in ["trades", "coinbase_spot"] {
        let mut stack = vec![landing.join(source)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if source == "trades" || copied < 3 {
                    let name = format!(
                        "redelivered-{}",
                        path.file_name().unwrap().to_string_lossy()
                    );
                    std::fs::copy(&path, path.with_file_name(name)).unwrap();
                    copied += 1;
                }
            }
        }
    }
    let runs = p.json(&["run", "all"]);
    let silver = crate::common::find(&runs, "job", "silver");
    let dropped = silver["sources"]["trades"]["duplicates_dropped"]
        .as_u64()
        .unwrap();
    assert_eq!(dropped, field(&generated, "trades", "records"));
    assert_eq!(
        silver["sources"]["coinbase_spot"]["duplicates_dropped"],
        3 * 6
    );
    assert_eq!(p.count("silver.quotes"), quotes);
    assert_eq!(p.count("silver.trades"), trades);
    assert_eq!(
        p.count("bronze.trades"),
        2 * trades,
        "bronze keeps every delivery"
    );
    let again = p
        .sql("SELECT CAST(sum(close) AS VARCHAR) AS s, sum(quote_count) AS q FROM gold.candles_1m");
    assert_eq!(again, candles);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Silver's dedup and gold read only the table files a run's rows can need (by the files'
/// bounds of `event_time` and `trade_id`). Three one-minute runs end with exactly the rows of
/// one run over the same three minutes, and a duplicate of a row in the oldest of a partition's
/// three files is still found.
#[test]
fn minute_by_minute_runs_equal_one_run_and_a_duplicate_in_the_oldest_file_is_found() {
    use crate::cluster::checksum;
    let (stepwise, one) = (Project::new(), Project::new());
    let generate = |p: &Project, m: u32| {
        let (start, seed) = (format!("2026-01-01T00:{m:02}:00Z"), (m + 1).to_string());
        p.generate(&[
            "--minutes",
            "1",
            "--seed",
            &seed,
            "--symbols",
            "3",
            "--start",
            &start,
            "--bad-rate",
            "0",
            "--dup-rate",
            "0",
        ])
    };
    let first = generate(&stepwise, 0);
    let first_files = files_under(&stepwise.path().join("lake/landing"));
    stepwise.ok(&["run", "all"]);
    for m in 1..3 {
        generate(&stepwise, m);
        stepwise.ok(&["run", "all"]);
    }
    for m in 0..3 {
        generate(&one, m);
    }
    one.ok(&["run", "all"]);
    let tables = [
        "silver.quotes",
        "silver.trades",
        "gold.candles_1m",
        "gold.candles_1h",
        "gold.market_snapshot",
        "gold.trader_positions",
    ];
    let sums: Vec<_> = tables.iter().map(|t| checksum(&stepwise, t)).collect();
    for (t, sum) in tables.iter().zip(&sums) {
        assert_eq!(*sum, checksum(&one, t), "{t}");
    }
    // Each of silver's partitions holds three files, one a minute.
    for table in ["silver.quotes", "silver.trades"] {
        let mut per_partition: std::collections::BTreeMap<String, usize> = Default::default();
        for f in stepwise
            .json(&["table", "files", table])
            .as_array()
            .unwrap()
        {
            *per_partition.entry(f["partition"].to_string()).or_default() += 1;
        }
        assert!(
            per_partition.values().all(|n| *n == 3),
            "{table}: {per_partition:?}"
        );
    }
    // The first minute delivered again, under new names: every record is a duplicate.
    for path in &first_files {
        let name = format!("again-{}", path.file_name().unwrap().to_string_lossy());
        std::fs::copy(path, path.with_file_name(name)).unwrap();
    }
    let runs = stepwise.json(&["run", "all"]);
    let silver = crate::common::find(&runs, "job", "silver");
    for s in SOURCES {
        assert_eq!(
            silver["sources"][s]["duplicates_dropped"].as_u64(),
            Some(field(&first, s, "records")),
            "{s}"
        );
    }
    for (t, sum) in tables.iter().zip(&sums) {
        assert_eq!(checksum(&stepwise, t), *sum, "{t}");
    }
}
