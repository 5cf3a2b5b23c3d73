//! Field parsers for silver: exact decimals, UTC timestamps, `BASE-QUOTE` symbols.
//! Each returns a reason on failure; the reason ends up in `silver.quarantine`.

use chrono::{DateTime, NaiveDateTime, Utc};
use cryptolake_catalog::layout::DECIMAL_SCALE;

/// 10^38: the first value a `decimal(38, s)` cannot hold.
const DECIMAL_LIMIT: i128 = 10_i128.pow(38);

/// Parses a decimal (`-12.5`, `1e-5`, `8.4E11`) into an integer scaled by 10^16, rounding half
/// away from zero past the 16th place. No floating point is involved.
pub fn parse_decimal(text: &str) -> Result<i128, String> {
    let t = text.trim();
    let fail = || format!("`{text}` is not a decimal number");
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (
            &body[..i],
            body[i + 1..].parse::<i32>().map_err(|_| fail())?,
        ),
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(fail());
    }
    // digits * 10^(exponent - frac_len) is the value; we want it * 10^SCALE. The digits are
    // the integer part's then the fraction's, read in place (no string a number).
    let (int_digits, frac_digits) = (int_part.as_bytes(), frac_part.as_bytes());
    let all = int_digits.len() + frac_digits.len();
    let at = |i: usize| {
        if i < int_digits.len() {
            int_digits[i]
        } else {
            frac_digits[i - int_digits.len()]
        }
    };
    let lead = (0..all).take_while(|&i| at(i) == b'0').count();
    let len = (all - lead) as i32;
    let shift = exponent - frac_part.len() as i32 + DECIMAL_SCALE as i32;
    let too_big = || format!("`{text}` does not fit decimal(38, {DECIMAL_SCALE})");
    let mut value: i128 = 0;
    if shift >= 0 {
        if len + shift > 38 {
            return Err(too_big());
        }
        for i in lead..all {
            value = value * 10 + i128::from(at(i) - b'0');
        }
        value *= 10_i128.pow(shift as u32);
    } else {
        let keep = len + shift; // digits left after dropping -shift places
        if keep > 38 {
            return Err(too_big());
        }
        if keep > 0 {
            for i in lead..lead + keep as usize {
                value = value * 10 + i128::from(at(i) - b'0');
            }
        }
        let next = if keep >= 0 && keep < len {
            Some(at(lead + keep as usize))
        } else {
            None
        };
        if next.is_some_and(|d| d >= b'5') {
            value += 1;
        }
    }
    if value >= DECIMAL_LIMIT {
        return Err(too_big());
    }
    Ok(if negative { -value } else { value })
}

/// Earliest and latest event times accepted (2009-01-03, Bitcoin's genesis, to 2100).
const MIN_US: i64 = 1_230_940_800_000_000;
const MAX_US: i64 = 4_102_444_800_000_000;

/// Parses an event time into UTC microseconds: epoch milliseconds (CoinCap), RFC 3339 with up
/// to nanoseconds (Alpaca, CoinGecko), or a zone-less ISO time taken as UTC.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let us = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = t.parse().map_err(|_| format!("`{text}` is not a time"))?;
        // Seconds, milliseconds or microseconds since the epoch, told apart by size.
        match n {
            0..=99_999_999_999 => n * 1_000_000,
            100_000_000_000..=99_999_999_999_999 => n * 1_000,
            _ => n,
        }
    } else if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        dt.with_timezone(&Utc).timestamp_micros()
    } else {
        let naive = [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f UTC",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .ok_or_else(|| format!("`{text}` is not a time"))?;
        naive.and_utc().timestamp_micros()
    };
    if !(MIN_US..MAX_US).contains(&us) {
        return Err(format!("time `{text}` is outside 2009..2100"));
    }
    Ok(us)
}

/// Normalizes a symbol to upper-case `BASE-QUOTE` (`btc/usd`, `BTCUSD`? no: `BTC` + `USD`).
/// `default_quote` is used when the text names only the base asset.
pub fn normalize_symbol(text: &str, default_quote: &str) -> Result<String, String> {
    let t = text.trim();
    let (base, quote) = match t.find(['/', '-', '_']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, default_quote),
    };
    symbol_of(base, quote).ok_or_else(|| format!("`{text}` is not a symbol"))
}

