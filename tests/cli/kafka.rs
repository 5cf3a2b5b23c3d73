//! `ingest-kafka` against a real Kafka-protocol broker: tansu with its SQLite storage on a free
//! loopback port (started here, stopped by process id), written to by an independent producer
//! (kafka-python) and read back by an independent consumer to check the frozen end offsets.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use cryptolake_testkit::Broker;

use serde_json::Value;

use crate::common::Project;
use crate::readers::run_python;

/// Trades `first..first+count` from kafka-python, partition `i % 3`, with a key and a header;
/// every 10th value is not JSON and every 15th (not also 10th) lacks its price.
const PRODUCE: &str = r#"
import json, sys
from kafka import KafkaProducer
broker, topic, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = KafkaProducer(bootstrap_servers=broker, linger_ms=20, batch_size=16384)
for i in range(first, first + count):
    trade = {"trade_id": f"t{i}", "user_id": f"u{i % 7}", "symbol": "BTC-USD",
             "side": "buy" if i % 2 else "sell", "quantity": "0.5",
             "price": f"{43000 + i}.25",
             "timestamp": f"2026-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z"}
    if i % 15 == 0:
        del trade["price"]
    value = b"not json {" if i % 10 == 0 else json.dumps(trade).encode()
    p.send(topic, value=value, key=f"k{i}".encode(), partition=i % 3,
           headers=[("origin", b"simulator")])
p.flush()
p.close()
"#;

/// Reads every partition from the start with kafka-python; prints `{partition: messages}`.
const CONSUME: &str = r#"
import json, sys
from kafka import KafkaConsumer, TopicPartition
broker, topic = sys.argv[1], sys.argv[2]
c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=3000)
parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
c.assign(parts)
c.seek_to_beginning()
seen = {tp.partition: 0 for tp in parts}
for m in c:
    seen[m.partition] += 1
print(json.dumps(seen))
"#;

pub(crate) fn produce(broker: &Broker, first: u32, count: u32) {
    let (first, count) = (first.to_string(), count.to_string());
    let args = [broker.address(), "coinbase-trades".into(), first, count];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_python(PRODUCE, &args);
}

/// Messages `0..n` that are malformed (not JSON, or no price).
fn malformed(n: u32) -> u64 {
    (0..n).filter(|i| i % 10 == 0 || i % 15 == 0).count() as u64
}

/// A project whose `[kafka]` section points at the broker, with a short broker timeout.
pub(crate) fn kafka_project(broker: &Broker) -> Project {
    let p = Project::new();
    let mut config = std::fs::read_to_string(&p.config).unwrap();
    config.push_str(&format!(
        "\n[kafka]\nbrokers = \"{}\"\ntimeout_secs = 3\n\n\
         [[kafka.topics]]\ntopic = \"coinbase-trades\"\nformat = \"trades\"\n",
        broker.address()
    ));
    std::fs::write(&p.config, config).unwrap();
    p
}

pub(crate) fn broker_with_trades() -> Broker {
    let broker = Broker::start();
    broker.create_topic("coinbase-trades", 3);
    broker
}

