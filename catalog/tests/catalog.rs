//! The shared catalog suite: every test runs against every catalog implementation through the
//! same `Lake` interface (rstest cases): the SQLite catalog with a local warehouse, and with an
//! `s3://` warehouse on a moto S3 server started for the test, and the Glue catalog on moto.

#[path = "catalog/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cryptolake_catalog::config::CatalogConfig;
use cryptolake_catalog::layout::{self, TableLayout};
use cryptolake_catalog::{Error, Lake, Requirement, SnapshotCommit};
use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Literal, Struct};
use iceberg::table::Table;
use rstest::rstest;

/// The catalogs the suite runs against.
#[derive(Debug, Clone, Copy)]
enum Catalog {
    Sqlite,
    SqliteS3,
    Glue,
}

struct Harness {
    lake: Lake,
    config: CatalogConfig,
    _dir: tempfile::TempDir,
    _moto: Option<moto::Moto>,
}

async fn harness(catalog: Catalog) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let local = CatalogConfig {
        path: dir.path().join("catalog.db"),
        warehouse: dir.path().join("warehouse").to_string_lossy().into_owned(),
        ..CatalogConfig::default()
    };
    let (config, moto) = match catalog {
        Catalog::Sqlite => (local, None),
        Catalog::SqliteS3 => {
            let moto = moto::Moto::start();
            moto.create_bucket("lake");
            (moto.configure(local, "s3://lake/warehouse"), Some(moto))
        }
        Catalog::Glue => {
            let moto = moto::Moto::start();
            moto.create_bucket("lake");
            let glue = CatalogConfig {
                kind: cryptolake_catalog::config::CatalogKind::Glue,
                ..local
            };
            (moto.configure(glue, "s3://lake/warehouse"), Some(moto))
        }
    };
    Harness {
        lake: Lake::open(&config).await.unwrap(),
        config,
        _dir: dir,
        _moto: moto,
    }
}

/// A table partitioned by identity(source).
fn test_layout() -> TableLayout {
    layout::silver_quarantine()
}

/// A data file entry (the commit layer never reads the Parquet itself).
fn file(table: &Table, name: &str, records: u64) -> DataFile {
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(format!(
            "{}/data/{name}.parquet",
            table.metadata().location()
        ))
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::from_iter([Some(Literal::string("src"))]))
        .record_count(records)
        .file_size_in_bytes(records * 10)
        .partition_spec_id(0)
        .build()
        .unwrap()
}

async fn live(lake: &Lake, table: &TableLayout) -> BTreeSet<String> {
    let t = lake.load_table(&table.ident()).await.unwrap();
    let Some(snapshot) = t.metadata().current_snapshot() else {
        return BTreeSet::new();
    };
    let list = t.manifest_list_reader(snapshot).load().await.unwrap();
    let mut out = BTreeSet::new();
    for m in list.entries() {
        for e in m.load_manifest(t.file_io()).await.unwrap().entries() {
            if e.is_alive() {
                let path = e.file_path();
                out.insert(
                    path.rsplit('/')
                        .next()
                        .unwrap()
                        .trim_end_matches(".parquet")
                        .to_string(),
                );
            }
        }
    }
    out
}

