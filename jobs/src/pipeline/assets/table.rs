//! Rows in and out of Arrow: `silver.assets` rows both ways, and the bronze rows the upsert
//! reads (CoinCap's assets, CoinAPI's icons) into their newest state per key.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Decimal128Type, Int32Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use cryptolake_catalog::layout::DECIMAL_SCALE;

use super::merge::{AssetRow, AssetState, Attributes, Icons};
use crate::iceberg::writer::conform;
use crate::transform::silver::parse::{parse_decimal, parse_time};
use crate::{Error, Result};

/// Columns of `bronze.coincap_assets` the upsert reads.
pub const ASSET_COLUMNS: [&str; 10] = [
    "id",
    "symbol",
    "name",
    "rank",
    "supply",
    "max_supply",
    "market_cap_usd",
    "timestamp",
    "_file",
    "_record",
];

/// Columns of `bronze.coinapi_icons` the upsert reads.
pub const ICON_COLUMNS: [&str; 5] = ["asset_id", "url", "_ingest_time", "_file", "_record"];

fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("no column {name}")))?;
    Ok(if c.data_type() == ty {
        c.clone()
    } else {
        cast(c, ty)?
    })
}

fn text(a: &ArrayRef, i: usize) -> Option<String> {
    a.is_valid(i)
        .then(|| a.as_string::<i32>().value(i).to_string())
}

/// Newest asset states by id, from bronze batches (the latest `timestamp` wins; among equal
/// times, the later file and record). Returns the states and the records that could not be
/// used, each with its reason (`file#record: reason`).
#[derive(Debug, Default)]
pub struct StatesRead {
    pub states: BTreeMap<String, AssetState>,
    /// Per id, the position of the state kept, so that a later one wins.
    order: BTreeMap<String, (i64, String, i64)>,
    pub records: u64,
    pub rejected: Vec<String>,
}

impl StatesRead {
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let utf8 = |n: &str| column(batch, n, &DataType::Utf8);
        let cols: Vec<ArrayRef> = ASSET_COLUMNS[..8]
            .iter()
            .map(|n| utf8(n))
            .collect::<Result<_>>()?;
        let file = utf8("_file")?;
        let record = column(batch, "_record", &DataType::Int64)?;
        for i in 0..batch.num_rows() {
            self.records += 1;
            let at = (
                text(&file, i).unwrap_or_default(),
                record.as_primitive::<Int64Type>().value(i),
            );
            match state_of(&cols, i) {
                Ok((id, state)) => {
                    let key = (state.updated_us, at.0, at.1);
                    if self.order.get(&id).is_none_or(|k| *k < key) {
                        self.order.insert(id.clone(), key);
                        self.states.insert(id, state);
                    }
                }
                Err(reason) => self.rejected.push(format!("{}#{}: {reason}", at.0, at.1)),
            }
        }
        Ok(())
    }
}

fn state_of(cols: &[ArrayRef], i: usize) -> std::result::Result<(String, AssetState), String> {
    let get = |c: usize| text(&cols[c], i);
    let id = get(0).filter(|s| !s.trim().is_empty()).ok_or("no id")?;
    let decimal = |c: usize, name: &str| {
        get(c)
            .map(|t| parse_decimal(&t).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let rank = get(3)
        .map(|t| {
            t.trim()
                .parse::<i32>()
                .map_err(|_| format!("rank: `{t}` is not an integer"))
        })
        .transpose()?;
    let time = get(7).ok_or("no timestamp")?;
    let updated_us = parse_time(&time).map_err(|e| format!("timestamp: {e}"))?;
    Ok((
        id,
        AssetState {
            attrs: Attributes {
                symbol: get(1),
                name: get(2),
                rank,
                supply: decimal(4, "supply")?,
                max_supply: decimal(5, "max_supply")?,
                market_cap_usd: decimal(6, "market_cap_usd")?,
            },
            updated_us,
        },
    ))
}

/// Adds icon rows to `icons` (newest ingest wins; then the later file and record).
pub fn add_icons(
    icons: &mut Icons,
    order: &mut BTreeMap<String, (i64, String, i64)>,
    batch: &RecordBatch,
) -> Result<()> {
    let utf8 = |n: &str| column(batch, n, &DataType::Utf8);
    let (asset, url, file) = (utf8("asset_id")?, utf8("url")?, utf8("_file")?);
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let ingest = column(batch, "_ingest_time", &ts)?;
    let record = column(batch, "_record", &DataType::Int64)?;
    for i in 0..batch.num_rows() {
        let (Some(asset), Some(url)) = (text(&asset, i), text(&url, i)) else {
            continue;
        };
        let at = ingest.as_primitive::<TimestampMicrosecondType>().value(i);
        let key = (
            at,
            text(&file, i).unwrap_or_default(),
            record.as_primitive::<Int64Type>().value(i),
        );
        let symbol = asset.trim().to_ascii_uppercase();
        if order.get(&symbol).is_none_or(|k| *k < key) {
            order.insert(symbol.clone(), key);
            icons.insert(symbol, (url, at));
        }
    }
    Ok(())
}

/// Rows as a batch of the table's Arrow schema.
pub fn to_batch(rows: &[AssetRow], schema: &SchemaRef) -> Result<RecordBatch> {
    let text = |f: fn(&AssetRow) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let decimal = |f: fn(&AssetRow) -> Option<i128>| -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from_iter(rows.iter().map(f))
                .with_precision_and_scale(38, DECIMAL_SCALE as i8)?,
        ))
    };
    let time = |f: fn(&AssetRow) -> Option<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from_iter(rows.iter().map(f)))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", text(|r| Some(&r.id))),
        ("symbol", text(|r| r.attrs.symbol.as_deref())),
        ("name", text(|r| r.attrs.name.as_deref())),
        (
            "rank",
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.attrs.rank))),
        ),
        ("supply", decimal(|r| r.attrs.supply)?),
        ("max_supply", decimal(|r| r.attrs.max_supply)?),
        ("market_cap_usd", decimal(|r| r.attrs.market_cap_usd)?),
        ("icon_url", text(|r| r.icon_url.as_deref())),
        ("updated_at", time(|r| Some(r.updated_us))),
        ("valid_from", time(|r| Some(r.valid_from_us))),
        ("valid_to", time(|r| r.valid_to_us)),
    ];
    conform(&RecordBatch::try_from_iter(columns)?, schema)
}

