//! Runs killed with SIGKILL between writing files and committing: the tables stay unchanged and
//! the re-run lands exactly what a run that never crashed lands.

use std::os::unix::process::ExitStatusExt;

use crate::common::Project;

const GEN: [&str; 8] = [
    "--minutes",
    "3",
    "--seed",
    "11",
    "--symbols",
    "5",
    "--dup-rate",
    "0.03",
];

/// The minute after [`GEN`]'s three.
const NEXT_MINUTE: [&str; 8] = [
    "--minutes",
    "1",
    "--seed",
    "12",
    "--symbols",
    "5",
    "--start",
    "2026-01-01T00:03:00Z",
];

const CANDLES: &str = "SELECT symbol, window_start, open, high, low, close, volume, vwap, quote_count, trade_count \
                       FROM gold.candles_1m ORDER BY symbol, window_start";

fn killed(p: &Project, job: &str, point: &str) {
    let out = p
        .command(&["run", job])
        .env("CRYPTOLAKE_FAULT", format!("{job}:{point}"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{job} must die by SIGKILL: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn killed_between_write_and_commit_then_rerun_lands_exactly_once() {
    let clean = Project::new();
    clean.generate(&GEN);
    clean.ok(&["run", "all"]);

    let p = Project::new();
    p.generate(&GEN);
    for job in ["ingest-files", "silver", "gold"] {
        let before = p.snapshots();
        killed(&p, job, "after-write");
        assert_eq!(
            p.snapshots(),
            before,
            "{job}: a crash before the commit changes no table"
        );
        p.ok(&["run", job]);
    }
    assert_eq!(p.table_counts(), clean.table_counts());
    assert_eq!(p.sql(CANDLES), clean.sql(CANDLES));
    let dups = p.sql(
        "SELECT count(*) - count(DISTINCT (source, symbol, event_time)) AS n FROM silver.quotes",
    );
    assert_eq!(dups[0]["n"], 0);
    // The killed runs' files are on disk, but no snapshot references them. (Sources are
    // ingested concurrently, so the kill lands when the first source has written its file.)
    let live_files = |p: &Project| -> usize {
        crate::common::SOURCES
            .iter()
            .map(|s| {
                p.json(&["table", "files", &format!("bronze.{s}")])
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum()
    };
    let live = live_files(&p);
    let on_disk = walk_count(vec![p.path().join("lake/warehouse/bronze")]);
    assert_eq!(live, live_files(&clean));
    assert!(
        on_disk > live,
        "orphans of the killed run: {on_disk} files on disk, {live} live"
    );
}

#[test]
fn killed_after_commit_then_rerun_takes_nothing_twice() {
    let p = Project::new();
    let generated = p.generate(&GEN);
    killed(&p, "ingest-files", "after-commit");
    p.ok(&["run", "all"]);
    let counts = p.table_counts();
    assert_eq!(
        counts["bronze.trades"],
        crate::common::field(&generated, "trades", "records")
    );
    // A second crash after silver's commits: the re-run finds nothing new.
    p.generate(&NEXT_MINUTE);
    p.ok(&["run", "ingest-files"]);
    killed(&p, "silver", "after-commit");
    let before = p.snapshots();
    p.ok(&["run", "silver"]);
    assert_eq!(p.snapshots(), before);
    p.ok(&["run", "gold"]);
    let dups = p.sql("SELECT count(*) - count(DISTINCT trade_id) AS n FROM silver.trades");
    assert_eq!(dups[0]["n"], 0);
    assert_eq!(p.count("gold.candles_1m"), 5 * 4);
}

/// Gold killed right after its first table's commit (`candles_1m`): the hourly candles, which
/// roll up those minutes, and the positions, which add new trades to their prior values, catch
/// up on the re-run and on the next minute, and end equal to a run that never crashed.
#[test]
fn gold_killed_after_its_first_commit_catches_up_exactly() {
    use crate::cluster::checksum;
    const GOLD: [&str; 4] = [
        "gold.candles_1m",
        "gold.candles_1h",
        "gold.market_snapshot",
        "gold.trader_positions",
    ];
    let (clean, p) = (Project::new(), Project::new());
    // Both projects take the same landing files through silver; gold is what differs.
    let to_silver = |args: &[&str]| {
        for q in [&clean, &p] {
            q.generate(args);
            q.ok(&["run", "ingest-files"]);
            q.ok(&["run", "silver"]);
        }
    };
    to_silver(&GEN);
    clean.ok(&["run", "gold"]);
    killed(&p, "gold", "after-commit");
    let snapshots = p.snapshots();
    assert!(snapshots.contains_key("gold.candles_1m"), "{snapshots:?}");
    assert!(
        !snapshots.contains_key("gold.candles_1h"),
        "the hourly candles were not committed: {snapshots:?}"
    );
    p.ok(&["run", "gold"]);
    for table in GOLD {
        assert_eq!(checksum(&p, table), checksum(&clean, table), "{table}");
    }
    // Killed at the same point on the next minute: the re-run catches up again.
    to_silver(&NEXT_MINUTE);
    clean.ok(&["run", "gold"]);
    killed(&p, "gold", "after-commit");
    p.ok(&["run", "gold"]);
    for table in GOLD {
        assert_eq!(checksum(&p, table), checksum(&clean, table), "{table}");
    }
    assert_eq!(p.count("gold.candles_1m"), 5 * 4);
}

fn walk_count(paths: Vec<std::path::PathBuf>) -> usize {
    paths
        .into_iter()
        .map(|p| {
            if p.is_dir() {
                walk_count(
                    std::fs::read_dir(&p)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .collect(),
                )
            } else {
                usize::from(p.extension().is_some_and(|e| e == "parquet"))
            }
        })
        .sum()
}
