//! Landing zones in S3 (moto, written by boto3 as an independent writer) and on local disk:
//! every layout lands exactly, new and changed files are taken once each, a run killed between
//! write and commit re-runs exactly, and a location that cannot be read is an error, never an
//! empty input.

use serde_json::Value;

use crate::common::{Project, find};
use crate::moto::Moto;
use crate::readers::run_python;

const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A Glue project on moto whose landing zone is `s3://lake/raw/zone`.
fn s3_project(moto: &Moto) -> Project {
    moto.create_bucket("lake");
    let endpoint = moto.endpoint();
    Project::init(
        &[
            "--catalog",
            "glue",
            "--warehouse",
            "s3://lake/warehouse",
            "--endpoint",
            &endpoint,
            "--landing",
            "s3://lake/raw/zone",
        ],
        &AWS_ENV,
    )
}

/// Puts objects with boto3: `[key, kind, body]` where kind is `text` or `gzip` (gzipped,
/// with a byte-order mark, as some exporters write), keys under `s3://lake/raw/zone/`.
fn put_objects(moto: &Moto, objects: &[(&str, &str, String)]) {
    let script = r#"
import gzip, json, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
    aws_access_key_id="testing", aws_secret_access_key="testing")
for key, kind, body in json.loads(sys.argv[2]):
    data = body.encode()
    if kind == "gzip":
        data = gzip.compress("\ufeff".encode() + data)
    s3.put_object(Bucket="lake", Key="raw/zone/" + key, Body=data)
"#;
    let objects = serde_json::to_string(objects).unwrap();
    run_python(script, &[&moto.endpoint(), &objects]);
}

fn trade(id: u32) -> String {
    format!(
        r#"{{"trade_id":"t{id}","user_id":"u1","symbol":"BTC/USD","side":"buy","quantity":"0.5","price":"4300{id}.25","timestamp":"2026-01-01T00:00:0{id}Z"}}"#
    )
}

/// `run ingest-files`: its summary's per-source counts.
fn ingest(p: &Project) -> Value {
    let out = p.json(&["run", "ingest-files"]);
    assert_eq!(out[0]["job"], "ingest-files", "{out}");
    out[0]["sources"].clone()
}

#[test]
fn an_s3_landing_zone_lands_every_layout_and_takes_new_and_overwritten_objects_once() {
    let moto = Moto::start();
    let p = s3_project(&moto);
    put_objects(
        &moto,
        &[
            ("trades/empty.json", "text", String::new()),
            (
                "trades/2026/01/01/00/stream-1-2026-01-01-00-00-00-abc",
                "gzip",
                format!("{}{}", trade(1), trade(2)),
            ),
            (
                "trades/array.json",
                "text",
                format!("[{},{}]", trade(3), trade(4)),
            ),
            (
                "trades/lines.jsonl",
                "text",
                format!("{}\n{}\n", trade(5), trade(6)),
            ),
            ("trades/_SUCCESS", "text", String::new()),
        ],
    );
    let plan = p.json(&["run", "ingest-files", "--dry-run"]);
    let trades = find(&plan["ingest-files"]["sources"], "source", "trades");
    assert_eq!(
        trades["new_files"],
        serde_json::json!([
            "2026/01/01/00/stream-1-2026-01-01-00-00-00-abc",
            "array.json",
            "empty.json",
            "lines.jsonl"
        ]),
        "{trades}"
    );
    // Killed between writing the bronze files and committing them: nothing is committed, and
    // the next run takes the same objects exactly once.
    let killed = p
        .command(&["run", "ingest-files"])
        .env("CRYPTOLAKE_FAULT", "ingest-files:after-write")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert!(p.snapshots().is_empty(), "{:?}", p.snapshots());
    p.ok(&["run", "all"]);
    assert_eq!(p.count("bronze.trades"), 6);
    assert_eq!(p.count("silver.trades"), 6);
    let rows = p.sql("SELECT CAST(sum(quantity) AS VARCHAR) AS q, CAST(max(price) AS VARCHAR) AS p FROM silver.trades");
    assert_eq!(rows[0]["q"], "3.0000000000000000");
    assert_eq!(rows[0]["p"], "43006.2500000000000000");
    let before = p.snapshots();
    assert_eq!(ingest(&p), serde_json::json!({}));
    assert_eq!(p.snapshots(), before);

    // One new object, one overwritten with a record more: two files taken, one of them
    // changed; silver keeps the overwritten file's old records once.
    put_objects(
        &moto,
        &[
            ("trades/2026/01/01/01/stream-2", "text", trade(7)),
            (
                "trades/lines.jsonl",
                "text",
                format!("{}\n{}\n{}\n", trade(5), trade(6), trade(8)),
            ),
        ],
    );
    // The newest key taken (lines.jsonl) is at the source's top, so this listing is full.
    let summary = ingest(&p);
    let counts = &summary["trades"];
    assert_eq!(counts["files"], 2, "{summary}");
    assert_eq!(counts["files_changed"], 1, "{summary}");
    assert_eq!(counts["records"], 4, "{summary}");
    assert_eq!(p.count("bronze.trades"), 10);
    p.ok(&["run", "silver"]);
    assert_eq!(p.count("silver.trades"), 8);
    let before = p.snapshots();
    p.ok(&["run", "ingest-files", "--full-listing"]);
    assert_eq!(p.snapshots(), before);
}

