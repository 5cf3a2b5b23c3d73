//! Gold candles equal an independent computation, done here from the landing files themselves
//! with rust_decimal (none of cryptolake's parsing or arithmetic is used).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::common::Project;

/// (symbol, minute start in µs) -> quotes as (event µs, source, price).
type Quotes = BTreeMap<(String, i64), Vec<(i64, String, Decimal)>>;
/// (symbol, minute start in µs) -> trades as (price, quantity).
type Trades = BTreeMap<(String, i64), Vec<(Decimal, Decimal)>>;

const MINUTE_US: i64 = 60_000_000;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut text = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut text)
                    .unwrap();
                out.push(text);
            } else {
                out.push(bytes);
            }
        }
    }
    out
}

fn values(bytes: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect()
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => Decimal::from_str(s).unwrap(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).unwrap(),
        other => panic!("not a number: {other}"),
    }
}

fn micros(v: &Value) -> i64 {
    match v {
        Value::Number(ms) => ms.as_i64().unwrap() * 1000,
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_micros(),
        other => panic!("not a time: {other}"),
    }
}

fn push(q: &mut Quotes, symbol: String, event: i64, source: &str, price: Decimal) {
    let window = event.div_euclid(MINUTE_US) * MINUTE_US;
    q.entry((symbol, window))
        .or_default()
        .push((event, source.to_string(), price));
}

fn read_landing(landing: &Path) -> (Quotes, Trades) {
    let mut q = Quotes::new();
    for bytes in files(&landing.join("coincap_assets"))
        .iter()
        .chain(&files(&landing.join("coincap_rates")))
    {
        for env in values(bytes) {
            let t = micros(&env["timestamp"]);
            for a in env["data"].as_array().unwrap() {
                let (price, source) = match a.get("priceUsd") {
                    Some(p) => (p, "coincap_assets"),
                    None => (&a["rateUsd"], "coincap_rates"),
                };
                push(
                    &mut q,
                    format!("{}-USD", a["symbol"].as_str().unwrap()),
                    t,
                    source,
                    dec(price),
                );
            }
        }
    }
    for bytes in files(&landing.join("coinbase_spot")) {
        for v in values(&bytes) {
            let sym = format!(
                "{}-{}",
                v["data"]["base"].as_str().unwrap(),
                v["data"]["currency"].as_str().unwrap()
            );
            push(
                &mut q,
                sym,
                micros(&v["timestamp_utc"]),
                "coinbase_spot",
                dec(&v["data"]["amount"]),
            );
        }
    }
    for bytes in files(&landing.join("coingecko_markets")) {
        for arr in values(&bytes) {
            for m in arr.as_array().unwrap() {
                let sym = format!("{}-USD", m["symbol"].as_str().unwrap().to_uppercase());
                push(
                    &mut q,
                    sym,
                    micros(&m["last_updated"]),
                    "coingecko_markets",
                    dec(&m["current_price"]),
                );
            }
        }
    }
    for bytes in files(&landing.join("alpaca_quotes")) {
        for line in values(&bytes) {
            for (sym, quote) in line["quotes"].as_object().unwrap() {
                let mid = (dec(&quote["ap"]) + dec(&quote["bp"])) / Decimal::TWO;
                push(
                    &mut q,
                    sym.replace('/', "-"),
                    micros(&quote["t"]),
                    "alpaca_quotes",
                    mid,
                );
            }
        }
    }
    let mut t = Trades::new();
    for bytes in files(&landing.join("trades")) {
        for v in values(&bytes) {
            let window = micros(&v["timestamp"]).div_euclid(MINUTE_US) * MINUTE_US;
            let sym = v["symbol"].as_str().unwrap().replace('/', "-");
            t.entry((sym, window))
                .or_default()
                .push((dec(&v["price"]), dec(&v["quantity"])));
        }
    }
    (q, t)
}

fn col(row: &crate::common::Row, name: &str) -> Option<Decimal> {
    row[name].as_str().map(|s| Decimal::from_str(s).unwrap())
}

