//! From a landing file's JSON values to bronze records, per source.
//!
//! Envelopes are opened: CoinCap's `{"data":[..],"timestamp":ms}` gives one record per element
//! (each inheriting the envelope's `timestamp`), Coinbase's `{"data":{..},"timestamp_utc":..}`
//! one record, Alpaca's `{"quotes":{"BTC/USD":{..}}}` one record per symbol, and a top-level
//! array one record per element. Field values are kept as text exactly as received (numbers keep
//! every digit); anything that is not a JSON object becomes a record with only `_raw` set, for
//! silver to quarantine with its reason.
//!
//! Nothing a record carries is dropped: a field the source's columns do not name (one the API
//! added later, a nested object, an envelope's other keys) goes to the record's `_extra`, a JSON
//! object of those keys with their values exactly as received (types and digits kept, never
//! coerced). A known field whose value changed type (an object where a number was) stays in its
//! column as its JSON text, which silver then quarantines with the reason.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::landing::Piece;

/// One bronze record: either source fields (column index, text) with the fields no column
/// names, or an unusable raw text.
#[derive(Debug, PartialEq)]
pub enum Record<'a> {
    Fields {
        values: Vec<(usize, Cow<'a, str>)>,
        /// The unknown fields as a JSON object (`{"venue":"x"}`), or `None` when there are none.
        extra: Option<String>,
    },
    Raw(Cow<'a, str>),
}

impl<'a> Record<'a> {
    /// A record of known fields only.
    pub fn fields(values: Vec<(usize, Cow<'a, str>)>) -> Self {
        Record::Fields {
            values,
            extra: None,
        }
    }
}

type Object<'a> = BTreeMap<Cow<'a, str>, &'a RawValue>;

/// Maps a source's JSON key to its bronze column name.
fn column_name<'k>(source: &str, key: &'k str) -> &'k str {
    match (source, key) {
        (_, "maxSupply") => "max_supply",
        (_, "marketCapUsd") => "market_cap_usd",
        (_, "volumeUsd24Hr") => "volume_usd_24hr",
        (_, "priceUsd") => "price_usd",
        (_, "changePercent24Hr") => "change_percent_24hr",
        (_, "vwap24Hr") => "vwap_24hr",
        (_, "currencySymbol") => "currency_symbol",
        (_, "rateUsd") => "rate_usd",
        ("alpaca_quotes", "ap") => "ask_price",
        ("alpaca_quotes", "as") => "ask_size",
        ("alpaca_quotes", "bp") => "bid_price",
        ("alpaca_quotes", "bs") => "bid_size",
        ("alpaca_quotes", "t") => "timestamp",
        ("alpaca_quotes", "S") => "symbol",
        ("alpaca_trades", "i") => "trade_id",
        ("alpaca_trades", "p") => "price",
        ("alpaca_trades", "s") => "size",
        ("alpaca_trades", "t") => "timestamp",
        ("alpaca_trades", "tks") => "taker_side",
        ("alpaca_trades", "S") => "symbol",
        _ => key,
    }
}

/// Decodes one source's pieces into records.
#[derive(Debug)]
pub struct RecordDecoder {
    source: String,
    fields: &'static [&'static str],
    /// A configured source's definition: its records are where its pointer says.
    defined: Option<std::sync::Arc<super::defined::Defined>>,
}

