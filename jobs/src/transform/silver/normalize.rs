//! One bronze record of a source into one silver row, or the reason it cannot be.

use super::parse::{normalize_symbol, parse_decimal, parse_time, symbol_of};

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
        other => return Err(format!("unknown source {other}")),
    })
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
