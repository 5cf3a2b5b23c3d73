//! Price alert rules (`[[alert]]` in the config): their one parse, and the evaluation that
//! decides when a rule fires.
//!
//! A rule fires on a crossing: a quote satisfies the rule's condition and the quote evaluated
//! before it for the same rule and symbol did not. A symbol's first evaluated quote fires when
//! it satisfies the condition. Quotes are evaluated in event-time order within a run (ties by
//! source), and runs take silver's new rows in the order they were committed, so a late quote
//! is compared with the last quote evaluated before it. Whether each rule's last quote per
//! symbol satisfied it is the state a run commits with its bookmark ([`AlertState`]).
//!
//! Values are exact: prices and thresholds are decimals with 16 places (silver's scale), and
//! `change_pct(W)` is `(price - first) / first * 100` rounded half away from zero to 16
//! places, where `first` is the symbol's first quote at or after `event_time - W` (the quote
//! itself when it is the only one in the window, a change of 0).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use arrow::datatypes::i256;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Decimal places of prices, thresholds and changes (silver's `decimal(38, 16)`).
pub const SCALE: u32 = cryptolake_catalog::layout::DECIMAL_SCALE;
const ONE: i128 = 10_i128.pow(SCALE);

/// One `[[alert]]` table as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// Unique among the rules: it names the rule in `gold.alerts` and in messages.
    pub name: String,
    /// A silver symbol (`BTC-USD`), or `*` for every symbol.
    pub symbol: String,
    /// `price > X`, `price < X` (also `>=`, `<=`), `change_pct(15m) > 5`, `change_pct(1h) < -3`.
    pub when: String,
    /// Only quotes of this silver source (`coinbase_spot`); every source's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Publish each firing to this SNS topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns_topic_arn: Option<String>,
    /// POST each firing as JSON to this URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Above,
    Below,
    AtLeast,
    AtMost,
}

impl Op {
    fn holds(self, value: i128, threshold: i128) -> bool {
        match self {
            Op::Above => value > threshold,
            Op::Below => value < threshold,
            Op::AtLeast => value >= threshold,
            Op::AtMost => value <= threshold,
        }
    }
}

/// What a condition measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Price,
    /// Percent change over a window of this many microseconds.
    ChangePct {
        window_us: i64,
    },
}

/// A parsed `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    pub measure: Measure,
    pub op: Op,
    /// Scaled by 10^16.
    pub threshold: i128,
}

impl Condition {
    /// Parses `price > 43000`, `change_pct(15m) < -3.5` and the like.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let (at, op, width) = [
            (">=", Op::AtLeast),
            ("<=", Op::AtMost),
            (">", Op::Above),
            ("<", Op::Below),
        ]
        .into_iter()
        .filter_map(|(token, op)| text.find(token).map(|at| (at, op, token.len())))
        .min_by_key(|(at, _, width)| (*at, std::cmp::Reverse(*width)))
        .ok_or_else(|| format!("{text:?} has no comparison (>, <, >= or <=)"))?;
        let left = text[..at].trim();
        let right = text[at + width..].trim();
        let threshold =
            parse_decimal(right).ok_or_else(|| format!("{right:?} in {text:?} is not a number"))?;
        let measure = if left == "price" {
            Measure::Price
        } else if let Some(window) = left
            .strip_prefix("change_pct(")
            .and_then(|w| w.strip_suffix(')'))
        {
            let window_us = parse_window(window.trim()).ok_or_else(|| {
                format!("{window:?} in {text:?} is not a window such as 15m or 1h")
            })?;
            Measure::ChangePct { window_us }
        } else {
            return Err(format!(
                "{left:?} in {text:?} is neither `price` nor `change_pct(WINDOW)`"
            ));
        };
        Ok(Self {
            measure,
            op,
            threshold,
        })
    }
}

