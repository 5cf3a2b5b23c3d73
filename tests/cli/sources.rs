//! `[[source]]`: a made-up exchange whose files have other field names, records under a JSON
//! pointer keyed by pair, and epoch-millisecond times lands in bronze and silver with exact
//! values; its bad records are quarantined with their reasons; a definition that does not
//! validate stops `schedule validate` and every run with exit 2, naming the field.

use crate::common::Project;

const ACME: &str = "\n[[source]]\nname = \"acme_ticks\"\nrecords = \"/payload/ticks/*\"\n\
key_field = \"pair\"\nfields = [\"pair\", \"px\", \"b\", \"a\", \"q\", \"ts\"]\nkind = \"quotes\"\n\
[source.mapping]\nsymbol = \"pair\"\nprice = \"px\"\nbid = \"b\"\nask = \"a\"\nvolume_24h = \"q\"\n\
event_time = \"ts\"\ntime_format = \"epoch_ms\"\n";

const FILE: &str = concat!(
    r#"{"exchange":"acme","payload":{"ticks":{"btc_usdt":{"px":"43000.5","b":"43000.25","a":"43000.75","ts":1767225600123,"q":"0.5"},"eth_usdt":{"px":"2300.125","b":"2300","a":"2300.25","ts":1767225600456,"q":"1.25"}}}}"#,
    "\n",
    r#"{"exchange":"acme","payload":{"ticks":{"btc_usdt":{"px":"-1","ts":1767225601000},"sol_usdt":{"px":"100","ts":"soon"}}}}"#,
    "\n",
    r#"{"exchange":"acme","status":"maintenance"}"#,
    "\n",
);

/// A trades feed: fills in an array, a local time pattern in New York's zone.
const FILLS: &str = "\n[[source]]\nname = \"acme_fills\"\nrecords = \"/fills\"\n\
fields = [\"id\", \"market\", \"side\", \"size\", \"price\", \"time\", \"account\"]\nkind = \"trades\"\n\
[source.mapping]\nsymbol = \"market\"\ntrade_id = \"id\"\nuser_id = \"account\"\nside = \"side\"\n\
quantity = \"size\"\nprice = \"price\"\nevent_time = \"time\"\ntime_format = \"%Y-%m-%d %H:%M:%S%.f\"\n\
timezone = \"America/New_York\"\n";

const FILLS_FILE: &str = r#"{"fills":[{"id":"f1","market":"BTC/USD","side":"B","size":"0.25","price":"43000.5","time":"2025-12-31 19:00:01.5","account":"a1"},{"id":"f2","market":"ETH/USD","side":"S","size":"1","price":"2300","time":"2025-12-31 19:00:02","account":"a2"},{"id":"f1","market":"BTC/USD","side":"B","size":"0.25","price":"43000.5","time":"2025-12-31 19:00:01.5","account":"a1"}]}"#;

fn project(definition: &str) -> Project {
    let p = Project::new();
    let mut config = std::fs::read_to_string(&p.config).unwrap();
    config.push_str(definition);
    std::fs::write(&p.config, config).unwrap();
    p
}

