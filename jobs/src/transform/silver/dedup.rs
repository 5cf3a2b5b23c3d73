//! Keys already in a silver table, loaded one `(symbol, day)` partition at a time, only for the
//! partitions new rows fall into and, within a partition, only from the files whose bounds of
//! one key column cover a new row's value ([`super::key_files`]). Memory holds 128-bit key
//! fingerprints (16 bytes a row), never rows, so a false "duplicate" needs a 128-bit collision;
//! past [`KEYS_IN_MEMORY`], between batches, partitions' keys go to a spill file in segments
//! that know the span of their rows' values, and come back only for a row within that span:
//! memory stays at the budget however many rows a run reads, as long as rows come roughly in
//! time order.
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

use super::key_files::{Probe, Ranges, UnreadFiles};
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

/// Builds one key's fingerprint over the module's byte encoding: the encoding is gathered in a
/// buffer on the stack and hashed at once. (XXH3's streaming state is several hundred bytes to
/// set up per key: a twentieth of silver's time went to it, per row.)
struct Fingerprint {
    stack: [u8; FINGERPRINT_STACK],
    len: usize,
    /// The encoding once it outgrows `stack`.
    heap: Vec<u8>,
}

/// Encoded keys up to this many bytes are hashed from the stack.
const FINGERPRINT_STACK: usize = 96;

impl Fingerprint {
    fn new(tag: u8) -> Self {
        let mut key = Self {
            stack: [0; FINGERPRINT_STACK],
            len: 0,
            heap: Vec::new(),
        };
        key.put(&[tag]);
        key
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() && self.len + bytes.len() <= FINGERPRINT_STACK {
            self.stack[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack[..self.len]);
            }
            self.heap.extend_from_slice(bytes);
        }
    }

    fn str(mut self, s: &str) -> Self {
        // Silver's keys are short; a string over 4 GiB would not be a key.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.put(&len.to_le_bytes());
        self.put(s.as_bytes());
        self
    }

    fn int(mut self, n: i64) -> Self {
        self.put(&n.to_le_bytes());
        self
    }

    fn finish(self) -> u128 {
        if self.heap.is_empty() {
            twox_hash::XxHash3_128::oneshot(&self.stack[..self.len])
        } else {
            twox_hash::XxHash3_128::oneshot(&self.heap)
        }
    }
}

/// Hashes a fingerprint for the key sets: its low 64 bits as they are. A fingerprint is
/// already XXH3-128, uniform in every bit, so hashing it again (std's SipHash, per row of every
/// batch and per key of every file read) is work for nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct FingerprintHasher(u64);

impl std::hash::Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }

    /// Not reached by `u128` keys; folds other input so the hasher stays a correct one.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
}

/// A set of key fingerprints.
pub type KeySet = HashSet<u128, std::hash::BuildHasherDefault<FingerprintHasher>>;

/// Key fingerprints one index holds in memory (each costs 19 to 39 bytes with the hash table's
/// own, by how full it is) before it moves partitions' keys to its spill file: 256 Ki keys, 5 to
/// 10 MiB, so dedup memory does not grow with the rows a run reads. Time-ordered rows never read
/// a spilled key back, so a small budget costs only the writes (16 bytes a key, once); a sink
/// task holds one index per table, and a job one sink task per core.
pub const KEYS_IN_MEMORY: usize = 256 << 10;

/// Keys of one partition moved to the spill file: `count` 16-byte little-endian fingerprints
/// at `offset`, whose rows' values of the bounded column lie in `span`'s ranges.
#[derive(Debug)]
struct Segment {
    offset: u64,
    count: usize,
    span: Ranges,
}

/// One partition's keys: those in memory (read from table files, kept by this run) with the
/// span of their values, the segments spilled before, and the table's files not read yet.
#[derive(Debug, Default)]
struct Part {
    keys: KeySet,
    span: Ranges,
    used: u64,
    spilled: Vec<Segment>,
    /// Keys the partition must hold before it may spill again: twice what it held when it last
    /// read a segment back, so rows that keep returning to old values re-spill a key a
    /// logarithmic number of times, not once a batch.
    floor: usize,
    unread: UnreadFiles,
}

/// A partition of one [`KeyIndex`], from [`KeyIndex::partition`]: rows of a batch come in runs
/// of one partition, so the partition is looked up once a run, not once a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartId(usize);