/// A decimal with at most 16 places, scaled by 10^16.
pub fn parse_decimal(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || fraction.len() > SCALE as usize
    {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let padded = format!("{fraction:0<width$}", width = SCALE as usize);
    let fraction: i128 = padded.parse().ok()?;
    let value = whole.checked_mul(ONE)?.checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

/// A value scaled by 10^16 as decimal text without trailing zeros (`43000.5`, `-3`).
pub fn decimal_text(value: i128) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let v = value.unsigned_abs();
    let (whole, fraction) = (v / ONE as u128, v % ONE as u128);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let fraction = format!("{fraction:0width$}", width = SCALE as usize);
    format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
}

/// `30s`, `15m`, `1h`, `1d` in microseconds.
fn parse_window(text: &str) -> Option<i64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = text[..unit_at].parse().ok().filter(|n| *n > 0)?;
    let unit = match &text[unit_at..] {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRule {
    pub spec: AlertSpec,
    pub condition: Condition,
}

impl AlertRule {
    fn matches(&self, symbol: &str, source: &str) -> bool {
        (self.spec.symbol == "*" || self.spec.symbol == symbol)
            && self.spec.source.as_deref().is_none_or(|s| s == source)
    }

    /// What the state of this rule depends on: a rule edited under the same name starts anew.
    fn fingerprint(&self) -> String {
        format!(
            "{} {} {}",
            self.spec.symbol,
            self.spec.source.as_deref().unwrap_or("*"),
            self.spec.when
        )
    }
}

/// The region of an SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`).
pub fn topic_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sns", region, account, name]
            if !region.is_empty() && !account.is_empty() && !name.is_empty() =>
        {
            Some(region)
        }
        _ => None,
    }
}

/// Checks every rule; a rule that does not validate is a usage error naming it and the field.
pub fn parse_rules(specs: &[AlertSpec]) -> Result<Vec<AlertRule>> {
    let mut names = BTreeSet::new();
    let mut rules = Vec::with_capacity(specs.len());
    for spec in specs {
        let bad = |field: &str, why: String| {
            Error::Usage(format!("[[alert]] {:?}: {field}: {why}", spec.name))
        };
        let name_ok = !spec.name.is_empty()
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(bad("name", "letters, digits, - _ . only".into()));
        }
        if !names.insert(spec.name.as_str()) {
            return Err(bad("name", "another rule has this name".into()));
        }
        if spec.symbol.is_empty() {
            return Err(bad("symbol", "a symbol such as BTC-USD, or *".into()));
        }
        let condition = Condition::parse(&spec.when).map_err(|e| bad("when", e))?;
        if let Some(arn) = &spec.sns_topic_arn
            && topic_region(arn).is_none()
        {
            return Err(bad(
                "sns_topic_arn",
                format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
            ));
        }
        if let Some(url) = &spec.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(bad("webhook_url", format!("{url:?} is not an http(s) URL")));
        }
        rules.push(AlertRule {
            spec: spec.clone(),
            condition,
        });
    }
    Ok(rules)
}

/// What a run commits with its bookmark: per rule, whether its last evaluated quote of each
/// symbol satisfied it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    pub rules: BTreeMap<String, RuleState>,
}

/// One rule's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    /// The rule's symbol, source and condition when the state was recorded.
    pub rule: String,
    /// Per symbol: whether the last evaluated quote satisfied the rule.
    pub satisfied: BTreeMap<String, bool>,
}

/// One quote, in `(symbol, event time, source)` order.
#[derive(Debug, Clone, Copy)]
pub struct Quote<'a> {
    pub symbol: &'a str,
    pub source: &'a str,
    /// Scaled by 10^16.
    pub price: i128,
    pub event_us: i64,
    /// False for a quote evaluated by an earlier run, read only to fill change windows.
    pub evaluate: bool,
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firing {
    pub rule: String,
    pub symbol: String,
    pub source: String,
    pub condition: String,
    /// The price, or the change in percent (scaled by 10^16).
    pub value: i128,
    pub price: i128,
    pub event_us: i64,
}

