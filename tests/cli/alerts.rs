//! Price alerts end to end: `[[alert]]` rules over known quotes, firings in `gold.alerts`,
//! messages in moto's SNS (read back with boto3 through an SQS subscription) and at a webhook
//! that is down for one run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::Project;
use crate::moto::Moto;
use crate::readers::run_python;

/// Writes Coinbase spot quotes `(symbol base, seconds after 2026-01-01T00:00:00Z, price)` as
/// one landing file.
fn quotes(p: &Project, file: &str, rows: &[(&str, i64, &str)]) {
    let dir = p.path().join("lake/landing/coinbase_spot/2026/01/01");
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let lines: Vec<String> = rows
        .iter()
        .map(|(base, s, price)| {
            let t = (t0 + chrono::Duration::seconds(*s))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!(
                r#"{{"data":{{"amount":"{price}","base":"{base}","currency":"USD"}},"timestamp_utc":"{t}"}}"#
            )
        })
        .collect();
    std::fs::write(dir.join(file), lines.join("\n") + "\n").unwrap();
}

fn add_rules(p: &Project, rules: &str) {
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push('\n');
    text.push_str(rules);
    std::fs::write(&p.config, text).unwrap();
}

/// `gold.alerts` as `rule symbol event_time value delivery_state attempts`, in event order.
fn alert_rows(p: &Project) -> Vec<String> {
    p.sql(
        "SELECT rule, symbol, CAST(event_time AS VARCHAR) AS t, CAST(value AS VARCHAR) AS v, \
         delivery_state AS d, attempts AS a FROM gold.alerts ORDER BY event_time, rule",
    )
    .iter()
    .map(|r| {
        format!(
            "{} {} {} {} {} {}",
            r["rule"].as_str().unwrap(),
            r["symbol"].as_str().unwrap(),
            r["t"].as_str().unwrap(),
            r["v"].as_str().unwrap(),
            r["d"].as_str().unwrap(),
            r["a"]
        )
    })
    .collect()
}

const SNS: &str = r#"
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
if sys.argv[2] == "setup":
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "true"})
    print(json.dumps({"topic": topic, "queue": queue}))
else:
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=sys.argv[3], MaxNumberOfMessages=10,
                                  MessageAttributeNames=["All"], WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            break
        for m in messages:
            body = json.loads(m["Body"])
            body["_key"] = m.get("MessageAttributes", {}).get("idempotency_key", {}).get("StringValue")
            bodies.append(body)
            sqs.delete_message(QueueUrl=sys.argv[3], ReceiptHandle=m["ReceiptHandle"])
    print(json.dumps(bodies))
"#;

/// Messages published to the topic since the last call, each with its `idempotency_key`
/// attribute as `_key`.
fn received(moto: &Moto, queue: &str) -> Vec<Value> {
    let out = run_python(SNS, &[&moto.endpoint(), "read", queue]);
    let mut bodies: Vec<Value> = serde_json::from_slice(&out).unwrap();
    bodies.sort_by_key(|b| (b["event_time"].to_string(), b["rule"].to_string()));
    bodies
}

