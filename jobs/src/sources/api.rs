//! The market-data APIs `cryptolake poll` calls, in their real shapes: which URLs one poll
//! fetches, which credentials go with them (read from the environment, sent as headers, never
//! logged or written), what a good answer looks like, and the landing payload it becomes.
//!
//! A response is checked before it is kept: the JSON the API documents, with the fields the
//! source's bronze table and silver need. Anything else (an HTML error page served with 200,
//! a body cut short, an object where an array belongs) is a [`BadResponse`] with its reason,
//! which the poll keeps aside, never as data.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// The sources `cryptolake poll` fetches, as landing sources are named.
pub const POLL_SOURCES: [&str; 7] = [
    "coincap_assets",
    "coincap_rates",
    "coinbase_spot",
    "coingecko_markets",
    "alpaca_quotes",
    "alpaca_trades",
    "coinapi_icons",
];

/// `[poll.<source>]`: how one source is polled. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollSettings {
    /// The API's root, such as `https://api.coincap.io` (each source has its real one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// coinbase_spot: the currency pairs (`BTC-USD`), one request each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<String>,
    /// alpaca_quotes, alpaca_trades: the symbols (`BTC/USD`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
    /// coincap_assets, coingecko_markets: only these asset ids (`bitcoin`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// coincap_assets, coingecko_markets: how many assets (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// coingecko_markets: the quote currency (default `usd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_currency: Option<String>,
    /// coinapi_icons: the icon size in pixels (default 32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_size: Option<u32>,
    /// Poll again this often within one run (`5s`), `times` polls in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Polls per run (default 1; with `every`, the run lasts about `times × every`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Produce each response to this Kafka topic (the `[kafka]` brokers) instead of writing a
    /// landing file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// One request's time limit, connecting and reading the body included (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Retries of a request that failed for a reason that can pass (timeout, connection, 5xx,
    /// 429) (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The first retry's wait, doubling each time up to 10 s (default 500); a 429's
    /// `Retry-After` takes its place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
}

/// One API a source is fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    CoincapAssets,
    CoincapRates,
    CoinbaseSpot,
    CoingeckoMarkets,
    AlpacaQuotes,
    AlpacaTrades,
    CoinapiIcons,
}

/// A credential sent as a header, its value taken from an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub header: &'static str,
    pub env: &'static str,
    /// Without it the API refuses every request; an optional one raises a rate limit.
    pub required: bool,
    /// `Authorization: Bearer <value>` rather than the value alone.
    pub bearer: bool,
}

/// Why a response is not the API's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadResponse(pub String);

impl fmt::Display for BadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Api {
    /// The API behind a landing source's name.
    pub fn parse(source: &str) -> Result<Self> {
        Ok(match source {
            "coincap_assets" => Api::CoincapAssets,
            "coincap_rates" => Api::CoincapRates,
            "coinbase_spot" => Api::CoinbaseSpot,
            "coingecko_markets" => Api::CoingeckoMarkets,
            "alpaca_quotes" => Api::AlpacaQuotes,
            "alpaca_trades" => Api::AlpacaTrades,
            "coinapi_icons" => Api::CoinapiIcons,
            other => {
                return Err(Error::Usage(format!(
                    "no poller for `{other}`; sources: {}",
                    POLL_SOURCES.join(", ")
                )));
            }
        })
    }

