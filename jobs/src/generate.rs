//! `gen`: realistic landing files for every source, deterministic for a seed.
//!
//! One market model drives all sources: each symbol's price follows a geometric random walk
//! ticked every second. CoinCap (`/v2/assets`, `/v2/rates`; numbers as strings with 16
//! decimals, epoch-ms envelope) and CoinGecko (`/coins/markets`, JSON numbers, ISO times) are
//! polled once a minute; Coinbase spot every 10 s through "Firehose" (objects back to back, no
//! extension, every other file gzipped); Alpaca quotes every 5 s (JSON lines, RFC 3339 with
//! nanoseconds); simulated users trade at the Alpaca mid price of that moment (seed 001).
//! `bad_rate` swaps records for malformed ones of many kinds and `dup_rate` delivers some
//! twice (at-least-once), and the returned counts say exactly what was written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;

use crate::job::landing::Landing;
use crate::{Error, Result};

/// Symbols with a plausible starting USD price, CoinCap id and name.
const ASSETS: [(&str, &str, &str, f64); 24] = [
    ("BTC", "bitcoin", "Bitcoin", 43000.0),
    ("ETH", "ethereum", "Ethereum", 2300.0),
    ("XRP", "xrp", "XRP", 0.62),
    ("LTC", "litecoin", "Litecoin", 72.0),
    ("SOL", "solana", "Solana", 98.0),
    ("ADA", "cardano", "Cardano", 0.55),
    ("DOGE", "dogecoin", "Dogecoin", 0.085),
    ("DOT", "polkadot", "Polkadot", 7.2),
    ("LINK", "chainlink", "Chainlink", 14.8),
    ("AVAX", "avalanche", "Avalanche", 35.5),
    ("TRX", "tron", "TRON", 0.105),
    ("BCH", "bitcoin-cash", "Bitcoin Cash", 245.0),
    ("XLM", "stellar", "Stellar", 0.12),
    ("ATOM", "cosmos", "Cosmos", 9.8),
    ("UNI", "uniswap", "Uniswap", 6.3),
    ("ETC", "ethereum-classic", "Ethereum Classic", 25.0),
    ("FIL", "filecoin", "Filecoin", 5.4),
    ("APT", "aptos", "Aptos", 8.9),
    ("NEAR", "near-protocol", "NEAR Protocol", 3.4),
    ("ALGO", "algorand", "Algorand", 0.18),
    ("AAVE", "aave", "Aave", 95.0),
    ("XTZ", "tezos", "Tezos", 0.95),
    ("EOS", "eos", "EOS", 0.75),
    ("MKR", "maker", "Maker", 1900.0),
];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    pub minutes: u32,
    pub seed: u64,
    pub symbols: usize,
    pub bad_rate: f64,
    pub dup_rate: f64,
    pub start: DateTime<Utc>,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            minutes: 10,
            seed: 1,
            symbols: 20,
            bad_rate: 0.0,
            dup_rate: 0.0,
            start: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("valid")
                .with_timezone(&Utc),
        }
    }
}

impl GenOptions {
    pub fn validate(&self) -> Result<()> {
        if self.symbols == 0 || self.symbols > ASSETS.len() {
            return Err(Error::Usage(format!(
                "--symbols must be 1..={}",
                ASSETS.len()
            )));
        }
        if !(0.0..=1.0).contains(&self.bad_rate) || !(0.0..=1.0).contains(&self.dup_rate) {
            return Err(Error::Usage(
                "--bad-rate and --dup-rate must be in 0..=1".into(),
            ));
        }
        Ok(())
    }
}

/// Exactly what one source received.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GenCounts {
    pub files: u64,
    /// Records as bronze will count them (one per JSON line that is not JSON).
    pub records: u64,
    pub bad: u64,
    pub duplicates: u64,
    /// Distinct good records: what silver keeps.
    pub good: u64,
}

/// Counts per landing source.
pub type GenSummary = BTreeMap<String, GenCounts>;