impl RecordDecoder {
    /// `fields` are the bronze table's source columns, in order.
    pub fn new(source: &str, fields: &'static [&'static str]) -> Self {
        Self {
            source: source.to_string(),
            fields,
            defined: super::defined::lookup(source),
        }
    }

    fn column(&self, key: &str) -> Option<usize> {
        let name = column_name(&self.source, key);
        self.fields.iter().position(|f| *f == name)
    }

    /// Appends the records of one top-level piece to `out`.
    pub fn decode<'a>(&self, piece: &Piece<'a>, out: &mut Vec<Record<'a>>) {
        match (piece, &self.defined) {
            (Piece::Malformed(text), _) => out.push(Record::Raw(Cow::Owned(text.clone()))),
            (Piece::Json(text), Some(d)) => {
                let path: Vec<&str> = d.path.iter().map(String::as_str).collect();
                self.follow(text, &path, &[], None, out)
            }
            (Piece::Json(text), None) => self.expand(text, &[], true, out),
        }
    }

    /// A configured source: follows the pointer's `path` from `text`; each object where it
    /// ends (or each element of an array there) is a record, with `key` (a `*` member's name)
    /// in the definition's `key_field`. The keys beside the path are the records' envelope.
    fn follow<'a>(
        &self,
        text: &'a str,
        path: &[&str],
        inherited: &[(Cow<'a, str>, &'a RawValue)],
        key: Option<Cow<'a, str>>,
        out: &mut Vec<Record<'a>>,
    ) {
        let Some((segment, rest)) = path.split_first() else {
            if text.starts_with('[') {
                match serde_json::from_str::<Vec<&'a RawValue>>(text) {
                    Ok(items) => items
                        .into_iter()
                        .for_each(|v| self.follow(v.get(), &[], inherited, key.clone(), out)),
                    Err(_) => out.push(Record::Raw(Cow::Borrowed(text))),
                }
                return;
            }
            match serde_json::from_str::<Object<'a>>(text) {
                Ok(object) => {
                    let mut record = self.fields_of(&object, inherited);
                    let key_col = self
                        .defined
                        .as_ref()
                        .and_then(|d| d.def.key_field.as_deref())
                        .and_then(|k| self.fields.iter().position(|f| *f == k));
                    if let (Record::Fields { values, .. }, Some(col), Some(key)) =
                        (&mut record, key_col, key)
                    {
                        values.retain(|(c, _)| *c != col);
                        values.push((col, key));
                    }
                    out.push(record);
                }
                Err(_) => out.push(Record::Raw(Cow::Borrowed(text))),
            }
            return;
        };
        if *segment == "*" {
            if text.starts_with('[') {
                match serde_json::from_str::<Vec<&'a RawValue>>(text) {
                    Ok(items) => items
                        .into_iter()
                        .for_each(|v| self.follow(v.get(), rest, inherited, None, out)),
                    Err(_) => out.push(Record::Raw(Cow::Borrowed(text))),
                }
                return;
            }
            match serde_json::from_str::<Object<'a>>(text) {
                Ok(object) => object
                    .into_iter()
                    .for_each(|(k, v)| self.follow(v.get(), rest, inherited, Some(k), out)),
                Err(_) => out.push(Record::Raw(Cow::Borrowed(text))),
            }
            return;
        }
        match serde_json::from_str::<Object<'a>>(text) {
            Ok(object) => match object.get(*segment) {
                Some(inner) => {
                    let envelope = envelope_of(&object, segment, inherited);
                    self.follow(inner.get(), rest, &envelope, key, out)
                }
                None => out.push(Record::Raw(Cow::Borrowed(text))),
            },
            Err(_) => out.push(Record::Raw(Cow::Borrowed(text))),
        }
    }

    fn expand<'a>(
        &self,
        text: &'a str,
        inherited: &[(Cow<'a, str>, &'a RawValue)],
        top: bool,
        out: &mut Vec<Record<'a>>,
    ) {
        if top && text.starts_with('[') {
            match serde_json::from_str::<Vec<&'a RawValue>>(text) {
                Ok(items) => items
                    .into_iter()
                    .for_each(|v| self.expand(v.get(), inherited, false, out)),
                Err(_) => out.push(Record::Raw(Cow::Borrowed(text))),
            }
            return;
        }
        let Ok(object) = serde_json::from_str::<Object<'a>>(text) else {
            out.push(Record::Raw(Cow::Borrowed(text)));
            return;
        };
        if let Some(data) = object.get("data") {
            let envelope = envelope_of(&object, "data", inherited);
            if data.get().starts_with('[') {
                return self.expand(data.get(), &envelope, true, out);
            }
            if data.get().starts_with('{') {
                return self.expand(data.get(), &envelope, false, out);
            }
        }
        if let Some(key) = alpaca_map(&self.source)
            && let Some(quotes) = object.get(key)
            && let Ok(map) = serde_json::from_str::<Object<'a>>(quotes.get())
        {
            let envelope = envelope_of(&object, key, inherited);
            for (symbol, quote) in map {
                match serde_json::from_str::<Object<'a>>(quote.get()) {
                    Ok(fields) => {
                        let mut record = self.fields_of(&fields, &envelope);
                        if let (Record::Fields { values: f, .. }, Some(col)) =
                            (&mut record, self.column("symbol"))
                        {
                            f.retain(|(c, _)| *c != col);
                            f.push((col, symbol));
                        }
                        out.push(record);
                    }
                    Err(_) => out.push(Record::Raw(Cow::Borrowed(quote.get()))),
                }
            }
            return;
        }
        out.push(self.fields_of(&object, inherited));
    }

    fn fields_of<'a>(
        &self,
        object: &Object<'a>,
        inherited: &[(Cow<'a, str>, &'a RawValue)],
    ) -> Record<'a> {
        let mut fields: Vec<(usize, Cow<'a, str>)> = Vec::with_capacity(self.fields.len());
        let mut extra: BTreeMap<&str, &RawValue> = BTreeMap::new();
        let envelope = inherited.iter().map(|(k, v)| (k, *v, true));
        for (key, value, inherited) in envelope.chain(object.iter().map(|(k, v)| (k, *v, false))) {
            // The record's own field wins over the envelope's, in a column and in `_extra`.
            match self.column(key) {
                Some(col) if !(inherited && is_nested(value)) => {
                    if let Some(text) = value_text(value) {
                        fields.retain(|(c, _)| *c != col);
                        fields.push((col, text));
                    }
                }
                _ => {
                    extra.insert(key, value);
                }
            }
        }
        Record::Fields {
            values: fields,
            extra: extra_json(&extra),
        }
    }
}