#[test]
fn a_configured_source_lands_in_bronze_and_silver_with_exact_values() {
    let p = project(&format!("{ACME}{FILLS}"));
    let dir = p.path().join("lake/landing/acme_ticks/2026/01/01");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001.json"), FILE).unwrap();
    let fills = p.path().join("lake/landing/acme_fills");
    std::fs::create_dir_all(&fills).unwrap();
    std::fs::write(fills.join("fills.json"), FILLS_FILE).unwrap();
    p.ok(&["run", "ingest-files"]);

    let columns: Vec<String> = p.json(&["table", "describe", "bronze.acme_ticks"])["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        columns,
        [
            "pair",
            "px",
            "b",
            "a",
            "q",
            "ts",
            "_raw",
            "_file",
            "_record",
            "_ingest_time",
            "_extra"
        ]
    );
    let bronze = p.rows_text(
        "SELECT _record, pair, px, ts, _extra, _raw FROM bronze.acme_ticks ORDER BY _record",
        &["_record", "pair", "px", "ts", "_extra", "_raw"],
    );
    assert_eq!(
        bronze,
        [
            r#"0|btc_usdt|43000.5|1767225600123|{"exchange":"acme"}|-"#,
            r#"1|eth_usdt|2300.125|1767225600456|{"exchange":"acme"}|-"#,
            r#"2|btc_usdt|-1|1767225601000|{"exchange":"acme"}|-"#,
            r#"3|sol_usdt|100|soon|{"exchange":"acme"}|-"#,
            r#"4|-|-|-|-|{"exchange":"acme","status":"maintenance"}"#,
        ]
    );

    let summary = p.json(&["run", "silver", "--max-bad-fraction", "0.7"]);
    let counts = &summary[0]["sources"]["acme_ticks"];
    assert_eq!(
        (
            counts["records"].as_u64(),
            counts["good"].as_u64(),
            counts["quarantined"].as_u64()
        ),
        (Some(5), Some(2), Some(3))
    );
    let quotes = p.rows_text(
        "SELECT symbol, CAST(price AS VARCHAR) AS price, CAST(bid AS VARCHAR) AS bid, \
         CAST(ask AS VARCHAR) AS ask, CAST(volume_24h AS VARCHAR) AS volume, \
         CAST(event_time AS VARCHAR) AS t FROM silver.quotes WHERE source = 'acme_ticks' ORDER BY symbol",
        &["symbol", "price", "bid", "ask", "volume", "t"],
    );
    assert_eq!(
        quotes,
        [
            "BTC-USDT|43000.5000000000000000|43000.2500000000000000|43000.7500000000000000|0.5000000000000000|2026-01-01T00:00:00.123",
            "ETH-USDT|2300.1250000000000000|2300.0000000000000000|2300.2500000000000000|1.2500000000000000|2026-01-01T00:00:00.456",
        ]
    );
    let reasons = p.rows_text(
        "SELECT record, reason FROM silver.quarantine WHERE source = 'acme_ticks' ORDER BY record",
        &["record", "reason"],
    );
    assert_eq!(
        reasons,
        [
            "2|px must be positive",
            "3|ts: `soon` is not an epoch number",
            "4|no records where the source's `records` pointer points",
        ]
    );
    // The trades feed: sides spelled B/S, New York local times to UTC, the repeated fill
    // dropped as a duplicate.
    let fills = &summary[0]["sources"]["acme_fills"];
    assert_eq!(
        (
            fills["records"].as_u64(),
            fills["good"].as_u64(),
            fills["duplicates_dropped"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    let trades = p.rows_text(
        "SELECT trade_id, user_id, symbol, side, CAST(quantity AS VARCHAR) AS q, \
         CAST(price AS VARCHAR) AS p, CAST(event_time AS VARCHAR) AS t FROM silver.trades \
         WHERE source = 'acme_fills' ORDER BY trade_id",
        &["trade_id", "user_id", "symbol", "side", "q", "p", "t"],
    );
    assert_eq!(
        trades,
        [
            "f1|a1|BTC-USD|buy|0.2500000000000000|43000.5000000000000000|2026-01-01T00:00:01.500",
            "f2|a2|ETH-USD|sell|1.0000000000000000|2300.0000000000000000|2026-01-01T00:00:02",
        ]
    );
}

#[test]
fn a_definition_that_does_not_validate_is_a_usage_error_naming_the_field() {
    let p = project(&ACME.replace("price = \"px\"", "price = \"price\""));
    for args in [&["schedule", "validate"][..], &["run", "ingest-files"][..]] {
        let out = p.output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("[[source]] acme_ticks: mapping.price: `price` is not among the fields"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let p = project(&ACME.replace("time_format = \"epoch_ms\"", "time_format = \"unix\""));
    let out = p.output(&["schedule", "validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mapping.time_format: `unix`"));
}

#[test]
fn a_field_added_to_a_definition_becomes_a_column_by_schema_evolution() {
    let p = project(ACME);
    let dir = p.path().join("lake/landing/acme_ticks");
    std::fs::create_dir_all(&dir).unwrap();
    let tick = |venue: &str, ms: u64| {
        format!(
            r#"{{"payload":{{"ticks":{{"btc_usdt":{{"px":"1.5","ts":{ms},"venue":"{venue}"}}}}}}}}"#
        )
    };
    std::fs::write(dir.join("1.json"), tick("x", 1_767_225_600_000)).unwrap();
    p.ok(&["run", "ingest-files"]);
    // The user now wants `venue` as a column: one field more in the definition.
    let config = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        config.replace("\"q\", \"ts\"]", "\"q\", \"ts\", \"venue\"]"),
    )
    .unwrap();
    std::fs::write(dir.join("2.json"), tick("y", 1_767_225_601_000)).unwrap();
    p.ok(&["run", "ingest-files"]);
    let history = p.json(&["table", "history", "bronze.acme_ticks"]);
    let changes: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["schema_change"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(changes, ["-", "+venue"]);
    // The first file's venue stays where it landed (_extra); the second's is in its column.
    assert_eq!(
        p.rows_text(
            "SELECT _file, pair, px, venue, _extra FROM bronze.acme_ticks ORDER BY _file",
            &["_file", "pair", "px", "venue", "_extra"],
        ),
        [
            r#"acme_ticks/1.json|btc_usdt|1.5|-|{"venue":"x"}"#,
            "acme_ticks/2.json|btc_usdt|1.5|y|-",
        ]
    );
    p.ok(&["run", "silver"]);
    assert_eq!(p.count("silver.quotes"), 2);
}
