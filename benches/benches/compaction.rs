//! A table built from many small appends (streaming's small files), scanned before and after
//! compaction: query time both ways and compaction throughput.
//!
//! `cargo bench -p cryptolake-benches --bench compaction -- [APPENDS] [ROWS_PER_APPEND]`
//! (defaults 2,000 and 500).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use cryptolake_benches::{arg, open_lake, peak_rss_mib, runtime};
use cryptolake_catalog::layout::bronze;
use cryptolake_catalog::{Lake, SnapshotCommit};
use cryptolake_jobs::engine::lake::session_with_lake;
use cryptolake_jobs::iceberg::writer::{TableWriter, arrow_schema};
use cryptolake_jobs::maintenance::compact::{Compact, CompactOptions};
use cryptolake_jobs::{Job, JobContext, JobSettings};

const QUERY: &str =
    "SELECT count(*) AS n, count(DISTINCT user_id) AS users, max(price) AS p FROM bronze.trades";

async fn scan(lake: &Lake) -> (f64, String) {
    let ctx = session_with_lake(lake).await.expect("session");
    let t = Instant::now();
    let batches = ctx
        .sql(QUERY)
        .await
        .expect("sql")
        .collect()
        .await
        .expect("collect");
    let secs = t.elapsed().as_secs_f64();
    (
        secs,
        arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string(),
    )
}

fn main() {
    let appends = arg(0, 2_000);
    let rows = arg(1, 500);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    runtime.block_on(async {
        let lake = open_lake(dir.path()).await;
        let layout = bronze("trades").expect("layout");
        let table = lake.ensure_table(&layout).await.expect("table");
        let schema = arrow_schema(&table).expect("schema");
        let t = Instant::now();
        for a in 0..appends {
            let base = (a * rows) as i64;
            let text = |f: &dyn Fn(i64) -> String| -> ArrayRef {
                Arc::new(StringArray::from_iter_values(
                    (0..rows as i64).map(|i| f(base + i)),
                ))
            };
            let columns: Vec<ArrayRef> = vec![
                text(&|i| format!("t{i}")),
                text(&|i| format!("user-{:03}", i % 250)),
                text(&|_| "BTC/USD".into()),
                text(&|i| {
                    if i % 2 == 0 {
                        "buy".into()
                    } else {
                        "sell".into()
                    }
                }),
                text(&|i| format!("0.{:06}", i % 1_000_000)),
                text(&|i| format!("{}.{:02}", 40_000 + i % 5_000, i % 100)),
                text(&|i| format!("2026-01-01T00:00:{:02}Z", i % 60)),
                Arc::new(StringArray::from(vec![None::<&str>; rows])),
                text(&|_| "trades/bench".into()),
                Arc::new(Int64Array::from_iter_values(base..base + rows as i64)),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..rows).map(|_| 1_767_225_600_000_000),
                )),
            ];
            let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
            let mut writer = TableWriter::new(&table, 512 << 20).expect("writer");
            writer.write(batch).await.expect("write");
            let files = writer.close().await.expect("close");
            lake.commit(&SnapshotCommit::append(layout.ident()).add_files(files))
                .await
                .expect("commit");
        }
        println!(
            "built bronze.trades from {appends} appends of {rows} rows in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let (before, result) = scan(&lake).await;
        println!("scan before compaction: {before:.3} s\n{result}");
        let ctx = JobContext::new(
            lake.clone(),
            dir.path().join("landing"),
            JobSettings::default(),
        )
        .expect("ctx");
        let job = Compact::new(ctx, CompactOptions::default());
        let plan = job.plan().await.expect("plan");
        let bytes: u64 = plan
            .tables
            .iter()
            .flat_map(|t| &t.groups)
            .map(|g| g.bytes_in)
            .sum();
        let t = Instant::now();
        let summary = job.execute(plan).await.expect("compact");
        let secs = t.elapsed().as_secs_f64();
        let run = &summary.tables["bronze.trades"];
        println!(
            "compaction: {} files -> {} in {secs:.2} s, {:.1} MB/s of input",
            run.files_removed,
            run.files_written,
            bytes as f64 / 1e6 / secs
        );
        let (after, result_after) = scan(&lake).await;
        assert_eq!(
            result, result_after,
            "compaction must not change the answer"
        );
        println!(
            "scan after compaction: {after:.3} s ({:.1}x faster)",
            before / after
        );
    });
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory: {peak:.0} MiB");
    }
}
