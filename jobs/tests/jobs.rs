//! Jobs against a real catalog and warehouse: a concurrent commit landing between `plan()` and
//! `execute()` never makes a job take its input twice.

use cryptolake_catalog::config::CatalogConfig;
use cryptolake_catalog::{Error as CatalogError, Lake};
use cryptolake_jobs::generate::{GenOptions, generate};
use cryptolake_jobs::gold::Gold;
use cryptolake_jobs::ingest_files::IngestFiles;
use cryptolake_jobs::provider::session_with_lake;
use cryptolake_jobs::silver::Silver;
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
    generate(&e.ctx.landing, &more).unwrap();
    ingest.execute(ingest.plan().await.unwrap()).await.unwrap();
    Silver::new(e.ctx.clone()).execute(plan).await.unwrap();
    let per_minute = 4 * 3 + 4 * 6 + 4 * 12;
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, per_minute);
    let next = Silver::new(e.ctx.clone());
    next.execute(next.plan().await.unwrap()).await.unwrap();
    assert_eq!(count(&e.ctx.lake, "silver.quotes").await, 2 * per_minute);
}
