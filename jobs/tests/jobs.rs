//! Jobs against a real catalog and warehouse: a concurrent commit landing between `plan()` and
//! `execute()` never makes a job take its input twice.

#[path = "../../catalog/tests/catalog/moto.rs"]
mod moto;

#[path = "jobs/layers.rs"]
mod layers;

use cryptolake_catalog::config::CatalogConfig;
use cryptolake_catalog::{Error as CatalogError, Lake};
use cryptolake_jobs::engine::lake::session_with_lake;
use cryptolake_jobs::generate::{GenOptions, generate};
use cryptolake_jobs::maintenance::compact::{Compact, CompactOptions};
use cryptolake_jobs::pipeline::assets::Assets;
use cryptolake_jobs::pipeline::gold::Gold;
use cryptolake_jobs::pipeline::ingest_files::IngestFiles;
use cryptolake_jobs::pipeline::silver::Silver;
use cryptolake_jobs::{Error, Job, JobContext, JobSettings};

struct Env {
    ctx: JobContext,
    _dir: tempfile::TempDir,
}

async fn env(minutes: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig {
        path: dir.path().join("catalog.db"),
        warehouse: dir.path().join("warehouse").to_string_lossy().into_owned(),
        ..CatalogConfig::default()
    };
    let landing = dir.path().join("landing");
    let opts = GenOptions {
        minutes,
        seed: 5,
        symbols: 4,
        ..GenOptions::default()
    };
    generate(&landing, &opts).unwrap();
    let lake = Lake::open(&config).await.unwrap();
    let ctx = JobContext::new(lake, landing, JobSettings::default()).unwrap();
    Env { ctx, _dir: dir }
}

