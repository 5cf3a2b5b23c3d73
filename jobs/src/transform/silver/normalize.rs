//! One bronze record of a source into one silver row, or the reason it cannot be.

use super::parse::{normalize_symbol, parse_decimal, parse_time, symbol_of};
use crate::sources::defined::{Defined, SourceKind, TimeFormat};

/// A normalized quote (prices scaled by 10^16, times in UTC microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub symbol: String,
    pub price: i128,
    pub bid: Option<i128>,
    pub ask: Option<i128>,
    pub bid_size: Option<i128>,
    pub ask_size: Option<i128>,
    pub volume_24h: Option<i128>,
    pub market_cap: Option<i128>,
    pub event_us: i64,
}

/// A normalized trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub trade_id: String,
    pub user_id: String,
    pub symbol: String,
    pub side: &'static str,
    pub quantity: i128,
    pub price: i128,
    pub event_us: i64,
}

/// What a bronze record becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    Quote(Quote),
    Trade(Trade),
}

/// Looks a bronze column up by name.
pub trait Fields {
    fn get(&self, name: &str) -> Option<&str>;
}

fn required<'a>(f: &'a impl Fields, name: &str) -> Result<&'a str, String> {
    match f.get(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(format!("{name} is missing")),
    }
}

fn decimal(f: &impl Fields, name: &str) -> Result<Option<i128>, String> {
    f.get(name)
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_decimal(v).map_err(|e| format!("{name}: {e}")))
        .transpose()
}

fn positive(f: &impl Fields, name: &str) -> Result<i128, String> {
    match decimal(f, name)? {
        Some(v) if v > 0 => Ok(v),
        Some(_) => Err(format!("{name} must be positive")),
        None => Err(format!("{name} is missing")),
    }
}

fn non_negative(f: &impl Fields, name: &str) -> Result<Option<i128>, String> {
    match decimal(f, name)? {
        Some(v) if v < 0 => Err(format!("{name} must not be negative")),
        v => Ok(v),
    }
}

fn time(f: &impl Fields, name: &str) -> Result<i64, String> {
    parse_time(required(f, name)?).map_err(|e| format!("{name}: {e}"))
}

fn symbol(f: &impl Fields, name: &str) -> Result<String, String> {
    normalize_symbol(required(f, name)?, "USD").map_err(|e| format!("{name}: {e}"))
}

/// Normalizes one record of `source`.
pub fn normalize(source: &str, f: &impl Fields) -> Result<Normalized, String> {
    let quote = |symbol, price, event_us| Quote {
        symbol,
        price,
        bid: None,
        ask: None,
        bid_size: None,
        ask_size: None,
        volume_24h: None,
        market_cap: None,
        event_us,
    };
    Ok(match source {
        "coincap_assets" => Normalized::Quote(Quote {
            volume_24h: non_negative(f, "volume_usd_24hr")?,
            market_cap: non_negative(f, "market_cap_usd")?,
            ..quote(
                symbol(f, "symbol")?,
                positive(f, "price_usd")?,
                time(f, "timestamp")?,
            )
        }),
        "coincap_rates" => Normalized::Quote(quote(
            symbol(f, "symbol")?,
            positive(f, "rate_usd")?,
            time(f, "timestamp")?,
        )),
        "coinbase_spot" => {
            let base = required(f, "base")?;
            let currency = f.get("currency").unwrap_or("USD");
            // Plain parts (nearly every record) make the symbol at once; others go through
            // the joined text, for the same result and reason as always.
            let sym = match symbol_of(base, currency) {
                Some(sym) => sym,
                None => normalize_symbol(&format!("{base}-{currency}"), "USD")
                    .map_err(|e| format!("base/currency: {e}"))?,
            };
            Normalized::Quote(quote(
                sym,
                positive(f, "amount")?,
                time(f, "timestamp_utc")?,
            ))
        }
        "coingecko_markets" => Normalized::Quote(Quote {
            volume_24h: non_negative(f, "total_volume")?,
            market_cap: non_negative(f, "market_cap")?,
            ..quote(
                symbol(f, "symbol")?,
                positive(f, "current_price")?,
                time(f, "last_updated")?,
            )
        }),
        "alpaca_quotes" => {
            let bid = positive(f, "bid_price")?;
            let ask = positive(f, "ask_price")?;
            if ask < bid {
                return Err("ask_price is below bid_price".into());
            }
            Normalized::Quote(Quote {
                bid: Some(bid),
                ask: Some(ask),
                bid_size: non_negative(f, "bid_size")?,
                ask_size: non_negative(f, "ask_size")?,
                // The mid price; exact because both are scaled integers (rounded half up).
                ..quote(
                    symbol(f, "symbol")?,
                    (bid + ask + 1) / 2,
                    time(f, "timestamp")?,
                )
            })
        }
        "trades" => Normalized::Trade(trade(f)?),
        other => match crate::sources::defined::lookup(other) {
            Some(d) => return mapped(&d, f),
            None => return Err(format!("unknown source {other}")),
        },
    })
}

