//! The web console, served by the scheduler daemon and by `cryptolake console`: its `/v1/`
//! reads equal PyIceberg's reading of the same tables, nothing is served without the token,
//! and the pages show the known values in Debian's headless Chromium (driven by Selenium from
//! the venv), which saves a screenshot of each page.

use std::process::Stdio;

use serde_json::Value;

use cryptolake_testkit::free_port;

use crate::common::Project;
use crate::readers::run_python;
use crate::scheduling::{Daemon, TOKEN};

const BROWSER: &str = include_str!("console_browser.py");

/// Scrapes `/metrics` (with the token, when given) and parses it with prometheus_client's
/// parser; prints `[[name, labels, value], ...]`.
const SCRAPE: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
url, token = sys.argv[1], sys.argv[2]
headers = {"Authorization": f"Bearer {token}"} if token else {}
body = urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read().decode()
print(json.dumps([[s.name, s.labels, s.value] for f in text_string_to_metric_families(body) for s in f.samples]))
"#;

/// The samples of a scrape of `base` + `/metrics`, as (name, labels, value).
pub fn scrape(base: &str, token: Option<&str>) -> Vec<(String, Value, f64)> {
    let url = format!("{base}/metrics");
    let samples: Vec<(String, Value, f64)> =
        serde_json::from_slice(&run_python(SCRAPE, &[&url, token.unwrap_or("")])).unwrap();
    samples
}

/// A `cryptolake console` process, killed when dropped.
pub struct Console {
    child: std::process::Child,
    pub base: String,
}