#[test]
fn candles_equal_an_independent_computation_from_the_landing_files() {
    let p = Project::new();
    p.generate(&["--minutes", "4", "--seed", "21", "--symbols", "6"]);
    p.ok(&["run", "all"]);
    let (mut quotes, trades) = read_landing(&p.path().join("lake/landing"));
    let rows = p.sql(
        "SELECT symbol, CAST(window_start AS VARCHAR) AS w, CAST(open AS VARCHAR) AS open, \
           CAST(high AS VARCHAR) AS high, CAST(low AS VARCHAR) AS low, CAST(close AS VARCHAR) AS close, \
           CAST(volume AS VARCHAR) AS volume, CAST(vwap AS VARCHAR) AS vwap, quote_count, trade_count, \
           CAST(notional AS VARCHAR) AS notional \
         FROM gold.candles_1m ORDER BY symbol, window_start",
    );
    assert_eq!(
        rows.len(),
        quotes.len(),
        "one candle per (symbol, minute) with quotes"
    );
    assert_eq!(rows.len(), 6 * 4);
    let mut with_trades = 0;
    for row in &rows {
        let symbol = row["symbol"].as_str().unwrap().to_string();
        let w = DateTime::parse_from_rfc3339(&format!(
            "{}Z",
            row["w"].as_str().unwrap().replace(' ', "T")
        ))
        .unwrap()
        .timestamp_micros();
        let list = quotes
            .get_mut(&(symbol.clone(), w))
            .unwrap_or_else(|| panic!("no quotes for {symbol} {w}"));
        list.sort();
        let prices: Vec<Decimal> = list.iter().map(|q| q.2).collect();
        let ctx = format!("{symbol} {}", row["w"]);
        assert_eq!(col(row, "open"), Some(prices[0]), "open {ctx}");
        assert_eq!(
            col(row, "close"),
            Some(*prices.last().unwrap()),
            "close {ctx}"
        );
        assert_eq!(col(row, "high"), prices.iter().max().copied(), "high {ctx}");
        assert_eq!(col(row, "low"), prices.iter().min().copied(), "low {ctx}");
        assert_eq!(
            row["quote_count"].as_u64(),
            Some(prices.len() as u64),
            "quotes {ctx}"
        );
        match trades.get(&(symbol.clone(), w)) {
            None => {
                assert_eq!(row["trade_count"], 0, "{ctx}");
                assert!(row["volume"].is_null() && row["vwap"].is_null(), "{ctx}");
                assert!(row["notional"].is_null(), "{ctx}");
            }
            Some(ts) => {
                with_trades += 1;
                let volume: Decimal = ts.iter().map(|(_, q)| *q).sum();
                let notional: Decimal = ts.iter().map(|(p, q)| p * q).sum();
                assert_eq!(row["trade_count"].as_u64(), Some(ts.len() as u64), "{ctx}");
                assert_eq!(col(row, "volume"), Some(volume), "volume {ctx}");
                // Prices have 4 decimals and quantities 6: every product is exact at 16.
                assert_eq!(col(row, "notional"), Some(notional), "notional {ctx}");
                let vwap = col(row, "vwap").unwrap();
                let want = notional / volume;
                assert!(
                    (vwap - want).abs() < Decimal::from_str("0.000000000001").unwrap(),
                    "vwap {ctx}: {vwap} vs {want}"
                );
            }
        }
    }
    assert!(
        with_trades >= 8,
        "several windows must have trades: {with_trades}"
    );
    // Each symbol's hourly candle is rolled up from its minutes: the four minutes lie in one
    // hour, and every minute with trades has quotes (so a candle).
    let hours = p.sql(
        "SELECT symbol, CAST(open AS VARCHAR) AS open, CAST(close AS VARCHAR) AS close, \
           CAST(high AS VARCHAR) AS high, CAST(low AS VARCHAR) AS low, \
           CAST(volume AS VARCHAR) AS volume, CAST(vwap AS VARCHAR) AS vwap, \
           CAST(notional AS VARCHAR) AS notional, quote_count, trade_count \
         FROM gold.candles_1h ORDER BY symbol",
    );
    assert_eq!(hours.len(), 6);
    for h in &hours {
        let symbol = h["symbol"].as_str().unwrap();
        let minutes: Vec<_> = rows.iter().filter(|r| r["symbol"] == symbol).collect();
        assert_eq!(minutes.len(), 4, "{symbol}");
        assert_eq!(h["open"], minutes[0]["open"], "{symbol}");
        assert_eq!(h["close"], minutes.last().unwrap()["close"], "{symbol}");
        let high = minutes.iter().filter_map(|r| col(r, "high")).max();
        let low = minutes.iter().filter_map(|r| col(r, "low")).min();
        assert_eq!((col(h, "high"), col(h, "low")), (high, low), "{symbol}");
        let sum = |key: &str| -> u64 { minutes.iter().map(|r| r[key].as_u64().unwrap()).sum() };
        assert_eq!(
            h["quote_count"].as_u64(),
            Some(sum("quote_count")),
            "{symbol}"
        );
        let ts: Vec<(Decimal, Decimal)> = trades
            .iter()
            .filter(|((s, _), _)| s == symbol)
            .flat_map(|(_, t)| t.iter().copied())
            .collect();
        assert_eq!(h["trade_count"].as_u64(), Some(ts.len() as u64), "{symbol}");
        assert_eq!(sum("trade_count"), ts.len() as u64, "{symbol}");
        if ts.is_empty() {
            assert!(h["volume"].is_null() && h["vwap"].is_null(), "{symbol}");
            continue;
        }
        let volume: Decimal = ts.iter().map(|(_, q)| *q).sum();
        let notional: Decimal = ts.iter().map(|(p, q)| p * q).sum();
        assert_eq!(col(h, "volume"), Some(volume), "{symbol}");
        assert_eq!(col(h, "notional"), Some(notional), "{symbol}");
        let vwap = col(h, "vwap").unwrap();
        assert!(
            (vwap - notional / volume).abs() < Decimal::from_str("0.000000000001").unwrap(),
            "hour vwap {symbol}: {vwap} vs {}",
            notional / volume
        );
    }
}

