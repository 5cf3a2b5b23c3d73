//! `silver.assets` from polled CoinCap assets and CoinAPI icons (served by the local API),
//! upserted by `run assets` over three refreshes with changes: rows replaced, inserted and
//! untouched exactly as Spark's `MERGE INTO` leaves them, and with `history = true`, every
//! version with its validity.

use serde_json::Value;

use crate::common::Project;
use crate::fake_api::{FakeApi, Reply};

fn asset(id: &str, rank: u32, symbol: &str, name: &str, supply: &str) -> String {
    format!(
        r#"{{"id":"{id}","rank":"{rank}","symbol":"{symbol}","name":"{name}","supply":"{supply}","maxSupply":null,"marketCapUsd":"1000.5","volumeUsd24Hr":"1","priceUsd":"1","changePercent24Hr":"0","vwap24Hr":"1","explorer":null}}"#
    )
}

fn assets(ms: i64, list: &[String]) -> String {
    format!(r#"{{"data":[{}],"timestamp":{ms}}}"#, list.join(","))
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// The three refreshes: CoinCap's answer and, for the first two, CoinAPI's icons.
fn refreshes() -> Vec<(String, Option<&'static str>)> {
    vec![
        (
            assets(
                T0,
                &[
                    asset("bitcoin", 1, "BTC", "Bitcoin", "19600000.5"),
                    asset("ethereum", 2, "ETH", "Ethereum", "120000000"),
                ],
            ),
            Some(
                r#"[{"asset_id":"BTC","url":"https://i/btc.png"},{"asset_id":"LTC","url":"https://i/ltc.png"}]"#,
            ),
        ),
        (
            // bitcoin as it was (a later time only), ethereum's supply changed, solana new.
            assets(
                T0 + 60_000,
                &[
                    asset("bitcoin", 1, "BTC", "Bitcoin", "19600000.5"),
                    asset("ethereum", 2, "ETH", "Ethereum", "120000001.25"),
                    asset("solana", 5, "SOL", "Solana", "400000000"),
                ],
            ),
            Some(r#"[{"asset_id":"ETH","url":"https://i/eth.png"}]"#),
        ),
        (
            // bitcoin's rank moved; solana renamed; ethereum absent (kept as it is).
            assets(
                T0 + 120_000,
                &[
                    asset("bitcoin", 2, "BTC", "Bitcoin", "19600000.5"),
                    asset("solana", 5, "SOL", "Solana Mainnet", "400000000"),
                ],
            ),
            None,
        ),
    ]
}

const ROWS: &str = "SELECT id, symbol, name, rank, CAST(supply AS VARCHAR) AS supply, icon_url, \
     CAST(updated_at AS VARCHAR) AS updated, CAST(valid_from AS VARCHAR) AS valid_from, \
     CAST(valid_to AS VARCHAR) AS valid_to FROM silver.assets ORDER BY id, valid_from";

fn rows(p: &Project) -> Vec<String> {
    p.rows_text(
        ROWS,
        &[
            "id",
            "symbol",
            "name",
            "rank",
            "supply",
            "icon_url",
            "updated",
            "valid_from",
            "valid_to",
        ],
    )
}

/// Polls, ingests and upserts one refresh; returns `run assets`' summary of silver.assets.
fn refresh(p: &Project, api: &FakeApi, coincap: &str, icons: Option<&str>) -> Value {
    api.on("/v2/assets", Reply::json(coincap));
    p.ok(&["poll", "coincap_assets", "--base-url", &api.url]);
    if let Some(icons) = icons {
        api.on("/v1/assets/icons/32", Reply::json(icons));
        p.ok(&["poll", "coinapi_icons", "--base-url", &api.url]);
    }
    p.ok(&["run", "ingest-files"]);
    let summary = p.json(&["run", "assets"]);
    summary[0]["tables"]["silver.assets"].clone()
}

fn project(history: bool) -> Project {
    let mut p = Project::new();
    p.env.push(("COINAPI_KEY".into(), "k".into()));
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push_str(&format!("\n[assets]\nhistory = {history}\n"));
    std::fs::write(&p.config, text).unwrap();
    p
}

#[test]
fn three_refreshes_replace_insert_and_leave_unchanged_rows_as_merge_into_would() {
    let api = FakeApi::start();
    let p = project(false);
    let r = refreshes();
    let first = refresh(&p, &api, &r[0].0, r[0].1);
    assert_eq!(
        (first["rows_in"].as_u64(), first["rows_out"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        rows(&p),
        [
            "bitcoin|BTC|Bitcoin|1|19600000.5000000000000000|https://i/btc.png|2026-01-01T00:00:00|2026-01-01T00:00:00|-",
            "ethereum|ETH|Ethereum|2|120000000.0000000000000000|-|2026-01-01T00:00:00|2026-01-01T00:00:00|-",
        ]
    );
    let second = refresh(&p, &api, &r[1].0, r[1].1);
    // ethereum updated (supply and its new icon), solana inserted, bitcoin untouched.
    assert_eq!(
        (
            second["rows_out"].as_u64(),
            second["files_removed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let after_second = rows(&p);
    assert_eq!(after_second[0], rows_first_bitcoin());
    assert_eq!(
        after_second[1..],
        [
            "ethereum|ETH|Ethereum|2|120000001.2500000000000000|https://i/eth.png|2026-01-01T00:01:00|2026-01-01T00:01:00|-",
            "solana|SOL|Solana|5|400000000.0000000000000000|-|2026-01-01T00:01:00|2026-01-01T00:01:00|-",
        ]
    );
    let third = refresh(&p, &api, &r[2].0, r[2].1);
    assert_eq!(third["rows_out"].as_u64(), Some(2));
    assert_eq!(
        rows(&p),
        [
            "bitcoin|BTC|Bitcoin|2|19600000.5000000000000000|https://i/btc.png|2026-01-01T00:02:00|2026-01-01T00:02:00|-",
            after_second[1].as_str(),
            "solana|SOL|Solana Mainnet|5|400000000.0000000000000000|-|2026-01-01T00:02:00|2026-01-01T00:02:00|-",
        ]
    );
    // One overwrite snapshot per refresh, each with both bookmarks' inputs.
    let history = p.json(&["table", "history", "silver.assets"]);
    let ops: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["overwrite", "overwrite", "overwrite"]);
    // Nothing new: nothing committed.
    let again = p.json(&["run", "assets"]);
    assert!(again[0]["tables"].as_object().unwrap().is_empty());

    // The console serves the current rows and shows each icon on the markets page.
    let console = crate::console::Console::start(&p);
    let served = crate::console::get_json(&console.base, "/v1/assets");
    let served: Vec<String> = served
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}|{}|{}|{}",
                a["id"], a["rank"], a["market_cap_usd"], a["icon_url"]
            )
        })
        .collect();
    assert_eq!(
        served,
        [
            r#""bitcoin"|2|1000.5|"https://i/btc.png""#,
            r#""ethereum"|2|1000.5|"https://i/eth.png""#,
            r#""solana"|5|1000.5|null"#,
        ]
    );
    let get = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--fail"])
            .arg(format!("{}{path}", console.base))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Decimals leave with the table's exact digits.
    assert!(get("/v1/assets").contains(r#""market_cap_usd":1000.5000000000000000"#));
    let page = get("/markets");
    assert!(
        page.contains(r#"<img class="icon" src="https://i/btc.png""#),
        "{page}"
    );
    assert!(page.contains("Solana Mainnet"));
}

fn rows_first_bitcoin() -> &'static str {
    "bitcoin|BTC|Bitcoin|1|19600000.5000000000000000|https://i/btc.png|2026-01-01T00:00:00|2026-01-01T00:00:00|-"
}

#[test]
fn with_history_every_version_is_kept_with_its_validity() {
    let api = FakeApi::start();
    let p = project(true);
    for (coincap, icons) in refreshes() {
        refresh(&p, &api, &coincap, icons);
    }
    assert_eq!(
        rows(&p),
        [
            "bitcoin|BTC|Bitcoin|1|19600000.5000000000000000|https://i/btc.png|2026-01-01T00:00:00|2026-01-01T00:00:00|2026-01-01T00:02:00",
            "bitcoin|BTC|Bitcoin|2|19600000.5000000000000000|https://i/btc.png|2026-01-01T00:02:00|2026-01-01T00:02:00|-",
            "ethereum|ETH|Ethereum|2|120000000.0000000000000000|-|2026-01-01T00:00:00|2026-01-01T00:00:00|2026-01-01T00:01:00",
            "ethereum|ETH|Ethereum|2|120000001.2500000000000000|https://i/eth.png|2026-01-01T00:01:00|2026-01-01T00:01:00|-",
            "solana|SOL|Solana|5|400000000.0000000000000000|-|2026-01-01T00:01:00|2026-01-01T00:01:00|2026-01-01T00:02:00",
            "solana|SOL|Solana Mainnet|5|400000000.0000000000000000|-|2026-01-01T00:02:00|2026-01-01T00:02:00|-",
        ]
    );
    let current = p.sql("SELECT count(*) AS n FROM silver.assets WHERE valid_to IS NULL");
    assert_eq!(current[0]["n"], 3);
}

/// Candles carry the name `silver.assets` gives their base asset: the current version (not
/// one a later refresh closed), nothing for an asset it does not know, in minutes and hours.
#[test]
fn candles_carry_the_current_asset_name() {
    let api = FakeApi::start();
    let p = project(true);
    for (coincap, icons) in refreshes() {
        refresh(&p, &api, &coincap, icons);
    }
    // BTC, ETH, XRP, LTC and SOL quotes and trades.
    p.minute(3, "5", &[]);
    for table in ["gold.candles_1m", "gold.candles_1h"] {
        let names = p.rows_text(
            &format!(
                "SELECT DISTINCT split_part(symbol, '-', 1) AS base, asset_name FROM {table} \
                 ORDER BY base"
            ),
            &["base", "asset_name"],
        );
        assert_eq!(
            names,
            [
                "BTC|Bitcoin",
                "ETH|Ethereum",
                "LTC|-",
                "SOL|Solana Mainnet",
                "XRP|-"
            ],
            "{table}"
        );
    }
}