/// `BASE-QUOTE` in upper case when both parts are 1 to 12 ASCII letters or digits, else none.
/// One allocation: it runs once a quote.
pub fn symbol_of(base: &str, quote: &str) -> Option<String> {
    let ok =
        |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !(ok(base) && ok(quote)) {
        return None;
    }
    let mut symbol = String::with_capacity(base.len() + 1 + quote.len());
    symbol.extend(base.chars().map(|c| c.to_ascii_uppercase()));
    symbol.push('-');
    symbol.extend(quote.chars().map(|c| c.to_ascii_uppercase()));
    Some(symbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats a scaled decimal (`43000.12`).
    fn format_decimal(value: i128) -> String {
        let scale = 10_i128.pow(DECIMAL_SCALE);
        let sign = if value < 0 { "-" } else { "" };
        let abs = value.unsigned_abs();
        let (int, frac) = (abs / scale as u128, abs % scale as u128);
        let frac = format!("{frac:0width$}", width = DECIMAL_SCALE as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }

    const ONE: i128 = 10_i128.pow(16);

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("43000.12").unwrap(), 4_300_012 * ONE / 100);
        assert_eq!(
            parse_decimal("0.1234567890123456").unwrap(),
            1_234_567_890_123_456
        );
        assert_eq!(parse_decimal("-1.5").unwrap(), -15 * ONE / 10);
        assert_eq!(parse_decimal("8.4e11").unwrap(), 840_000_000_000 * ONE);
        assert_eq!(parse_decimal("1E-5").unwrap(), ONE / 100_000);
        assert_eq!(parse_decimal("7").unwrap(), 7 * ONE);
        assert_eq!(parse_decimal(".5").unwrap(), ONE / 2);
        // Rounded half away from zero past 16 places.
        assert_eq!(parse_decimal("0.00000000000000015").unwrap(), 2);
        assert_eq!(parse_decimal("0.00000000000000014").unwrap(), 1);
        assert_eq!(parse_decimal("1e-30").unwrap(), 0);
        for bad in ["", "abc", "1.2.3", "NaN", "1e", "--1", "12a", "."] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
        assert!(parse_decimal("1e30").is_err());
        assert_eq!(
            format_decimal(parse_decimal("43000.12").unwrap()),
            "43000.12"
        );
        assert_eq!(format_decimal(-ONE / 4), "-0.25");
        assert_eq!(format_decimal(5 * ONE), "5");
    }

    /// The parser as it was before it read digits in place (joined into a `String`).
    fn parse_decimal_joined(text: &str) -> Result<i128, String> {
        let t = text.trim();
        let fail = || format!("`{text}` is not a decimal number");
        let (negative, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(i) => (
                &body[..i],
                body[i + 1..].parse::<i32>().map_err(|_| fail())?,
            ),
            None => (body, 0),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty()
            || !int_part
                .bytes()
                .chain(frac_part.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(fail());
        }
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let shift = exponent - frac_part.len() as i32 + DECIMAL_SCALE as i32;
        let too_big = || format!("`{text}` does not fit decimal(38, {DECIMAL_SCALE})");
        let mut value: i128 = 0;
        if shift >= 0 {
            if digits.len() as i32 + shift > 38 {
                return Err(too_big());
            }
            for b in digits.bytes() {
                value = value * 10 + i128::from(b - b'0');
            }
            value *= 10_i128.pow(shift as u32);
        } else {
            let keep = digits.len() as i32 + shift;
            if keep > 38 {
                return Err(too_big());
            }
            if keep > 0 {
                for b in digits[..keep as usize].bytes() {
                    value = value * 10 + i128::from(b - b'0');
                }
            }
            let next = if keep >= 0 {
                digits.as_bytes().get(keep as usize).copied()
            } else {
                None
            };
            if next.is_some_and(|d| d >= b'5') {
                value += 1;
            }
        }
        if value >= DECIMAL_LIMIT {
            return Err(too_big());
        }
        Ok(if negative { -value } else { value })
    }

    #[test]
    fn decimals_read_in_place_match_the_joined_digits() {
        let ints = [
            "",
            "0",
            "7",
            "000",
            "0012",
            "43000",
            "99999999999999999999999",
        ];
        let fracs = [
            "",
            "0",
            "5",
            "12",
            "0000000000000001",
            "00000000000000015",
            "49999999999",
        ];
        let exps = ["", "e0", "e5", "E-5", "e-20", "e22", "e-40"];
        let mut checked = 0;
        for sign in ["", "-", "+"] {
            for int in ints {
                for frac in fracs {
                    for dot in [".", ""] {
                        if dot.is_empty() && !frac.is_empty() {
                            continue;
                        }
                        for exp in exps {
                            let text = format!("{sign}{int}{dot}{frac}{exp}");
                            assert_eq!(parse_decimal(&text), parse_decimal_joined(&text), "{text}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 7 * (7 + 1) * 7);
    }

    #[test]
    fn times_in_every_source_format() {
        let t = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        assert_eq!(parse_time("1767225600000").unwrap(), t);
        assert_eq!(parse_time("1767225600").unwrap(), t);
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap(), t);
        assert_eq!(parse_time("2026-01-01T01:00:00+01:00").unwrap(), t);
        assert_eq!(
            parse_time("2026-01-01T00:00:00.123456789Z").unwrap(),
            t + 123_456
        );
        assert_eq!(parse_time("2026-01-01 00:00:00").unwrap(), t);
        assert_eq!(parse_time("2026-01-01T00:00:00.5").unwrap(), t + 500_000);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("1999-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn symbols() {
        assert_eq!(normalize_symbol("BTC/USD", "USD").unwrap(), "BTC-USD");
        assert_eq!(normalize_symbol("eth", "usd").unwrap(), "ETH-USD");
        assert_eq!(normalize_symbol("ltc-usd", "USD").unwrap(), "LTC-USD");
        assert!(normalize_symbol("", "USD").is_err());
        assert!(normalize_symbol("B TC", "USD").is_err());
        assert_eq!(normalize_symbol(" xrp_eur ", "USD").unwrap(), "XRP-EUR");
        assert_eq!(
            normalize_symbol("btc/usd/x", "USD").unwrap_err(),
            "`btc/usd/x` is not a symbol"
        );
        assert!(normalize_symbol("ABCDEFGHIJKLM", "USD").is_err());
        assert_eq!(symbol_of("doge", "usdt").as_deref(), Some("DOGE-USDT"));
        assert_eq!(symbol_of("BTC-X", "USD"), None);
    }
}