impl Console {
    /// `console --no-auth` on a free loopback port, once it listens.
    pub fn start(p: &Project) -> Self {
        let port = free_port();
        let child = p
            .command(&[
                "console",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--no-auth",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        cryptolake_testkit::wait_for_listener(port, "the console");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the pages' screenshots go: `CRYPTOLAKE_ARTIFACTS/console`, else the temp directory.
fn screenshots() -> std::path::PathBuf {
    std::env::var_os("CRYPTOLAKE_ARTIFACTS")
        .map_or_else(
            || std::env::temp_dir().join("cryptolake-artifacts"),
            Into::into,
        )
        .join("console")
}

#[test]
fn the_console_shows_the_lake_in_a_browser_and_nothing_without_the_token() {
    let p = Project::new();
    // A rule without a channel: it fires on each symbol's first quote, recorded only.
    let mut config = std::fs::read_to_string(&p.config).unwrap();
    config
        .push_str("\n[[alert]]\nname = \"any-above-zero\"\nsymbol = \"*\"\nwhen = \"price > 0\"\n");
    std::fs::write(&p.config, config).unwrap();
    let generated = p.generate(&[
        "--minutes",
        "5",
        "--seed",
        "11",
        "--symbols",
        "3",
        "--bad-rate",
        "0.02",
        "--dup-rate",
        "0.05",
    ]);
    let port = free_port();
    let daemon = Daemon::start(&p, port, "");
    // The pipeline as one run through the API, so that the history knows its figures.
    let api = format!("http://127.0.0.1:{port}");
    let out = p
        .command(&[
            "job", "--api", &api, "submit", "all", "--wait", "-o", "json",
        ])
        .env("CRYPTOLAKE_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = run[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(run[0]["state"], "SUCCEEDED");
    // The daemon's own API is unchanged beside the console.
    assert_eq!(daemon.http("GET", "/v1/runs", None, b"").0, 401);
    assert_eq!(daemon.http("GET", "/healthz", None, b"").0, 200);
    // A later minute lands and waits for the next run.
    let waiting = p.generate(&[
        "--minutes",
        "1",
        "--seed",
        "12",
        "--symbols",
        "3",
        "--start",
        "2026-01-01T01:00:00Z",
    ]);

    let spec = serde_json::json!({
        "db": p.path().join("lake/catalog.db"),
        "warehouse": p.path().join("lake/warehouse"),
    });
    let shots = screenshots();
    // Lineage of coinbase_spot's largest landing file.
    let file = p.sql(
        "SELECT _file AS f, count(*) AS n FROM bronze.coinbase_spot GROUP BY _file ORDER BY n DESC, _file LIMIT 1",
    )[0]["f"]
        .as_str()
        .unwrap()
        .to_string();
    let found: Value = serde_json::from_slice(&run_python(
        BROWSER,
        &[
            &api,
            TOKEN,
            &spec.to_string(),
            &shots.to_string_lossy(),
            &run_id,
            &file,
        ],
    ))
    .unwrap();
    lineage_agrees(&found, &p, &file);

    for (path, status) in found["without_token"].as_object().unwrap() {
        let expected = if path.starts_with("/v1/") { 401 } else { 303 };
        assert_eq!(status, expected, "{path} without the token: {found}");
    }
    assert_eq!(found["wrong_token"], 401);
    assert_eq!(found["login_redirect"], "/login?next=/tables");

    // Five minutes of data: five one-minute candles and one hourly of BTC-USD, every value
    // equal to PyIceberg's.
    assert_eq!(found["candles_1m"], 5, "{found}");
    assert_eq!(found["candles_1m_equal"], true, "{found}");
    assert_eq!(found["candles_1h"], 1, "{found}");
    assert_eq!(found["candles_1h_equal"], true, "{found}");
    assert_eq!(found["ranged"], true, "{found}");
    assert_eq!(found["newest_two"], true, "{found}");
    assert_eq!(found["bad_interval"], 400);
    assert_eq!(found["unknown_symbol"], serde_json::json!([]));
    let tables: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(found["tables"].clone()).unwrap();
    assert_eq!(tables, p.table_counts());

    // In the browser.
    assert_eq!(found["browser_sent_to"], "/login");
    assert_eq!(
        found["wrong_login_says"],
        "That token is not the API's token."
    );
    assert_eq!(found["after_login"], "/markets?symbol=BTC-USD");
    assert_eq!(found["markets_row"], found["markets_expected"], "{found}");
    // A body and a volume bar per candle, and the chart's background and plot areas.
    assert!(found["chart_bodies"].as_u64().unwrap() >= 10, "{found}");
    let snapshot_rows = p.sql(
        "SELECT count(*) AS n FROM gold.market_snapshot \
         WHERE snapshot_time = (SELECT max(snapshot_time) FROM gold.market_snapshot)",
    )[0]["n"]
        .as_u64()
        .unwrap();
    assert!(snapshot_rows > 0);
    assert_eq!(found["snapshot_rows"], snapshot_rows);
    // The dominance history of the first source: every snapshot of it, one line per asset
    // (and its legend entry).
    let source = found["history_source"].as_str().unwrap();
    let history = p.sql(&format!(
        "SELECT count(*) AS n, count(DISTINCT symbol) AS s FROM gold.market_snapshot WHERE source = '{source}'"
    ));
    assert_eq!(found["history_rows"], history[0]["n"], "{found}");
    assert_eq!(found["history_symbols"], history[0]["s"], "{found}");
    assert_eq!(
        found["dominance_lines"].as_u64().unwrap(),
        2 * history[0]["s"].as_u64().unwrap(),
        "{found}"
    );
    let positions = p.sql(
        "SELECT count(*) AS n FROM gold.trader_positions \
         WHERE day = (SELECT max(day) FROM gold.trader_positions)",
    )[0]["n"]
        .as_u64()
        .unwrap();
    assert_eq!(found["position_rows"], positions.min(200));
    // One firing per symbol, on the page as gold.alerts holds them.
    let firings = p.sql("SELECT symbol, CAST(value AS VARCHAR) AS v FROM gold.alerts");
    let symbols = p.sql("SELECT count(DISTINCT symbol) AS n FROM silver.quotes")[0]["n"]
        .as_u64()
        .unwrap();
    assert_eq!(firings.len() as u64, symbols);
    assert_eq!(found["alerts"].as_array().unwrap().len() as u64, symbols);
    // (Every symbol's first quote may share one event time: compare in symbol order.)
    let mut shown: Vec<Vec<String>> = serde_json::from_value(found["alert_rows"].clone()).unwrap();
    shown.sort_by(|a, b| a[2].cmp(&b[2]));
    let mut firings = firings;
    firings.sort_by(|a, b| a["symbol"].as_str().cmp(&b["symbol"].as_str()));
    assert_eq!(shown.len(), firings.len(), "{found}");
    for (row, firing) in shown.iter().zip(&firings) {
        assert_eq!(row[1], "any-above-zero");
        assert_eq!(row[2], firing["symbol"].as_str().unwrap());
        assert_eq!(row[3], "price > 0");
        assert_eq!(row[4], firing["v"].as_str().unwrap());
        assert_eq!(row[6], "no_channel");
    }
    let runs_row = found["runs_row"].as_array().unwrap();
    assert_eq!(runs_row[0], run_id.as_str());
    assert_eq!(runs_row[1], "all");
    assert_eq!(runs_row[2], "api");
    assert_eq!(runs_row[3], "SUCCEEDED");
    // Rows in, out and quarantined: the run summary's tables' figures, summed.
    let total = |key: &str| -> u64 {
        run[0]["summary"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|job| job["tables"].as_object().unwrap().values())
            .map(|t| t[key].as_u64().unwrap())
            .sum()
    };
    assert_eq!(runs_row[6], total("rows_in").to_string().as_str());
    assert_eq!(runs_row[7], total("rows_out").to_string().as_str());
    assert_eq!(runs_row[8], total("quarantined").to_string().as_str());
    assert_eq!(found["run_state"], "SUCCEEDED");
    assert_eq!(found["timeline_succeeded"], 1, "{found}");
    let schedules = found["schedules"].as_array().unwrap();
    assert_eq!(
        schedules[..3],
        ["weekly-maintenance", "maintain", "cron(0 3 ? * SUN *)"]
    );
    assert!(
        schedules[3].as_str().unwrap().ends_with("T03:00:00Z"),
        "{schedules:?}"
    );
    let candles = p.table_counts()["gold.candles_1m"].to_string();
    assert_eq!(found["tables_row"][0], "gold.candles_1m");
    assert_eq!(found["tables_row"][2], candles.as_str());
    assert!(found["table_snapshots"].as_u64().unwrap() >= 1);
    assert_eq!(found["table_chart"], 1);
    // silver.quotes' health: Athena reads it, and the quarantine's reasons are SQL's counts.
    assert_eq!(found["detail_findings"], serde_json::json!([]));
    assert!(
        found["table_check"].as_str().unwrap().starts_with("ok"),
        "{found}"
    );
    assert_eq!(found["detail_unknown"], 404);
    let small = found["detail_small_files"].as_u64().unwrap();
    assert!(
        found["table_small_files"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{small} (")),
        "{found}"
    );
    let reasons: Vec<(String, String, u64)> = p
        .sql(
            "SELECT source, reason, count(*) AS n FROM silver.quarantine GROUP BY source, reason \
             ORDER BY n DESC, source, reason LIMIT 50",
        )
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(!reasons.is_empty());
    let served: Vec<(String, String, u64)> =
        serde_json::from_value(found["detail_quarantine"].clone()).unwrap();
    assert_eq!(served, reasons);
    let shown: Vec<Vec<String>> =
        serde_json::from_value(found["table_quarantine"].clone()).unwrap();
    let shown: Vec<(String, String, u64)> = shown
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].parse().unwrap()))
        .collect();
    assert_eq!(shown, reasons);
    assert_eq!(found["after_logout"], "/login");
    metrics_agree(&found, &run[0]["summary"], &generated, &waiting, &p);
    for page in ["markets", "runs", "run", "tables", "table", "lineage"] {
        let png = std::fs::read(shots.join(format!("{page}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{page}.png"
        );
    }
}

/// The lineage of one landing file, served and shown, against SQL's counts of the same rows.
fn lineage_agrees(found: &Value, p: &Project, file: &str) {
    let count = |sql: &str| {
        p.sql(&sql.replace("{file}", file))[0]["n"]
            .as_u64()
            .unwrap()
    };
    let bronze = count("SELECT count(*) AS n FROM bronze.coinbase_spot WHERE _file = '{file}'");
    let silver = count(
        "SELECT count(*) AS n FROM silver.quotes WHERE source = 'coinbase_spot' AND bronze_file = '{file}'",
    );
    let quarantined = count(
        "SELECT count(*) AS n FROM silver.quarantine WHERE source = 'coinbase_spot' AND file = '{file}'",
    );
    let l = &found["lineage"];
    assert_eq!(l["bronze_rows"], bronze, "{l}");
    assert_eq!(l["silver"], silver, "{l}");
    assert_eq!(l["quarantined"], quarantined, "{l}");
    assert_eq!(l["duplicates"], bronze - silver - quarantined, "{l}");
    assert_eq!(l["pending"], 0, "{l}");
    assert!(bronze > 0 && silver > 0, "{l}");
    assert_eq!(
        found["lineage_counts"],
        format!(
            "{bronze} bronze rows: {silver} in silver, {quarantined} quarantined, {} duplicates, 0 pending",
            bronze - silver - quarantined
        )
    );
    assert_eq!(found["lineage_rows"], bronze);
}

/// The scrape, read by prometheus_client's parser, against the run's summary, the generator's
/// counts and the tables.
fn metrics_agree(
    found: &Value,
    summary: &Value,
    generated: &serde_json::Map<String, Value>,
    waiting: &serde_json::Map<String, Value>,
    p: &Project,
) {
    let samples = found["metrics"].as_array().unwrap();
    let metric = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let matching: Vec<f64> = samples
            .iter()
            .filter(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v))
            .map(|s| s[2].as_f64().unwrap())
            .collect();
        assert_eq!(matching.len(), 1, "{name} {labels:?}: {matching:?}");
        matching[0]
    };
    assert_eq!(
        found["metrics_content_type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(found["metrics_without_token"], 401);
    assert_eq!(
        metric(
            "cryptolake_runs_total",
            &[("job", "all"), ("state", "SUCCEEDED")]
        ),
        1.0
    );
    assert_eq!(
        metric("cryptolake_run_duration_seconds_count", &[("job", "all")]),
        1.0
    );
    for probe in ["tables", "landing"] {
        assert_eq!(
            metric("cryptolake_probe_up", &[("probe", probe)]),
            1.0,
            "{probe}"
        );
    }
    // Every table the run wrote: the summary's figures.
    let mut tables = 0;
    for job in summary.as_array().unwrap() {
        for (table, figures) in job["tables"].as_object().unwrap() {
            tables += 1;
            for (name, key) in [
                ("cryptolake_rows_in_total", "rows_in"),
                ("cryptolake_rows_out_total", "rows_out"),
                ("cryptolake_rows_quarantined_total", "quarantined"),
                ("cryptolake_rows_duplicate_total", "duplicates_dropped"),
                ("cryptolake_bytes_written_total", "bytes_written"),
                ("cryptolake_commit_attempts_total", "commit_attempts"),
            ] {
                assert_eq!(
                    metric(name, &[("table", table)]),
                    figures[key].as_f64().unwrap(),
                    "{name} of {table}"
                );
            }
            assert_eq!(
                metric("cryptolake_commit_races_lost_total", &[("table", table)]),
                0.0
            );
        }
    }
    assert!(tables >= 10, "{summary}");
    assert_eq!(
        metric(
            "cryptolake_rows_in_total",
            &[("table", "bronze.coinbase_spot")]
        ),
        generated["coinbase_spot"]["records"].as_f64().unwrap()
    );
    for (table, records) in p.table_counts() {
        assert_eq!(
            metric("cryptolake_table_records", &[("table", &table)]),
            records as f64
        );
        let share = metric("cryptolake_table_small_file_share", &[("table", &table)]);
        assert!((0.0..=1.0).contains(&share), "{table}: {share}");
    }
    // The later minute's files wait in the landing zone, per source.
    for (source, counts) in waiting {
        assert_eq!(
            metric("cryptolake_landing_files_waiting", &[("source", source)]),
            counts["files"].as_f64().unwrap(),
            "{source}"
        );
    }
}

#[test]
fn the_console_without_a_daemon_needs_a_token_unless_asked_on_loopback() {
    let p = Project::new();
    let no_token = p.output(&["console", "--bind", "127.0.0.1:0"]);
    assert_eq!(no_token.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("the console needs a token"));
    let public = p.output(&["console", "--bind", "0.0.0.0:0", "--no-auth"]);
    assert_eq!(public.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&public.stderr).contains("only on a loopback address"));

    let console = Console::start(&p);
    let get = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{}{path}", console.base))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // A new lake: no gold tables yet, no run history; nothing is created by reading.
    assert_eq!(get("/v1/candles?symbol=BTC-USD"), "200");
    assert_eq!(get("/v1/runs"), "200");
    assert_eq!(get("/markets"), "200");
    assert_eq!(get("/runs"), "200");
    assert_eq!(get("/tables"), "200");
    assert_eq!(get("/v1/candles"), "400");
    assert!(!p.path().join("lake/scheduler.db").exists());
}

/// `GET` of the console's `path` as JSON.
pub fn get_json(base: &str, path: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "--fail"])
        .arg(format!("{base}{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(record, outcome, silver row or reason)` of a lineage answer.
pub fn outcomes(lineage: &Value) -> Vec<(i64, String, String)> {
    lineage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let what = r["silver"].as_str().or(r["reason"].as_str()).unwrap_or("");
            (
                r["record"].as_i64().unwrap(),
                r["outcome"].as_str().unwrap().to_string(),
                what.to_string(),
            )
        })
        .collect()
}

#[test]
fn lineage_follows_each_record_of_a_landing_file_to_silver_quarantine_or_its_duplicate() {
    let p = Project::new();
    let dir = p.path().join("lake/landing/coinbase_spot/2026/01/01");
    std::fs::create_dir_all(&dir).unwrap();
    let spot = |amount: &str, second: u32| {
        format!(
            r#"{{"data":{{"amount":"{amount}","base":"BTC","currency":"USD"}},"timestamp_utc":"2026-01-01T00:00:{second:02}Z"}}"#
        )
    };
    // Record 2 repeats record 0's key; record 1 is not a number.
    let a = [
        spot("43000.50", 1),
        spot("abc", 2),
        spot("43000.50", 1),
        spot("43010.00", 3),
    ];
    std::fs::write(dir.join("a.json"), a.join("\n") + "\n").unwrap();
    p.ok(&["run", "all", "--max-bad-fraction", "1"]);
    // b.json repeats a.json's record 3 in another file, and is not taken by silver yet.
    std::fs::write(dir.join("b.json"), spot("43010.00", 3) + "\n").unwrap();
    p.ok(&["run", "ingest-files"]);

    let console = Console::start(&p);
    let a = get_json(
        &console.base,
        "/v1/lineage?source=coinbase_spot&file=coinbase_spot/2026/01/01/a.json",
    );
    assert_eq!(
        outcomes(&a),
        [
            (
                0,
                "silver".into(),
                "BTC-USD 2026-01-01T00:00:01 price 43000.5000000000000000".into()
            ),
            (
                1,
                "quarantined".into(),
                "amount: `abc` is not a decimal number".into()
            ),
            (2, "duplicate".into(), String::new()),
            (
                3,
                "silver".into(),
                "BTC-USD 2026-01-01T00:00:03 price 43010.0000000000000000".into()
            ),
        ],
        "{a}"
    );
    assert_eq!(
        (
            &a["bronze_rows"],
            &a["silver"],
            &a["quarantined"],
            &a["duplicates"],
            &a["pending"]
        ),
        (&4.into(), &2.into(), &1.into(), &1.into(), &0.into())
    );
    assert!(
        a["rows"][1]["bronze"].as_str().unwrap().contains("abc"),
        "{a}"
    );
    let b = get_json(
        &console.base,
        "/v1/lineage?source=coinbase_spot&file=coinbase_spot/2026/01/01/b.json",
    );
    assert_eq!(outcomes(&b), [(0, "pending".into(), String::new())]);
    p.ok(&["run", "silver", "--max-bad-fraction", "1"]);
    let b = get_json(
        &console.base,
        "/v1/lineage?source=coinbase_spot&file=coinbase_spot/2026/01/01/b.json",
    );
    assert_eq!(outcomes(&b), [(0, "duplicate".into(), String::new())]);
    // A range of records, and a source that is not a table.
    let some = get_json(
        &console.base,
        "/v1/lineage?source=coinbase_spot&file=coinbase_spot/2026/01/01/a.json&from=1&to=2",
    );
    assert_eq!(some["bronze_rows"], 2);
    let missing = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/v1/lineage?source=nope&file=x", console.base))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
}
