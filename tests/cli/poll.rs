//! `cryptolake poll SOURCE --base-url URL` against a local server that answers in each API's
//! real shape and injects faults: every poller lands its answer in the seeds' layout (and the
//! built-in sources go on to bronze and silver), keys travel only in headers, and 429, 5xx,
//! timeouts, bodies cut short, HTML and truncated JSON end as retries, kept-aside answers and
//! exit codes, never as data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::Project;
use crate::fake_api::{FakeApi, Reply};

const ASSETS: &str = r#"{"data":[{"id":"bitcoin","rank":"1","symbol":"BTC","name":"Bitcoin","supply":"19600000.0000000000000000","maxSupply":"21000000.0000000000000000","marketCapUsd":"842800000000.1234567890123456","volumeUsd24Hr":"12000000000.5","priceUsd":"43000.1234567890123456","changePercent24Hr":"1.25","vwap24Hr":"42900.5","explorer":"https://blockchain.info/"},{"id":"ethereum","rank":"2","symbol":"ETH","name":"Ethereum","supply":"120000000.0","maxSupply":null,"marketCapUsd":"276000000000.0","volumeUsd24Hr":"6000000000.0","priceUsd":"2300.5","changePercent24Hr":"-0.5","vwap24Hr":"2310.0","explorer":"https://etherscan.io/"}],"timestamp":1767225600000}"#;
const RATES: &str = r#"{"data":[{"id":"bitcoin","symbol":"BTC","currencySymbol":"₿","type":"crypto","rateUsd":"43000.1234567890123456"},{"id":"euro","symbol":"EUR","currencySymbol":"€","type":"fiat","rateUsd":"1.0850000000000000"}],"timestamp":1767225600000}"#;
const BTC_SPOT: &str = r#"{"data":{"amount":"43000.12","base":"BTC","currency":"USD"}}"#;
const ETH_SPOT: &str = r#"{"data":{"amount":"2300.5","base":"ETH","currency":"USD"}}"#;
const MARKETS: &str = r#"[{"id":"bitcoin","symbol":"btc","name":"Bitcoin","image":"https://assets.coingecko.com/coins/images/1/large/bitcoin.png","current_price":43000.5,"market_cap":842800000000,"market_cap_rank":1,"total_volume":12000000000,"high_24h":43500,"low_24h":42500,"price_change_percentage_24h":1.25,"circulating_supply":19600000,"total_supply":21000000,"max_supply":21000000,"last_updated":"2026-01-01T00:00:00.000Z"}]"#;
const QUOTES: &str = r#"{"quotes":{"BTC/USD":{"ap":43001.5,"as":0.25,"bp":42999.25,"bs":1.0,"t":"2026-01-01T00:00:05.123456789Z"},"ETH/USD":{"ap":2301,"as":3,"bp":2300,"bs":2,"t":"2026-01-01T00:00:05Z"}}}"#;
const TRADES: &str = r#"{"trades":{"BTC/USD":{"i":12345,"p":43000.5,"s":0.01,"t":"2026-01-01T00:00:05.1Z","tks":"B"}}}"#;
const ICONS: &str = r#"[{"exchange_id":"","asset_id":"BTC","url":"https://s3.eu-central-1.amazonaws.com/bbxt-static-icons/type-id/png_32/4caf2b16a0174e26a3482cea69c34cba.png"},{"asset_id":"LTC","url":"https://s3.eu-central-1.amazonaws.com/bbxt-static-icons/type-id/png_32/a201762f149941ef9b84e0742cd00e48.png"}]"#;

const KEYS: [(&str, &str); 3] = [
    ("APCA_API_KEY_ID", "alpaca-id-7f3a"),
    ("APCA_API_SECRET_KEY", "alpaca-secret-91c2"),
    ("COINAPI_KEY", "coinapi-key-55d0"),
];

/// The server with every API's path answering well.
fn api() -> FakeApi {
    let api = FakeApi::start();
    api.on("/v2/assets", Reply::json(ASSETS));
    api.on("/v2/rates", Reply::json(RATES));
    api.on("/v2/prices/BTC-USD/spot", Reply::json(BTC_SPOT));
    api.on("/v2/prices/ETH-USD/spot", Reply::json(ETH_SPOT));
    api.on("/api/v3/coins/markets", Reply::json(MARKETS));
    api.on("/v1beta3/crypto/us/latest/quotes", Reply::json(QUOTES));
    api.on("/v1beta3/crypto/us/latest/trades", Reply::json(TRADES));
    api.on("/v1/assets/icons/32", Reply::json(ICONS));
    api
}