#[test]
fn rules_fire_once_per_crossing_into_gold_alerts_and_moto_sns() {
    let moto = Moto::start();
    let setup: Value =
        serde_json::from_slice(&run_python(SNS, &[&moto.endpoint(), "setup"])).unwrap();
    let (topic, queue) = (
        setup["topic"].as_str().unwrap(),
        setup["queue"].as_str().unwrap(),
    );
    let endpoint = moto.endpoint();
    let p = Project::init(
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_SNS", &endpoint),
        ],
    );
    add_rules(
        &p,
        &format!(
            "[[alert]]\nname = \"btc-above\"\nsymbol = \"BTC-USD\"\nwhen = \"price > 43000\"\n\
             sns_topic_arn = \"{topic}\"\n\n\
             [[alert]]\nname = \"eth-drop\"\nsymbol = \"*\"\nwhen = \"change_pct(15m) < -3\"\n\
             sns_topic_arn = \"{topic}\"\n"
        ),
    );
    p.ok(&["schedule", "validate"]);
    // BTC crosses 43000 upwards once; ETH falls 3.5 % within 15 minutes (900 s: 1930 against
    // 2000 at 0 s), and 1000 s (-4.5 % against 1990) is no new crossing.
    quotes(
        &p,
        "a.json",
        &[
            ("BTC", 0, "42999.00"),
            ("BTC", 1, "43001.00"),
            ("BTC", 2, "43002.00"),
            ("BTC", 3, "42000.00"),
            ("ETH", 0, "2000.00"),
            ("ETH", 600, "1990.00"),
            ("ETH", 900, "1930.00"),
            ("ETH", 1000, "1900.00"),
            ("ETH", 2000, "1900.00"),
        ],
    );
    let plan = p.json(&["run", "all", "--dry-run"]);
    assert_eq!(
        plan["alerts"]["rules"],
        serde_json::json!(["btc-above", "eth-drop"]),
        "{plan}"
    );
    let summary = p.json(&["run", "all"]);
    let alerts = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["job"] == "alerts")
        .unwrap();
    assert_eq!(alerts["tables"]["gold.alerts"]["rows_in"], 9, "{alerts}");
    assert_eq!(alerts["tables"]["gold.alerts"]["rows_out"], 2, "{alerts}");
    let first = received(&moto, queue);
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0]["rule"], "btc-above");
    assert_eq!(first[0]["price"].to_string(), "43001");
    assert_eq!(first[0]["event_time"], "2026-01-01T00:00:01Z");
    assert_eq!(first[1]["rule"], "eth-drop");
    assert_eq!(first[1]["value"].to_string(), "-3.5");
    for m in &first {
        assert_eq!(m["_key"], m["alert_id"], "{m}");
    }

    // The next run starts where the last one stopped: BTC at exactly 43000 is not above it,
    // 43000.01 crosses again, and 44000 after 42999 a third time. ETH's 2100 s quote falls
    // 3.16 % against the first quote of its window (1900 at 2000 s, from the earlier run).
    quotes(
        &p,
        "b.json",
        &[
            ("BTC", 4, "43000.00"),
            ("BTC", 5, "43000.01"),
            ("BTC", 6, "42999.00"),
            ("BTC", 7, "44000.00"),
            ("ETH", 2100, "1840.00"),
        ],
    );
    p.ok(&["run", "all"]);
    assert_eq!(
        alert_rows(&p),
        [
            "btc-above BTC-USD 2026-01-01T00:00:01 43001.0000000000000000 delivered 1",
            "btc-above BTC-USD 2026-01-01T00:00:05 43000.0100000000000000 delivered 1",
            "btc-above BTC-USD 2026-01-01T00:00:07 44000.0000000000000000 delivered 1",
            "eth-drop ETH-USD 2026-01-01T00:15:00 -3.5000000000000000 delivered 1",
            "eth-drop ETH-USD 2026-01-01T00:35:00 -3.1578947368421053 delivered 1",
        ]
    );
    let second = received(&moto, queue);
    let described: Vec<String> = second
        .iter()
        .map(|m| format!("{} {} {}", m["rule"], m["event_time"], m["value"]))
        .collect();
    assert_eq!(
        described,
        [
            r#""btc-above" "2026-01-01T00:00:05Z" 43000.01"#,
            r#""btc-above" "2026-01-01T00:00:07Z" 44000"#,
            r#""eth-drop" "2026-01-01T00:35:00Z" -3.1578947368421053"#,
        ]
    );
    // Nothing new: nothing evaluated, nothing sent again.
    p.ok(&["run", "alerts"]);
    assert!(received(&moto, queue).is_empty());
    assert_eq!(p.count("gold.alerts"), 5);
}

/// A webhook receiver on `port` that answers 200 and keeps each request's idempotency key and
/// body.
fn webhook(port: u16) -> Arc<Mutex<Vec<(String, Value)>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut key, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("idempotency-key:") {
                    key = v.trim().to_string();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            keep.lock()
                .unwrap()
                .push((key, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    got
}

#[test]
fn a_webhook_down_for_one_run_gets_the_alert_on_the_next_run_once() {
    let p = Project::new();
    let port = cryptolake_testkit::free_port();
    add_rules(
        &p,
        &format!(
            "[[alert]]\nname = \"btc-below\"\nsymbol = \"BTC-USD\"\nwhen = \"price < 42000\"\n\
             webhook_url = \"http://127.0.0.1:{port}/hook\"\n"
        ),
    );
    quotes(
        &p,
        "a.json",
        &[("BTC", 0, "42500.00"), ("BTC", 1, "41999.99")],
    );
    // Nobody listens: the firing is recorded, the run fails as transient (exit 1).
    let out = p.output(&["run", "all"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 alert deliveries failed"), "{stderr}");
    assert_eq!(
        alert_rows(&p),
        ["btc-below BTC-USD 2026-01-01T00:00:01 41999.9900000000000000 failed 1"]
    );
    let row = &p.sql("SELECT alert_id, webhook_state, last_error FROM gold.alerts")[0];
    assert_eq!(row["webhook_state"], "failed");
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{row:?}"
    );
    let id = row["alert_id"].as_str().unwrap().to_string();

    // Up again: the next run delivers it once, and the one after sends nothing.
    let got = webhook(port);
    p.ok(&["run", "alerts"]);
    p.ok(&["run", "alerts"]);
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, id);
        assert_eq!(got[0].1["alert_id"], id.as_str());
        assert_eq!(got[0].1["price"].to_string(), "41999.99");
    }
    assert_eq!(
        alert_rows(&p),
        ["btc-below BTC-USD 2026-01-01T00:00:01 41999.9900000000000000 delivered 2"]
    );
    // Killed after sending a new firing but before recording the delivery: the next run sends
    // it again with the same key, and then never again.
    quotes(
        &p,
        "b.json",
        &[("BTC", 2, "42100.00"), ("BTC", 3, "41000.00")],
    );
    let killed = p
        .command(&["run", "all"])
        .env("CRYPTOLAKE_FAULT", "alerts:after-send")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    p.ok(&["run", "alerts"]);
    p.ok(&["run", "alerts"]);
    let got = got.lock().unwrap();
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 3, "{got:?}");
    assert_eq!(keys[1], keys[2]);
    assert_ne!(keys[1], id);
    assert_eq!(got[2].1["price"].to_string(), "41000");
    assert_eq!(p.count("gold.alerts"), 2);
}