/// Alpaca's latest-quotes and latest-trades answers: one object per symbol under this key.
fn alpaca_map(source: &str) -> Option<&'static str> {
    match source {
        "alpaca_quotes" => Some("quotes"),
        "alpaca_trades" => Some("trades"),
        _ => None,
    }
}

fn is_nested(value: &RawValue) -> bool {
    value.get().starts_with(['{', '['])
}

/// What a record inside `object[inner]` inherits: the envelope's other keys (after the outer
/// envelopes' own), scalars for the record's columns and everything for its `_extra`.
fn envelope_of<'a>(
    object: &Object<'a>,
    inner: &str,
    outer: &[(Cow<'a, str>, &'a RawValue)],
) -> Vec<(Cow<'a, str>, &'a RawValue)> {
    let mut out = outer.to_vec();
    out.extend(
        object
            .iter()
            .filter(|(k, _)| k.as_ref() != inner)
            .map(|(k, v)| (k.clone(), *v)),
    );
    out
}

/// `{"key":value,...}` with each value exactly as received, or `None` for no keys.
fn extra_json(extra: &BTreeMap<&str, &RawValue>) -> Option<String> {
    if extra.is_empty() {
        return None;
    }
    let mut out = String::from("{");
    for (i, (key, value)) in extra.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(*key).to_string());
        out.push(':');
        out.push_str(value.get().trim());
    }
    out.push('}');
    Some(out)
}