/// A project whose pollers retry quickly, with the API keys in its environment.
fn project(poll_toml: &str) -> Project {
    let mut p = Project::new();
    p.env = KEYS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push_str(poll_toml);
    std::fs::write(&p.config, text).unwrap();
    p.env.push(("RUST_LOG".into(), "info".into()));
    p
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The one landing file of `source`: its name checked against the seeds' layout (the date
/// directories are the epoch-ms stamp's UTC date), and its text.
fn landed(p: &Project, source: &str, batch: u32) -> (PathBuf, String) {
    let dir = p.path().join("lake/landing").join(source);
    let all = files(&dir);
    let name = all
        .iter()
        .find(|f| f.ends_with(&format!("-batch_{batch}.json")))
        .unwrap_or_else(|| panic!("{source}: no batch {batch} in {all:?}"));
    let (day, file) = name.rsplit_once('/').unwrap();
    let ms: i64 = file.split('-').next().unwrap().parse().unwrap();
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    assert_eq!(day, at.format("%Y/%m/%d").to_string(), "{name}");
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

fn poll(p: &Project, api: &FakeApi, source: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["poll", source, "--base-url", &api.url, "-o", "json"];
    args.extend(extra);
    p.output(&args)
}

/// The kept-aside answers of `source`, parsed.
fn kept_aside(p: &Project, source: &str) -> Vec<Value> {
    let dir = p.path().join("lake/landing/_errors").join(source);
    files(&dir)
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap())
        .collect()
}

#[test]
fn every_poller_lands_its_answer_in_the_seed_layout_and_bronze_and_silver_take_them() {
    let api = api();
    let p = project("");
    let expected: [(&str, u64); 7] = [
        ("coincap_assets", 2),
        ("coincap_rates", 2),
        ("coinbase_spot", 2),
        ("coingecko_markets", 1),
        ("alpaca_quotes", 2),
        ("alpaca_trades", 1),
        ("coinapi_icons", 2),
    ];
    for (source, records) in expected {
        let out = poll(&p, &api, source, &[]);
        assert!(
            out.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report[0]["records"], records, "{source}");
        assert_eq!(
            report[0]["written"].as_array().unwrap().len(),
            1,
            "{source}"
        );
        // Keys are sent, and never printed or logged.
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for (_, value) in KEYS {
            assert!(!all.contains(value), "{source} printed a key");
        }
    }
    for (source, body) in [
        ("coincap_assets", ASSETS),
        ("coincap_rates", RATES),
        ("coingecko_markets", MARKETS),
        ("alpaca_quotes", QUOTES),
        ("alpaca_trades", TRADES),
        ("coinapi_icons", ICONS),
    ] {
        assert_eq!(landed(&p, source, 0).1, format!("{body}\n"), "{source}");
    }
    // Coinbase: one record per pair, each with the fetch time as the seeds' producer adds it.
    let (_, spot) = landed(&p, "coinbase_spot", 0);
    let lines: Vec<Value> = spot
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["data"],
        serde_json::from_str::<Value>(BTC_SPOT).unwrap()["data"]
    );
    assert_eq!(lines[1]["data"]["amount"], "2300.5");
    let stamp = lines[0]["timestamp_utc"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp}"
    );

    let seen = api.take_seen();
    assert_eq!(seen.len(), 8);
    let alpaca = seen
        .iter()
        .find(|s| s.target.contains("latest/quotes"))
        .unwrap();
    assert_eq!(
        alpaca.target,
        "/v1beta3/crypto/us/latest/quotes?symbols=BTC%2FUSD%2CETH%2FUSD"
    );
    assert_eq!(alpaca.headers["apca-api-key-id"], "alpaca-id-7f3a");
    assert_eq!(alpaca.headers["apca-api-secret-key"], "alpaca-secret-91c2");
    let icons = seen.iter().find(|s| s.target.contains("icons")).unwrap();
    assert_eq!(icons.headers["x-coinapi-key"], "coinapi-key-55d0");
    // Never in a URL.
    assert!(
        seen.iter()
            .all(|s| KEYS.iter().all(|(_, v)| !s.target.contains(v)))
    );

    // Every polled source's files go on to bronze, the market ones to silver.
    p.ok(&["run", "ingest-files"]);
    for (table, n) in [
        ("bronze.coincap_assets", 2),
        ("bronze.coincap_rates", 2),
        ("bronze.coinbase_spot", 2),
        ("bronze.coingecko_markets", 1),
        ("bronze.alpaca_quotes", 2),
        ("bronze.alpaca_trades", 1),
        ("bronze.coinapi_icons", 2),
    ] {
        assert_eq!(p.count(table), n, "{table}");
    }
    p.ok(&["run", "silver"]);
    let spot = p.rows_text(
        "SELECT symbol, CAST(price AS VARCHAR) AS price FROM silver.quotes \
         WHERE source = 'coinbase_spot' ORDER BY symbol",
        &["symbol", "price"],
    );
    assert_eq!(
        spot,
        [
            "BTC-USD|43000.1200000000000000",
            "ETH-USD|2300.5000000000000000"
        ]
    );
    assert_eq!(p.count("silver.quarantine"), 0);
}

