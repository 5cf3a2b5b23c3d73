//! Keys already in a silver table, loaded one `(symbol, day)` partition at a time, only for the
//! partitions new rows fall into. Memory holds 128-bit key fingerprints (16 bytes a row), never
//! rows: two independent 64-bit SipHashes, so a false "duplicate" needs a 128-bit collision.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use futures::TryStreamExt;
use iceberg::spec::{DataFile, Literal, PrimitiveLiteral};
use iceberg::table::Table;

use crate::Result;
use crate::scan;

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

/// A 128-bit fingerprint of a key.
pub fn fingerprint<T: Hash + ?Sized>(key: &T) -> u128 {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
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
    fingerprint(&(source, symbol, event_us))
}

/// Reads a quote key from a batch projected to `source, symbol, event_time`.
pub fn quote_key(batch: &arrow::array::RecordBatch, row: usize) -> u128 {
    let s = |i: usize| batch.column(i).as_string::<i32>().value(row);
    let t = batch.column(2).as_primitive::<TimestampMicrosecondType>();
    quote_fingerprint(s(0), s(1), if t.is_null(row) { 0 } else { t.value(row) })
}

/// Reads a trade key from a batch projected to `trade_id`.
pub fn trade_key(batch: &arrow::array::RecordBatch, row: usize) -> u128 {
    fingerprint(batch.column(0).as_string::<i32>().value(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_keys_apart_and_repeat() {
        let a = quote_fingerprint("coinbase_spot", "BTC-USD", 1);
        assert_eq!(a, quote_fingerprint("coinbase_spot", "BTC-USD", 1));
        assert_ne!(a, quote_fingerprint("coinbase_spot", "BTC-USD", 2));
        assert_ne!(a, quote_fingerprint("coinbase_spo", "tBTC-USD", 1));
        assert_eq!(fingerprint("t-1"), fingerprint(&"t-1".to_string()[..]));
    }
}