    /// The landing source (and prefix) its responses are written under.
    pub fn source(self) -> &'static str {
        match self {
            Api::CoincapAssets => "coincap_assets",
            Api::CoincapRates => "coincap_rates",
            Api::CoinbaseSpot => "coinbase_spot",
            Api::CoingeckoMarkets => "coingecko_markets",
            Api::AlpacaQuotes => "alpaca_quotes",
            Api::AlpacaTrades => "alpaca_trades",
            Api::CoinapiIcons => "coinapi_icons",
        }
    }

    /// The real API's root.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Api::CoincapAssets | Api::CoincapRates => "https://api.coincap.io",
            Api::CoinbaseSpot => "https://api.coinbase.com",
            Api::CoingeckoMarkets => "https://api.coingecko.com",
            Api::AlpacaQuotes | Api::AlpacaTrades => "https://data.alpaca.markets",
            Api::CoinapiIcons => "https://rest.coinapi.io",
        }
    }

    /// The headers that carry its keys.
    pub fn credentials(self) -> &'static [Credential] {
        const COINCAP: &[Credential] = &[Credential {
            header: "Authorization",
            env: "COINCAP_API_KEY",
            required: false,
            bearer: true,
        }];
        const GECKO: &[Credential] = &[Credential {
            header: "x-cg-demo-api-key",
            env: "COINGECKO_API_KEY",
            required: false,
            bearer: false,
        }];
        const ALPACA: &[Credential] = &[
            Credential {
                header: "APCA-API-KEY-ID",
                env: "APCA_API_KEY_ID",
                required: true,
                bearer: false,
            },
            Credential {
                header: "APCA-API-SECRET-KEY",
                env: "APCA_API_SECRET_KEY",
                required: true,
                bearer: false,
            },
        ];
        const COINAPI: &[Credential] = &[Credential {
            header: "X-CoinAPI-Key",
            env: "COINAPI_KEY",
            required: true,
            bearer: false,
        }];
        match self {
            Api::CoincapAssets | Api::CoincapRates => COINCAP,
            Api::CoinbaseSpot => &[],
            Api::CoingeckoMarkets => GECKO,
            Api::AlpacaQuotes | Api::AlpacaTrades => ALPACA,
            Api::CoinapiIcons => COINAPI,
        }
    }

    /// The URLs one poll fetches (Coinbase: one per pair; the others: one).
    pub fn urls(self, base: &str, s: &PollSettings) -> Result<Vec<String>> {
        let base = base.trim_end_matches('/');
        let limit = s.limit.unwrap_or(100);
        let ids = s.ids.join(",");
        Ok(match self {
            Api::CoincapAssets if ids.is_empty() => vec![format!("{base}/v2/assets?limit={limit}")],
            Api::CoincapAssets => vec![format!("{base}/v2/assets?ids={}", encode(&ids))],
            Api::CoincapRates => vec![format!("{base}/v2/rates")],
            Api::CoinbaseSpot => {
                let pairs = if s.pairs.is_empty() {
                    vec!["BTC-USD".to_string(), "ETH-USD".to_string()]
                } else {
                    s.pairs.clone()
                };
                let mut urls = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    if !valid_pair(&pair) {
                        return Err(Error::Usage(format!(
                            "[poll.coinbase_spot] pairs: `{pair}` is not a pair such as BTC-USD"
                        )));
                    }
                    urls.push(format!("{base}/v2/prices/{pair}/spot"));
                }
                urls
            }
            Api::CoingeckoMarkets => {
                let vs = s.vs_currency.as_deref().unwrap_or("usd");
                let mut url = format!(
                    "{base}/api/v3/coins/markets?vs_currency={}&order=market_cap_desc&per_page={limit}&page=1",
                    encode(vs)
                );
                if !ids.is_empty() {
                    url.push_str(&format!("&ids={}", encode(&ids)));
                }
                vec![url]
            }
            Api::AlpacaQuotes | Api::AlpacaTrades => {
                let symbols = if s.symbols.is_empty() {
                    "BTC/USD,ETH/USD".to_string()
                } else {
                    s.symbols.join(",")
                };
                let kind = if self == Api::AlpacaQuotes {
                    "quotes"
                } else {
                    "trades"
                };
                vec![format!(
                    "{base}/v1beta3/crypto/us/latest/{kind}?symbols={}",
                    encode(&symbols)
                )]
            }
            Api::CoinapiIcons => vec![format!(
                "{base}/v1/assets/icons/{}",
                s.icon_size.unwrap_or(32)
            )],
        })
    }

    /// Checks a 2xx body and returns how many records it holds.
    pub fn check(self, body: &[u8]) -> std::result::Result<u64, BadResponse> {
        let text = std::str::from_utf8(body)
            .map_err(|e| BadResponse(format!("the body is not UTF-8 text: {e}")))?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            let start = text.trim_start();
            if start.starts_with('<') {
                BadResponse("the body is HTML, not JSON".into())
            } else {
                BadResponse(format!("the body is not JSON: {e}"))
            }
        })?;
        match self {
            Api::CoincapAssets | Api::CoincapRates => {
                let data = member(&value, "data")?;
                objects_with(data, "data", &["id", "symbol"])
            }
            Api::CoinbaseSpot => {
                let data = member(&value, "data")?;
                if !data.is_object() {
                    return Err(BadResponse("`data` is not an object".into()));
                }
                for field in ["amount", "base", "currency"] {
                    if data.get(field).is_none_or(Value::is_null) {
                        return Err(BadResponse(format!("`data` has no `{field}`")));
                    }
                }
                Ok(1)
            }
            Api::CoingeckoMarkets => objects_with(&value, "the body", &["id", "current_price"]),
            Api::AlpacaQuotes => keyed_objects(member(&value, "quotes")?, "quotes"),
            Api::AlpacaTrades => keyed_objects(member(&value, "trades")?, "trades"),
            Api::CoinapiIcons => objects_with(&value, "the body", &["asset_id", "url"]),
        }
    }

    /// The landing payload of a good body fetched at `fetched_at` (RFC 3339): the body as
    /// received, but for Coinbase, whose record gains `timestamp_utc` as the seeds' producer
    /// adds it (the API's answer has no time).
    pub fn payload(self, body: &[u8], fetched_at: &str) -> Vec<u8> {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if self != Api::CoinbaseSpot {
            return text.as_bytes().to_vec();
        }
        // `check` saw an object; its text ends with `}`.
        let inner = text.strip_suffix('}').unwrap_or(text).trim_end();
        let sep = if inner.ends_with('{') { "" } else { "," };
        format!("{inner}{sep}\"timestamp_utc\":\"{fetched_at}\"}}").into_bytes()
    }
}