/// Normalizes one record of a configured source by its mapping (validated: every field it
/// names is one of the source's).
fn mapped(d: &Defined, f: &impl Fields) -> Result<Normalized, String> {
    let m = &d.def.mapping;
    let name = |v: &Option<String>| v.clone().unwrap_or_default();
    let default_quote = m.default_quote.as_deref().unwrap_or("USD");
    let sym = match (&m.symbol, &m.base) {
        (Some(field), _) => normalize_symbol(required(f, field)?, default_quote)
            .map_err(|e| format!("{field}: {e}"))?,
        (None, Some(base_field)) => {
            let base = required(f, base_field)?;
            let quote = m
                .quote
                .as_deref()
                .and_then(|q| f.get(q))
                .unwrap_or(default_quote);
            symbol_of(base.trim(), quote.trim())
                .ok_or_else(|| format!("{base_field}: `{base}-{quote}` is not a symbol"))?
        }
        (None, None) => return Err("the mapping names no symbol".into()),
    };
    let time_field = name(&m.event_time);
    let event_us = mapped_time(&d.time, required(f, &time_field)?)
        .map_err(|e| format!("{time_field}: {e}"))?;
    let opt = |v: &Option<String>| -> Result<Option<i128>, String> {
        match v {
            Some(field) => non_negative(f, field),
            None => Ok(None),
        }
    };
    if d.def.kind == SourceKind::Trades {
        let side_field = name(&m.side);
        let side = match required(f, &side_field)?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "buy" | "b" => "buy",
            "sell" | "s" => "sell",
            other => return Err(format!("{side_field}: `{other}` is neither buy nor sell")),
        };
        return Ok(Normalized::Trade(Trade {
            trade_id: required(f, &name(&m.trade_id))?.trim().to_string(),
            user_id: match &m.user_id {
                Some(u) => f.get(u).unwrap_or_default().trim().to_string(),
                None => String::new(),
            },
            symbol: sym,
            side,
            quantity: positive(f, &name(&m.quantity))?,
            price: positive(f, &name(&m.price))?,
            event_us,
        }));
    }
    let (bid, ask) = (opt(&m.bid)?, opt(&m.ask)?);
    if let (Some(b), Some(a)) = (bid, ask)
        && a < b
    {
        return Err(format!("{} is below {}", name(&m.ask), name(&m.bid)));
    }
    let price = match (&m.price, bid, ask) {
        (Some(field), _, _) => positive(f, field)?,
        (None, Some(b), Some(a)) if b > 0 => (b + a + 1) / 2,
        (None, _, _) => {
            return Err(format!(
                "{} and {} are needed for the mid price",
                name(&m.bid),
                name(&m.ask)
            ));
        }
    };
    Ok(Normalized::Quote(Quote {
        symbol: sym,
        price,
        bid,
        ask,
        bid_size: opt(&m.bid_size)?,
        ask_size: opt(&m.ask_size)?,
        volume_24h: opt(&m.volume_24h)?,
        market_cap: opt(&m.market_cap)?,
        event_us,
    }))
}

