//! Keys already in a silver table, loaded one `(symbol, day)` partition at a time, only for the
//! partitions new rows fall into and, within a partition, only from the files whose bounds of
//! one key column cover a new row's value ([`super::key_files`]). Memory holds 128-bit key fingerprints (16 bytes a row), never
//! rows, so a false "duplicate" needs a 128-bit collision; past [`KEYS_IN_MEMORY`], between
//! batches, the least recently used partitions' keys go to a spill file, so memory stays
//! bounded by what a batch touches however many rows a run reads.
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
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use datafusion::execution::disk_manager::{DiskManager, RefCountedTempFile};
use futures::TryStreamExt;
use iceberg::spec::{DataFile, Literal, PrimitiveLiteral};
use iceberg::table::Table;

use super::key_files::{Probe, UnreadFiles};
use crate::iceberg::scan;
use crate::{Error, Result};

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

/// Key fingerprints one index holds in memory (each costs 19 to 39 bytes with the hash table's
/// own, by how full it is) before it moves the least recently used partitions' keys to its
/// spill file: 2 Mi keys, 40 to 80 MiB, so dedup memory does not grow with the rows a run reads.
pub const KEYS_IN_MEMORY: usize = 2 << 20;

/// One partition's keys: in memory, or `count` 16-byte little-endian fingerprints at `offset`
/// in the index's spill file.
#[derive(Debug)]
enum Part {
    InMemory { keys: HashSet<u128>, used: u64 },
    Spilled { offset: u64, count: usize },
}

/// A key set over one table, filled lazily per partition: a partition's set starts empty the
/// first time a row falls into it, takes the keys of each table file in it the first time a
/// row's value falls within that file's bounds, and keeps them for the rest of the run with the
/// keys the run adds, in memory or spilled. The budget is enforced between batches
/// ([`KeyIndex::release`]), never within one, so the partitions a batch touches are never
/// spilled and read back row by row.
#[derive(Debug)]
pub struct KeyIndex {
    table: Option<Table>,
    /// Per partition, the table's files whose keys are not in the set yet.
    files: HashMap<PartitionKey, UnreadFiles>,
    parts: HashMap<PartitionKey, Part>,
    /// Keys in memory, over every partition.
    held: usize,
    max_held: usize,
    /// Ticks at each insert; a partition last used before `batch_start` is not in this batch.
    clock: u64,
    batch_start: u64,
    disk: Arc<DiskManager>,
    spill: Option<SpillFile>,
    columns: &'static [&'static str],
    batch_size: usize,
}

