//! EventBridge's six-field cron: `minutes hours day-of-month month day-of-week year`.
//!
//! As EventBridge reads it: one of day-of-month and day-of-week is `?`; day-of-week counts
//! 1 = SUN … 7 = SAT (or `SUN`–`SAT`), months `1`–`12` or `JAN`–`DEC`, years 1970–2199;
//! `,` `-` `*` `/` everywhere, `L` (last day of the month; `5L` the last Thursday), `W`
//! (`15W`, the weekday nearest the 15th, within the month; `LW`, the last weekday) and `#`
//! (`3#2`, the second Tuesday).
//!
//! `croner` parses most of this (the year field, `L`, `W`, `#`), but not as EventBridge means
//! it: it takes `?` for `*` (so `0 12 ? * MON *` would also fire every day of the month), and it
//! fires inside a daylight-saving gap where EventBridge skips the time. So the dialect is
//! here, with the AWS documentation's examples as tests; where the two dialects agree, the
//! tests check this parser against croner's.

use chrono::{Datelike, NaiveDate, Weekday};

use crate::{Error, Result};

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: DaySpec,
    months: Vec<u32>,
    /// Years allowed; `None` is every year.
    years: Option<Vec<i32>>,
}

/// Which days of a month match.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DaySpec {
    /// Days of the month, plus `L` (last day) and `nW` / `LW` (nearest weekday).
    Month {
        days: Vec<u32>,
        last: bool,
        nearest_weekday: Option<u32>,
        last_weekday: bool,
    },
    /// Days of the week (1 = Sunday), plus `nL` (last such day) and `n#k` (k-th such day).
    Week {
        days: Vec<u32>,
        last_of: Option<u32>,
        nth: Option<(u32, u32)>,
    },
}

impl Cron {
    /// Parses the six fields inside `cron(...)`.
    pub fn parse(text: &str) -> Result<Self> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [min, hour, dom, month, dow, year] = fields[..] else {
            return Err(invalid(
                text,
                format!(
                    "EventBridge cron has 6 fields (minutes hours day-of-month month \
                     day-of-week year), not {}",
                    fields.len()
                ),
            ));
        };
        let err = |why: String| invalid(text, why);
        let days = match (dom, dow) {
            ("?", "?") => {
                return Err(err(
                    "only one of day-of-month and day-of-week may be ?".into()
                ));
            }
            ("?", dow) => parse_week(dow).map_err(err)?,
            (dom, "?") => parse_month_days(dom).map_err(err)?,
            _ => {
                return Err(err(
                    "one of day-of-month and day-of-week must be ? (EventBridge cannot use both)"
                        .into(),
                ));
            }
        };
        Ok(Self {
            minutes: parse_field(min, 0, 59, &[]).map_err(err)?,
            hours: parse_field(hour, 0, 23, &[]).map_err(err)?,
            days,
            months: parse_field(month, 1, 12, &MONTHS).map_err(err)?,
            years: match year {
                "*" => None,
                y => Some(
                    parse_field(y, 1970, 2199, &[])
                        .map_err(err)?
                        .into_iter()
                        .map(|y| y as i32)
                        .collect(),
                ),
            },
        })
    }

    pub fn minutes(&self) -> &[u32] {
        &self.minutes
    }

    pub fn hours(&self) -> &[u32] {
        &self.hours
    }

    /// The last year this expression can fire in.
    pub fn last_year(&self) -> i32 {
        self.years
            .as_ref()
            .and_then(|y| y.iter().max().copied())
            .unwrap_or(2199)
    }

    /// Whether the expression fires on `date` (any time of day).
    pub fn matches_date(&self, date: NaiveDate) -> bool {
        if !self.months.contains(&date.month()) {
            return false;
        }
        if let Some(years) = &self.years
            && !years.contains(&date.year())
        {
            return false;
        }
        let last = last_day_of_month(date);
        match &self.days {
            DaySpec::Month {
                days,
                last: on_last,
                nearest_weekday,
                last_weekday,
            } => {
                days.contains(&date.day())
                    || (*on_last && date.day() == last)
                    || nearest_weekday.is_some_and(|n| nearest_weekday_to(date, n) == date.day())
                    || (*last_weekday && last_weekday_of(date) == date.day())
            }
            DaySpec::Week { days, last_of, nth } => {
                let dow = date.weekday().num_days_from_sunday() + 1;
                days.contains(&dow)
                    || last_of.is_some_and(|d| d == dow && date.day() + 7 > last)
                    || nth.is_some_and(|(d, k)| d == dow && (date.day() - 1) / 7 + 1 == k)
            }
        }
    }
}

fn invalid(text: &str, why: String) -> Error {
    Error::Expression(format!("cron({text}): {why}"))
}

fn last_day_of_month(date: NaiveDate) -> u32 {
    let (y, m) = (date.year(), date.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    next.and_then(|d| d.pred_opt()).map_or(28, |d| d.day())
}

/// The weekday nearest day `n` of `date`'s month, never crossing into another month (Quartz
/// and EventBridge: `1W` on a Saturday is Monday the 3rd).
fn nearest_weekday_to(date: NaiveDate, n: u32) -> u32 {
    let last = last_day_of_month(date);
    let n = n.min(last);
    let Some(day) = date.with_day(n) else {
        return 0;
    };
    match day.weekday() {
        Weekday::Sat if n == 1 => 3,
        Weekday::Sat => n - 1,
        Weekday::Sun if n == last => n - 2,
        Weekday::Sun => n + 1,
        _ => n,
    }
}

fn last_weekday_of(date: NaiveDate) -> u32 {
    let last = last_day_of_month(date);
    match date.with_day(last).map(|d| d.weekday()) {
        Some(Weekday::Sat) => last - 1,
        Some(Weekday::Sun) => last - 2,
        _ => last,
    }
}

/// One field's list of values: `*`, `5`, `1-5`, `*/15`, `10-50/10`, `MON,WED`, …
fn parse_field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("step 0 in {part:?}"));
        }
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a, min, names)?, value(b, min, names)?),
                // `5/10` runs from 5 to the end.
                None if step > 1 => (value(r, min, names)?, max),
                None => {
                    let v = value(r, min, names)?;
                    (v, v)
                }
            },
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn value(text: &str, min: u32, names: &[&str]) -> std::result::Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(i as u32 + min);
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