#[test]
fn faults_are_retried_kept_aside_and_exit_with_their_kind() {
    let api = api();
    let p = project(
        "\n[poll.coincap_assets]\nretries = 2\nbackoff_ms = 20\ntimeout_seconds = 1\n\
         \n[poll.coinbase_spot]\npairs = [\"BTC-USD\", \"DOGE-USD\"]\nretries = 1\nbackoff_ms = 20\n",
    );
    let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";

    // 429 with Retry-After, then 500: waited out and retried, then landed once.
    api.queue(
        "/v2/assets",
        [
            Reply::TooMany(1),
            Reply::Body(500, "text/plain", "oops".into()),
        ],
    );
    let out = poll(&p, &api, "coincap_assets", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.take_seen().len(), 3);
    assert_eq!(landed(&p, "coincap_assets", 0).1, format!("{ASSETS}\n"));
    assert!(kept_aside(&p, "coincap_assets").is_empty());
    let landing = p.path().join("lake/landing");
    std::fs::remove_dir_all(landing.join("coincap_assets")).unwrap();

    // Slower than the timeout every time: exit 1, nothing written, nothing to keep aside.
    api.queue(
        "/v2/assets",
        (0..3).map(|_| Reply::Slow(Duration::from_secs(3), ASSETS.into())),
    );
    let out = poll(&p, &api, "coincap_assets", &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("timed out") && stderr.contains("(after 3 attempts)"),
        "{stderr}"
    );
    assert_eq!(api.take_seen().len(), 3);
    assert!(files(&landing.join("coincap_assets")).is_empty());
    assert!(kept_aside(&p, "coincap_assets").is_empty());

    // A body cut short of its length is retried like a dropped connection.
    api.queue("/v2/assets", [Reply::CutShort(ASSETS.into())]);
    let out = poll(&p, &api, "coincap_assets", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.take_seen().len(), 2);
    std::fs::remove_dir_all(landing.join("coincap_assets")).unwrap();

    // A 200 whose JSON stops halfway, and an HTML page served with 200: kept aside with the
    // reason, never data; exit 3.
    let cut = &ASSETS[..ASSETS.len() / 2];
    for (body, ctype, reason) in [
        (
            cut,
            "application/json",
            "the body is not JSON: EOF while parsing",
        ),
        (html, "text/html", "the body is HTML, not JSON"),
    ] {
        api.queue("/v2/assets", [Reply::Body(200, ctype, body.into())]);
        let out = poll(&p, &api, "coincap_assets", &[]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(api.take_seen().len(), 1);
        let kept = kept_aside(&p, "coincap_assets");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0]["body"], body);
        assert_eq!(kept[0]["status"], 200);
        assert_eq!(kept[0]["url"], format!("{}/v2/assets?limit=100", api.url));
        assert!(
            kept[0]["reason"].as_str().unwrap().contains(reason),
            "{}",
            kept[0]["reason"]
        );
        std::fs::remove_dir_all(landing.join("_errors")).unwrap();
    }
    assert!(files(&landing.join("coincap_assets")).is_empty());

    // An HTML 503 on every attempt: exit 1, the last answer kept aside with its status.
    api.queue(
        "/v2/assets",
        (0..3).map(|_| Reply::Body(503, "text/html", html.into())),
    );
    let out = poll(&p, &api, "coincap_assets", &[]);
    assert_eq!(out.status.code(), Some(1));
    let kept = kept_aside(&p, "coincap_assets");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0]["status"].as_u64(), kept[0]["body"].as_str()),
        (Some(503), Some(html))
    );
    assert!(
        kept[0]["reason"]
            .as_str()
            .unwrap()
            .ends_with("HTTP 503 (after 3 attempts)")
    );
    api.take_seen();

    // One pair of two unknown (404, not retried): the other lands, the answer is kept aside
    // beside it, exit 2 (the request is refused as asked).
    let out = poll(&p, &api, "coinbase_spot", &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.take_seen().len(), 2);
    let (_, spot) = landed(&p, "coinbase_spot", 0);
    assert_eq!(spot.lines().count(), 1);
    assert!(spot.contains("43000.12"));
    let kept = kept_aside(&p, "coinbase_spot");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["status"], 404);
    assert!(
        kept[0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/v2/prices/DOGE-USD/spot")
    );
    // Kept-aside answers are never under a source's prefix, so ingest never takes them.
    p.ok(&["run", "ingest-files"]);
    assert_eq!(p.count("bronze.coinbase_spot"), 1);
}

