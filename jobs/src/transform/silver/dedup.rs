//! Keys already in a silver table, loaded one `(symbol, day)` partition at a time, only for the
//! partitions new rows fall into. Memory holds 128-bit key fingerprints (16 bytes a row), never
//! rows, so a false "duplicate" needs a 128-bit collision; past [`KEYS_IN_MEMORY`] the least
//! recently used partitions' keys go to a spill file, so memory stays bounded however many rows
//! a run reads (input in time order touches few partitions at once).
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

/// Key fingerprints a task holds in memory (about 20 bytes each with the hash table's own)
/// before it moves the least recently used partitions' keys to a spill file: 2 Mi keys, about
/// 40 MiB, so dedup memory does not grow with the rows a run reads.
pub const KEYS_IN_MEMORY: usize = 2 << 20;

/// One partition's keys: in memory, or in a spill file (an unnamed temporary file, gone when
/// it is closed, also when the process dies) as 16-byte little-endian fingerprints.
#[derive(Debug)]
enum Part {
    InMemory { keys: HashSet<u128>, used: u64 },
    Spilled { file: std::fs::File, count: usize },
}

/// A key set over one table, filled lazily per partition: a partition's keys are loaded from
/// the table's files the first time a row falls into it, and kept (in memory or spilled) for
/// the rest of the run, with the keys the run adds.
#[derive(Debug)]
pub struct KeyIndex {
    table: Option<Table>,
    files: HashMap<PartitionKey, Vec<DataFile>>,
    parts: HashMap<PartitionKey, Part>,
    /// Keys in memory, over every partition.
    held: usize,
    max_held: usize,
    clock: u64,
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
            parts: HashMap::new(),
            held: 0,
            max_held: KEYS_IN_MEMORY,
            clock: 0,
            columns,
            batch_size,
        })
    }

    /// Holds at most `keys` in memory (beyond one partition's own): tests spill with a few.
    #[cfg(test)]
    fn with_max_keys(mut self, keys: usize) -> Self {
        self.max_held = keys.max(1);
        self
    }

    /// Inserts a key fingerprint (in partition `part`); false when it was already present.
    /// `extract` reads the fingerprint of a row of the table's key columns.
    pub async fn insert(
        &mut self,
        part: &PartitionKey,
        key: u128,
        extract: impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<bool> {
        self.clock += 1;
        if !matches!(self.parts.get(part), Some(Part::InMemory { .. })) {
            self.bring_in(part, &extract).await?;
        }
        let Some(Part::InMemory { keys, used }) = self.parts.get_mut(part) else {
            return Err(crate::Error::Internal(
                "a dedup partition is not in memory".into(),
            ));
        };
        *used = self.clock;
        let new = keys.insert(key);
        if new {
            self.held += 1;
            if self.held > self.max_held {
                self.spill_others(part)?;
            }
        }
        Ok(new)
    }

    /// Puts a partition's keys in memory: from its spill file, or (the first time) from the
    /// table's files in it.
    async fn bring_in(
        &mut self,
        part: &PartitionKey,
        extract: &impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<()> {
        let keys = match self.parts.remove(part) {
            Some(Part::Spilled { file, count }) => read_spilled(file, count)?,
            Some(Part::InMemory { keys, .. }) => {
                self.held -= keys.len();
                keys
            }
            None => self.load(part, extract).await?,
        };
        self.held += keys.len();
        let used = self.clock;
        self.parts
            .insert(part.clone(), Part::InMemory { keys, used });
        if self.held > self.max_held {
            self.spill_others(part)?;
        }
        Ok(())
    }

    /// Spills the least recently used partitions other than `keep` until a quarter of the
    /// budget is free (so that spills come in runs, not one per row).
    fn spill_others(&mut self, keep: &PartitionKey) -> Result<()> {
        while self.held > self.max_held - self.max_held / 4 {
            let oldest = self
                .parts
                .iter()
                .filter_map(|(p, part)| match part {
                    Part::InMemory { used, .. } if p != keep => Some((*used, p)),
                    _ => None,
                })
                .min()
                .map(|(_, p)| p.clone());
            let Some(oldest) = oldest else {
                // One partition alone is over the budget: it stays in memory.
                return Ok(());
            };
            if let Some(Part::InMemory { keys, .. }) = self.parts.remove(&oldest) {
                self.held -= keys.len();
                let spilled = write_spilled(&keys)?;
                self.parts.insert(oldest, spilled);
            }
        }
        Ok(())
    }

    async fn load(
        &mut self,
        part: &PartitionKey,
        extract: &impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<HashSet<u128>> {
        let mut keys = HashSet::new();
        let (Some(table), Some(files)) = (&self.table, self.files.remove(part)) else {
            return Ok(keys);
        };
        let rows: u64 = files.iter().map(|f| f.record_count()).sum();
        keys.reserve(usize::try_from(rows).unwrap_or(0));
        let tasks = scan::tasks_for_files(table, &files, Some(self.columns))?;
        let mut stream = scan::read(table, tasks, self.batch_size)?;
        while let Some(batch) = stream.try_next().await? {
            for row in 0..batch.num_rows() {
                keys.insert(extract(&batch, row));
            }
        }
        Ok(keys)
    }
}

// Spill files are written and read on the task's own thread: a partition's keys are a few
// megabytes, written once and read back only when late rows return to it.
fn write_spilled(keys: &HashSet<u128>) -> Result<Part> {
    use std::io::Write;
    let error = |e| crate::Error::io("spilling dedup keys to a temporary file", e);
    let mut file = tempfile::tempfile().map_err(error)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, &mut file);
    for key in keys {
        out.write_all(&key.to_le_bytes()).map_err(error)?;
    }
    out.flush().map_err(error)?;
    drop(out);
    Ok(Part::Spilled {
        file,
        count: keys.len(),
    })
}

fn read_spilled(mut file: std::fs::File, count: usize) -> Result<HashSet<u128>> {
    use std::io::{Read, Seek};
    let error = |e| crate::Error::io("reading spilled dedup keys back", e);
    file.rewind().map_err(error)?;
    let mut bytes = Vec::with_capacity(count * 16);
    file.read_to_end(&mut bytes).map_err(error)?;
    if bytes.len() != count * 16 {
        return Err(crate::Error::Internal(format!(
            "a dedup spill file holds {} bytes, not the {} of its {count} keys",
            bytes.len(),
            count * 16
        )));
    }
    let mut keys = HashSet::with_capacity(count);
    for chunk in bytes.chunks_exact(16) {
        let mut key = [0u8; 16];
        key.copy_from_slice(chunk);
        keys.insert(u128::from_le_bytes(key));
    }
    Ok(keys)
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

    fn part(symbol: &str) -> PartitionKey {
        (symbol.to_string(), 20_454)
    }

    fn never(_: &arrow::array::RecordBatch, _: usize) -> u128 {
        unreachable!("no table to read")
    }

    #[tokio::test]
    async fn spilled_partitions_still_know_their_keys() {
        let mut index = KeyIndex::new(None, &["trade_id"], 8)
            .await
            .unwrap()
            .with_max_keys(8);
        for symbol in ["A", "B", "C"] {
            for key in 0..6u128 {
                assert!(index.insert(&part(symbol), key, never).await.unwrap());
            }
        }
        // A and B went to spill files as C filled: memory holds C's keys, under the budget.
        assert!(matches!(
            index.parts[&part("A")],
            Part::Spilled { count: 6, .. }
        ));
        assert!(matches!(
            index.parts[&part("B")],
            Part::Spilled { count: 6, .. }
        ));
        assert_eq!(index.held, 6);
        // A late row for A is still a duplicate, a new key in it is new, and C's stay known.
        assert!(!index.insert(&part("A"), 3, never).await.unwrap());
        assert!(index.insert(&part("A"), 6, never).await.unwrap());
        assert!(!index.insert(&part("C"), 5, never).await.unwrap());
        assert!(!index.insert(&part("B"), 0, never).await.unwrap());
        let held: usize = index
            .parts
            .values()
            .map(|p| match p {
                Part::InMemory { keys, .. } => keys.len(),
                Part::Spilled { .. } => 0,
            })
            .sum();
        assert_eq!(held, index.held);
        assert!(index.held <= 8 + 7);
    }

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
