//! Durations as users write them in flags and the config (`--older-than 3d`, `every = "5s"`).

use std::time::Duration;

use crate::{Error, Result};

/// Parses a duration as humantime writes them (`3d`, `12h`, `30m`, `45s`, `1h30m`), or a bare
/// number of seconds. Out-of-range values are an error, never a wrapped number.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let bad = || Error::Usage(format!("`{text}` is not a duration (3d, 12h, 30m, 45s)"));
    if t.is_empty() || t.contains(char::is_whitespace) {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(Duration::from_secs).map_err(|_| bad());
    }
    humantime::parse_duration(t).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259_200));
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43_200);
        assert_eq!(parse_duration("0s").unwrap().as_secs(), 0);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5_400);
        // 10^16 days overflows: an error, not a wrapped number of seconds.
        assert!(parse_duration("10000000000000000d").is_err());
    }
}
