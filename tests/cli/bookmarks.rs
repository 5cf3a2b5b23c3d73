//! Input positions are never guessed: a bookmark that no longer parses (a files-taken list, a
//! silver bookmark, Kafka offsets) stops the job with an error naming the table, the snapshot
//! and the key, and changes no table. The corruption is committed through the catalog library,
//! as a buggy or hand-edited writer would leave it.

use cryptolake_catalog::lake::parse_ident;
use cryptolake_catalog::{CatalogConfig, Lake, SnapshotCommit};

use crate::common::Project;

/// The embedded default's lake of a project made by `init`.
pub fn open_lake(p: &Project) -> (tokio::runtime::Runtime, Lake) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = CatalogConfig {
        path: p.path().join("lake/catalog.db"),
        warehouse: p.path().join("lake/warehouse").display().to_string(),
        ..CatalogConfig::default()
    };
    let lake = runtime.block_on(Lake::open(&config)).unwrap();
    (runtime, lake)
}

/// Commits an empty append to `table` whose summary sets `key` to `value`; returns the id of
/// the snapshot that now carries it.
pub fn corrupt(p: &Project, table: &str, key: &str, value: &str) -> i64 {
    let (runtime, lake) = open_lake(p);
    let commit = SnapshotCommit::append(parse_ident(table).unwrap()).set_property(key, value);
    runtime.block_on(lake.commit(&commit)).unwrap().snapshot_id
}

/// Runs `args`, which must fail with the internal kind's exit code, naming every one of
/// `names`, and leave every table as it was.
fn fails_and_changes_nothing(p: &Project, args: &[&str], names: &[&str]) {
    let before = p.snapshots();
    let counts = p.table_counts();
    let out = p.output(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{args:?}: {stderr}");
    for name in names {
        assert!(
            stderr.contains(name),
            "{args:?} does not name {name}: {stderr}"
        );
    }
    assert!(stderr.contains("never guessed"), "{stderr}");
    assert_eq!(p.snapshots(), before, "{args:?} committed");
    assert_eq!(p.table_counts(), counts);
}

#[test]
fn an_unreadable_files_taken_list_stops_ingest_files_and_bronze_is_unchanged() {
    let p = Project::new();
    p.generate(&["--minutes", "2", "--seed", "3"]);
    p.ok(&["run", "ingest-files"]);
    let bronze = p.count("bronze.trades");
    let key = "cryptolake.ingest-files.files";
    let snapshot = corrupt(&p, "bronze.trades", key, "[\"trades/2026/");
    // New landing data: a run that took the broken list for "nothing taken" would take every
    // file again and double bronze.
    p.generate(&[
        "--minutes",
        "1",
        "--seed",
        "4",
        "--start",
        "2026-01-02T00:00:00Z",
    ]);
    fails_and_changes_nothing(
        &p,
        &["run", "ingest-files"],
        &["bronze.trades", key, &snapshot.to_string()],
    );
    assert_eq!(p.count("bronze.trades"), bronze);
}

#[test]
fn an_unreadable_silver_bookmark_stops_silver_and_silver_is_unchanged() {
    let p = Project::new();
    p.generate(&["--minutes", "2", "--seed", "5"]);
    p.ok(&["run", "ingest-files"]);
    p.ok(&["run", "silver"]);
    let key = "cryptolake.bookmark.silver.coinbase_spot";
    let snapshot = corrupt(&p, "silver.quotes", key, "12ab");
    p.generate(&[
        "--minutes",
        "1",
        "--seed",
        "6",
        "--start",
        "2026-01-02T00:00:00Z",
    ]);
    p.ok(&["run", "ingest-files"]);
    fails_and_changes_nothing(
        &p,
        &["run", "silver"],
        &["silver.quotes", key, &snapshot.to_string()],
    );
}