/// Evaluates rules over quotes ordered by symbol, then event time.
#[derive(Debug)]
pub struct Evaluator<'r> {
    rules: &'r [AlertRule],
    state: AlertState,
    /// The current symbol's quotes within the longest window, per source filter (`None`:
    /// every source), oldest first.
    windows: HashMap<Option<String>, VecDeque<(i64, i128)>>,
    symbol: Option<String>,
    longest_window: i64,
}

impl<'r> Evaluator<'r> {
    /// Starts from a run's committed state; rules no longer configured, or edited, lose theirs.
    pub fn new(rules: &'r [AlertRule], state: AlertState) -> Self {
        let mut kept = AlertState::default();
        for rule in rules {
            let fingerprint = rule.fingerprint();
            let entry = match state.rules.get(&rule.spec.name) {
                Some(s) if s.rule == fingerprint => s.clone(),
                _ => RuleState {
                    rule: fingerprint,
                    satisfied: BTreeMap::new(),
                },
            };
            kept.rules.insert(rule.spec.name.clone(), entry);
        }
        let mut windows = HashMap::new();
        let mut longest_window = 0;
        for rule in rules {
            if let Measure::ChangePct { window_us } = rule.condition.measure {
                longest_window = longest_window.max(window_us);
                windows.insert(rule.spec.source.clone(), VecDeque::new());
            }
        }
        Self {
            rules,
            state: kept,
            windows,
            symbol: None,
            longest_window,
        }
    }

    /// The longest `change_pct` window, in microseconds (0 without such rules): how far before
    /// a run's new quotes the quotes that fill the windows go back.
    pub fn lookback_us(&self) -> i64 {
        self.longest_window
    }

    /// Takes the next quote; returns the rules it makes fire.
    pub fn observe(&mut self, q: &Quote<'_>) -> Vec<Firing> {
        if self.symbol.as_deref() != Some(q.symbol) {
            self.symbol = Some(q.symbol.to_string());
            self.windows.values_mut().for_each(VecDeque::clear);
        }
        let oldest = q.event_us.saturating_sub(self.longest_window);
        for (source, window) in &mut self.windows {
            if source.as_deref().is_none_or(|s| s == q.source) {
                window.push_back((q.event_us, q.price));
                while window.front().is_some_and(|(t, _)| *t < oldest) {
                    window.pop_front();
                }
            }
        }
        if !q.evaluate {
            return Vec::new();
        }
        let mut fired = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(q.symbol, q.source)) {
            let value = match rule.condition.measure {
                Measure::Price => Some(q.price),
                Measure::ChangePct { window_us } => self
                    .windows
                    .get(&rule.spec.source)
                    .and_then(|w| first_since(w, q.event_us.saturating_sub(window_us)))
                    .and_then(|first| change_pct(first, q.price)),
            };
            let satisfied =
                value.is_some_and(|v| rule.condition.op.holds(v, rule.condition.threshold));
            let state = self.state.rules.entry(rule.spec.name.clone()).or_default();
            let before = state
                .satisfied
                .insert(q.symbol.to_string(), satisfied)
                .unwrap_or(false);
            if let (true, false, Some(value)) = (satisfied, before, value) {
                fired.push(Firing {
                    rule: rule.spec.name.clone(),
                    symbol: q.symbol.to_string(),
                    source: q.source.to_string(),
                    condition: rule.spec.when.clone(),
                    value,
                    price: q.price,
                    event_us: q.event_us,
                });
            }
        }
        fired
    }

    /// The state to commit.
    pub fn into_state(self) -> AlertState {
        self.state
    }
}

/// The price of the first quote at or after `since`.
fn first_since(window: &VecDeque<(i64, i128)>, since: i64) -> Option<i128> {
    let i = window.partition_point(|(t, _)| *t < since);
    window.get(i).map(|(_, p)| *p)
}

