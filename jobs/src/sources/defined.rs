//! Sources the configuration defines (`[[source]]`), as Glue's `ApplyMapping` and a crawler
//! would: a name (the landing prefix and `bronze.<name>`), where the records are in a file's
//! JSON values, the fields bronze keeps, and for silver a mapping of those fields to a quote or
//! a trade.
//!
//! Definitions are validated whole before any job runs (a field they name that is not among
//! the source's fields, a time format or zone that does not parse: a usage error naming the
//! definition and the field), then registered once per process: bronze's layout, the record
//! decoder and silver's normalization look them up by name. A cluster executor registers the
//! same definitions from the same config file.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use cryptolake_catalog::layout::{self, LANDING_SOURCES, REFERENCE_SOURCES};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What silver makes of a defined source's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// silver.quotes.
    Quotes,
    /// silver.trades.
    Trades,
    /// Bronze only.
    #[default]
    None,
}

/// `[[source]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    /// The landing prefix and the bronze table's name (`bronze.<name>`).
    pub name: String,
    /// A JSON pointer to the records in each JSON value of a file: empty (the value itself),
    /// `/data`, `/payload/ticks`; a `*` segment takes every member of an object (or element of
    /// an array). An array where the pointer ends gives one record per element.
    #[serde(default)]
    pub records: String,
    /// With a `*` segment over an object: the field that receives each member's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
    /// The fields bronze keeps, as the records name them (each a text column, in this order).
    pub fields: Vec<String>,
    #[serde(default)]
    pub kind: SourceKind,
    /// For silver: which field is what.
    #[serde(default)]
    pub mapping: Mapping,
}

/// Which of a source's fields is what in silver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mapping {
    /// The symbol (`BTC-USD`, `btc/usd`, `BTC_USD`; a bare base gets `default_quote`)...
    pub symbol: Option<String>,
    /// ... or its base and quote in two fields.
    pub base: Option<String>,
    pub quote: Option<String>,
    /// The quote currency of a bare symbol or base (default `USD`).
    pub default_quote: Option<String>,
    /// The price; a quote without one takes the mid of `bid` and `ask`.
    pub price: Option<String>,
    pub bid: Option<String>,
    pub ask: Option<String>,
    pub bid_size: Option<String>,
    pub ask_size: Option<String>,
    pub volume_24h: Option<String>,
    pub market_cap: Option<String>,
    pub event_time: Option<String>,
    /// `rfc3339`, `epoch_s`, `epoch_ms`, `epoch_us`, `epoch_ns`, or a chrono pattern such as
    /// `%Y-%m-%d %H:%M:%S%.f`; by default RFC 3339 or epoch s/ms/µs told apart by size.
    pub time_format: Option<String>,
    /// The zone of a pattern without an offset (IANA, default UTC).
    pub timezone: Option<String>,
    pub trade_id: Option<String>,
    pub user_id: Option<String>,
    pub side: Option<String>,
    pub quantity: Option<String>,
}

/// How a defined source's event time is written.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    Auto,
    Rfc3339,
    /// Epoch in units per second (1, 1_000, 1_000_000, 1_000_000_000).
    Epoch(i64),
    Pattern(String, chrono_tz::Tz),
}

/// A validated definition with its parsed pieces.
#[derive(Debug, Clone)]
pub struct Defined {
    pub def: SourceDef,
    /// The pointer's segments (`*` for every member).
    pub path: Vec<String>,
    pub time: TimeFormat,
}

static REGISTRY: RwLock<BTreeMap<String, Arc<Defined>>> = RwLock::new(BTreeMap::new());

/// Validates every definition and registers them for this process. Usage errors name the
/// definition and the field.
pub fn register(defs: &[SourceDef]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    let mut parsed = Vec::with_capacity(defs.len());
    for d in defs {
        if !seen.insert(d.name.as_str()) {
            return Err(Error::Usage(format!(
                "[[source]] {}: defined twice",
                d.name
            )));
        }
        parsed.push(validate(d)?);
    }
    for p in parsed {
        layout::define_source(&p.def.name, &p.def.fields)
            .map_err(|e| Error::Usage(format!("[[source]] {}: {e}", p.def.name)))?;
        let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
        registry.insert(p.def.name.clone(), Arc::new(p));
    }
    Ok(())
}

