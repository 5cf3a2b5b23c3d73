//! Schedule expressions as EventBridge Scheduler writes them, `rate(...)`, `cron(...)` and
//! `at(...)`, evaluated in a time zone.
//!
//! Time zones follow EventBridge Scheduler: a local time that does not exist (clocks go
//! forward) is skipped, and one that happens twice (clocks go back) fires once, the first time.
//! `rate` has no start date in the config, so its fires are whole multiples of the period since
//! the Unix epoch (`rate(5 minutes)` fires at :00, :05, …): restarts never shift them.
//! `rate(N seconds)` is a cryptolake extension for tests and dense local schedules; EventBridge
//! refuses it, and so does `schedule export`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::cron::Cron;
use crate::{Error, Result};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpression {
    /// Every `period`, aligned to the Unix epoch.
    Rate {
        period: Duration,
        text: String,
    },
    Cron {
        cron: Box<Cron>,
        text: String,
    },
    /// Once, at a local time of the schedule's zone.
    At {
        at: NaiveDateTime,
        text: String,
    },
}

impl FromStr for ScheduleExpression {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let inner = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(body) = inner("rate(") {
            Ok(Self::Rate {
                period: parse_rate(body)?,
                text: text.to_string(),
            })
        } else if let Some(body) = inner("cron(") {
            Ok(Self::Cron {
                cron: Box::new(Cron::parse(body)?),
                text: text.to_string(),
            })
        } else if let Some(body) = inner("at(") {
            let at = NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S").map_err(|e| {
                Error::Expression(format!("{text}: want at(yyyy-mm-ddThh:mm:ss): {e}"))
            })?;
            Ok(Self::At {
                at,
                text: text.to_string(),
            })
        } else {
            Err(Error::Expression(format!(
                "{text:?}: want rate(value unit), cron(minutes hours day-of-month month \
                 day-of-week year) or at(yyyy-mm-ddThh:mm:ss)"
            )))
        }
    }
}

impl fmt::Display for ScheduleExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate { text, .. } | Self::Cron { text, .. } | Self::At { text, .. } => {
                f.write_str(text)
            }
        }
    }
}

fn parse_rate(body: &str) -> Result<Duration> {
    let err = |why: &str| Error::Expression(format!("rate({body}): {why}"));
    let (value, unit) = body
        .split_once(' ')
        .ok_or_else(|| err("want rate(value unit)"))?;
    let value: i64 = value
        .trim()
        .parse()
        .map_err(|_| err("the value is a positive whole number"))?;
    if value <= 0 {
        return Err(err("the value is a positive whole number"));
    }
    let unit = unit.trim();
    // EventBridge wants the singular for 1 and the plural otherwise.
    let singular = !unit.ends_with('s');
    if singular != (value == 1) {
        return Err(err("write `1 minute` but `5 minutes` (EventBridge's rule)"));
    }
    match unit.trim_end_matches('s') {
        "second" => Ok(Duration::seconds(value)),
        "minute" => Ok(Duration::minutes(value)),
        "hour" => Ok(Duration::hours(value)),
        "day" => Ok(Duration::days(value)),
        _ => Err(err("the unit is minutes, hours or days")),
    }
}

/// A time zone by its IANA name (`UTC`, `Europe/Lisbon`).
pub fn parse_timezone(name: &str) -> Result<Tz> {
    name.parse()
        .map_err(|_| Error::Expression(format!("unknown time zone {name:?} (want an IANA name)")))
}

impl ScheduleExpression {
    /// Whether EventBridge Scheduler accepts it (`rate(N seconds)` is ours only).
    pub fn is_eventbridge(&self) -> bool {
        !matches!(self, Self::Rate { period, .. } if period.num_seconds() % 60 != 0)
    }

    /// The first fire strictly after `after`, or `None` when there is none (an `at` in the
    /// past, a cron whose years are over).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Self::Rate { period, .. } => {
                let step = period.num_milliseconds().max(1);
                let n = after.timestamp_millis().div_euclid(step) + 1;
                DateTime::from_timestamp_millis(n * step)
            }
            Self::At { at, .. } => local_to_utc(tz, *at).filter(|t| *t > after),
            Self::Cron { cron, .. } => next_cron(cron, after, tz),
        }
    }

    /// The next `n` fires after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(cursor, tz) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }
}