/// A key set over one table, filled lazily per partition: a partition's set starts empty the
/// first time a row falls into it, takes the keys of each table file in it the first time a
/// row's value falls within that file's bounds, and keeps them for the rest of the run with the
/// keys the run adds. Between batches ([`KeyIndex::release`]), past the budget, partitions'
/// keys move to the spill file as segments with the span of their values; a later row reads a
/// segment back only when its value falls in that span. Rows in time order (how data arrives)
/// are newer than every spilled segment, so memory stays at the budget and nothing is read
/// back; a late or redelivered row reads back the segments of its time.
#[derive(Debug)]
pub struct KeyIndex {
    table: Option<Table>,
    /// Per partition not touched yet, the table's files in it.
    files: HashMap<PartitionKey, UnreadFiles>,
    /// Looked up about once a row (time-ordered rows interleave partitions): foldhash, not
    /// SipHash, whose cost showed in silver's profile.
    ids: HashMap<PartitionKey, PartId, foldhash::fast::RandomState>,
    parts: Vec<Part>,
    /// Keys in memory, over every partition.
    held: usize,
    max_held: usize,
    /// Ticks at each insert: a partition's last use.
    clock: u64,
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
            ids: HashMap::default(),
            parts: Vec::new(),
            held: 0,
            max_held: KEYS_IN_MEMORY,
            clock: 0,
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

    /// The partition `part` of this index (made, with its table files, the first time).
    pub fn partition(&mut self, part: &PartitionKey) -> PartId {
        if let Some(id) = self.ids.get(part) {
            return *id;
        }
        let id = PartId(self.parts.len());
        self.parts.push(Part {
            unread: self.files.remove(part).unwrap_or_default(),
            ..Part::default()
        });
        self.ids.insert(part.clone(), id);
        id
    }

    /// Inserts a key fingerprint (in partition `part`, with `probe` the row's value of the
    /// bounded column); false when it was already present. `extract` reads the fingerprint of a
    /// row of the table's key columns.
    pub async fn insert(
        &mut self,
        part: PartId,
        key: u128,
        probe: Probe<'_>,
        extract: impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<bool> {
        self.clock += 1;
        let entry = self
            .parts
            .get_mut(part.0)
            .ok_or_else(|| Error::Internal("no such dedup partition".into()))?;
        let covering = entry.unread.take_covering(probe);
        if !covering.is_empty() {
            let mut span = Ranges::Empty;
            let files = covering
                .into_iter()
                .map(|(file, file_span)| {
                    span.add(&file_span);
                    file
                })
                .collect();
            let loaded = self.load(files, &extract).await?;
            let entry = &mut self.parts[part.0];
            let before = entry.keys.len();
            entry.keys.extend(loaded);
            entry.span.union(&span);
            self.held += entry.keys.len() - before;
        }
        let entry = &mut self.parts[part.0];
        let before = entry.keys.len();
        read_back(entry, self.spill.as_ref(), probe)?;
        entry.used = self.clock;
        let new = entry.keys.insert(key);
        if new {
            entry.span.add_probe(probe);
        }
        self.held += entry.keys.len() - before;
        Ok(new)
    }

    /// Ends a batch: while over the budget, spills partitions' keys, the least recently used
    /// (then the largest) first.
    pub fn release(&mut self) -> Result<()> {
        if self.held <= self.max_held {
            return Ok(());
        }
        let mut order: Vec<(u64, std::cmp::Reverse<usize>, usize)> = self
            .parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.keys.is_empty() && p.keys.len() >= p.floor)
            .map(|(i, p)| (p.used, std::cmp::Reverse(p.keys.len()), i))
            .collect();
        order.sort_unstable();
        for (_, _, part) in order {
            if self.held <= self.max_held {
                break;
            }
            self.spill_part(part)?;
        }
        Ok(())
    }

    fn spill_part(&mut self, part: usize) -> Result<()> {
        if self.spill.is_none() {
            self.spill = Some(SpillFile::create(&self.disk)?);
        }
        let (Some(spill), Some(entry)) = (self.spill.as_mut(), self.parts.get_mut(part)) else {
            return Ok(());
        };
        let keys = std::mem::take(&mut entry.keys);
        let offset = spill.append(&keys)?;
        entry.spilled.push(Segment {
            offset,
            count: keys.len(),
            span: std::mem::take(&mut entry.span),
        });
        self.held -= keys.len();
        Ok(())
    }