/// The offsets the table committed, per partition, from the next run's plan.
fn committed(p: &Project) -> Value {
    let plan = p.json(&["run", "ingest-kafka", "--dry-run"]);
    let partitions = plan["ingest-kafka"]["topics"][0]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    partitions
        .iter()
        .map(|q| (q["partition"].to_string(), q["committed"].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub(crate) fn distinct_messages(p: &Project) -> u64 {
    let rows = p.sql(
        "SELECT count(*) AS n FROM (SELECT DISTINCT _kafka_partition, _kafka_offset \
         FROM bronze.coinbase_trades)",
    );
    rows[0]["n"].as_u64().unwrap()
}

/// Starts `run ingest-kafka`, which plans (freezing the end offsets) and then waits `ms`
/// before it reads anything.
fn planned_then_paused(p: &Project, ms: u32) -> Child {
    p.command(&["run", "ingest-kafka"])
        .env(
            "CRYPTOLAKE_FAULT",
            format!("ingest-kafka:before-execute:delay={ms}"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn every_message_lands_exactly_once_and_the_table_holds_the_offsets() {
    let broker = broker_with_trades();
    let p = kafka_project(&broker);
    let brokers = broker.address();
    produce(&broker, 0, 300);
    p.ok(&["run", "ingest-kafka", "--brokers", &brokers]);
    assert_eq!(p.count("bronze.coinbase_trades"), 300);
    // The frozen end offsets are what an independent consumer reads.
    let consumed = run_python(CONSUME, &[&brokers, "coinbase-trades"]);
    let consumed: Value = serde_json::from_slice(&consumed).unwrap();
    assert_eq!(consumed, serde_json::json!({"0": 100, "1": 100, "2": 100}));
    assert_eq!(committed(&p), consumed);
    let row = &p.sql(
        "SELECT trade_id, _file, _record, _kafka_key, _kafka_headers FROM bronze.coinbase_trades \
         WHERE _kafka_partition = 1 AND _kafka_offset = 2",
    )[0];
    assert_eq!(row["trade_id"], "t7");
    assert_eq!(row["_file"], "coinbase-trades/1");
    assert_eq!(row["_record"], 2);
    assert_eq!(row["_kafka_key"], "k7");
    assert_eq!(row["_kafka_headers"], r#"{"origin":"simulator"}"#);

    produce(&broker, 300, 150);
    p.ok(&["run", "ingest-kafka", "--brokers", &brokers]);
    assert_eq!(p.count("bronze.coinbase_trades"), 450);
    assert_eq!(distinct_messages(&p), 450);
    let before = p.snapshots();
    let out = p.ok(&["run", "ingest-kafka", "--brokers", &brokers]);
    assert!(out.contains("0 snapshot(s)"), "{out}");
    assert_eq!(p.snapshots(), before, "nothing new: no new snapshot");

    // Silver reads the Kafka bronze table: every malformed message is quarantined.
    p.ok(&["run", "silver", "--max-bad-fraction", "0.2"]);
    let bad = malformed(450);
    assert_eq!(bad, 60);
    assert_eq!(p.count("silver.trades"), 450 - bad);
    let q = p.sql(
        "SELECT count(*) AS n FROM silver.quarantine WHERE source = 'coinbase_trades' \
         AND file LIKE 'coinbase-trades/%'",
    );
    assert_eq!(q[0]["n"], bad);
    // Exact decimal sum of the good prices, `43000 + i` and a quarter each.
    let sum = p.sql("SELECT CAST(sum(price) AS VARCHAR) AS s FROM silver.trades");
    let whole: u64 = (0..450u64)
        .filter(|i| i % 10 != 0 && i % 15 != 0)
        .map(|i| 43000 + i)
        .sum();
    let quarters = 450 - bad; // 390 quarters: 97.5
    let text = sum[0]["s"].as_str().unwrap();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert_eq!(int, (whole + quarters / 4).to_string(), "{text}");
    let frac_want = ["", "25", "5", "75"][(quarters % 4) as usize];
    assert_eq!(frac.trim_end_matches('0'), frac_want, "{text}");
}

#[test]
fn the_metrics_show_the_lag_of_every_partition_until_ingest_kafka_takes_it() {
    let broker = broker_with_trades();
    let p = kafka_project(&broker);
    produce(&broker, 0, 31);
    let console = crate::console::Console::start(&p);
    let kafka = |name: &str| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = crate::console::scrape(&console.base, None)
            .into_iter()
            .filter(|(n, labels, _)| n == name && labels["topic"] == "coinbase-trades")
            .map(|(_, labels, value)| (labels["partition"].as_str().unwrap().to_string(), value))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let per = |a: f64, b: f64, c: f64| -> Vec<(String, f64)> {
        vec![("0".into(), a), ("1".into(), b), ("2".into(), c)]
    };
    // 31 messages over 3 partitions (i % 3), none taken yet.
    assert_eq!(
        kafka("cryptolake_kafka_lag_messages"),
        per(11.0, 10.0, 10.0)
    );
    assert_eq!(kafka("cryptolake_kafka_end_offset"), per(11.0, 10.0, 10.0));
    assert!(kafka("cryptolake_kafka_committed_offset").is_empty());
    p.ok(&["run", "ingest-kafka"]);
    produce(&broker, 31, 3);
    assert_eq!(kafka("cryptolake_kafka_lag_messages"), per(1.0, 1.0, 1.0));
    assert_eq!(
        kafka("cryptolake_kafka_committed_offset"),
        per(11.0, 10.0, 10.0)
    );
    assert_eq!(kafka("cryptolake_kafka_end_offset"), per(12.0, 11.0, 11.0));
    let up: Vec<f64> = crate::console::scrape(&console.base, None)
        .into_iter()
        .filter(|(n, labels, _)| n == "cryptolake_probe_up" && labels["probe"] == "kafka")
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(up, [1.0]);

    // Lineage of partition 0's offsets: message i is at offset i / 3; messages 0 and 30 are
    // not JSON, 15 has no price; silver took the first 11, the 12th (message 33) waits.
    p.ok(&["run", "silver", "--max-bad-fraction", "1"]);
    p.ok(&["run", "ingest-kafka"]);
    let out = std::process::Command::new("curl")
        .args(["-s", "--fail"])
        .arg(format!(
            "{}/v1/lineage?source=coinbase_trades&file=coinbase-trades/0",
            console.base
        ))
        .output()
        .unwrap();
    let lineage: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes = crate::console::outcomes(&lineage);
    let kinds: Vec<(i64, &str)> = outcomes.iter().map(|(o, k, _)| (*o, k.as_str())).collect();
    let mut expected: Vec<(i64, &str)> = (0..12).map(|o| (o, "silver")).collect();
    for o in [0, 5, 10] {
        expected[o as usize].1 = "quarantined";
    }
    expected[11].1 = "pending";
    assert_eq!(kinds, expected, "{lineage}");
    assert!(outcomes[5].2.contains("price"), "{lineage}");
    assert!(
        outcomes[1]
            .2
            .starts_with("trade t3: BTC-USD 2026-01-01T00:00:03 price 43003.25"),
        "{lineage}"
    );
}

#[test]
fn on_a_two_executor_cluster_each_partition_is_read_by_an_executor_exactly_once() {
    let broker = broker_with_trades();
    let p = kafka_project(&broker);
    let cluster = crate::cluster::Cluster::up(&p, 2);
    produce(&broker, 0, 300);
    let summaries = p.json(&["run", "ingest-kafka", "--cluster", &cluster.url]);
    let summary = &summaries[0];
    assert_eq!(p.count("bronze.coinbase_trades"), 300);
    assert_eq!(distinct_messages(&p), 300);
    assert_eq!(
        committed(&p),
        serde_json::json!({"0": 100, "1": 100, "2": 100})
    );
    // The messages were counted by the tasks that read them, on the executors.
    assert_eq!(
        summary["sources"]["coinbase-trades"]["records"], 300,
        "{summary}"
    );
    let writers = crate::cluster::writer_pids(&summary["tables"]["bronze.coinbase_trades"]);
    assert!(!writers.is_empty(), "{summary}");
    let executors = cluster.executor_pids();
    assert!(writers.iter().all(|w| executors.contains(w)), "{summary}");

    produce(&broker, 300, 150);
    p.ok(&["run", "ingest-kafka", "--cluster", &cluster.url]);
    assert_eq!(p.count("bronze.coinbase_trades"), 450);
    assert_eq!(distinct_messages(&p), 450);
}

#[test]
fn killed_between_write_and_commit_the_rerun_lands_exactly_once() {
    let broker = broker_with_trades();
    let p = kafka_project(&broker);
    produce(&broker, 0, 120);
    p.ok(&["run", "ingest-kafka"]);
    produce(&broker, 120, 60);
    let out = p
        .command(&["run", "ingest-kafka"])
        .env("CRYPTOLAKE_FAULT", "ingest-kafka:after-write")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "must die by SIGKILL");
    assert_eq!(p.count("bronze.coinbase_trades"), 120);
    p.ok(&["run", "ingest-kafka"]);
    assert_eq!(p.count("bronze.coinbase_trades"), 180);
    assert_eq!(distinct_messages(&p), 180);
}

#[test]
fn a_broker_lost_mid_run_fails_clearly_and_leaves_the_table_unchanged() {
    let mut broker = broker_with_trades();
    let p = kafka_project(&broker);
    produce(&broker, 0, 90);
    p.ok(&["run", "ingest-kafka"]);
    produce(&broker, 90, 30);
    // Planned (ends frozen), then the broker dies before the partitions are read.
    let run = planned_then_paused(&p, 3000);
    std::thread::sleep(Duration::from_millis(1500));
    broker.stop();
    let out = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must fail");
    assert!(
        err.contains("error: kafka: connecting to") && err.contains("Connection refused"),
        "{err}"
    );
    broker.restart();
    assert_eq!(p.count("bronze.coinbase_trades"), 90);
    p.ok(&["run", "ingest-kafka"]);
    assert_eq!(p.count("bronze.coinbase_trades"), 120);
    assert_eq!(distinct_messages(&p), 120);
}

#[test]
fn gen_kafka_feeds_the_default_topics_and_silver_keeps_every_good_record() {
    let broker = Broker::start();
    broker.create_topic("coinbase-currencies", 3);
    broker.create_topic("coinbase-trades", 2);
    let p = Project::new();
    let brokers = broker.address();
    let args = [
        "--minutes",
        "3",
        "--symbols",
        "4",
        "--bad-rate",
        "0.05",
        "--seed",
        "9",
    ];
    let mut gen_args = vec!["gen", "--kafka", &brokers];
    gen_args.extend(args);
    let produced = p.json(&gen_args);
    let topic = |name: &str| crate::common::find(&produced, "topic", name).clone();
    let (quotes, trades) = (topic("coinbase-currencies"), topic("coinbase-trades"));
    assert_eq!(quotes["messages"], 36, "{produced}");
    assert_eq!(trades["partitions"], 2);

    // The same options as landing files: the same records.
    let files = p.generate(&args);
    for (t, source) in [(&quotes, "alpaca_quotes"), (&trades, "trades")] {
        for key in ["records", "good", "bad"] {
            assert_eq!(
                t[key],
                crate::common::field(&files, source, key),
                "{source} {key}"
            );
        }
    }

    p.ok(&["run", "ingest-kafka", "--brokers", &brokers]);
    assert_eq!(
        p.count("bronze.coinbase_currencies"),
        quotes["records"].as_u64().unwrap()
    );
    assert_eq!(
        p.count("bronze.coinbase_trades"),
        trades["messages"].as_u64().unwrap()
    );
    p.ok(&["run", "silver"]);
    let by_source = |table: &str, source: &str| {
        let q = format!("SELECT count(*) AS n FROM {table} WHERE source = '{source}'");
        p.sql(&q)[0]["n"].as_u64().unwrap()
    };
    assert_eq!(
        by_source("silver.quotes", "coinbase_currencies"),
        quotes["good"]
    );
    assert_eq!(
        by_source("silver.trades", "coinbase_trades"),
        trades["good"]
    );
    let bad = quotes["bad"].as_u64().unwrap() + trades["bad"].as_u64().unwrap();
    let quarantined = by_source("silver.quarantine", "coinbase_currencies")
        + by_source("silver.quarantine", "coinbase_trades");
    assert_eq!(quarantined, bad);
}

#[test]
fn a_run_overtaken_between_plan_and_commit_commits_nothing_and_compaction_keeps_the_offsets() {
    let broker = broker_with_trades();
    let p = kafka_project(&broker);
    produce(&broker, 0, 60);
    p.ok(&["run", "ingest-kafka"]);
    produce(&broker, 60, 30);
    // The slow run plans (offsets 60 -> 90), then waits; the quick run takes the same range.
    let slow = planned_then_paused(&p, 2500);
    std::thread::sleep(Duration::from_millis(1000));
    p.ok(&["run", "ingest-kafka"]);
    let out = slow.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("another run committed first"), "{err}");
    assert_eq!(p.count("bronze.coinbase_trades"), 90);
    assert_eq!(distinct_messages(&p), 90);

    // Compaction's `replace` snapshot carries the offsets forward.
    p.ok(&[
        "run",
        "compact",
        "--table",
        "bronze.coinbase_trades",
        "--min-input-files",
        "2",
    ]);
    let files = p.json(&["table", "files", "bronze.coinbase_trades"]);
    assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
    produce(&broker, 90, 15);
    p.ok(&["run", "ingest-kafka"]);
    assert_eq!(p.count("bronze.coinbase_trades"), 105);
    assert_eq!(distinct_messages(&p), 105);
}

#[test]
fn unreadable_offsets_stop_ingest_kafka_and_bronze_is_unchanged() {
    let broker = broker_with_trades();
    let p = kafka_project(&broker);
    produce(&broker, 0, 30);
    p.ok(&["run", "ingest-kafka"]);
    let key = "cryptolake.bookmark.kafka.coinbase-trades";
    let snapshot =
        crate::bookmarks::corrupt(&p, "bronze.coinbase_trades", key, "{\"0\": 10, \"1\":");
    produce(&broker, 30, 15);
    let before = p.snapshots();
    let out = p.output(&["run", "ingest-kafka"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{err}");
    for name in ["bronze.coinbase_trades", key, &snapshot.to_string()] {
        assert!(err.contains(name), "the error does not name {name}: {err}");
    }
    assert_eq!(p.snapshots(), before);
    assert_eq!(p.count("bronze.coinbase_trades"), 30);
}