/// A configured source's event time in UTC microseconds.
fn mapped_time(format: &TimeFormat, text: &str) -> Result<i64, String> {
    let t = text.trim();
    match format {
        TimeFormat::Auto => parse_time(t),
        TimeFormat::Rfc3339 => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_micros())
            .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}")),
        TimeFormat::Epoch(per_second) => {
            // Digits only, optionally with a fraction: exact, no float.
            let value = parse_decimal(t).map_err(|_| format!("`{text}` is not an epoch number"))?;
            // value is scaled by 10^16: microseconds = value * 10^6 / 10^16 / per_second.
            let us = value / (i128::from(*per_second) * 10_i128.pow(10));
            i64::try_from(us).map_err(|_| format!("`{text}` is out of range"))
        }
        TimeFormat::Pattern(pattern, tz) => {
            if let Ok(d) = chrono::DateTime::parse_from_str(t, pattern) {
                return Ok(d.timestamp_micros());
            }
            let naive = chrono::NaiveDateTime::parse_from_str(t, pattern)
                .map_err(|e| format!("`{text}` does not match `{pattern}`: {e}"))?;
            use chrono::TimeZone;
            tz.from_local_datetime(&naive)
                .earliest()
                .map(|d| d.timestamp_micros())
                .ok_or_else(|| format!("`{text}` does not exist in {tz}"))
        }
    }
}

/// Normalizes one trade record.
fn trade(f: &impl Fields) -> Result<Trade, String> {
    let side = match required(f, "side")?.trim().to_ascii_lowercase().as_str() {
        "buy" => "buy",
        "sell" => "sell",
        other => return Err(format!("side `{other}` is neither buy nor sell")),
    };
    Ok(Trade {
        trade_id: required(f, "trade_id")?.trim().to_string(),
        user_id: required(f, "user_id")?.trim().to_string(),
        symbol: symbol(f, "symbol")?,
        side,
        quantity: positive(f, "quantity")?,
        price: positive(f, "price")?,
        event_us: time(f, "timestamp")?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    impl Fields for HashMap<&str, &str> {
        fn get(&self, name: &str) -> Option<&str> {
            HashMap::get(self, name).copied()
        }
    }

    const ONE: i128 = 10_i128.pow(16);

    #[test]
    fn alpaca_mid_price_and_checks() {
        let ok: HashMap<&str, &str> = [
            ("symbol", "BTC/USD"),
            ("bid_price", "100"),
            ("ask_price", "101"),
            ("bid_size", "0.5"),
            ("ask_size", "1"),
            ("timestamp", "2026-01-01T00:00:05.123456789Z"),
        ]
        .into();
        let Normalized::Quote(q) = normalize("alpaca_quotes", &ok).unwrap() else {
            panic!("a quote")
        };
        assert_eq!(q.symbol, "BTC-USD");
        assert_eq!(q.price, 1005 * ONE / 10);
        assert_eq!(q.event_us, 1_767_225_605_123_456);
        let mut crossed = ok.clone();
        crossed.insert("ask_price", "99");
        assert_eq!(
            normalize("alpaca_quotes", &crossed).unwrap_err(),
            "ask_price is below bid_price"
        );
    }

    #[test]
    fn reasons_name_the_field() {
        let rec: HashMap<&str, &str> = [
            ("symbol", "BTC"),
            ("price_usd", "-3"),
            ("timestamp", "1767225600000"),
        ]
        .into();
        assert_eq!(
            normalize("coincap_assets", &rec).unwrap_err(),
            "price_usd must be positive"
        );
        let rec: HashMap<&str, &str> = [("trade_id", "t1"), ("side", "hold")].into();
        assert_eq!(
            normalize("trades", &rec).unwrap_err(),
            "side `hold` is neither buy nor sell"
        );
        let rec: HashMap<&str, &str> = [("amount", "1"), ("timestamp_utc", "x")].into();
        assert_eq!(
            normalize("coinbase_spot", &rec).unwrap_err(),
            "base is missing"
        );
    }
}
