//! `ingest-kafka` from a local broker: tansu (SQLite storage) on loopback, started here and
//! killed when done, holding RECORDS trade messages over 3 partitions.
//!
//! `cargo bench -p cryptolake-benches --bench kafka -- [RECORDS]` (default 200,000; the broker
//! comes from `scripts/setup.sh`, or `CRYPTOLAKE_TANSU`). Prints the produce time, then
//! ingest-kafka's wall time, records/s and MB/s, and the process's peak resident memory.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cryptolake_benches::{arg, open_lake, peak_rss_mib, runtime};
use cryptolake_jobs::ingest_kafka::IngestKafka;
use cryptolake_jobs::sources::kafka::produce;
use cryptolake_jobs::sources::kafka_config::{KafkaConfig, TopicConfig};
use cryptolake_jobs::{Job, JobContext, JobSettings};

fn tansu() -> PathBuf {
    std::env::var_os("CRYPTOLAKE_TANSU").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/cryptolake/tansu/bin/tansu")
        },
        PathBuf::from,
    )
}

fn main() {
    let records = arg(0, 200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = Command::new(tansu())
        .args(["broker", "--storage-engine", "sqlite://tansu.db"])
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu: run scripts/setup.sh or set CRYPTOLAKE_TANSU");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let created = Command::new(tansu())
        .args(["topic", "create", "coinbase-trades", "--partitions", "3"])
        .args(["--broker", &url])
        .status()
        .expect("topic create");
    assert!(created.success());

    let messages: Vec<String> = (0..records)
        .map(|i| {
            format!(
                r#"{{"trade_id":"t{i}","user_id":"u{}","symbol":"BTC-USD","side":"buy","quantity":"0.{:04}","price":"{}.25","timestamp":"2026-01-01T00:00:{:02}Z"}}"#,
                i % 97,
                i % 10_000 + 1,
                43_000 + i % 1_000,
                i % 60
            )
        })
        .collect();
    let mb = messages.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    let kafka = KafkaConfig {
        brokers: format!("127.0.0.1:{port}"),
        topics: vec![TopicConfig::new("coinbase-trades", "trades")],
        ..KafkaConfig::default()
    };
    runtime().block_on(async {
        let t = Instant::now();
        produce(&kafka, "coinbase-trades", &messages)
            .await
            .expect("produce");
        println!(
            "input: {records} trade messages, {mb:.1} MB, produced in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        let lake = open_lake(dir.path()).await;
        let ctx = JobContext::new(lake, dir.path().join("landing"), JobSettings::default())
            .expect("context");
        let t = Instant::now();
        let job = IngestKafka::new(ctx, kafka);
        let summary = job
            .execute(job.plan().await.expect("plan"))
            .await
            .expect("ingest-kafka");
        let secs = t.elapsed().as_secs_f64();
        let rows: u64 = summary.tables.values().map(|r| r.rows_out).sum();
        assert_eq!(rows as usize, records);
        println!(
            "ingest-kafka: {secs:7.2} s  {:>10.0} records/s  {:>7.1} MB/s",
            records as f64 / secs,
            mb / secs
        );
    });
    let _ = broker.kill();
    let _ = broker.wait();
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory: {peak:.0} MiB");
    }
}
