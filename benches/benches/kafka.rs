//! `ingest-kafka` from a local broker: tansu (SQLite storage) on loopback, started here and
//! killed when done, holding RECORDS trade messages over 3 partitions.
//!
//! `cargo bench -p cryptolake-benches --bench kafka -- [RECORDS]` (default 200,000; the broker
//! comes from `scripts/setup.sh`, or `CRYPTOLAKE_TANSU`). Prints the produce time, then
//! ingest-kafka's wall time, records/s and MB/s, and the process's peak resident memory.

use std::time::Instant;

use cryptolake_testkit::Broker;

use cryptolake_benches::{arg, open_lake, peak_rss_mib, runtime};
use cryptolake_jobs::pipeline::ingest_kafka::IngestKafka;
use cryptolake_jobs::sources::kafka::produce;
use cryptolake_jobs::sources::kafka_config::{KafkaConfig, TopicConfig};
use cryptolake_jobs::{Job, JobContext, JobSettings};

fn main() {
    let records = arg(0, 200_000);
    let broker = Broker::start();
    broker.create_topic("coinbase-trades", 3);
    let port = broker.port;
    let dir = tempfile::tempdir().expect("tempdir");

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
    drop(broker);
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory: {peak:.0} MiB");
    }
}