fn member<'a>(value: &'a Value, name: &str) -> std::result::Result<&'a Value, BadResponse> {
    match value {
        Value::Object(map) => map
            .get(name)
            .ok_or_else(|| BadResponse(format!("the object has no `{name}`"))),
        _ => Err(BadResponse(format!(
            "the body is not an object with `{name}`"
        ))),
    }
}

/// An array of objects that each have `fields`; its length.
fn objects_with(
    value: &Value,
    what: &str,
    fields: &[&str],
) -> std::result::Result<u64, BadResponse> {
    let Value::Array(items) = value else {
        return Err(BadResponse(format!("{what} is not an array")));
    };
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(BadResponse(format!("{what}[{i}] is not an object")));
        };
        if let Some(f) = fields
            .iter()
            .find(|f| map.get(**f).is_none_or(Value::is_null))
        {
            return Err(BadResponse(format!("{what}[{i}] has no `{f}`")));
        }
    }
    Ok(items.len() as u64)
}

/// An object of objects keyed by symbol (Alpaca's `quotes`, `trades`); how many.
fn keyed_objects(value: &Value, what: &str) -> std::result::Result<u64, BadResponse> {
    let Value::Object(map) = value else {
        return Err(BadResponse(format!("`{what}` is not an object")));
    };
    if let Some((k, _)) = map.iter().find(|(_, v)| !v.is_object()) {
        return Err(BadResponse(format!("`{what}`.{k} is not an object")));
    }
    Ok(map.len() as u64)
}

fn valid_pair(pair: &str) -> bool {
    let ok =
        |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    pair.split_once('-').is_some_and(|(b, q)| ok(b) && ok(q))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_each_api() {
        let s = PollSettings {
            pairs: vec!["BTC-USD".into(), "SOL-USD".into()],
            symbols: vec!["BTC/USD".into()],
            ..Default::default()
        };
        assert_eq!(
            Api::CoinbaseSpot.urls("http://h/", &s).unwrap(),
            [
                "http://h/v2/prices/BTC-USD/spot",
                "http://h/v2/prices/SOL-USD/spot"
            ]
        );
        assert_eq!(
            Api::AlpacaQuotes.urls("http://h", &s).unwrap(),
            ["http://h/v1beta3/crypto/us/latest/quotes?symbols=BTC%2FUSD"]
        );
        assert_eq!(
            Api::CoincapAssets.urls("http://h", &s).unwrap(),
            ["http://h/v2/assets?limit=100"]
        );
        let bad = PollSettings {
            pairs: vec!["BTC/USD?x=1".into()],
            ..Default::default()
        };
        let e = Api::CoinbaseSpot.urls("http://h", &bad).unwrap_err();
        assert!(e.to_string().contains("pairs"), "{e}");
        assert!(Api::parse("coinbase_trades").is_err());
    }

    #[test]
    fn bodies_are_checked_against_the_api_shape() {
        let assets = br#"{"data":[{"id":"bitcoin","symbol":"BTC","priceUsd":"1"}],"timestamp":1}"#;
        assert_eq!(Api::CoincapAssets.check(assets), Ok(1));
        let html = b"<html><body>502 Bad Gateway</body></html>";
        assert_eq!(
            Api::CoincapAssets.check(html).unwrap_err().0,
            "the body is HTML, not JSON"
        );
        let cut = &assets[..assets.len() - 10];
        assert!(
            Api::CoincapAssets
                .check(cut)
                .unwrap_err()
                .0
                .starts_with("the body is not JSON")
        );
        assert_eq!(
            Api::CoingeckoMarkets
                .check(br#"{"error":"rate"}"#)
                .unwrap_err()
                .0,
            "the body is not an array"
        );
        assert_eq!(
            Api::CoinbaseSpot
                .check(br#"{"data":{"amount":"1","base":"BTC"}}"#)
                .unwrap_err()
                .0,
            "`data` has no `currency`"
        );
        assert_eq!(
            Api::AlpacaQuotes.check(br#"{"quotes":{"BTC/USD":{"ap":1},"ETH/USD":{"ap":2}}}"#),
            Ok(2)
        );
        assert_eq!(
            Api::CoinapiIcons.check(br#"[{"asset_id":"BTC","url":"https://i/btc.png"}]"#),
            Ok(1)
        );
    }

    #[test]
    fn coinbase_payload_gains_the_fetch_time_and_keeps_the_rest() {
        let body = br#" {"data":{"amount":"43000.12","base":"BTC","currency":"USD"}} "#;
        assert_eq!(
            String::from_utf8(Api::CoinbaseSpot.payload(body, "2026-01-01T00:00:05Z")).unwrap(),
            r#"{"data":{"amount":"43000.12","base":"BTC","currency":"USD"},"timestamp_utc":"2026-01-01T00:00:05Z"}"#
        );
        assert_eq!(
            Api::CoincapRates.payload(b"{\"data\":[]}\n", "t"),
            b"{\"data\":[]}"
        );
    }
}