#[test]
fn polls_repeat_within_a_run_and_schedule_like_any_job() {
    let api = api();
    let p = project("");
    // Three polls a second apart: batches 0, 1 and 2.
    let out = poll(
        &p,
        &api,
        "coincap_rates",
        &["--every", "1s", "--times", "3"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = files(&p.path().join("lake/landing/coincap_rates"));
    assert_eq!(names.len(), 3);
    for batch in 0..3 {
        assert_eq!(landed(&p, "coincap_rates", batch).1, format!("{RATES}\n"));
    }
    let stamps: Vec<i64> = names
        .iter()
        .map(|n| {
            n.rsplit('/')
                .next()
                .unwrap()
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(stamps.windows(2).all(|w| w[1] - w[0] >= 900), "{stamps:?}");

    // The scheduler's form, `run poll SOURCE`, and a schedule naming it.
    p.ok(&["run", "poll", "coingecko_markets", "--base-url", &api.url]);
    assert_eq!(landed(&p, "coingecko_markets", 0).1, format!("{MARKETS}\n"));
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push_str(
        "\n[[schedule]]\nname = \"assets\"\njob = \"poll\"\nargs = [\"coincap_assets\"]\nexpression = \"rate(1 minute)\"\n",
    );
    std::fs::write(&p.config, &text).unwrap();
    p.ok(&["schedule", "validate"]);
    std::fs::write(
        &p.config,
        text.replace("[\"coincap_assets\"]", "[\"nope\"]"),
    )
    .unwrap();
    let out = p.output(&["schedule", "validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs args = [SOURCE]"));

    // A poller whose keys are missing stops before any request, naming the variable.
    let bare = Project::new();
    let out = bare.output(&["poll", "alpaca_quotes", "--base-url", &api.url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APCA_API_KEY_ID"));
    api.take_seen();
    let out = bare.output(&["poll", "alpaca_quotes", "--base-url", &api.url, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(api.take_seen().is_empty());
}

#[test]
fn a_poller_with_a_topic_produces_each_answer_to_kafka_for_ingest_kafka() {
    let broker = cryptolake_testkit::Broker::start();
    broker.create_topic("alpaca-quotes", 2);
    let api = api();
    let p = project(&format!(
        "\n[kafka]\nbrokers = \"{}\"\ntimeout_secs = 3\n\n[[kafka.topics]]\ntopic = \"alpaca-quotes\"\n\
         format = \"alpaca_quotes\"\ntable = \"bronze.alpaca_stream\"\n\n[poll.alpaca_quotes]\ntopic = \"alpaca-quotes\"\ntimes = 3\n",
        broker.address()
    ));
    let out = poll(&p, &api, "alpaca_quotes", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Three answers, one message each, round-robin over the two partitions; no landing file.
    assert_eq!(
        report[0]["written"],
        serde_json::json!([
            "alpaca-quotes/0 (1)",
            "alpaca-quotes/1 (1)",
            "alpaca-quotes/0 (1)"
        ])
    );
    assert_eq!(report[0]["produced"], 3);
    assert!(files(&p.path().join("lake/landing/alpaca_quotes")).is_empty());
    p.ok(&["run", "ingest-kafka"]);
    // Each message is one answer: two symbols, so two bronze rows per message.
    let rows = p.sql(
        "SELECT _kafka_partition AS p, count(*) AS n, count(DISTINCT _kafka_offset) AS m \
         FROM bronze.alpaca_stream GROUP BY _kafka_partition ORDER BY p",
    );
    let rows: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["p"].as_u64().unwrap(),
                r["n"].as_u64().unwrap(),
                r["m"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [(0, 4, 2), (1, 2, 1)]);
}