/// A local time as UTC: `None` when it does not exist, the earlier one when it is ambiguous.
fn local_to_utc(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

fn next_cron(cron: &Cron, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    // Start a day early: a local date can begin before `after` in UTC.
    let mut date = after.with_timezone(&tz).date_naive().pred_opt()?;
    while chrono::Datelike::year(&date) <= cron.last_year() {
        if cron.matches_date(date) {
            for &h in cron.hours() {
                for &m in cron.minutes() {
                    let local = date.and_hms_opt(h, m, 0)?;
                    if let Some(t) = local_to_utc(tz, local)
                        && t > after
                    {
                        return Some(t);
                    }
                }
            }
        }
        date = date.succ_opt()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        let e: ScheduleExpression = expr.parse().unwrap();
        let after = DateTime::parse_from_rfc3339(after)
            .unwrap()
            .with_timezone(&Utc);
        e.upcoming(after, parse_timezone(tz).unwrap(), n)
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect()
    }

    /// The AWS documentation's cron examples (EventBridge "Schedule types"), and `L`, `W`, `#`.
    #[test]
    fn eventbridge_examples() {
        let cases: [(&str, &str, &[&str]); 10] = [
            // 10:15 UTC every day.
            (
                "cron(15 10 * * ? *)",
                "2026-11-21T12:00:00Z",
                &["2026-11-22T10:15:00Z", "2026-11-23T10:15:00Z"],
            ),
            // 18:00 Monday to Friday.
            (
                "cron(0 18 ? * MON-FRI *)",
                "2026-11-20T18:00:00Z",
                &["2026-11-23T18:00:00Z", "2026-11-24T18:00:00Z"],
            ),
            // 08:00 on the first of the month.
            (
                "cron(0 8 1 * ? *)",
                "2026-11-21T00:00:00Z",
                &["2026-12-01T08:00:00Z", "2027-01-01T08:00:00Z"],
            ),
            // Every 10 minutes Monday to Friday.
            (
                "cron(0/10 * ? * MON-FRI *)",
                "2026-11-20T23:45:00Z",
                &["2026-11-20T23:50:00Z", "2026-11-23T00:00:00Z"],
            ),
            // Every 5 minutes between 08:00 and 17:55 Monday to Friday.
            (
                "cron(0/5 8-17 ? * MON-FRI *)",
                "2026-11-20T17:52:00Z",
                &["2026-11-20T17:55:00Z", "2026-11-23T08:00:00Z"],
            ),
            // 09:00 on the first Monday of each month.
            (
                "cron(0 9 ? * 2#1 *)",
                "2026-11-21T00:00:00Z",
                &["2026-12-07T09:00:00Z", "2027-01-04T09:00:00Z"],
            ),
            // The weekly maintenance: Sunday 03:00.
            (
                "cron(0 3 ? * SUN *)",
                "2026-11-21T00:00:00Z",
                &["2026-11-22T03:00:00Z", "2026-11-29T03:00:00Z"],
            ),
            // The last day of the month, the last Friday, the weekday nearest the 15th.
            (
                "cron(0 0 L * ? *)",
                "2028-02-01T00:00:00Z",
                &["2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"],
            ),
            (
                "cron(30 12 ? * 6L 2026)",
                "2026-11-21T00:00:00Z",
                &["2026-11-27T12:30:00Z", "2026-12-25T12:30:00Z"],
            ),
            (
                "cron(0 6 15W * ? *)",
                "2026-11-01T00:00:00Z",
                &["2026-11-16T06:00:00Z", "2026-12-15T06:00:00Z"],
            ),
        ];
        for (expr, after, want) in cases {
            assert_eq!(next(expr, "UTC", after, want.len()), want, "{expr}");
        }
        assert!(next("cron(0 0 1 1 ? 2020)", "UTC", "2026-01-01T00:00:00Z", 1).is_empty());
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // Lisbon is UTC+0 in winter, UTC+1 in summer.
        assert_eq!(
            next(
                "cron(0 3 ? * SUN *)",
                "Europe/Lisbon",
                "2026-07-01T00:00:00Z",
                1
            ),
            ["2026-07-05T02:00:00Z"]
        );
        // New York springs forward on 2026-03-08 at 02:00: 02:30 does not exist that day and
        // is skipped; it falls back on 2026-11-01 and 01:30 happens twice: it fires once.
        assert_eq!(
            next(
                "cron(30 2 * * ? *)",
                "America/New_York",
                "2026-03-07T00:00:00Z",
                2
            ),
            ["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"]
        );
        assert_eq!(
            next(
                "cron(30 1 * * ? *)",
                "America/New_York",
                "2026-10-31T12:00:00Z",
                3
            ),
            [
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
                "2026-11-03T06:30:00Z"
            ]
        );
    }

    #[test]
    fn rate_and_at() {
        assert_eq!(
            next("rate(5 minutes)", "UTC", "2026-11-21T10:07:30Z", 3),
            [
                "2026-11-21T10:10:00Z",
                "2026-11-21T10:15:00Z",
                "2026-11-21T10:20:00Z"
            ]
        );
        assert_eq!(
            next("rate(1 day)", "UTC", "2026-11-21T10:07:30Z", 1),
            ["2026-11-22T00:00:00Z"]
        );
        assert_eq!(
            next(
                "at(2026-12-24T18:00:00)",
                "Europe/Lisbon",
                "2026-11-21T00:00:00Z",
                5
            ),
            ["2026-12-24T18:00:00Z"]
        );
        // An `at` in the past never fires.
        assert!(next("at(2026-01-01T00:00:00)", "UTC", "2026-11-21T00:00:00Z", 1).is_empty());
        assert!(
            "rate(2 seconds)"
                .parse::<ScheduleExpression>()
                .is_ok_and(|e| !e.is_eventbridge())
        );
        assert!(
            "rate(1 minute)"
                .parse::<ScheduleExpression>()
                .is_ok_and(|e| e.is_eventbridge())
        );
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "at(2026-12-24)",
            "every 5 minutes",
        ] {
            assert!(bad.parse::<ScheduleExpression>().is_err(), "{bad}");
        }
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