fn parse_month_days(text: &str) -> std::result::Result<DaySpec, String> {
    let (mut last, mut last_weekday, mut nearest_weekday) = (false, false, None);
    let mut plain = Vec::new();
    for part in text.split(',') {
        match part.to_ascii_uppercase().as_str() {
            "L" => last = true,
            "LW" => last_weekday = true,
            p if p.ends_with('W') => {
                let n: u32 = p[..p.len() - 1]
                    .parse()
                    .map_err(|_| format!("bad day {part:?}"))?;
                if !(1..=31).contains(&n) {
                    return Err(format!("{part:?} is outside 1-31"));
                }
                nearest_weekday = Some(n);
            }
            _ => plain.push(part),
        }
    }
    let days = if plain.is_empty() {
        Vec::new()
    } else {
        parse_field(&plain.join(","), 1, 31, &[])?
    };
    Ok(DaySpec::Month {
        days,
        last,
        nearest_weekday,
        last_weekday,
    })
}

fn parse_week(text: &str) -> std::result::Result<DaySpec, String> {
    let (mut last_of, mut nth) = (None, None);
    let mut plain = Vec::new();
    for part in text.split(',') {
        let upper = part.to_ascii_uppercase();
        if upper == "L" {
            // `L` alone in day-of-week is the last day of the week: Saturday.
            plain.push("7".to_string());
        } else if let Some(day) = upper.strip_suffix('L') {
            last_of = Some(value(day, 1, &DAYS)?);
        } else if let Some((day, k)) = upper.split_once('#') {
            let k: u32 = k.parse().map_err(|_| format!("bad {part:?}"))?;
            if !(1..=5).contains(&k) {
                return Err(format!("{part:?}: the week number is 1-5"));
            }
            nth = Some((value(day, 1, &DAYS)?, k));
        } else {
            plain.push(upper);
        }
    }
    let days = if plain.is_empty() {
        Vec::new()
    } else {
        parse_field(&plain.join(","), 1, 7, &DAYS)?
    };
    if last_of.is_some_and(|d| !(1..=7).contains(&d))
        || nth.is_some_and(|(d, _)| !(1..=7).contains(&d))
    {
        return Err(format!("{text:?}: days of the week are 1-7 or SUN-SAT"));
    }
    Ok(DaySpec::Week { days, last_of, nth })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn fields_and_names() {
        let c = Cron::parse("0/15 8-10 ? JAN,jun MON-FRI 2026-2027").unwrap();
        assert_eq!(c.minutes(), [0, 15, 30, 45]);
        assert_eq!(c.hours(), [8, 9, 10]);
        assert!(c.matches_date(date("2026-06-01"))); // a Monday
        assert!(!c.matches_date(date("2026-06-06"))); // a Saturday
        assert!(!c.matches_date(date("2026-07-01")));
        assert!(!c.matches_date(date("2028-01-03")));
    }

    #[test]
    fn last_weekday_nearest_and_nth() {
        let last = Cron::parse("0 0 L * ? *").unwrap();
        assert!(last.matches_date(date("2028-02-29")));
        assert!(!last.matches_date(date("2028-02-28")));
        // 2026-11-15 is a Sunday: 15W is Monday the 16th.
        let w = Cron::parse("0 0 15W * ? *").unwrap();
        assert!(w.matches_date(date("2026-11-16")));
        assert!(!w.matches_date(date("2026-11-15")));
        // 2026-08-01 is a Saturday: 1W is Monday the 3rd, not July 31st.
        let w1 = Cron::parse("0 0 1W * ? *").unwrap();
        assert!(w1.matches_date(date("2026-08-03")));
        // 2026-05-31 is a Sunday: LW is Friday the 29th.
        let lw = Cron::parse("0 0 LW * ? *").unwrap();
        assert!(lw.matches_date(date("2026-05-29")));
        // The last Friday (6L) of November 2026 is the 27th; the second Tuesday (3#2) the 10th.
        let last_friday = Cron::parse("0 0 ? * 6L *").unwrap();
        assert!(last_friday.matches_date(date("2026-11-27")));
        assert!(!last_friday.matches_date(date("2026-11-20")));
        let second_tuesday = Cron::parse("0 0 ? * 3#2 *").unwrap();
        assert!(second_tuesday.matches_date(date("2026-11-10")));
        assert!(!second_tuesday.matches_date(date("2026-11-03")));
    }

    #[test]
    fn what_eventbridge_refuses() {
        for (text, why) in [
            ("0 3 * * SUN *", "must be ?"),
            ("0 3 ? * ? *", "only one"),
            ("0 3 ? * SUN", "6 fields"),
            ("60 3 ? * SUN *", "outside 0-59"),
            ("0 3 ? * 8 *", "outside 1-7"),
            ("0 3 ? * 2#6 *", "1-5"),
            ("0 3 ? FOO SUN *", "not a number"),
            ("*/0 3 ? * SUN *", "step 0"),
            ("0 3 ? * SUN 1969", "outside 1970-2199"),
        ] {
            let err = Cron::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