/// A registered definition.
pub fn lookup(name: &str) -> Option<Arc<Defined>> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    registry.get(name).cloned()
}

/// Every registered definition, by name.
pub fn all() -> Vec<Arc<Defined>> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    registry.values().cloned().collect()
}

fn bad(def: &SourceDef, field: &str, why: impl std::fmt::Display) -> Error {
    Error::Usage(format!("[[source]] {}: {field}: {why}", def.name))
}

/// A column name Athena and Glue take: lower case letters, digits and `_`, not starting with
/// `_` (bronze's own columns do).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a definition and parses its pointer and time format.
pub fn validate(d: &SourceDef) -> Result<Defined> {
    if !valid_name(&d.name) {
        return Err(bad(
            d,
            "name",
            "use lower-case letters, digits and _, not starting with _",
        ));
    }
    if LANDING_SOURCES.contains(&d.name.as_str()) || REFERENCE_SOURCES.contains(&d.name.as_str()) {
        return Err(bad(d, "name", "a built-in source has that name"));
    }
    if d.fields.is_empty() {
        return Err(bad(d, "fields", "list the fields bronze keeps"));
    }
    let mut unique = std::collections::BTreeSet::new();
    for f in &d.fields {
        if !valid_name(f) {
            return Err(bad(
                d,
                "fields",
                format!("`{f}`: use lower-case letters, digits and _, not starting with _"),
            ));
        }
        if !unique.insert(f) {
            return Err(bad(d, "fields", format!("`{f}` is listed twice")));
        }
    }
    let path = parse_pointer(&d.records).map_err(|e| bad(d, "records", e))?;
    if let Some(k) = &d.key_field {
        if !path.iter().any(|s| s == "*") {
            return Err(bad(d, "key_field", "needs a `*` segment in records"));
        }
        if !d.fields.contains(k) {
            return Err(bad(
                d,
                "key_field",
                format!("`{k}` is not among the fields"),
            ));
        }
    }
    let m = &d.mapping;
    let named = [
        ("symbol", &m.symbol),
        ("base", &m.base),
        ("quote", &m.quote),
        ("price", &m.price),
        ("bid", &m.bid),
        ("ask", &m.ask),
        ("bid_size", &m.bid_size),
        ("ask_size", &m.ask_size),
        ("volume_24h", &m.volume_24h),
        ("market_cap", &m.market_cap),
        ("event_time", &m.event_time),
        ("trade_id", &m.trade_id),
        ("user_id", &m.user_id),
        ("side", &m.side),
        ("quantity", &m.quantity),
    ];
    for (key, value) in named {
        if let Some(v) = value
            && !d.fields.contains(v)
        {
            return Err(bad(
                d,
                &format!("mapping.{key}"),
                format!("`{v}` is not among the fields"),
            ));
        }
    }
    let require = |key: &str, v: &Option<String>| match v {
        Some(_) => Ok(()),
        None => Err(bad(
            d,
            &format!("mapping.{key}"),
            format!("a {:?} source needs it", d.kind),
        )),
    };
    match d.kind {
        SourceKind::None => {}
        SourceKind::Quotes | SourceKind::Trades => {
            if m.symbol.is_none() && m.base.is_none() {
                return Err(bad(
                    d,
                    "mapping.symbol",
                    "name the symbol field (or base and quote)",
                ));
            }
            require("event_time", &m.event_time)?;
            if d.kind == SourceKind::Quotes
                && m.price.is_none()
                && (m.bid.is_none() || m.ask.is_none())
            {
                return Err(bad(
                    d,
                    "mapping.price",
                    "name the price field (or both bid and ask)",
                ));
            }
            if d.kind == SourceKind::Trades {
                for (key, v) in [
                    ("trade_id", &m.trade_id),
                    ("side", &m.side),
                    ("quantity", &m.quantity),
                    ("price", &m.price),
                ] {
                    require(key, v)?;
                }
            }
        }
    }
    let time = time_format(m).map_err(|(field, why)| bad(d, field, why))?;
    Ok(Defined {
        def: d.clone(),
        path,
        time,
    })
}