fn summary(table: &Table, key: &str) -> Option<String> {
    table
        .metadata()
        .current_snapshot()?
        .summary()
        .additional_properties
        .get(key)
        .cloned()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_then_overwrite_keeps_exact_totals(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    let c =
        SnapshotCommit::append(layout.ident()).add_files([file(&t, "a", 10), file(&t, "b", 20)]);
    let first = h.lake.commit(&c).await.unwrap();
    assert_eq!(first.attempts, 1);
    let t = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(summary(&t, "total-records").as_deref(), Some("30"));
    assert_eq!(summary(&t, "total-data-files").as_deref(), Some("2"));

    let c = SnapshotCommit::overwrite(layout.ident())
        .remove_files([file(&t, "a", 10).file_path().to_string()])
        .add_files([file(&t, "c", 5)]);
    let second = h.lake.commit(&c).await.unwrap();
    let t = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(t.metadata().current_snapshot_id(), Some(second.snapshot_id));
    assert_eq!(
        t.metadata()
            .current_snapshot()
            .unwrap()
            .parent_snapshot_id(),
        Some(first.snapshot_id)
    );
    assert_eq!(
        t.metadata()
            .current_snapshot()
            .unwrap()
            .summary()
            .operation
            .as_str(),
        "overwrite"
    );
    assert_eq!(summary(&t, "total-records").as_deref(), Some("25"));
    assert_eq!(summary(&t, "total-data-files").as_deref(), Some("2"));
    assert_eq!(summary(&t, "deleted-records").as_deref(), Some("10"));
    assert_eq!(live(&h.lake, &layout).await, set(&["b", "c"]));
    // A fresh handle on the same catalog sees the same table (state lives in the catalog).
    let again = Lake::open(&h.config).await.unwrap();
    assert_eq!(live(&again, &layout).await, set(&["b", "c"]));
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_file_that_is_gone_fails_and_changes_nothing(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    h.lake
        .commit(&SnapshotCommit::append(layout.ident()).add_files([file(&t, "a", 1)]))
        .await
        .unwrap();
    let before = h.lake.load_table(&layout.ident()).await.unwrap();
    let c = SnapshotCommit::overwrite(layout.ident())
        .remove_files([file(&t, "zzz", 1).file_path().to_string()])
        .add_files([file(&t, "b", 1)]);
    let err = h.lake.commit(&c).await.unwrap_err();
    assert!(matches!(err, Error::RequirementFailed { .. }), "{err}");
    assert!(!err.is_retryable());
    let after = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(after.metadata_location(), before.metadata_location());
    assert_eq!(live(&h.lake, &layout).await, set(&["a"]));
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_are_carried_forward_and_requirements_checked(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    let key = "cryptolake.bookmark.test.source";
    let c = SnapshotCommit::append(layout.ident())
        .add_files([file(&t, "a", 1)])
        .set_property(key, "41");
    h.lake.commit(&c).await.unwrap();
    // A writer that knows nothing of the bookmark (a compaction, say) keeps it.
    let c = SnapshotCommit::replace(layout.ident())
        .remove_files([file(&t, "a", 1).file_path().to_string()])
        .add_files([file(&t, "a2", 1)]);
    h.lake.commit(&c).await.unwrap();
    let t = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(summary(&t, key).as_deref(), Some("41"));
    assert_eq!(summary(&t, "total-records").as_deref(), Some("1"));
    // A requirement that no longer holds stops the commit.
    let stale: Requirement = Arc::new(move |m| {
        let have = m
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get(key).cloned());
        if have.as_deref() == Some("40") {
            Ok(())
        } else {
            Err(format!("bookmark is {have:?}"))
        }
    });
    let c = SnapshotCommit::append(layout.ident())
        .add_files([file(&t, "x", 1)])
        .require(stale);
    let err = h.lake.commit(&c).await.unwrap_err();
    assert!(
        err.to_string().contains("bookmark is Some(\"41\")"),
        "{err}"
    );
    assert_eq!(live(&h.lake, &layout).await, set(&["a2"]));
}

/// Runs `commit` on another thread from inside a requirement, the first time it is checked:
/// the outer commit has loaded its base, the other commit lands, the outer swap must conflict.
fn interleave(lake: Lake, commit: SnapshotCommit) -> Requirement {
    let first = Arc::new(AtomicBool::new(true));
    let handle = tokio::runtime::Handle::current();
    Arc::new(move |_| {
        if first.swap(false, Ordering::SeqCst) {
            let (lake, commit, handle) = (lake.clone(), commit.clone(), handle.clone());
            std::thread::spawn(move || handle.block_on(lake.commit(&commit)))
                .join()
                .map_err(|_| "interleaved commit panicked".to_string())?
                .map_err(|e| format!("interleaved commit failed: {e}"))?;
        }
        Ok(())
    })
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_racing_an_append_keeps_both(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    h.lake
        .commit(
            &SnapshotCommit::append(layout.ident()).add_files([file(&t, "a", 1), file(&t, "b", 2)]),
        )
        .await
        .unwrap();
    let append = SnapshotCommit::append(layout.ident()).add_files([file(&t, "appended", 4)]);
    let overwrite = SnapshotCommit::overwrite(layout.ident())
        .remove_files([file(&t, "a", 1).file_path().to_string()])
        .add_files([file(&t, "rewritten", 8)])
        .require(interleave(h.lake.clone(), append));
    let outcome = h.lake.commit(&overwrite).await.unwrap();
    assert_eq!(
        outcome.attempts, 2,
        "the first attempt must have lost the race"
    );
    assert_eq!(
        live(&h.lake, &layout).await,
        set(&["appended", "b", "rewritten"])
    );
    let t = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(summary(&t, "total-records").as_deref(), Some("14"));
    assert_eq!(t.metadata().snapshots().count(), 3);
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_racing_an_overwrite_keeps_both(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    h.lake
        .commit(&SnapshotCommit::append(layout.ident()).add_files([file(&t, "a", 1)]))
        .await
        .unwrap();
    let overwrite = SnapshotCommit::overwrite(layout.ident())
        .remove_files([file(&t, "a", 1).file_path().to_string()])
        .add_files([file(&t, "a-new", 3)]);
    let append = SnapshotCommit::append(layout.ident())
        .add_files([file(&t, "late", 5)])
        .require(interleave(h.lake.clone(), overwrite));
    let outcome = h.lake.commit(&append).await.unwrap();
    assert_eq!(outcome.attempts, 2);
    assert_eq!(live(&h.lake, &layout).await, set(&["a-new", "late"]));
    let t = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(summary(&t, "total-records").as_deref(), Some("8"));
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_lose_nothing(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    h.lake
        .commit(&SnapshotCommit::append(layout.ident()).add_files([file(&t, "base", 1)]))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..4 {
        // Each writer has its own catalog connection, as separate jobs would.
        let lake = Lake::open(&h.config).await.unwrap();
        let (t, ident) = (t.clone(), layout.ident());
        tasks.spawn(async move {
            for i in 0..5 {
                let c = SnapshotCommit::append(ident.clone())
                    .add_files([file(&t, &format!("w{writer}-{i}"), 1)])
                    .max_attempts(50);
                lake.commit(&c).await.unwrap();
            }
        });
    }
    let lake = Lake::open(&h.config).await.unwrap();
    let (t2, ident) = (t.clone(), layout.ident());
    tasks.spawn(async move {
        let c = SnapshotCommit::overwrite(ident)
            .remove_files([file(&t2, "base", 1).file_path().to_string()])
            .add_files([file(&t2, "base2", 1)])
            .max_attempts(50);
        lake.commit(&c).await.unwrap();
    });
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut want: BTreeSet<String> = (0..4)
        .flat_map(|w| (0..5).map(move |i| format!("w{w}-{i}")))
        .collect();
    want.insert("base2".into());
    assert_eq!(live(&h.lake, &layout).await, want);
    let t = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(summary(&t, "total-records").as_deref(), Some("21"));
    assert_eq!(t.metadata().snapshots().count(), 1 + 20 + 1);
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_listed_and_created_once(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    for l in layout::all_layouts() {
        h.lake.ensure_table(&l).await.unwrap();
        h.lake.ensure_table(&l).await.unwrap();
    }
    let names: Vec<String> = h
        .lake
        .list_tables()
        .await
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(names.len(), 17);
    assert_eq!(names[0], "bronze.alpaca_quotes");
    assert!(names.contains(&"gold.candles_1m".to_string()));
    let err = h
        .lake
        .load_table(&cryptolake_catalog::lake::parse_ident("silver.nope").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchTable(_)), "{err}");
}

/// A table created by an older layout (one optional column fewer) gains the column when
/// `ensure_table` meets the newer layout: a new current schema with the next field id, the
/// snapshot and its bookmark untouched, and a second `ensure_table` changing nothing.
#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_an_older_layout_gains_its_new_optional_columns(#[case] catalog: Catalog) {
    let h = harness(catalog).await;
    let older = test_layout();
    let mut newer = older.clone();
    let dropped = layout::Column {
        name: "note",
        ty: layout::ColumnType::String,
        required: false,
    };
    newer.columns.push(dropped.clone());
    let table = h.lake.ensure_table(&older).await.unwrap();
    let last_id = table.metadata().last_column_id();
    let commit = SnapshotCommit::append(newer.ident())
        .add_files([file(&table, "a", 3)])
        .set_property("cryptolake.bookmark.x", "7");
    let snapshot = h.lake.commit(&commit).await.unwrap().snapshot_id;

    let evolved = h.lake.ensure_table(&newer).await.unwrap();
    let schema = evolved.metadata().current_schema();
    let field = schema.field_by_name(dropped.name).unwrap();
    assert_eq!(field.id, last_id + 1);
    assert!(!field.required);
    assert_eq!(
        schema.as_struct().fields().len(),
        newer.columns.len(),
        "every column of the newer layout"
    );
    assert_eq!(evolved.metadata().schemas_iter().count(), 2);
    assert_eq!(evolved.metadata().current_snapshot_id(), Some(snapshot));
    assert_eq!(
        summary(&evolved, "cryptolake.bookmark.x").as_deref(),
        Some("7")
    );
    assert_eq!(live(&h.lake, &newer).await, set(&["a"]));

    let again = h.lake.ensure_table(&newer).await.unwrap();
    assert_eq!(again.metadata_location(), evolved.metadata_location());
    // A layout that lacks a required column the table has is not evolved backwards: nothing
    // to add. One whose table lacks a required column is refused, naming it.
    let mut required = newer.clone();
    required.columns.push(layout::Column {
        name: "must_have",
        ty: layout::ColumnType::Long,
        required: true,
    });
    let err = h
        .lake
        .ensure_table(&required)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("lacks the required column must_have"), "{err}");
}

async fn manifest_count(lake: &Lake, layout: &TableLayout) -> usize {
    let t = lake.load_table(&layout.ident()).await.unwrap();
    let snapshot = t.metadata().current_snapshot().unwrap();
    t.manifest_list_reader(snapshot)
        .load()
        .await
        .unwrap()
        .entries()
        .len()
}

#[rstest]
#[case::sqlite(Catalog::Sqlite)]
#[case::sqlite_s3(Catalog::SqliteS3)]
#[case::glue(Catalog::Glue)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_merged_and_emptied_ones_dropped(#[case] catalog: Catalog) {
    use cryptolake_catalog::commit::MERGE_MIN_COUNT;
    let h = harness(catalog).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    let n = 2 * MERGE_MIN_COUNT + 4;
    for i in 0..n {
        let c = SnapshotCommit::append(layout.ident()).add_files([file(&t, &format!("f{i}"), 1)]);
        h.lake.commit(&c).await.unwrap();
        // Commit MERGE_MIN_COUNT + 1 merged the first MERGE_MIN_COUNT manifests into one and
        // added its own; 2 * MERGE_MIN_COUNT merged those (the merged one is small too).
        let want = match i + 1 {
            c if c <= MERGE_MIN_COUNT => c,
            c if c < 2 * MERGE_MIN_COUNT => c - MERGE_MIN_COUNT + 1,
            c => c - 2 * MERGE_MIN_COUNT + 2,
        };
        assert_eq!(
            manifest_count(&h.lake, &layout).await,
            want,
            "after commit {}",
            i + 1
        );
    }
    assert_eq!(manifest_count(&h.lake, &layout).await, 6);
    assert_eq!(live(&h.lake, &layout).await.len(), n);
    // Replacing every file: the merged manifest marks them all deleted, one manifest adds.
    let c = SnapshotCommit::replace(layout.ident())
        .remove_files((0..n).map(|i| file(&t, &format!("f{i}"), 1).file_path().to_string()))
        .add_files([file(&t, "all", n as u64)]);
    h.lake.commit(&c).await.unwrap();
    assert_eq!(manifest_count(&h.lake, &layout).await, 2);
    assert_eq!(live(&h.lake, &layout).await, set(&["all"]));
    // The next commit drops the manifest that holds only those deletions.
    h.lake
        .commit(&SnapshotCommit::append(layout.ident()).add_files([file(&t, "late", 1)]))
        .await
        .unwrap();
    assert_eq!(manifest_count(&h.lake, &layout).await, 2);
    assert_eq!(live(&h.lake, &layout).await, set(&["all", "late"]));
    let t = h.lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(summary(&t, "total-records"), Some((n + 1).to_string()));
    assert_eq!(summary(&t, "total-data-files").as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_warehouse_holds_every_metadata_file_and_lists_them() {
    let h = harness(Catalog::SqliteS3).await;
    let layout = test_layout();
    let t = h.lake.ensure_table(&layout).await.unwrap();
    assert!(t.metadata().location().starts_with("s3://lake/warehouse/"));
    for name in ["a", "b"] {
        let c = SnapshotCommit::append(layout.ident()).add_files([file(&t, name, 10)]);
        h.lake.commit(&c).await.unwrap();
    }
    let s3 = h.lake.s3().expect("an s3 warehouse");
    let listed = s3.list(t.metadata().location()).await.unwrap();
    let count = |suffix: &str| listed.iter().filter(|o| o.url.ends_with(suffix)).count();
    // Three metadata versions (create + 2 commits), two manifest lists, two manifests.
    assert_eq!(count(".metadata.json"), 3, "{listed:?}");
    assert_eq!(
        listed.iter().filter(|o| o.url.contains("/snap-")).count(),
        2
    );
    assert_eq!(count(".avro"), 4);
    assert!(listed.iter().all(|o| o.size > 0));
    // Nothing went to the local disk.
    assert!(!h._dir.path().join("warehouse").exists());
    let current = h.lake.load_table(&layout.ident()).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|o| Some(o.url.as_str()) == current.metadata_location())
    );
}

/// The race only `VersionId` catches: another writer updates the Glue table between our
/// `GetTable` (whose location check passes) and our `UpdateTable`. Glue (moto with the check)
/// answers ConcurrentModificationException; the commit reloads and lands on its second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glue_update_with_a_stale_version_id_conflicts_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto::Moto::start_with(&[("CRYPTOLAKE_MOTO_INTERLOPE", "silver.quarantine")]);
    moto.create_bucket("lake");
    let glue = CatalogConfig {
        kind: cryptolake_catalog::config::CatalogKind::Glue,
        path: dir.path().join("unused.db"),
        ..CatalogConfig::default()
    };
    let lake = Lake::open(&moto.configure(glue, "s3://lake/warehouse"))
        .await
        .unwrap();
    let layout = test_layout();
    let t = lake.ensure_table(&layout).await.unwrap();
    let outcome = lake
        .commit(&SnapshotCommit::append(layout.ident()).add_files([file(&t, "a", 3)]))
        .await
        .unwrap();
    assert_eq!(
        outcome.attempts, 2,
        "the stale VersionId must have lost once"
    );
    assert_eq!(live(&lake, &layout).await, set(&["a"]));
    let t = lake.load_table(&layout.ident()).await.unwrap();
    assert_eq!(summary(&t, "total-records").as_deref(), Some("3"));
    assert_eq!(t.metadata().snapshots().count(), 1);
}