/// A batch read from `silver.assets` back into rows.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<AssetRow>> {
    let utf8 = |n: &str| column(batch, n, &DataType::Utf8);
    let dec = DataType::Decimal128(38, DECIMAL_SCALE as i8);
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let (id, symbol, name, icon) = (
        utf8("id")?,
        utf8("symbol")?,
        utf8("name")?,
        utf8("icon_url")?,
    );
    let rank = column(batch, "rank", &DataType::Int32)?;
    let (supply, max_supply, cap) = (
        column(batch, "supply", &dec)?,
        column(batch, "max_supply", &dec)?,
        column(batch, "market_cap_usd", &dec)?,
    );
    let (updated, from, to) = (
        column(batch, "updated_at", &ts)?,
        column(batch, "valid_from", &ts)?,
        column(batch, "valid_to", &ts)?,
    );
    let d = |a: &ArrayRef, i: usize| {
        a.is_valid(i)
            .then(|| a.as_primitive::<Decimal128Type>().value(i))
    };
    let t = |a: &ArrayRef, i: usize| {
        a.is_valid(i)
            .then(|| a.as_primitive::<TimestampMicrosecondType>().value(i))
    };
    Ok((0..batch.num_rows())
        .map(|i| AssetRow {
            id: text(&id, i).unwrap_or_default(),
            attrs: Attributes {
                symbol: text(&symbol, i),
                name: text(&name, i),
                rank: rank
                    .is_valid(i)
                    .then(|| rank.as_primitive::<Int32Type>().value(i)),
                supply: d(&supply, i),
                max_supply: d(&max_supply, i),
                market_cap_usd: d(&cap, i),
            },
            icon_url: text(&icon, i),
            updated_us: t(&updated, i).unwrap_or_default(),
            valid_from_us: t(&from, i).unwrap_or_default(),
            valid_to_us: t(&to, i),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptolake_catalog::layout::silver_assets;

    #[test]
    fn rows_survive_a_batch_of_the_table_schema() {
        let schema = silver_assets().schema().unwrap();
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
        let row = AssetRow {
            id: "bitcoin".into(),
            attrs: Attributes {
                symbol: Some("BTC".into()),
                name: Some("Bitcoin".into()),
                rank: Some(1),
                supply: Some(196_000_000_000_000_000_000_000),
                max_supply: None,
                market_cap_usd: Some(1),
            },
            icon_url: Some("https://i/btc.png".into()),
            updated_us: 10,
            valid_from_us: 10,
            valid_to_us: Some(20),
        };
        let batch = to_batch(std::slice::from_ref(&row), &arrow).unwrap();
        assert_eq!(from_batch(&batch).unwrap(), vec![row]);
    }

    #[test]
    fn the_newest_state_per_id_wins_and_bad_records_say_why() {
        let batch = RecordBatch::try_from_iter(
            ASSET_COLUMNS
                .iter()
                .enumerate()
                .map(|(c, name)| {
                    let a: ArrayRef = if *name == "_record" {
                        Arc::new(arrow::array::Int64Array::from(vec![0, 1, 2]))
                    } else {
                        let v: [Option<&str>; 3] = match c {
                            0 => [Some("bitcoin"), Some("bitcoin"), Some("ethereum")],
                            4 => [Some("1.5"), Some("2.5"), Some("lots")],
                            7 => [
                                Some("1767225660000"),
                                Some("1767225600000"),
                                Some("1767225600000"),
                            ],
                            8 => [Some("f"), Some("f"), Some("f")],
                            _ => [None, None, None],
                        };
                        Arc::new(StringArray::from(v.to_vec()))
                    };
                    (*name, a)
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let mut read = StatesRead::default();
        read.add(&batch).unwrap();
        assert_eq!(read.records, 3);
        assert_eq!(read.states.len(), 1);
        assert_eq!(
            read.states["bitcoin"].attrs.supply,
            Some(15_000_000_000_000_000)
        );
        assert_eq!(
            read.rejected,
            vec!["f#2: supply: `lots` is not a decimal number".to_string()]
        );
    }
}