fn time_format(m: &Mapping) -> std::result::Result<TimeFormat, (&'static str, String)> {
    let tz: chrono_tz::Tz = match &m.timezone {
        Some(z) => z
            .parse()
            .map_err(|_| ("mapping.timezone", format!("`{z}` is not an IANA zone")))?,
        None => chrono_tz::UTC,
    };
    Ok(match m.time_format.as_deref() {
        None | Some("auto") => TimeFormat::Auto,
        Some("rfc3339") => TimeFormat::Rfc3339,
        Some("epoch_s") => TimeFormat::Epoch(1),
        Some("epoch_ms") => TimeFormat::Epoch(1_000),
        Some("epoch_us") => TimeFormat::Epoch(1_000_000),
        Some("epoch_ns") => TimeFormat::Epoch(1_000_000_000),
        Some(p) if p.contains('%') => {
            let probe = chrono::format::StrftimeItems::new(p);
            if probe
                .clone()
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                return Err((
                    "mapping.time_format",
                    format!("`{p}` is not a chrono pattern"),
                ));
            }
            TimeFormat::Pattern(p.to_string(), tz)
        }
        Some(other) => {
            return Err((
                "mapping.time_format",
                format!(
                    "`{other}`: use rfc3339, epoch_s, epoch_ms, epoch_us, epoch_ns or a %-pattern"
                ),
            ));
        }
    })
}

/// `/a/b/*` as segments (`~1` and `~0` unescaped, as RFC 6901 says).
fn parse_pointer(text: &str) -> std::result::Result<Vec<String>, String> {
    if text.is_empty() || text == "/" {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!("`{text}` is not a JSON pointer (it starts with /)"));
    };
    rest.split('/')
        .map(|s| {
            if s.is_empty() {
                Err(format!("`{text}` has an empty segment"))
            } else {
                Ok(s.replace("~1", "/").replace("~0", "~"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(toml_text: &str) -> SourceDef {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_definition_that_does_not_validate_names_the_field() {
        let ok = def(
            "name = \"acme\"\nrecords = \"/ticks/*\"\nkey_field = \"pair\"\nfields = [\"pair\", \"px\", \"ts\"]\nkind = \"quotes\"\n\
             [mapping]\nsymbol = \"pair\"\nprice = \"px\"\nevent_time = \"ts\"\ntime_format = \"epoch_ms\"\n",
        );
        let v = validate(&ok).unwrap();
        assert_eq!(v.path, ["ticks", "*"]);
        assert_eq!(v.time, TimeFormat::Epoch(1_000));
        let cases = [
            (
                SourceDef {
                    name: "coinbase_spot".into(),
                    ..ok.clone()
                },
                "[[source]] coinbase_spot: name: a built-in source has that name",
            ),
            (
                SourceDef {
                    records: "ticks".into(),
                    ..ok.clone()
                },
                "[[source]] acme: records: `ticks` is not a JSON pointer (it starts with /)",
            ),
            (
                SourceDef {
                    fields: vec!["pair".into(), "Px".into()],
                    ..ok.clone()
                },
                "[[source]] acme: fields: `Px`: use lower-case letters, digits and _, not starting with _",
            ),
            (
                SourceDef {
                    mapping: Mapping {
                        price: Some("price".into()),
                        ..ok.mapping.clone()
                    },
                    ..ok.clone()
                },
                "[[source]] acme: mapping.price: `price` is not among the fields",
            ),
            (
                SourceDef {
                    mapping: Mapping {
                        event_time: None,
                        ..ok.mapping.clone()
                    },
                    ..ok.clone()
                },
                "[[source]] acme: mapping.event_time: a Quotes source needs it",
            ),
            (
                SourceDef {
                    mapping: Mapping {
                        timezone: Some("Mars/Olympus".into()),
                        ..ok.mapping.clone()
                    },
                    ..ok.clone()
                },
                "[[source]] acme: mapping.timezone: `Mars/Olympus` is not an IANA zone",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(validate(&d).unwrap_err().to_string(), want);
        }
    }
}