/// What an older cryptolake's candle tables look like: PyIceberg (standing in for any other
/// writer) drops `notional` and the later `asset_name` from their schema.
const DROP_NOTIONAL: &str = r#"
import sys
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("cryptolake", uri=f"sqlite:///{sys.argv[1]}", warehouse=f"file://{sys.argv[2]}")
for name in ["gold.candles_1m", "gold.candles_1h"]:
    with catalog.load_table(name).update_schema() as update:
        update.delete_column("notional")
        update.delete_column("asset_name")
"#;

fn columns(p: &Project, table: &str) -> Vec<String> {
    p.json(&["table", "describe", table])["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column"].as_str().unwrap().to_string())
        .collect()
}

/// Candle tables without `notional` (as an older cryptolake created them) gain it by schema
/// evolution at the next run and are rebuilt from all of silver: their rows then equal those of
/// a project that always had it, and later minutes roll up as usual.
#[test]
fn candle_tables_of_an_older_layout_gain_notional_and_are_rebuilt_exactly() {
    use crate::cluster::checksum;
    let (upgraded, always) = (Project::new(), Project::new());
    for p in [&upgraded, &always] {
        p.minute(0, "3", &[]);
    }
    let db = upgraded.path().join("lake/catalog.db");
    let warehouse = upgraded.path().join("lake/warehouse");
    crate::readers::run_python(
        DROP_NOTIONAL,
        &[db.to_str().unwrap(), warehouse.to_str().unwrap()],
    );
    for table in ["gold.candles_1m", "gold.candles_1h"] {
        assert!(!columns(&upgraded, table).contains(&"notional".to_string()));
    }
    for m in 1..3 {
        for p in [&upgraded, &always] {
            p.minute(m, "3", &[]);
        }
    }
    for table in ["gold.candles_1m", "gold.candles_1h"] {
        assert_eq!(
            columns(&upgraded, table),
            columns(&always, table),
            "{table}"
        );
        let (n, sum) = checksum(&upgraded, table);
        assert_eq!((n, sum.clone()), checksum(&always, table), "{table}");
        assert!(n > 0);
        let with_notional = upgraded.sql(&format!(
            "SELECT count(*) AS n FROM {table} WHERE trade_count > 0 AND notional IS NULL"
        ));
        assert_eq!(
            with_notional[0]["n"], 0,
            "{table}: every candle with trades has notional"
        );
    }
    assert_eq!(upgraded.count("gold.candles_1m"), 3 * 3);
}