impl KeyIndex {
    /// Indexes the live files of `table` (as of now) by partition and by their bounds of
    /// `bounded`, one of the key columns `columns`; spilled keys go to a file of `disk` (an
    /// executor's work directory).
    pub async fn new(
        table: Option<Table>,
        columns: &'static [&'static str],
        bounded: &str,
        batch_size: usize,
        disk: Arc<DiskManager>,
    ) -> Result<Self> {
        let mut by_part: HashMap<PartitionKey, Vec<DataFile>> = HashMap::new();
        let mut field_id = None;
        if let Some(t) = &table {
            field_id = t.metadata().current_schema().field_id_by_name(bounded);
            for f in scan::live_data_files(t).await? {
                if let Some(p) = partition_of(&f) {
                    by_part.entry(p).or_default().push(f);
                }
            }
        }
        let field_id = match (field_id, &table) {
            (Some(id), _) => id,
            (None, None) => 0,
            (None, Some(t)) => {
                return Err(Error::Internal(format!(
                    "{} has no key column {bounded}",
                    t.identifier()
                )));
            }
        };
        let files = by_part
            .into_iter()
            .map(|(p, f)| (p, UnreadFiles::new(f, field_id)))
            .collect();
        Ok(Self {
            table,
            files,
            parts: HashMap::new(),
            held: 0,
            max_held: KEYS_IN_MEMORY,
            clock: 0,
            batch_start: 0,
            disk,
            spill: None,
            columns,
            batch_size,
        })
    }

    /// Holds at most `keys` in memory between batches: tests spill with a few.
    #[cfg(test)]
    fn with_max_keys(mut self, keys: usize) -> Self {
        self.max_held = keys;
        self
    }

    /// Inserts a key fingerprint (in partition `part`, with `probe` the row's value of the
    /// bounded column); false when it was already present. `extract` reads the fingerprint of a
    /// row of the table's key columns.
    pub async fn insert(
        &mut self,
        part: &PartitionKey,
        key: u128,
        probe: Probe<'_>,
        extract: impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<bool> {
        self.clock += 1;
        if !matches!(self.parts.get(part), Some(Part::InMemory { .. })) {
            self.bring_in(part)?;
        }
        let covering = match self.files.get_mut(part) {
            Some(unread) => unread.take_covering(probe),
            None => Vec::new(),
        };
        let loaded = if covering.is_empty() {
            None
        } else {
            Some(self.load(covering, &extract).await?)
        };
        let Some(Part::InMemory { keys, used }) = self.parts.get_mut(part) else {
            return Err(Error::Internal("a dedup partition is not in memory".into()));
        };
        if let Some(loaded) = loaded {
            let before = keys.len();
            keys.extend(loaded);
            self.held += keys.len() - before;
        }
        *used = self.clock;
        let new = keys.insert(key);
        self.held += usize::from(new);
        Ok(new)
    }

    /// Ends a batch: while over the budget, spills the least recently used partitions the
    /// batch did not touch.
    pub fn release(&mut self) -> Result<()> {
        let mut idle: Vec<(u64, PartitionKey)> = Vec::new();
        if self.held > self.max_held {
            idle = self
                .parts
                .iter()
                .filter_map(|(p, part)| match part {
                    Part::InMemory { used, .. } if *used <= self.batch_start => {
                        Some((*used, p.clone()))
                    }
                    _ => None,
                })
                .collect();
            idle.sort_unstable();
        }
        for (_, part) in idle {
            if self.held <= self.max_held {
                break;
            }
            self.spill_part(part)?;
        }
        self.batch_start = self.clock;
        Ok(())
    }

    /// Puts a partition's keys in memory: from the spill file, or (the first time) an empty
    /// set, which [`KeyIndex::insert`] fills from the files a row's value needs.
    fn bring_in(&mut self, part: &PartitionKey) -> Result<()> {
        let keys = match self.parts.get(part) {
            Some(Part::InMemory { .. }) => return Ok(()),
            Some(Part::Spilled { offset, count }) => {
                let spill = self.spill.as_ref().ok_or_else(|| {
                    Error::Internal("a dedup partition is spilled without a spill file".into())
                })?;
                spill.read(*offset, *count)?
            }
            None => HashSet::new(),
        };
        self.held += keys.len();
        let used = self.clock;
        self.parts
            .insert(part.clone(), Part::InMemory { keys, used });
        Ok(())
    }

    fn spill_part(&mut self, part: PartitionKey) -> Result<()> {
        let Some(Part::InMemory { keys, .. }) = self.parts.get(&part) else {
            return Ok(());
        };
        if self.spill.is_none() {
            self.spill = Some(SpillFile::create(&self.disk)?);
        }
        let spill = self.spill.as_mut().expect("created above");
        let (offset, count) = (spill.append(keys)?, keys.len());
        self.held -= count;
        self.parts.insert(part, Part::Spilled { offset, count });
        Ok(())
    }

    /// The keys of some of the table's files.
    async fn load(
        &self,
        files: Vec<DataFile>,
        extract: &impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<HashSet<u128>> {
        let mut keys = HashSet::new();
        let Some(table) = &self.table else {
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

/// An index's spilled keys: one temporary file of the task's disk manager, appended to at
/// every spill (a partition spilled again is appended again; its old copy is dead space until
/// the file goes, with the index). Written and read on the task's own thread: a partition's
/// keys are a few megabytes, read back only when late rows return to it.
#[derive(Debug)]
struct SpillFile {
    /// Keeps the file; removed when the index drops it.
    _temp: RefCountedTempFile,
    file: std::fs::File,
    len: u64,
}

impl SpillFile {
    fn create(disk: &Arc<DiskManager>) -> Result<Self> {
        let temp = disk.create_tmp_file("silver dedup keys")?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(temp.path())
            .map_err(|e| Error::io(format!("opening {}", temp.path().display()), e))?;
        Ok(Self {
            _temp: temp,
            file,
            len: 0,
        })
    }

    /// Appends `keys`; returns where they start.
    fn append(&mut self, keys: &HashSet<u128>) -> Result<u64> {
        use std::io::{Seek, SeekFrom, Write};
        let error = |e| Error::io("spilling dedup keys", e);
        let offset = self.len;
        self.file.seek(SeekFrom::Start(offset)).map_err(error)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, &mut self.file);
        for key in keys {
            out.write_all(&key.to_le_bytes()).map_err(error)?;
        }
        out.flush().map_err(error)?;
        self.len = offset + 16 * keys.len() as u64;
        Ok(offset)
    }

    /// The `count` keys at `offset`.
    fn read(&self, offset: u64, count: usize) -> Result<HashSet<u128>> {
        use std::io::{Read, Seek, SeekFrom};
        let error = |e| Error::io("reading spilled dedup keys back", e);
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset)).map_err(error)?;
        let mut bytes = vec![0u8; count * 16];
        file.read_exact(&mut bytes).map_err(error)?;
        let mut keys = HashSet::with_capacity(count);
        for chunk in bytes.chunks_exact(16) {
            let mut key = [0u8; 16];
            key.copy_from_slice(chunk);
            keys.insert(u128::from_le_bytes(key));
        }
        Ok(keys)
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

    fn part(symbol: &str) -> PartitionKey {
        (symbol.to_string(), 20_454)
    }

    fn never(_: &arrow::array::RecordBatch, _: usize) -> u128 {
        unreachable!("no table to read")
    }

    async fn index(max_keys: usize) -> KeyIndex {
        let disk = Arc::new(DiskManager::builder().build().unwrap());
        KeyIndex::new(None, &["trade_id"], "trade_id", 8, disk)
            .await
            .unwrap()
            .with_max_keys(max_keys)
    }

    /// Inserts `keys` into `symbol`'s partition as one batch; returns which were new.
    async fn batch(index: &mut KeyIndex, symbol: &str, keys: &[u128]) -> Vec<bool> {
        let mut new = Vec::new();
        for key in keys {
            let probe = Probe::Str("t");
            new.push(
                index
                    .insert(&part(symbol), *key, probe, never)
                    .await
                    .unwrap(),
            );
        }
        index.release().unwrap();
        new
    }

    fn spilled(index: &KeyIndex, symbol: &str) -> Option<usize> {
        match index.parts.get(&part(symbol)) {
            Some(Part::Spilled { count, .. }) => Some(*count),
            _ => None,
        }
    }

    #[tokio::test]
    async fn spilled_partitions_still_know_their_keys() {
        let mut index = index(8).await;
        assert_eq!(batch(&mut index, "A", &[0, 1, 2, 3, 4, 5]).await, [true; 6]);
        assert_eq!(batch(&mut index, "B", &[0, 1, 2, 3, 4, 5]).await, [true; 6]);
        // Over the budget after B's batch: A, not touched by it, went to the spill file.
        assert_eq!((spilled(&index, "A"), index.held), (Some(6), 6));
        assert_eq!(batch(&mut index, "C", &[0, 1, 2, 3, 4, 5]).await, [true; 6]);
        assert_eq!((spilled(&index, "B"), index.held), (Some(6), 6));
        // Late rows for A: a duplicate is still one, a new key is new.
        assert_eq!(
            batch(&mut index, "A", &[3, 6, 6]).await,
            [false, true, false]
        );
        assert_eq!(
            (spilled(&index, "A"), spilled(&index, "C")),
            (None, Some(6))
        );
        assert_eq!(batch(&mut index, "B", &[0, 7]).await, [false, true]);
        assert_eq!(batch(&mut index, "C", &[5]).await, [false]);
        // A spilled twice (appended again) reads back its newest copy.
        assert_eq!(spilled(&index, "A"), Some(7));
        assert_eq!(batch(&mut index, "A", &[6, 7]).await, [false, true]);
        let held: usize = index
            .parts
            .values()
            .map(|p| match p {
                Part::InMemory { keys, .. } => keys.len(),
                Part::Spilled { .. } => 0,
            })
            .sum();
        assert_eq!(held, index.held);
    }

    #[tokio::test]
    async fn the_partitions_of_one_batch_stay_in_memory_over_the_budget() {
        let mut index = index(4).await;
        // One batch over three partitions, 9 keys: nothing spills within it.
        for (symbol, key) in [("A", 0), ("B", 0), ("C", 0), ("A", 1), ("B", 1), ("C", 1)] {
            let probe = Probe::Str("t");
            assert!(
                index
                    .insert(&part(symbol), key, probe, never)
                    .await
                    .unwrap()
            );
        }
        for symbol in ["A", "B", "C"] {
            assert_eq!(spilled(&index, symbol), None);
        }
        index.release().unwrap();
        // The next batch touches C only: A and B (least recently used first) spill.
        assert_eq!(batch(&mut index, "C", &[2]).await, [true]);
        assert_eq!(
            (spilled(&index, "A"), spilled(&index, "B")),
            (Some(2), Some(2))
        );
        assert_eq!(index.held, 3);
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