/// A JSON value as text: strings unescaped, `null` as none, anything else as written.
pub fn value_text(value: &RawValue) -> Option<Cow<'_, str>> {
    let raw = value.get();
    if raw == "null" {
        None
    } else if raw.starts_with('"') {
        serde_json::from_str::<Cow<'_, str>>(raw).ok()
    } else {
        Some(Cow::Borrowed(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::landing::split_values;
    use cryptolake_catalog::layout::bronze_source_fields;

    fn decode(source: &str, input: &str) -> Vec<BTreeMap<String, String>> {
        let decoder = RecordDecoder::new(source, bronze_source_fields(source).unwrap());
        let mut out = Vec::new();
        for piece in split_values(input.as_bytes()) {
            decoder.decode(&piece, &mut out);
        }
        out.into_iter()
            .map(|r| match r {
                Record::Fields { values, extra } => values
                    .into_iter()
                    .map(|(c, v)| (decoder.fields[c].to_string(), v.into_owned()))
                    .chain(extra.map(|e| ("_extra".to_string(), e)))
                    .collect(),
                Record::Raw(t) => [("_raw".to_string(), t.into_owned())].into(),
            })
            .collect()
    }

    #[test]
    fn coincap_envelope_gives_one_record_per_asset_with_its_timestamp() {
        let rows = decode(
            "coincap_assets",
            r#"{"data":[{"id":"bitcoin","symbol":"BTC","priceUsd":"43000.1234567890123456","maxSupply":null},
                        {"id":"ethereum","symbol":"ETH","priceUsd":"2300.5"}, 7],"timestamp":1767225600000}"#,
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["price_usd"], "43000.1234567890123456");
        assert_eq!(rows[0]["timestamp"], "1767225600000");
        assert!(!rows[0].contains_key("max_supply"));
        assert_eq!(rows[1]["symbol"], "ETH");
        assert_eq!(rows[2]["_raw"], "7");
    }

    #[test]
    fn fields_no_column_names_are_kept_in_extra_exactly() {
        let rows = decode(
            "coinbase_spot",
            r#"{"data":{"amount":"43000.12","base":"BTC","currency":"USD","venue":"x","fee":0.10},"timestamp_utc":"2026-01-01T00:00:01Z","extra":"y","meta":{"seq":[1,2]}}"#,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["amount"], "43000.12");
        assert_eq!(
            rows[0]["_extra"],
            r#"{"extra":"y","fee":0.10,"meta":{"seq":[1,2]},"venue":"x"}"#
        );
        let known = decode(
            "coinbase_spot",
            r#"{"data":{"amount":"1","base":"BTC","currency":"USD"},"timestamp_utc":"2026-01-01T00:00:01Z"}"#,
        );
        assert!(!known[0].contains_key("_extra"));
    }

    #[test]
    fn a_known_field_that_became_an_object_keeps_its_json_text_and_the_record_wins() {
        let rows = decode(
            "coincap_assets",
            r#"{"data":[{"id":"bitcoin","priceUsd":{"value":"1.5"},"timestamp":"7","note":"r"}],"timestamp":1767225600000,"note":"envelope"}"#,
        );
        assert_eq!(rows[0]["price_usd"], r#"{"value":"1.5"}"#);
        assert_eq!(rows[0]["timestamp"], "7");
        assert_eq!(rows[0]["_extra"], r#"{"note":"r"}"#);
        let alpaca = decode(
            "alpaca_quotes",
            r#"{"quotes":{"BTC/USD":{"ap":1,"as":2,"bp":3,"bs":4,"t":"2026-01-01T00:00:05Z","x":"CBSE"}},"next_page_token":null}"#,
        );
        assert_eq!(alpaca[0]["symbol"], "BTC/USD");
        assert_eq!(
            alpaca[0]["_extra"],
            r#"{"next_page_token":null,"x":"CBSE"}"#
        );
    }

    #[test]
    fn coinbase_concatenated_objects_open_the_data_envelope() {
        let rows = decode(
            "coinbase_spot",
            r#"{"data":{"amount":"43000.12","base":"BTC","currency":"USD"},"timestamp_utc":"2026-01-01T00:00:01Z"}{"data":{"amount":"1.5","base":"XRP","currency":"USD"},"timestamp_utc":"2026-01-01T00:00:02Z"}"#,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["amount"], "1.5");
        assert_eq!(rows[1]["timestamp_utc"], "2026-01-01T00:00:02Z");
    }

    #[test]
    fn alpaca_quotes_map_gives_one_record_per_symbol_and_numbers_keep_their_digits() {
        let rows = decode(
            "alpaca_quotes",
            r#"{"quotes":{"BTC/USD":{"ap":43001.5,"as":0.25,"bp":42999.25,"bs":1.0,"t":"2026-01-01T00:00:05.123456789Z"},"LTC/USD":{"ap":70.1,"as":3,"bp":70.0,"bs":2,"t":"2026-01-01T00:00:05Z"}}}"#,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["symbol"], "BTC/USD");
        assert_eq!(rows[0]["ask_price"], "43001.5");
        assert_eq!(rows[0]["bid_size"], "1.0");
        assert_eq!(rows[1]["symbol"], "LTC/USD");
    }

    #[test]
    fn alpaca_trades_and_coinapi_icons() {
        let rows = decode(
            "alpaca_trades",
            r#"{"trades":{"BTC/USD":{"i":12345,"p":43000.5,"s":0.01,"t":"2026-01-01T00:00:05.1Z","tks":"B"}}}"#,
        );
        assert_eq!(rows[0]["symbol"], "BTC/USD");
        assert_eq!(rows[0]["trade_id"], "12345");
        assert_eq!(rows[0]["taker_side"], "B");
        assert!(!rows[0].contains_key("_extra"));
        let icons = decode(
            "coinapi_icons",
            r#"[{"exchange_id":"","asset_id":"BTC","url":"https://i/btc.png"},{"asset_id":"LTC","url":"https://i/ltc.png"}]"#,
        );
        assert_eq!(icons.len(), 2);
        assert_eq!(icons[1]["url"], "https://i/ltc.png");
    }

    #[test]
    fn coingecko_array_and_malformed_lines() {
        let rows = decode(
            "coingecko_markets",
            "[{\"id\":\"bitcoin\",\"symbol\":\"btc\",\"current_price\":43000.5,\"market_cap\":8.4e11}]\n{oops\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["market_cap"], "8.4e11");
        assert_eq!(rows[1]["_raw"], "{oops");
    }
}
