//! Keys already in a silver table, loaded one `(symbol, day)` partition at a time, only for the
//! partitions new rows fall into. Memory holds 128-bit key fingerprints (16 bytes a row), never
//! rows, so a false "duplicate" needs a 128-bit collision.
//!
//! Fingerprints cross processes (stage one computes them, the shuffle carries them, the sink
//! compares them with keys hashed from the table), so every process must agree on them,
//! whatever its build or architecture: they are XXH3-128 (a specified hash, seed 0) over a byte
//! encoding defined here, never `std`'s `DefaultHasher`, whose algorithm may change between
//! Rust releases and which hashes integers in native byte order.
//!
//! The encoding: one tag byte for the key's kind (`q` a quote, `t` a trade), then each field in
//! order: a string as its byte length (u32, little-endian) and its UTF-8 bytes, an integer as
//! its 8 little-endian bytes.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use futures::TryStreamExt;
use iceberg::spec::{DataFile, Literal, PrimitiveLiteral};
use iceberg::table::Table;

use crate::Result;
use crate::iceberg::scan;

/// `(symbol, day since epoch)`: the partition of every silver table.
pub type PartitionKey = (String, i32);

/// Extracts `(symbol, day)` from a data file's partition tuple.
fn partition_of(file: &DataFile) -> Option<PartitionKey> {
    let mut it = file.partition().iter();
    let symbol = match it.next()? {
        Some(Literal::Primitive(PrimitiveLiteral::String(s))) => s.clone(),
        _ => return None,
    };
    let day = match it.next()? {
        Some(Literal::Primitive(PrimitiveLiteral::Int(d))) => *d,
        _ => return None,
    };
    Some((symbol, day))
}

/// Builds one key's fingerprint over the module's byte encoding.
struct Fingerprint(twox_hash::XxHash3_128);

impl Fingerprint {
    fn new(tag: u8) -> Self {
        let mut hash = twox_hash::XxHash3_128::new();
        hash.write(&[tag]);
        Self(hash)
    }

    fn str(mut self, s: &str) -> Self {
        // Silver's keys are short; a string over 4 GiB would not be a key.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.write(&len.to_le_bytes());
        self.0.write(s.as_bytes());
        self
    }

    fn int(mut self, n: i64) -> Self {
        self.0.write(&n.to_le_bytes());
        self
    }

    fn finish(self) -> u128 {
        self.0.finish_128()
    }
}

/// A key set over one table, filled lazily per partition.
#[derive(Debug)]
pub struct KeyIndex {
    table: Option<Table>,
    files: HashMap<PartitionKey, Vec<DataFile>>,
    loaded: HashSet<PartitionKey>,
    keys: HashSet<u128>,
    columns: &'static [&'static str],
    batch_size: usize,
}

impl KeyIndex {
    /// Indexes the live files of `table` (as of now) by partition. `columns` are the key columns.
    pub async fn new(
        table: Option<Table>,
        columns: &'static [&'static str],
        batch_size: usize,
    ) -> Result<Self> {
        let mut files: HashMap<PartitionKey, Vec<DataFile>> = HashMap::new();
        if let Some(t) = &table {
            for f in scan::live_data_files(t).await? {
                if let Some(p) = partition_of(&f) {
                    files.entry(p).or_default().push(f);
                }
            }
        }
        Ok(Self {
            table,
            files,
            loaded: HashSet::new(),
            keys: HashSet::new(),
            columns,
            batch_size,
        })
    }

    /// Inserts a key fingerprint (in partition `part`); false when it was already present.
    /// `extract` reads the fingerprint of a row of the table's key columns.
    pub async fn insert(
        &mut self,
        part: &PartitionKey,
        key: u128,
        extract: impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<bool> {
        if !self.loaded.contains(part) {
            self.load(part, &extract).await?;
        }
        Ok(self.keys.insert(key))
    }

    async fn load(
        &mut self,
        part: &PartitionKey,
        extract: &impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<()> {
        self.loaded.insert(part.clone());
        let (Some(table), Some(files)) = (&self.table, self.files.remove(part)) else {
            return Ok(());
        };
        let tasks = scan::tasks_for_files(table, &files, Some(self.columns))?;
        let mut stream = scan::read(table, tasks, self.batch_size)?;
        while let Some(batch) = stream.try_next().await? {
            for row in 0..batch.num_rows() {
                self.keys.insert(extract(&batch, row));
            }
        }
        Ok(())
    }
}

/// The fingerprint of a quote's key `(source, symbol, event_time)`.
pub fn quote_fingerprint(source: &str, symbol: &str, event_us: i64) -> u128 {
    Fingerprint::new(b'q')
        .str(source)
        .str(symbol)
        .int(event_us)
        .finish()
}

/// The fingerprint of a trade's key `trade_id`.
pub fn trade_fingerprint(trade_id: &str) -> u128 {
    Fingerprint::new(b't').str(trade_id).finish()
}

/// Reads a quote key from a batch projected to `source, symbol, event_time`.
pub fn quote_key(batch: &arrow::array::RecordBatch, row: usize) -> u128 {
    let s = |i: usize| batch.column(i).as_string::<i32>().value(row);
    let t = batch.column(2).as_primitive::<TimestampMicrosecondType>();
    quote_fingerprint(s(0), s(1), if t.is_null(row) { 0 } else { t.value(row) })
}

/// Reads a trade key from a batch projected to `trade_id`.
pub fn trade_key(batch: &arrow::array::RecordBatch, row: usize) -> u128 {
    trade_fingerprint(batch.column(0).as_string::<i32>().value(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_keys_apart_and_repeat() {
        let a = quote_fingerprint("coinbase_spot", "BTC-USD", 1);
        assert_eq!(a, quote_fingerprint("coinbase_spot", "BTC-USD", 1));
        assert_ne!(a, quote_fingerprint("coinbase_spot", "BTC-USD", 2));
        // Lengths delimit fields: moving a character across a boundary is another key.
        assert_ne!(a, quote_fingerprint("coinbase_spo", "tBTC-USD", 1));
        // The tag keeps a trade id apart from any quote key.
        assert_ne!(trade_fingerprint(""), quote_fingerprint("", "", 0));
    }

    /// Fixed vectors: XXH3-128 (seed 0) over the documented encoding, computed independently
    /// with python-xxhash 4.1 (libxxhash 0.8.4) (`xxhash.xxh3_128_intdigest`). A change here means every table's
    /// existing keys would stop matching new ones.
    #[test]
    fn fingerprints_match_fixed_vectors() {
        // The hash itself, on xxHash's own sanity input (the empty string).
        assert_eq!(
            twox_hash::XxHash3_128::oneshot(b""),
            0x99aa_06d3_0147_98d8_6001_c324_468d_497f
        );
        assert_eq!(
            trade_fingerprint("t-1"),
            0x7443_dc1f_b4b0_0982_9e55_4f3a_1134_2089
        );
        assert_eq!(
            quote_fingerprint("coinbase_spot", "BTC-USD", 1_767_225_600_123_456),
            0xd3e7_f487_212a_b81c_bede_98e2_dee9_e2b3
        );
        assert_eq!(
            quote_fingerprint("kraken", "ETH-USD", -1),
            0xc40a_eb11_2b8d_3483_b5a1_5245_7f37_0733
        );
    }
}