#[test]
fn an_s3_listing_starts_at_the_newest_taken_directory_and_a_full_listing_finds_older_keys() {
    let moto = Moto::start();
    let p = s3_project(&moto);
    put_objects(&moto, &[("trades/2026/01/01/00/a", "text", trade(1))]);
    assert_eq!(ingest(&p)["trades"]["files"], 1);
    put_objects(
        &moto,
        &[
            ("trades/2026/01/01/00/b", "text", trade(2)),
            ("trades/2026/01/01/01/c", "text", trade(3)),
            ("trades/2025/12/31/23/late", "text", trade(4)),
        ],
    );
    let plan = p.json(&["run", "ingest-files", "--dry-run"]);
    let trades = find(&plan["ingest-files"]["sources"], "source", "trades");
    assert_eq!(trades["listed_from"], "2026/01/01/00/a", "{trades}");
    assert_eq!(
        trades["new_files"],
        serde_json::json!(["2026/01/01/00/b", "2026/01/01/01/c"])
    );
    assert_eq!(trades["already_taken"], 1, "{trades}");
    assert_eq!(ingest(&p)["trades"]["files"], 2);
    let plan = p.json(&["run", "ingest-files", "--dry-run", "--full-listing"]);
    let trades = find(&plan["ingest-files"]["sources"], "source", "trades");
    assert_eq!(
        trades["new_files"],
        serde_json::json!(["2025/12/31/23/late"])
    );
    assert_eq!(trades["already_taken"], 3, "{trades}");
    p.ok(&["run", "ingest-files", "--full-listing"]);
    assert_eq!(p.count("bronze.trades"), 4);
}

#[test]
fn gen_into_an_s3_landing_zone_gives_the_tables_a_local_landing_gives() {
    let moto = Moto::start();
    let s3 = s3_project(&moto);
    let local = Project::new();
    let args = [
        "--minutes",
        "3",
        "--seed",
        "5",
        "--symbols",
        "4",
        "--dup-rate",
        "0.05",
    ];
    assert_eq!(s3.generate(&args), local.generate(&args));
    s3.ok(&["run", "all"]);
    local.ok(&["run", "all"]);
    let counts = local.table_counts();
    assert_eq!(s3.table_counts(), counts);
    assert!(counts["silver.quotes"] > 0, "{counts:?}");
    let sum = "SELECT CAST(sum(price) AS VARCHAR) AS s FROM silver.quotes";
    assert_eq!(s3.sql(sum), local.sql(sum));
}

#[test]
fn a_landing_zone_that_cannot_be_read_is_an_error_not_an_empty_input() {
    let moto = Moto::start();
    let p = s3_project(&moto);
    let out = p.output(&[
        "--landing",
        "s3://no-such-bucket/raw",
        "run",
        "ingest-files",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://no-such-bucket/raw"), "{err}");

    let local = Project::new();
    let missing = local.path().join("not-there");
    let out = local.output(&[
        "--landing",
        missing.to_str().unwrap(),
        "run",
        "ingest-files",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn a_local_landing_file_appended_to_after_it_was_taken_is_taken_again() {
    let p = Project::new();
    let file = p.path().join("lake/landing/trades/2026/01/01/lines.jsonl");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, format!("{}\n{}\n", trade(1), trade(2))).unwrap();
    p.ok(&["run", "all"]);
    assert_eq!(p.count("silver.trades"), 2);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&trade(3));
    text.push('\n');
    std::fs::write(&file, text).unwrap();
    let summary = ingest(&p);
    let counts = &summary["trades"];
    assert_eq!(counts["files"], 1, "{summary}");
    assert_eq!(counts["files_changed"], 1, "{summary}");
    assert_eq!(counts["records"], 3, "{summary}");
    p.ok(&["run", "silver"]);
    assert_eq!(p.count("silver.trades"), 3);
    let before = p.snapshots();
    p.ok(&["run", "ingest-files"]);
    assert_eq!(p.snapshots(), before);
}