/// `(price - first) / first * 100`, scaled by 10^16 and rounded half away from zero; `None`
/// when `first` is not positive.
fn change_pct(first: i128, price: i128) -> Option<i128> {
    if first <= 0 {
        return None;
    }
    let num = i256::from_i128(price - first) * i256::from_i128(100 * ONE);
    let den = i256::from_i128(first);
    let (q, r) = (num / den, num % den);
    let twice = r.wrapping_abs() * i256::from_i128(2);
    let q = if twice >= den {
        if num < i256::ZERO {
            q - i256::ONE
        } else {
            q + i256::ONE
        }
    } else {
        q
    };
    q.to_i128()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, symbol: &str, when: &str) -> AlertSpec {
        AlertSpec {
            name: name.into(),
            symbol: symbol.into(),
            when: when.into(),
            source: None,
            sns_topic_arn: None,
            webhook_url: None,
        }
    }

    fn d(text: &str) -> i128 {
        parse_decimal(text).unwrap()
    }

    #[test]
    fn conditions_parse_exactly_and_bad_ones_name_the_field() {
        let c = Condition::parse("price > 43000").unwrap();
        assert_eq!(
            (c.measure, c.op, c.threshold),
            (Measure::Price, Op::Above, d("43000"))
        );
        let c = Condition::parse("change_pct(15m) >= -3.25").unwrap();
        assert_eq!(
            c.measure,
            Measure::ChangePct {
                window_us: 900_000_000
            }
        );
        assert_eq!((c.op, c.threshold), (Op::AtLeast, -32_500_000_000_000_000));
        assert_eq!(
            Condition::parse("change_pct(1h)<-3").unwrap().measure,
            Measure::ChangePct {
                window_us: 3_600_000_000
            }
        );
        assert_eq!(Condition::parse("price <= 0.5").unwrap().op, Op::AtMost);
        for bad in [
            "price = 5",
            "price > abc",
            "volume > 5",
            "change_pct(15x) > 5",
            "change_pct(0m) > 1",
            "price > 1.00000000000000001",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(decimal_text(d("43000.50")), "43000.5");
        assert_eq!(decimal_text(d("-3")), "-3");
        assert_eq!(
            decimal_text(d("-0.0000000000000001")),
            "-0.0000000000000001"
        );
        let mut two = vec![spec("a", "*", "price > 1"), spec("a", "*", "price > 2")];
        let e = parse_rules(&two).unwrap_err().to_string();
        assert!(e.contains("\"a\": name"), "{e}");
        two[1].name = "b".into();
        two[1].sns_topic_arn = Some("arn:aws:sqs:us-east-1:1:q".into());
        let e = parse_rules(&two).unwrap_err().to_string();
        assert!(e.contains("\"b\": sns_topic_arn"), "{e}");
        two[1].sns_topic_arn = Some("arn:aws:sns:eu-west-1:123456789012:alerts".into());
        two[1].webhook_url = Some("ftp://x".into());
        assert!(
            parse_rules(&two)
                .unwrap_err()
                .to_string()
                .contains("webhook_url")
        );
        two[1].webhook_url = None;
        assert_eq!(parse_rules(&two).unwrap().len(), 2);
        assert_eq!(
            topic_region(two[1].sns_topic_arn.as_ref().unwrap()),
            Some("eu-west-1")
        );
    }

    fn quote(symbol: &str, seconds: i64, price: &str) -> (String, i64, i128) {
        (symbol.to_string(), seconds * 1_000_000, d(price))
    }

    fn run(
        ev: &mut Evaluator<'_>,
        quotes: &[(String, i64, i128)],
        evaluate: bool,
    ) -> Vec<(String, String, i64, String)> {
        quotes
            .iter()
            .flat_map(|(symbol, t, price)| {
                ev.observe(&Quote {
                    symbol,
                    source: "coinbase_spot",
                    price: *price,
                    event_us: *t,
                    evaluate,
                })
            })
            .map(|f| {
                (
                    f.rule,
                    f.symbol,
                    f.event_us / 1_000_000,
                    decimal_text(f.value),
                )
            })
            .collect()
    }

    #[test]
    fn a_rule_fires_on_each_crossing_and_the_state_carries_across_runs() {
        let rules = parse_rules(&[
            spec("up", "BTC-USD", "price > 100"),
            spec("down", "*", "price < 50"),
        ])
        .unwrap();
        let mut ev = Evaluator::new(&rules, AlertState::default());
        let first: Vec<_> = [
            ("BTC-USD", 1, "99"),
            ("BTC-USD", 2, "101"),
            ("BTC-USD", 3, "102"),
            ("BTC-USD", 4, "100"),
            ("BTC-USD", 5, "100.0000000000000001"),
            ("ETH-USD", 1, "40"),
            ("ETH-USD", 2, "45"),
        ]
        .iter()
        .map(|(s, t, p)| quote(s, *t, p))
        .collect();
        assert_eq!(
            run(&mut ev, &first, true),
            vec![
                ("up".into(), "BTC-USD".into(), 2, "101".into()),
                (
                    "up".into(),
                    "BTC-USD".into(),
                    5,
                    "100.0000000000000001".into()
                ),
                ("down".into(), "ETH-USD".into(), 1, "40".into()),
            ]
        );
        // The next run starts from the committed state: still above, no new crossing; below
        // and above again, one.
        let state = ev.into_state();
        assert!(state.rules["up"].satisfied["BTC-USD"]);
        let json = serde_json::to_string(&state).unwrap();
        let mut ev = Evaluator::new(&rules, serde_json::from_str(&json).unwrap());
        let second: Vec<_> = [
            ("BTC-USD", 6, "150"),
            ("BTC-USD", 7, "90"),
            ("BTC-USD", 8, "120"),
        ]
        .iter()
        .map(|(s, t, p)| quote(s, *t, p))
        .collect();
        assert_eq!(
            run(&mut ev, &second, true),
            vec![("up".into(), "BTC-USD".into(), 8, "120".into())]
        );
        // An edited rule starts anew: its first satisfying quote fires.
        let edited = parse_rules(&[spec("up", "BTC-USD", "price > 110")]).unwrap();
        let mut ev = Evaluator::new(&edited, ev.into_state());
        assert_eq!(run(&mut ev, &[quote("BTC-USD", 9, "120")], true).len(), 1);
    }

    #[test]
    fn change_windows_include_earlier_quotes_that_are_not_evaluated_again() {
        let rules = parse_rules(&[
            spec("jump", "*", "change_pct(15m) > 5"),
            spec("drop", "*", "change_pct(1h) < -3"),
        ])
        .unwrap();
        let mut ev = Evaluator::new(&rules, AlertState::default());
        assert_eq!(ev.lookback_us(), 3_600_000_000);
        // Read only to fill the windows: at 0 s 100, at 600 s 102.
        let old = [quote("BTC-USD", 0, "100"), quote("BTC-USD", 600, "102")];
        assert!(run(&mut ev, &old, false).is_empty());
        // 900 s: +6 % over the 15 minutes since 0 s: fires. 1000 s: the window starts at
        // 100 s, at 102: +3.92...%, no longer satisfied. 1100 s: +5.88...% fires again.
        let new = [
            quote("BTC-USD", 900, "106"),
            quote("BTC-USD", 1000, "106"),
            quote("BTC-USD", 1100, "108"),
            quote("BTC-USD", 1200, "96.9"),
        ];
        assert_eq!(
            run(&mut ev, &new, true),
            vec![
                ("jump".into(), "BTC-USD".into(), 900, "6".into()),
                (
                    "jump".into(),
                    "BTC-USD".into(),
                    1100,
                    "5.8823529411764706".into()
                ),
                ("drop".into(), "BTC-USD".into(), 1200, "-3.1".into()),
            ]
        );
        // Another symbol starts with an empty window: its first quote changes by 0 %.
        assert!(run(&mut ev, &[quote("ETH-USD", 1200, "10")], true).is_empty());
        assert_eq!(change_pct(d("3"), d("1")), Some(-666_666_666_666_666_667));
        assert_eq!(change_pct(0, d("1")), None);
    }
}