async fn count(lake: &Lake, table: &str) -> i64 {
    let ctx = session_with_lake(lake).await.unwrap();
    let batches = ctx
        .sql(&format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

fn lost_race(err: &Error) -> bool {
    matches!(err, Error::Catalog(CatalogError::RequirementFailed { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_files_planned_before_a_concurrent_run_does_not_take_its_files_again() {
    let e = env(2).await;
    let stale = IngestFiles::new(e.ctx.clone()).plan().await.unwrap();
    let other = IngestFiles::new(e.ctx.clone());
    other.execute(other.plan().await.unwrap()).await.unwrap();
    let trades = count(&e.ctx.lake, "bronze.trades").await;
    let err = IngestFiles::new(e.ctx.clone())
        .execute(stale)
        .await
        .unwrap_err();
    assert!(lost_race(&err), "{err}");
    assert!(
        err.to_string().contains("taken by a concurrent run"),
        "{err}"
    );
    assert_eq!(count(&e.ctx.lake, "bronze.trades").await, trades);
    // Planning again finds nothing new.
    let plan = IngestFiles::new(e.ctx.clone()).plan().await.unwrap();
    assert!(plan.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_and_gold_planned_before_a_concurrent_run_fail_and_change_nothing() {
    let e = env(2).await;
    let ingest = IngestFiles::new(e.ctx.clone());
    ingest.execute(ingest.plan().await.unwrap()).await.unwrap();

    let stale = Silver::new(e.ctx.clone()).plan().await.unwrap();
    let other = Silver::new(e.ctx.clone());
    other.execute(other.plan().await.unwrap()).await.unwrap();
    let quotes = count(&e.ctx.lake, "silver.quotes").await;
    assert_eq!(quotes, 2 * (4 * 3 + 4 * 6 + 4 * 12));
    let err = Silver::new(e.ctx.clone()).execute(stale).await.unwrap_err();
    assert!(lost_race(&err), "{err}");
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, quotes);

    let stale = Gold::new(e.ctx.clone()).plan().await.unwrap();
    let other = Gold::new(e.ctx.clone());
    other.execute(other.plan().await.unwrap()).await.unwrap();
    assert_eq!(count(&e.ctx.lake, "gold.candles_1m").await, 4 * 2);
    let err = Gold::new(e.ctx.clone()).execute(stale).await.unwrap_err();
    assert!(lost_race(&err), "{err}");
    assert_eq!(count(&e.ctx.lake, "gold.candles_1m").await, 4 * 2);
    assert!(
        Gold::new(e.ctx.clone())
            .plan()
            .await
            .unwrap()
            .tables
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bronze_appended_between_silver_plan_and_execute_waits_for_the_next_run() {
    let e = env(1).await;
    let ingest = IngestFiles::new(e.ctx.clone());
    ingest.execute(ingest.plan().await.unwrap()).await.unwrap();
    let plan = Silver::new(e.ctx.clone()).plan().await.unwrap();
    // More landing data is ingested after silver planned: silver takes only what it planned.
    let more = GenOptions {
        minutes: 1,
        seed: 6,
        symbols: 4,
        start: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .into(),
        ..GenOptions::default()
    };
    generate(e.ctx.landing.as_local().unwrap(), &more).unwrap();
    ingest.execute(ingest.plan().await.unwrap()).await.unwrap();
    Silver::new(e.ctx.clone()).execute(plan).await.unwrap();
    let per_minute = 4 * 3 + 4 * 6 + 4 * 12;
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, per_minute);
    let next = Silver::new(e.ctx.clone());
    next.execute(next.plan().await.unwrap()).await.unwrap();
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, 2 * per_minute);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assets_upsert_that_lost_the_race_changes_nothing_and_its_rerun_loses_nothing() {
    let e = env(1).await;
    let ingest = IngestFiles::new(e.ctx.clone());
    ingest.execute(ingest.plan().await.unwrap()).await.unwrap();
    let stale = Assets::new(e.ctx.clone()).plan().await.unwrap();
    let other = Assets::new(e.ctx.clone());
    let first = other.execute(other.plan().await.unwrap()).await.unwrap();
    assert_eq!(first.tables["silver.assets"].rows_out, 4);
    assert_eq!(count(&e.ctx.lake, "silver.assets").await, 4);
    // A later minute's assets (every supply moved) land before the stale plan executes.
    generate(e.ctx.landing.as_local().unwrap(), &later(1, 6)).unwrap();
    ingest.execute(ingest.plan().await.unwrap()).await.unwrap();
    let err = Assets::new(e.ctx.clone()).execute(stale).await.unwrap_err();
    assert!(lost_race(&err), "{err}");
    assert_eq!(err.kind(), cryptolake_jobs::ErrorKind::Conflict);
    assert_eq!(snapshots(&e.ctx.lake, "silver.assets").await, 1);
    // The re-run merges the new minute into the winner's rows: four assets, each updated.
    let rerun = Assets::new(e.ctx.clone());
    let plan = rerun.plan().await.unwrap();
    assert_eq!(plan.inputs.len(), 1);
    let second = rerun.execute(plan).await.unwrap();
    assert_eq!(second.tables["silver.assets"].rows_out, 4);
    assert_eq!(second.tables["silver.assets"].files_removed, 1);
    assert_eq!(count(&e.ctx.lake, "silver.assets").await, 4);
    let newest = session_with_lake(&e.ctx.lake)
        .await
        .unwrap()
        .sql(
            "SELECT count(*) FROM silver.assets WHERE updated_at = TIMESTAMP '2026-01-01T00:01:30'",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = newest[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 4);
    assert!(
        Assets::new(e.ctx.clone())
            .plan()
            .await
            .unwrap()
            .inputs
            .is_empty()
    );
}

async fn run_all(ctx: &JobContext) {
    let i = IngestFiles::new(ctx.clone());
    i.execute(i.plan().await.unwrap()).await.unwrap();
    let s = Silver::new(ctx.clone());
    s.execute(s.plan().await.unwrap()).await.unwrap();
}

fn later(minute: u32, seed: u64) -> GenOptions {
    let start = format!("2026-01-01T00:{minute:02}:00Z");
    GenOptions {
        minutes: 1,
        seed,
        symbols: 4,
        start: chrono::DateTime::parse_from_rfc3339(&start).unwrap().into(),
        ..GenOptions::default()
    }
}

fn small_target() -> CompactOptions {
    CompactOptions {
        target_size: Some(1 << 20),
        min_input_files: 2,
        tables: vec![cryptolake_catalog::lake::parse_ident("silver.quotes").unwrap()],
        ..CompactOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_landing_during_compaction_is_kept() {
    let e = env(1).await;
    run_all(&e.ctx).await;
    generate(e.ctx.landing.as_local().unwrap(), &later(1, 7)).unwrap();
    run_all(&e.ctx).await;
    let compact = Compact::new(e.ctx.clone(), small_target());
    let plan = compact.plan().await.unwrap();
    assert_eq!(plan.tables[0].groups.len(), 4);
    // New silver data lands between plan and execute.
    generate(e.ctx.landing.as_local().unwrap(), &later(2, 8)).unwrap();
    run_all(&e.ctx).await;
    let per_minute = 4 * 3 + 4 * 6 + 4 * 12;
    let summary = compact.execute(plan).await.unwrap();
    let run = &summary.tables["silver.quotes"];
    assert_eq!(
        run.commit_attempts, 1,
        "built on the newest snapshot, no race to lose"
    );
    assert_eq!((run.files_removed, run.files_written), (8, 4));
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, 3 * per_minute);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_files_were_rewritten_meanwhile_is_dropped() {
    let e = env(1).await;
    run_all(&e.ctx).await;
    generate(e.ctx.landing.as_local().unwrap(), &later(1, 7)).unwrap();
    run_all(&e.ctx).await;
    let stale = Compact::new(e.ctx.clone(), small_target())
        .plan()
        .await
        .unwrap();
    let other = Compact::new(e.ctx.clone(), small_target());
    other.execute(other.plan().await.unwrap()).await.unwrap();
    let quotes = count(&e.ctx.lake, "silver.quotes").await;
    let summary = Compact::new(e.ctx.clone(), small_target())
        .execute(stale)
        .await
        .unwrap();
    let run = &summary.tables["silver.quotes"];
    assert_eq!(
        run.snapshot_id, None,
        "every group lost its files: nothing committed"
    );
    assert_eq!(run.files_removed, 0);
    assert_eq!(run.groups_dropped, 4);
    assert_eq!(
        count(&e.ctx.lake, "silver.quotes").await,
        quotes,
        "no row resurrected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_more_partitions_than_may_stay_open_loses_no_row() {
    use arrow::array::Int64Array;
    use cryptolake_catalog::SnapshotCommit;
    use cryptolake_jobs::iceberg::writer::{MAX_OPEN_PARTITIONS, TableWriter, arrow_schema};

    let e = env(0).await;
    let layout = cryptolake_catalog::layout::bronze("trades").unwrap();
    let table = e.ctx.lake.ensure_table(&layout).await.unwrap();
    let schema = arrow_schema(&table).unwrap();
    let days = MAX_OPEN_PARTITIONS as i64 + 8;
    let mut writer = TableWriter::new(&table, 64 << 20).unwrap();
    // Two batches, each touching every day (partition) in turn: the writer must close files
    // early to stay under its limit of open partitions.
    for pass in 0..2i64 {
        let rows: Vec<(i64, i64)> = (0..days).map(|d| (pass * days + d, d)).collect();
        writer.write(bronze_trades(&schema, &rows)).await.unwrap();
    }
    let files = writer.close().await.unwrap();
    assert!(
        files.len() > days as usize,
        "files closed early: {}",
        files.len()
    );
    assert_eq!(
        files.iter().map(|f| f.record_count()).sum::<u64>(),
        2 * days as u64
    );
    e.ctx
        .lake
        .commit(&SnapshotCommit::append(layout.ident()).add_files(files))
        .await
        .unwrap();
    assert_eq!(count(&e.ctx.lake, "bronze.trades").await, 2 * days);
    let ctx = session_with_lake(&e.ctx.lake).await.unwrap();
    let distinct = ctx
        .sql("SELECT count(DISTINCT _record) FROM bronze.trades")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = distinct[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 2 * days);
}

/// bronze.trades rows `(_record, day after 2026-01-01)`, their other columns null.
fn bronze_trades(
    schema: &arrow::datatypes::SchemaRef,
    rows: &[(i64, i64)],
) -> arrow::array::RecordBatch {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    let n = rows.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "_file" => Arc::new(StringArray::from(vec!["trades/f"; n])) as ArrayRef,
            "_record" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            "_ingest_time" => Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter()
                    .map(|r| 1_767_225_600_000_000 + r.1 * 86_400_000_000),
            )),
            _ => Arc::new(StringArray::from(vec![None::<&str>; n])),
        })
        .collect();
    arrow::array::RecordBatch::try_new(schema.clone(), columns).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_idle_for_many_batches_close_and_every_row_is_kept() {
    use cryptolake_jobs::iceberg::writer::{
        IDLE_BATCHES, SOFT_OPEN_PARTITIONS, TableWriter, arrow_schema,
    };

    let e = env(0).await;
    let layout = cryptolake_catalog::layout::bronze("trades").unwrap();
    let table = e.ctx.lake.ensure_table(&layout).await.unwrap();
    let schema = arrow_schema(&table).unwrap();
    let mut writer = TableWriter::new(&table, 64 << 20).unwrap();
    // Batch b holds two rows of day b, as time-ordered input does: a day's file is idle once
    // the day has passed.
    for b in 0..40i64 {
        writer
            .write(bronze_trades(&schema, &[(2 * b, b), (2 * b + 1, b)]))
            .await
            .unwrap();
        let open = writer.open_partitions();
        assert!(
            open <= SOFT_OPEN_PARTITIONS.max(IDLE_BATCHES as usize + 1),
            "{open} open"
        );
    }
    // At the 40th batch the days written in the last 17 batches are still open.
    assert_eq!(writer.open_partitions(), IDLE_BATCHES as usize + 1);
    let files = writer.close().await.unwrap();
    assert_eq!(files.len(), 40);
    assert!(files.iter().all(|f| f.record_count() == 2));
    e.ctx
        .lake
        .commit(&cryptolake_catalog::SnapshotCommit::append(layout.ident()).add_files(files))
        .await
        .unwrap();
    assert_eq!(count(&e.ctx.lake, "bronze.trades").await, 80);
}

/// A file of three row groups read as byte ranges, as silver splits a large bronze file over its
/// tasks: every row is read once, whatever the ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_of_a_file_read_each_row_once() {
    use arrow::array::{AsArray, RecordBatch};
    use arrow::datatypes::Int64Type;
    use cryptolake_jobs::iceberg::scan;
    use cryptolake_jobs::iceberg::writer::{TableWriter, arrow_schema};
    use cryptolake_jobs::physical_plan::{FileRange, split_for_tasks};
    use futures::TryStreamExt;

    let e = env(0).await;
    let layout = cryptolake_catalog::layout::bronze("trades").unwrap();
    let table = e.ctx.lake.ensure_table(&layout).await.unwrap();
    let schema = arrow_schema(&table).unwrap();
    let mut writer = TableWriter::new(&table, 512 << 20).unwrap();
    // 300,000 rows of one day: row groups of 128 Ki rows make three.
    let rows = 300_000i64;
    for chunk in 0..6 {
        let records: Vec<(i64, i64)> = (chunk * 50_000..(chunk + 1) * 50_000)
            .map(|r| (r, 0))
            .collect();
        writer
            .write(bronze_trades(&schema, &records))
            .await
            .unwrap();
    }
    let files = writer.close().await.unwrap();
    assert_eq!(files.len(), 1);
    let read = |ranges: Vec<FileRange>| {
        let table = table.clone();
        async move {
            let mut per_range = Vec::new();
            for range in ranges {
                let tasks =
                    scan::tasks_for_ranges(&table, &[range], Some(&["_record"][..])).unwrap();
                let batches: Vec<RecordBatch> = scan::read(&table, tasks, 8192)
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                let (mut n, mut sum) = (0i64, 0i64);
                for b in &batches {
                    let c = b.column(0).as_primitive::<Int64Type>();
                    n += c.len() as i64;
                    sum += c.values().iter().sum::<i64>();
                }
                per_range.push((n, sum));
            }
            per_range
        }
    };
    let want_sum = rows * (rows - 1) / 2;
    let halves = read(split_for_tasks(files.clone(), 2)).await;
    assert_eq!(halves.len(), 2);
    assert!(halves.iter().all(|(n, _)| *n > 0), "{halves:?}");
    assert_eq!(halves.iter().map(|h| h.0).sum::<i64>(), rows);
    assert_eq!(halves.iter().map(|h| h.1).sum::<i64>(), want_sum);
    // More ranges than row groups: some are empty, none reads a row twice.
    let sevenths = read(FileRange::split(files[0].clone(), 7)).await;
    assert_eq!(sevenths.iter().filter(|(n, _)| *n > 0).count(), 3);
    assert_eq!(sevenths.iter().map(|h| h.0).sum::<i64>(), rows);
    assert_eq!(sevenths.iter().map(|h| h.1).sum::<i64>(), want_sum);
    // A small file is not split.
    assert_eq!(split_for_tasks(files.clone(), 1).len(), 1);
}

async fn sum_price(lake: &Lake) -> (i64, String) {
    let ctx = session_with_lake(lake).await.unwrap();
    let b = ctx
        .sql("SELECT count(DISTINCT (source, symbol, event_time)), CAST(sum(price) AS VARCHAR) FROM silver.quotes")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let keys = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    let text = arrow::compute::cast(b[0].column(1), &arrow::datatypes::DataType::Utf8).unwrap();
    let sum = arrow::array::cast::AsArray::as_string::<i32>(&text)
        .value(0)
        .to_string();
    (keys, sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// 50 rounds: compaction planned on what is there, then run concurrently with the ingest of a
/// new minute. Whichever commits first, both commits land: the table gains exactly silver's
/// append and compaction's replace each round, and the rows stay exact. Whether a commit also
/// loses a swap race here depends on timing (it is printed); the lost-race path itself is
/// forced deterministically in the catalog suite.
async fn fifty_rounds_of_ingest_beside_compaction_lose_and_resurrect_nothing() {
    let e = env(1).await;
    run_all(&e.ctx).await;
    let per_minute = 4 * 3 + 4 * 6 + 4 * 12;
    let mut retried = 0;
    let quotes = cryptolake_catalog::lake::parse_ident("silver.quotes").unwrap();
    for round in 1..=50u32 {
        generate(
            e.ctx.landing.as_local().unwrap(),
            &later(round, u64::from(round) + 100),
        )
        .unwrap();
        let before = e.ctx.lake.load_table(&quotes).await.unwrap();
        let snapshots_before = before.metadata().snapshots().count();
        // Compaction plans on what is there, then runs beside the ingest of the new minute.
        let compact = Compact::new(e.ctx.clone(), small_target());
        let plan = compact.plan().await.unwrap();
        let (_, compacted) = tokio::join!(run_all(&e.ctx), compact.execute(plan));
        let compacted = compacted.unwrap();
        retried += compacted
            .tables
            .values()
            .filter(|t| t.commit_attempts > 1)
            .count();
        let rows = count(&e.ctx.lake, "silver.quotes").await;
        assert_eq!(rows, i64::from(round + 1) * per_minute, "round {round}");
        // Neither commit was lost or doubled: one append from silver, and compaction's
        // replace snapshots (one per table it compacted: only silver.quotes here).
        let after = e.ctx.lake.load_table(&quotes).await.unwrap();
        let operations: Vec<_> = after
            .metadata()
            .snapshots()
            .filter(|s| before.metadata().snapshot_by_id(s.snapshot_id()).is_none())
            .map(|s| s.summary().operation.as_str().to_string())
            .collect();
        let mut sorted = operations.clone();
        sorted.sort();
        let mut expected = vec!["append".to_string()];
        expected.extend(std::iter::repeat_n(
            "replace".to_string(),
            compacted.commits(),
        ));
        assert_eq!(sorted, expected, "round {round}: {operations:?}");
        assert_eq!(
            after.metadata().snapshots().count(),
            snapshots_before + 1 + compacted.commits()
        );
    }
    let (keys, sum) = sum_price(&e.ctx.lake).await;
    assert_eq!(keys, 51 * per_minute, "no duplicate and no lost quote");
    // A lake that never compacted, built from the same landing files, holds the same rows.
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig {
        path: dir.path().join("catalog.db"),
        warehouse: dir.path().join("warehouse").to_string_lossy().into_owned(),
        ..CatalogConfig::default()
    };
    let reference = JobContext::new(
        Lake::open(&config).await.unwrap(),
        e.ctx.landing.clone(),
        JobSettings::default(),
    )
    .unwrap();
    run_all(&reference).await;
    assert_eq!(sum_price(&reference.lake).await, (keys, sum));
    eprintln!("compaction commits that lost a race and retried: {retried}");
}

/// Two one-minute runs: silver.quotes holds two small files in each of its 4 symbol partitions.
async fn two_runs() -> Env {
    let e = env(1).await;
    run_all(&e.ctx).await;
    generate(e.ctx.landing.as_local().unwrap(), &later(1, 7)).unwrap();
    run_all(&e.ctx).await;
    e
}

async fn snapshots(lake: &Lake, table: &str) -> usize {
    let ident = cryptolake_catalog::lake::parse_ident(table).unwrap();
    lake.load_table(&ident)
        .await
        .unwrap()
        .metadata()
        .snapshots()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_limits_compaction_to_the_files_that_may_match() {
    let e = two_runs().await;
    let with = |filter: &str| CompactOptions {
        filter: Some(filter.to_string()),
        ..small_target()
    };
    let plan = Compact::new(e.ctx.clone(), small_target())
        .plan()
        .await
        .unwrap();
    let partitions: Vec<&str> = plan.tables[0]
        .groups
        .iter()
        .map(|g| g.partition.as_str())
        .collect();
    assert_eq!(partitions.len(), 4, "{partitions:?}");
    let (symbol, _day) = partitions[1].split_once('/').unwrap();

    let one = Compact::new(e.ctx.clone(), with(&format!("symbol = '{symbol}'")));
    let plan = one.plan().await.unwrap();
    assert_eq!(plan.tables[0].live_files, 8);
    assert_eq!(plan.tables[0].selected_files, 2);
    assert_eq!(plan.tables[0].groups.len(), 1);
    assert_eq!(plan.tables[0].groups[0].partition, partitions[1]);
    // Every row is on 2026-01-01: statistics and partition values prune by time too.
    for (filter, groups) in [
        ("event_time >= TIMESTAMP '2026-01-02 00:00:00'", 0),
        ("event_time < '2026-01-02' AND symbol <> 'NONE'", 4),
        (
            &format!("symbol IN ('{symbol}', 'NONE') OR event_time > '2027-01-01'"),
            1,
        ),
    ] {
        let plan = Compact::new(e.ctx.clone(), with(filter))
            .plan()
            .await
            .unwrap();
        assert_eq!(plan.tables[0].groups.len(), groups, "{filter}");
    }
    let before = count(&e.ctx.lake, "silver.quotes").await;
    let summary = one.execute(plan).await.unwrap();
    let run = &summary.tables["silver.quotes"];
    assert_eq!((run.files_removed, run.files_written), (2, 1));
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, before);

    let bad = Compact::new(e.ctx.clone(), with("price LIKE '1%'"))
        .plan()
        .await;
    assert!(matches!(bad, Err(Error::Usage(_))), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_progress_commits_each_group_on_its_own() {
    let e = two_runs().await;
    let before = (
        count(&e.ctx.lake, "silver.quotes").await,
        snapshots(&e.ctx.lake, "silver.quotes").await,
    );
    let job = Compact::new(
        e.ctx.clone(),
        CompactOptions {
            partial_progress: true,
            ..small_target()
        },
    );
    let summary = job.execute(job.plan().await.unwrap()).await.unwrap();
    let run = &summary.tables["silver.quotes"];
    assert_eq!((run.files_removed, run.files_written), (8, 4));
    assert_eq!(run.commit_attempts, 4);
    assert_eq!(
        (
            count(&e.ctx.lake, "silver.quotes").await,
            snapshots(&e.ctx.lake, "silver.quotes").await
        ),
        (before.0, before.1 + 4),
        "the same rows, one replace snapshot per group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_manifests_merges_them_and_keeps_an_append_that_lands_meanwhile() {
    use cryptolake_jobs::maintenance::rewrite_manifests::{
        RewriteManifests, RewriteManifestsOptions,
    };
    let e = two_runs().await;
    let job = |min_manifests| {
        RewriteManifests::new(
            e.ctx.clone(),
            RewriteManifestsOptions {
                min_manifests,
                tables: vec![cryptolake_catalog::lake::parse_ident("silver.quotes").unwrap()],
            },
        )
    };
    assert!(!job(3).plan().await.unwrap().tables[0].rewrite);
    let plan = job(2).plan().await.unwrap();
    let table = &plan.tables[0];
    assert_eq!(
        (table.data_manifests, table.live_files, table.rewrite),
        (2, 8, true)
    );
    // A third run lands between plan and execute: its manifest is merged in, its rows kept.
    generate(e.ctx.landing.as_local().unwrap(), &later(2, 8)).unwrap();
    run_all(&e.ctx).await;
    let rows = count(&e.ctx.lake, "silver.quotes").await;
    let summary = job(2).execute(plan).await.unwrap();
    assert!(summary.tables["silver.quotes"].snapshot_id.is_some());
    let after = job(2).plan().await.unwrap();
    assert_eq!(
        (after.tables[0].data_manifests, after.tables[0].live_files),
        (1, 12)
    );
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_and_maintenance_run_on_an_s3_warehouse() {
    use std::time::Duration;

    use cryptolake_jobs::maintenance::expire_snapshots::{ExpireOptions, ExpireSnapshots};
    use cryptolake_jobs::maintenance::remove_orphans::{RemoveOrphans, RemoveOrphansOptions};

    let local = env(1).await;
    let s3 = moto::Moto::start();
    s3.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    let config = s3.configure(
        CatalogConfig {
            path: dir.path().join("catalog.db"),
            ..CatalogConfig::default()
        },
        "s3://lake/warehouse",
    );
    let lake = Lake::open(&config).await.unwrap();
    let ctx = JobContext::new(
        lake.clone(),
        local.ctx.landing.clone(),
        JobSettings::default(),
    )
    .unwrap();
    run_all(&ctx).await;
    generate(ctx.landing.as_local().unwrap(), &later(1, 7)).unwrap();
    run_all(&ctx).await;
    // The same rows as the same landing files give on a local warehouse (they are all there
    // already: writing them again would change their modification times, and changed files
    // are taken again).
    run_all(&local.ctx).await;
    for table in ["bronze.coinbase_spot", "silver.quotes", "silver.trades"] {
        assert_eq!(
            count(&lake, table).await,
            count(&local.ctx.lake, table).await,
            "{table}"
        );
    }
    let quotes = count(&lake, "silver.quotes").await;
    assert!(quotes > 0);

    let compact = Compact::new(ctx.clone(), small_target());
    compact
        .execute(compact.plan().await.unwrap())
        .await
        .unwrap();
    // A file no snapshot reaches, as a killed job leaves.
    let table = lake
        .load_table(&cryptolake_catalog::lake::parse_ident("silver.quotes").unwrap())
        .await
        .unwrap();
    let orphan = format!("{}/data/orphan.parquet", table.metadata().location());
    lake.file_io()
        .new_output(&orphan)
        .unwrap()
        .write(bytes::Bytes::from_static(b"not reached"))
        .await
        .unwrap();
    let quotes_only = vec![cryptolake_catalog::lake::parse_ident("silver.quotes").unwrap()];
    let orphans = RemoveOrphans::new(
        ctx.clone(),
        RemoveOrphansOptions {
            older_than: Duration::ZERO,
            tables: quotes_only.clone(),
        },
    );
    let plan = orphans.plan().await.unwrap();
    assert_eq!(plan.tables[0].orphans, std::slice::from_ref(&orphan));
    orphans.execute(plan).await.unwrap();
    assert!(!lake.file_io().exists(&orphan).await.unwrap());

    let objects = || async {
        let listed = lake
            .s3()
            .unwrap()
            .list(table.metadata().location())
            .await
            .unwrap();
        listed
            .into_iter()
            .map(|o| o.url)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = objects().await;
    // Two appends of one file per symbol, then one compacted file per symbol.
    assert_eq!(
        before.iter().filter(|o| o.ends_with(".parquet")).count(),
        4 + 4 + 4
    );
    // Expiry removes the first append's snapshot (gold's bookmark keeps the second, which
    // still reaches every small file): its manifest list and manifests go, from S3.
    let expire = ExpireSnapshots::new(
        ctx.clone(),
        ExpireOptions {
            older_than: Duration::ZERO,
            retain_last: 1,
            tables: quotes_only,
        },
    );
    let summary = expire.execute(expire.plan().await.unwrap()).await.unwrap();
    assert_eq!(
        summary.tables["silver.quotes"].files_removed, 4,
        "{summary:?}"
    );
    let gone: Vec<String> = before.difference(&objects().await).cloned().collect();
    assert_eq!(gone.len(), 4, "{gone:?}");
    assert!(gone.iter().all(|o| o.ends_with(".avro")), "{gone:?}");
    assert_eq!(count(&lake, "silver.quotes").await, quotes);
}