    /// The keys of some of the table's files.
    async fn load(
        &self,
        files: Vec<DataFile>,
        extract: &impl Fn(&arrow::array::RecordBatch, usize) -> u128,
    ) -> Result<KeySet> {
        let mut keys = KeySet::default();
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

/// Reads back into memory the partition's spilled segments whose span covers `probe`.
fn read_back(part: &mut Part, spill: Option<&SpillFile>, probe: Probe<'_>) -> Result<()> {
    if !part.spilled.iter().any(|s| s.span.covers(probe)) {
        return Ok(());
    }
    let spill = spill.ok_or_else(|| {
        Error::Internal("a dedup partition is spilled without a spill file".into())
    })?;
    let (back, kept): (Vec<Segment>, Vec<Segment>) = std::mem::take(&mut part.spilled)
        .into_iter()
        .partition(|s| s.span.covers(probe));
    part.spilled = kept;
    for segment in back {
        part.keys.extend(spill.read(segment.offset, segment.count)?);
        part.span.union(&segment.span);
    }
    part.floor = 2 * part.keys.len();
    Ok(())
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
    fn append(&mut self, keys: &KeySet) -> Result<u64> {
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
    fn read(&self, offset: u64, count: usize) -> Result<KeySet> {
        use std::io::{Read, Seek, SeekFrom};
        let error = |e| Error::io("reading spilled dedup keys back", e);
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset)).map_err(error)?;
        let mut bytes = vec![0u8; count * 16];
        file.read_exact(&mut bytes).map_err(error)?;
        let mut keys = KeySet::with_capacity_and_hasher(count, Default::default());
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

    /// Inserts `(key, time)` rows into `symbol`'s partition as one batch; returns which were
    /// new.
    async fn batch(index: &mut KeyIndex, symbol: &str, rows: &[(u128, i64)]) -> Vec<bool> {
        let mut new = Vec::new();
        for (key, time) in rows {
            let probe = Probe::Long(*time);
            let id = index.partition(&part(symbol));
            new.push(index.insert(id, *key, probe, never).await.unwrap());
        }
        index.release().unwrap();
        new
    }

    /// Keys of the partition's spilled segments.
    fn spilled(index: &KeyIndex, symbol: &str) -> usize {
        index.parts[index.ids[&part(symbol)].0]
            .spilled
            .iter()
            .map(|s| s.count)
            .sum()
    }

    fn in_memory(index: &KeyIndex) -> usize {
        index.parts.iter().map(|p| p.keys.len()).sum()
    }

    /// Rows `(k, k)` for keys `from..to`: key k at time k.
    fn rows(from: u128, to: u128) -> Vec<(u128, i64)> {
        (from..to).map(|k| (k, k as i64)).collect()
    }

    #[tokio::test]
    async fn rows_in_time_order_spill_and_never_read_back() {
        let mut index = index(4).await;
        assert_eq!(batch(&mut index, "A", &rows(0, 4)).await, [true; 4]);
        assert_eq!((spilled(&index, "A"), index.held), (0, 4));
        // Over the budget: A's six keys (times 0..=5) go to the spill file, touched or not.
        assert_eq!(batch(&mut index, "A", &rows(4, 6)).await, [true; 2]);
        assert_eq!((spilled(&index, "A"), index.held), (6, 0));
        // Newer rows cannot be among them: nothing is read back.
        assert_eq!(batch(&mut index, "A", &rows(6, 9)).await, [true; 3]);
        assert_eq!((spilled(&index, "A"), index.held), (6, 3));
        assert_eq!(in_memory(&index), index.held);
    }

    #[tokio::test]
    async fn a_late_row_reads_back_the_segment_of_its_time_and_finds_its_duplicate() {
        let mut index = index(4).await;
        batch(&mut index, "A", &rows(0, 6)).await;
        batch(&mut index, "B", &rows(0, 6)).await;
        assert_eq!((spilled(&index, "A"), spilled(&index, "B")), (6, 6));
        // A late duplicate of A's time 2 and a new key at time 3: A's segment comes back.
        assert_eq!(
            batch(&mut index, "A", &[(2, 2), (100, 3)]).await,
            [false, true]
        );
        assert_eq!(spilled(&index, "A"), 0);
        // A read back must double (to 12 keys) before it spills again: 7 stay over the budget.
        assert_eq!(index.held, 7);
        assert_eq!(
            batch(&mut index, "B", &[(5, 5), (6, 6)]).await,
            [false, true]
        );
        assert_eq!((spilled(&index, "B"), index.held), (0, 7 + 7));
        assert_eq!(in_memory(&index), index.held);
    }

    #[tokio::test]
    async fn the_least_recently_used_partitions_spill_first() {
        let mut index = index(4).await;
        for (symbol, key) in [("A", 0), ("B", 0), ("C", 0), ("A", 1), ("B", 1), ("C", 1)] {
            let probe = Probe::Long(key as i64);
            let id = index.partition(&part(symbol));
            assert!(index.insert(id, key, probe, never).await.unwrap());
        }
        index.release().unwrap();
        // Six keys over a budget of four: A (used first) spills, then B is enough.
        assert_eq!(
            (
                spilled(&index, "A"),
                spilled(&index, "B"),
                spilled(&index, "C")
            ),
            (2, 0, 0)
        );
        assert_eq!(index.held, 4);
    }

    #[test]
    fn a_key_past_the_stack_buffer_hashes_its_whole_encoding() {
        let id = "x".repeat(200);
        let mut encoding = vec![b't'];
        encoding.extend_from_slice(&200u32.to_le_bytes());
        encoding.extend_from_slice(id.as_bytes());
        assert_eq!(
            trade_fingerprint(&id),
            twox_hash::XxHash3_128::oneshot(&encoding)
        );
        assert_ne!(trade_fingerprint(&id), trade_fingerprint(&id[1..]));
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