struct Gen<'a> {
    rng: ChaCha8Rng,
    opts: &'a GenOptions,
    landing: &'a Path,
    prices: Vec<f64>,
    counts: GenSummary,
    /// Kafka mode: per source, the JSON lines that would have been written, one message each.
    messages: Option<BTreeMap<String, Vec<String>>>,
}

/// The sources that are Kafka topics in seed 001: quotes and simulated trades.
pub const MESSAGE_SOURCES: [&str; 2] = ["alpaca_quotes", "trades"];

/// Messages for Kafka instead of files: the quotes and trades the same options would write,
/// one message per JSON line (duplicates and malformed lines included), with their counts.
pub fn generate_messages(opts: &GenOptions) -> Result<(GenSummary, BTreeMap<String, Vec<String>>)> {
    let mut g = Gen::run(opts, Path::new(""), Some(BTreeMap::new()))?;
    g.counts
        .retain(|source, _| MESSAGE_SOURCES.contains(&source.as_str()));
    Ok((g.counts, g.messages.unwrap_or_default()))
}

/// Writes `opts.minutes` minutes of landing files under `landing`.
pub fn generate(landing: &Path, opts: &GenOptions) -> Result<GenSummary> {
    Ok(Gen::run(opts, landing, None)?.counts)
}

/// Writes `opts.minutes` minutes of landing files into `landing`, local or S3 (generated into
/// a temporary directory first, then uploaded, several objects at a time).
pub async fn generate_into(landing: &Landing, opts: &GenOptions) -> Result<GenSummary> {
    let dir = match landing {
        Landing::Local(dir) => return generate(dir, opts),
        Landing::S3 { .. } => {
            tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?
        }
    };
    let counts = generate(dir.path(), opts)?;
    let mut uploads = Vec::new();
    for source in counts.keys() {
        for file in crate::sources::landing::list_source(dir.path(), source)? {
            uploads.push((source.clone(), file));
        }
    }
    futures::stream::iter(uploads)
        .map(|(source, file)| async move {
            let bytes = std::fs::read(&file.location)
                .map_err(|e| Error::io(format!("reading {}", file.location), e))?;
            landing.put(&source, &file.rel_path, bytes).await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(counts)
}

/// A record to write: good JSON, a semantically bad object, or malformed text.
enum Rec {
    Good(serde_json::Value),
    Bad(serde_json::Value),
    Text(String),
}

impl<'a> Gen<'a> {
    /// Runs the model for `opts.minutes`, into landing files or (with `messages`) messages.
    fn run(
        opts: &'a GenOptions,
        landing: &'a Path,
        messages: Option<BTreeMap<String, Vec<String>>>,
    ) -> Result<Self> {
        opts.validate()?;
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            opts,
            landing,
            prices: ASSETS[..opts.symbols].iter().map(|a| a.3).collect(),
            counts: GenSummary::new(),
            messages,
        };
        for minute in 0..opts.minutes {
            g.minute(minute)?;
        }
        for c in g.counts.values_mut() {
            c.good = c.records - c.bad - c.duplicates;
        }
        Ok(g)
    }

    fn tick(&mut self) {
        for p in &mut self.prices {
            // Box-Muller normal step, 5 bp per second.
            let (u1, u2): (f64, f64) = (self.rng.random::<f64>().max(1e-12), self.rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            *p *= (0.0005 * z).exp();
        }
    }

    fn minute(&mut self, minute: u32) -> Result<()> {
        let t0 = self.opts.start + Duration::minutes(i64::from(minute));
        let k = self.opts.symbols;
        let spot_symbols = k.min(5);
        let alpaca_symbols = k.min(4);
        let mut spot = Vec::new();
        let mut quotes_lines = Vec::new();
        let mut trades = Vec::new();
        let mut mids = vec![0.0; alpaca_symbols];
        for second in 0..60 {
            self.tick();
            let t = t0 + Duration::seconds(second);
            if second % 5 == 0 {
                quotes_lines.push(self.alpaca_quotes(t, alpaca_symbols, &mut mids));
            }
            if second % 10 == 0 {
                for s in 0..spot_symbols {
                    spot.push(self.spot(t, s));
                }
            }
            if second >= 5 && self.rng.random_bool(0.35) {
                trades.push(self.trade(t, minute, trades.len(), &mids));
            }
        }
        let ms = t0.timestamp_millis() + 30_000;
        let assets: Vec<Rec> = (0..k).map(|s| self.coincap_asset(s)).collect();
        let rates: Vec<Rec> = (0..k).map(|s| self.coincap_rate(s)).collect();
        let markets: Vec<Rec> = (0..k).map(|s| self.gecko(t0, s)).collect();
        let day = t0.format("%Y/%m/%d");
        let seed = self.opts.seed;
        self.write_envelope(
            "coincap_assets",
            &format!("{day}/{ms}-batch_{minute}-s{seed}.json"),
            assets,
            ms,
        )?;
        self.write_envelope(
            "coincap_rates",
            &format!("{day}/{ms}-batch_{minute}-s{seed}.json"),
            rates,
            ms,
        )?;
        self.write_array(
            "coingecko_markets",
            &format!("{day}/{ms}-markets-s{seed}.json"),
            markets,
        )?;
        let hour = t0.format("%Y/%m/%d/%H");
        let stamp = t0.format("%Y-%m-%d-%H-%M-%S");
        let name = format!("{hour}/cryptolake-spot-1-{stamp}-s{seed}");
        self.write_concatenated("coinbase_spot", &name, spot, minute % 2 == 1)?;
        self.write_lines(
            "alpaca_quotes",
            &format!("{day}/{ms}-quotes-s{seed}.jsonl"),
            quotes_lines,
        )?;
        let trades = trades.into_iter().map(|t| vec![t]).collect();
        self.write_lines(
            "trades",
            &format!("{day}/{ms}-trades-s{seed}.jsonl"),
            trades,
        )?;
        Ok(())
    }

    fn bad(&mut self) -> bool {
        self.opts.bad_rate > 0.0 && self.rng.random_bool(self.opts.bad_rate)
    }

    /// Breaks a good object in one of several ways; `lines` allows text that is not JSON.
    fn spoil(&mut self, mut v: serde_json::Value, price_key: &str, lines: bool) -> Rec {
        let kinds = if lines { 7 } else { 5 };
        match self.rng.random_range(0..kinds) {
            0 => {
                v.as_object_mut().map(|o| o.remove(price_key));
            }
            1 => v[price_key] = json!("not-a-number"),
            2 => v[price_key] = json!("-12.5"),
            3 => {
                let time_keys = ["timestamp", "t", "last_updated", "timestamp_utc"];
                match time_keys.iter().find(|k| v.get(**k).is_some()) {
                    Some(key) => v[*key] = json!("not-a-time"),
                    // The time is in the envelope (CoinCap): break the price instead.
                    None => v[price_key] = json!("-1"),
                }
            }
            4 => {
                for key in ["symbol", "base", "trade_id"] {
                    v.as_object_mut().map(|o| o.remove(key));
                }
            }
            5 => return Rec::Text("this is not json {".into()),
            _ => {
                let s = v.to_string();
                return Rec::Text(s[..s.len() / 2].trim_end_matches('\\').to_string());
            }
        }
        Rec::Bad(v)
    }

    fn maybe_spoil(&mut self, v: serde_json::Value, price_key: &str, lines: bool) -> Rec {
        if self.bad() {
            self.spoil(v, price_key, lines)
        } else {
            Rec::Good(v)
        }
    }

    fn coincap_asset(&mut self, s: usize) -> Rec {
        let (sym, id, name, _) = ASSETS[s];
        let p = self.prices[s];
        let supply = 1.0e6 * (s as f64 + 1.0) * 19.0;
        let v = json!({
            "id": id, "rank": (s + 1).to_string(), "symbol": sym, "name": name,
            "supply": format!("{supply:.16}"), "maxSupply": if s.is_multiple_of(3) { json!(format!("{:.16}", supply * 1.1)) } else { json!(null) },
            "marketCapUsd": format!("{:.16}", p * supply), "volumeUsd24Hr": format!("{:.16}", p * supply * 0.03),
            "priceUsd": format!("{p:.16}"), "changePercent24Hr": format!("{:.16}", self.rng.random_range(-5.0..5.0)),
            "vwap24Hr": format!("{:.16}", p * 0.999), "explorer": format!("https://explorer.example/{id}"),
        });
        self.maybe_spoil(v, "priceUsd", false)
    }

    fn coincap_rate(&mut self, s: usize) -> Rec {
        let (sym, id, _, _) = ASSETS[s];
        let v = json!({"id": id, "symbol": sym, "currencySymbol": null, "type": "crypto",
                       "rateUsd": format!("{:.16}", self.prices[s])});
        self.maybe_spoil(v, "rateUsd", false)
    }

    fn gecko(&mut self, t0: DateTime<Utc>, s: usize) -> Rec {
        let (sym, id, name, _) = ASSETS[s];
        let p = (self.prices[s] * 1e6).round() / 1e6;
        let t = t0 + Duration::seconds(45) + Duration::milliseconds(s as i64 * 7);
        let v = json!({
            "id": id, "symbol": sym.to_lowercase(), "name": name, "current_price": p,
            "market_cap": (p * 1.9e7 * (s as f64 + 1.0)).round(), "market_cap_rank": s + 1,
            "total_volume": (p * 5.0e5 * (s as f64 + 1.0)).round(), "high_24h": p * 1.02, "low_24h": p * 0.98,
            "price_change_percentage_24h": 1.25, "circulating_supply": 1.9e7 * (s as f64 + 1.0),
            "total_supply": null, "max_supply": null,
            "last_updated": t.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        self.maybe_spoil(v, "current_price", false)
    }

    fn spot(&mut self, t: DateTime<Utc>, s: usize) -> Rec {
        let v = json!({"data": {"amount": format!("{:.2}", self.prices[s].max(0.01)), "base": ASSETS[s].0, "currency": "USD"},
                       "timestamp_utc": t.to_rfc3339_opts(SecondsFormat::Secs, true)});
        if self.bad() {
            let mut v = v;
            match self.rng.random_range(0..4) {
                0 => v["data"]["amount"] = json!("abc"),
                1 => v["data"] = json!({"base": ASSETS[s].0, "currency": "USD"}),
                2 => v["timestamp_utc"] = json!("not-a-time"),
                _ => v["data"] = json!({"amount": v["data"]["amount"], "currency": "USD"}),
            }
            return Rec::Bad(v);
        }
        Rec::Good(v)
    }

    fn alpaca_quotes(&mut self, t: DateTime<Utc>, n: usize, mids: &mut [f64]) -> Vec<Rec> {
        let ts = t + Duration::nanoseconds(i64::from(self.rng.random_range(0..1_000_000_000u32)));
        let mut quotes = Vec::new();
        for (s, mid) in mids.iter_mut().enumerate().take(n) {
            let p = self.prices[s];
            let half = (p * 0.0002).max(0.0001);
            let (bp, ap) = ((p - half) * 1e4, (p + half) * 1e4);
            let (bp, ap) = (bp.round() / 1e4, ap.round() / 1e4);
            *mid = (bp + ap) / 2.0;
            let q = json!({"ap": ap, "as": (self.rng.random_range(1..5000) as f64) / 1000.0,
                           "bp": bp, "bs": (self.rng.random_range(1..5000) as f64) / 1000.0,
                           "t": ts.to_rfc3339_opts(SecondsFormat::Nanos, true)});
            quotes.push((format!("{}/USD", ASSETS[s].0), q));
        }
        let mut recs = Vec::new();
        if self.bad() && self.rng.random_bool(0.3) {
            recs.push(Rec::Text("{\"quotes\": {\"BTC/USD\": {\"ap\": 1".into()));
            return recs;
        }
        for (sym, q) in quotes {
            let rec = if self.bad() {
                match self.rng.random_range(0..3) {
                    0 => Rec::Bad(
                        json!({"ap": q["bp"].as_f64().unwrap_or(1.0) - 1.0, "as": 1, "bp": q["bp"], "bs": 1, "t": q["t"]}),
                    ),
                    1 => Rec::Bad(json!({"ap": q["ap"], "as": 1, "bs": 1, "t": q["t"]})),
                    _ => Rec::Bad(
                        json!({"ap": q["ap"], "as": 1, "bp": q["bp"], "bs": 1, "t": "yesterday"}),
                    ),
                }
            } else {
                Rec::Good(q)
            };
            recs.push(match rec {
                Rec::Good(q) => Rec::Good(json!({"sym": sym, "q": q})),
                Rec::Bad(q) => Rec::Bad(json!({"sym": sym, "q": q})),
                text => text,
            });
        }
        recs
    }

    fn trade(&mut self, t: DateTime<Utc>, minute: u32, n: usize, mids: &[f64]) -> Rec {
        let s = self.rng.random_range(0..mids.len());
        let ts = t + Duration::milliseconds(self.rng.random_range(0..1000));
        let v = json!({
            "trade_id": format!("s{}-m{minute}-{n}", self.opts.seed),
            "user_id": format!("user-{:03}", self.rng.random_range(0..25)),
            "symbol": format!("{}/USD", ASSETS[s].0),
            "side": if self.rng.random_bool(0.5) { "buy" } else { "sell" },
            "quantity": format!("{:.6}", self.rng.random_range(0.001..2.0)),
            "price": format!("{:.4}", mids[s]),
            "timestamp": ts.to_rfc3339_opts(SecondsFormat::Micros, true),
        });
        self.maybe_spoil(v, "price", true)
    }

    /// Counts one delivery unit (a record, or a JSON line of several) and decides whether it is
    /// delivered twice; only wholly good units are duplicated.
    fn account(&mut self, source: &str, unit: &[Rec]) -> bool {
        let all_good = unit.iter().all(|r| matches!(r, Rec::Good(_)));
        let dup = all_good && self.opts.dup_rate > 0.0 && self.rng.random_bool(self.opts.dup_rate);
        let c = self.counts.entry(source.to_string()).or_default();
        let n = unit.len() as u64;
        c.records += n;
        c.bad += unit.iter().filter(|r| !matches!(r, Rec::Good(_))).count() as u64;
        if dup {
            c.records += n;
            c.duplicates += n;
        }
        dup
    }

    /// Renders records one by one, each possibly delivered twice.
    fn render(&mut self, source: &str, recs: Vec<Rec>) -> Vec<String> {
        let mut out = Vec::new();
        for rec in recs {
            let text = rec.text();
            if self.account(source, std::slice::from_ref(&rec)) {
                out.push(text.clone());
            }
            out.push(text);
        }
        out
    }

    fn write_envelope(&mut self, source: &str, name: &str, recs: Vec<Rec>, ms: i64) -> Result<()> {
        let items = self.render(source, recs);
        let body = format!("{{\"data\":[{}],\"timestamp\":{ms}}}", items.join(","));
        self.write(source, name, body.as_bytes(), false)
    }

    fn write_array(&mut self, source: &str, name: &str, recs: Vec<Rec>) -> Result<()> {
        let items = self.render(source, recs);
        self.write(
            source,
            name,
            format!("[{}]", items.join(",")).as_bytes(),
            false,
        )
    }

    fn write_concatenated(
        &mut self,
        source: &str,
        name: &str,
        recs: Vec<Rec>,
        gzip: bool,
    ) -> Result<()> {
        let items = self.render(source, recs);
        self.write(source, name, items.concat().as_bytes(), gzip)
    }

    /// JSON lines: each line is one unit of records (Alpaca puts every symbol on one line).
    fn write_lines(&mut self, source: &str, name: &str, lines: Vec<Vec<Rec>>) -> Result<()> {
        let mut body = String::new();
        for unit in lines {
            let line = if source == "alpaca_quotes" {
                alpaca_line(&unit)
            } else {
                unit.iter().map(Rec::text).collect()
            };
            if self.account(source, &unit) {
                body.push_str(&line);
                body.push('\n');
            }
            body.push_str(&line);
            body.push('\n');
        }
        self.write(source, name, body.as_bytes(), false)
    }

    fn write(&mut self, source: &str, name: &str, body: &[u8], gzip: bool) -> Result<()> {
        if let Some(messages) = &mut self.messages {
            if MESSAGE_SOURCES.contains(&source) {
                let lines = String::from_utf8_lossy(body);
                let out = messages.entry(source.to_string()).or_default();
                out.extend(lines.lines().filter(|l| !l.is_empty()).map(str::to_string));
            }
            return Ok(());
        }
        self.counts.entry(source.to_string()).or_default().files += 1;
        let path = self.landing.join(source).join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let bytes = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(body)
                .and_then(|_| enc.finish())
                .map_err(|e| Error::io("compressing", e))?
        } else {
            body.to_vec()
        };
        // Write then rename, as an uploader would: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("renaming {}", path.display()), e))
    }
}

impl Rec {
    fn text(&self) -> String {
        match self {
            Rec::Good(v) | Rec::Bad(v) => v.to_string(),
            Rec::Text(t) => t.clone(),
        }
    }
}

/// `{"quotes":{"BTC/USD":{..},..}}` from `{"sym","q"}` records, or a malformed line as is.
fn alpaca_line(unit: &[Rec]) -> String {
    if let [Rec::Text(t)] = unit {
        return t.clone();
    }
    let mut quotes = serde_json::Map::new();
    for rec in unit {
        if let Rec::Good(v) | Rec::Bad(v) = rec {
            let sym = v["sym"].as_str().unwrap_or_default().to_string();
            quotes.insert(sym, v["q"].clone());
        }
    }
    json!({ "quotes": quotes }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::landing::{list_source, read_file, split_values};
    use crate::sources::records::RecordDecoder;

    #[test]
    fn messages_are_the_lines_the_files_would_hold() {
        let opts = GenOptions {
            minutes: 3,
            symbols: 4,
            bad_rate: 0.1,
            dup_rate: 0.05,
            ..GenOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path(), &opts).unwrap();
        let (counts, messages) = generate_messages(&opts).unwrap();
        for source in MESSAGE_SOURCES {
            let mut lines = Vec::new();
            for f in list_source(dir.path(), source).unwrap() {
                let text = String::from_utf8(read_file(std::path::Path::new(&f.location)).unwrap())
                    .unwrap();
                lines.extend(text.lines().map(str::to_string));
            }
            assert_eq!(messages[source], lines, "{source}");
            let (a, b) = (&counts[source], &files[source]);
            assert_eq!((a.records, a.bad, a.good), (b.records, b.bad, b.good));
        }
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn counts_match_what_the_bronze_decoder_finds_and_runs_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenOptions {
            minutes: 3,
            seed: 7,
            symbols: 6,
            bad_rate: 0.1,
            dup_rate: 0.05,
            ..Default::default()
        };
        let counts = generate(dir.path(), &opts).unwrap();
        assert_eq!(counts.len(), 6);
        for (source, c) in &counts {
            let decoder = RecordDecoder::new(
                source,
                cryptolake_catalog::layout::bronze_source_fields(source).unwrap(),
            );
            let mut records = 0;
            let files = list_source(dir.path(), source).unwrap();
            assert_eq!(files.len() as u64, c.files, "{source}");
            for f in files {
                let bytes = read_file(std::path::Path::new(&f.location)).unwrap();
                let mut out = Vec::new();
                for piece in split_values(&bytes) {
                    decoder.decode(&piece, &mut out);
                }
                records += out.len() as u64;
            }
            assert_eq!(records, c.records, "{source}");
            assert_eq!(c.good + c.bad + c.duplicates, c.records);
        }
        assert_eq!(
            counts["coincap_assets"].records - counts["coincap_assets"].duplicates,
            18
        );
        let again = tempfile::tempdir().unwrap();
        assert_eq!(generate(again.path(), &opts).unwrap(), counts);
    }
}
