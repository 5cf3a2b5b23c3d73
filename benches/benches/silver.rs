//! The landing -> bronze -> silver path on generated Coinbase spot data of a chosen size.
//!
//! `cargo bench -p cryptolake-benches --bench silver -- [RECORDS] [PER_FILE]`
//! (defaults 1,000,000 and 50,000). Prints wall time, records/s and MB/s of each job, and the
//! process's peak resident memory.

use std::time::Instant;

use cryptolake_benches::{arg, open_lake, peak_rss_mib, runtime, write_coinbase_spot};
use cryptolake_jobs::pipeline::ingest_files::IngestFiles;
use cryptolake_jobs::pipeline::silver::Silver;
use cryptolake_jobs::{Job, JobContext, JobSettings};

fn main() {
    let records = arg(0, 1_000_000);
    let per_file = arg(1, 50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let landing = dir.path().join("landing");
    let bytes = write_coinbase_spot(&landing, records, per_file).expect("landing data");
    let mb = bytes as f64 / 1e6;
    println!("input: {records} Coinbase spot records, {mb:.1} MB of JSON, {per_file} per file");

    let runtime = runtime();
    runtime.block_on(async {
        let lake = open_lake(dir.path()).await;
        let ctx = JobContext::new(lake, landing, JobSettings::default()).expect("context");

        let t = Instant::now();
        let job = IngestFiles::new(ctx.clone()).with_sources(vec!["coinbase_spot".into()]);
        let summary = job
            .execute(job.plan().await.expect("plan"))
            .await
            .expect("ingest");
        report("ingest-files", t.elapsed().as_secs_f64(), records, mb);
        let rows: u64 = summary.tables.values().map(|r| r.rows_out).sum();
        assert_eq!(rows as usize, records);

        let t = Instant::now();
        let job = Silver::new(ctx.clone());
        let summary = job
            .execute(job.plan().await.expect("plan"))
            .await
            .expect("silver");
        report("silver", t.elapsed().as_secs_f64(), records, mb);
        let c = &summary.sources["coinbase_spot"];
        let files = summary
            .tables
            .get("silver.quotes")
            .map_or(0, |t| t.files_written);
        println!(
            "silver: {} good, {} duplicates dropped, {} quarantined, {files} files written",
            c.good, c.duplicates_dropped, c.quarantined
        );
    });
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory: {peak:.0} MiB");
    }
}

fn report(job: &str, secs: f64, records: usize, mb: f64) {
    println!(
        "{job:>12}: {secs:7.2} s  {:>10.0} records/s  {:>7.1} MB/s  (peak RSS so far {:.0} MiB)",
        records as f64 / secs,
        mb / secs,
        peak_rss_mib().unwrap_or(0.0)
    );
}
