//! One landing file read into bronze batches as it arrives, in memory that does not grow with
//! the file (only with its longest JSON value, which is held whole): its content is read in chunks (gunzipped as a stream when it starts with gzip's
//! magic, a UTF-8 byte-order mark dropped), cut into [`Segment`]s of whole pieces by a
//! [`Splitter`] on one blocking thread, and the segments decoded into batches on others, so
//! that one large file keeps every core busy. The rows are those of splitting and decoding the
//! whole file at once, `_record` numbering included.

use std::io::{BufReader, Read};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use cryptolake_catalog::layout;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::bronze::BronzeBuilder;
use super::landing::{LandingFile, LandingScan, Segment, Splitter, piece};
use super::records::{Record, RecordDecoder};
use crate::{Error, Result};

/// Bytes read (after gunzipping) before each cut: about what one segment holds.
pub const CHUNK_BYTES: usize = 2 << 20;

/// Segments decoded at once per task, beside the one being split.
const DECODE_AHEAD: usize = 2;

/// What the splitting thread sends: a segment, the end of the file, or why it stopped.
type Cut = Result<Option<Segment>>;

/// The bronze batches of a task's files, in order, with the number of records each batch's
/// file part held (one bronze row each).
pub fn scan_files(
    scan: Arc<LandingScan>,
    files: Vec<LandingFile>,
) -> impl Stream<Item = Result<(RecordBatch, u64)>> + Send {
    scan_files_in(scan, files, CHUNK_BYTES)
}

/// [`scan_files`], cutting every `chunk` bytes.
fn scan_files_in(
    scan: Arc<LandingScan>,
    files: Vec<LandingFile>,
    chunk: usize,
) -> impl Stream<Item = Result<(RecordBatch, u64)>> + Send {
    let decode_scan = scan.clone();
    let mut numbering = Numbering::default();
    futures::stream::iter(files)
        .map(move |file| file_segments(scan.clone(), file, chunk))
        .flatten()
        .map(move |cut| {
            let scan = decode_scan.clone();
            async move {
                let (file_id, segment) = cut?;
                tokio::task::spawn_blocking(move || {
                    let decoded = decode_segment(&scan, &file_id, &segment)?;
                    Ok::<_, Error>((file_id, decoded))
                })
                .await
                .map_err(|e| Error::Internal(format!("decoding task failed: {e}")))?
            }
        })
        .buffered(DECODE_AHEAD)
        .map(move |decoded| {
            let (file_id, (batches, records)) = decoded?;
            let base = numbering.take(&file_id, records);
            let mut out = Vec::with_capacity(batches.len());
            for (i, batch) in batches.into_iter().enumerate() {
                // The segment's records, counted once, with its first batch.
                let counted = if i == 0 { records } else { 0 };
                out.push(Ok((renumber(batch, base)?, counted)));
            }
            Ok::<_, Error>(futures::stream::iter(out))
        })
        .flat_map(|batches| match batches {
            Ok(batches) => batches.left_stream(),
            Err(e) => futures::stream::iter([Err(e)]).right_stream(),
        })
}

/// The `_record` number each file's next segment starts at.
#[derive(Debug, Default)]
struct Numbering {
    file: Option<Arc<str>>,
    next: i64,
}

impl Numbering {
    /// The first number of a segment of `file` holding `records`, in reading order.
    fn take(&mut self, file: &Arc<str>, records: u64) -> i64 {
        if self.file.as_ref() != Some(file) {
            self.file = Some(file.clone());
            self.next = 0;
        }
        let base = self.next;
        self.next += records as i64;
        base
    }
}

/// One file's segments: split on a blocking thread, `chunk` bytes at a time, a few ahead.
fn file_segments(
    scan: Arc<LandingScan>,
    file: LandingFile,
    chunk: usize,
) -> impl Stream<Item = Result<(Arc<str>, Segment)>> + Send {
    let file_id: Arc<str> = format!("{}/{}", scan.source, file.rel_path).into();
    let (tx, rx) = mpsc::channel::<Cut>(DECODE_AHEAD);
    let location = file.location.clone();
    tokio::spawn(async move {
        let reader = match scan.landing.open(&file).await {
            Ok(reader) => reader,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let location = file.location.clone();
        let _ =
            tokio::task::spawn_blocking(move || split_reader(reader, &location, chunk, &tx)).await;
    });
    futures::stream::unfold(Some(rx), move |rx| {
        let file_id = file_id.clone();
        let location = location.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Ok(Some(segment))) => Some((Ok((file_id, segment)), Some(rx))),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some((Err(e), None)),
                // The splitting thread went away without saying the file ended.
                None => Some((
                    Err(Error::Internal(format!(
                        "reading {location} stopped before its end"
                    ))),
                    None,
                )),
            }
        }
    })
}

/// Reads a landing file as stored to its end, sending the segments it cuts, then `None`; on an
/// error sends it and stops; stops too when nobody receives any more.
fn split_reader(
    reader: Box<dyn Read + Send>,
    location: &str,
    chunk: usize,
    tx: &mpsc::Sender<Cut>,
) {
    let result = (|| -> Result<Option<Segment>> {
        let mut text = content(reader).map_err(|e| read_error(location, e))?;
        let mut splitter = Splitter::default();
        let mut chunk = vec![0u8; chunk];
        loop {
            if tx.is_closed() {
                // Nobody reads on (the task was cancelled): stop, even inside a long value.
                return Ok(None);
            }
            let n = read_full(&mut text, &mut chunk).map_err(|e| read_error(location, e))?;
            if n == 0 {
                return Ok(splitter.finish());
            }
            if let Some(segment) = splitter.push(&chunk[..n])
                && tx.blocking_send(Ok(Some(segment))).is_err()
            {
                return Ok(None);
            }
        }
    })();
    let _ = match result {
        Ok(Some(segment)) => tx
            .blocking_send(Ok(Some(segment)))
            .and_then(|()| tx.blocking_send(Ok(None))),
        Ok(None) => tx.blocking_send(Ok(None)),
        Err(e) => tx.blocking_send(Err(e)),
    };
}

/// The file's text: gunzipped (every member) when it starts with gzip's magic, without a
/// UTF-8 byte-order mark.
fn content(reader: Box<dyn Read + Send>) -> std::io::Result<Box<dyn Read + Send>> {
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    let head = read_head(&mut reader, 2)?;
    let stored: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(head.clone()).chain(reader));
    let mut text: Box<dyn Read + Send> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(stored)))
    } else {
        stored
    };
    let bom = read_head(&mut text, 3)?;
    if bom == [0xEF, 0xBB, 0xBF] {
        Ok(text)
    } else {
        Ok(Box::new(std::io::Cursor::new(bom).chain(text)))
    }
}

/// Up to `n` bytes from the start (fewer only at the end).
fn read_head(reader: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let got = read_full(reader, &mut head)?;
    head.truncate(got);
    Ok(head)
}

/// Fills `buf` unless the content ends first; returns how much it read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A read error as this crate's: an object store's own error comes back as it was raised.
fn read_error(location: &str, e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(inner) = e.into_inner()
            && let Ok(error) = inner.downcast::<Error>()
        {
            return *error;
        }
        return Error::Internal(format!("reading {location}"));
    }
    Error::io(format!("reading {location}"), e)
}

/// Decodes one segment into bronze batches, its records numbered from 0 (see [`renumber`]).
/// Returns the batches and the number of records, one bronze row each.
pub fn decode_segment(
    scan: &LandingScan,
    file_id: &str,
    segment: &Segment,
) -> Result<(Vec<RecordBatch>, u64)> {
    let fields = layout::bronze_source_fields(&scan.source).ok_or_else(|| {
        Error::Usage(format!(
            "source {} is not defined in this process: start it with the config file that \
             defines the [[source]]",
            scan.source
        ))
    })?;
    let decoder = RecordDecoder::new(&scan.source, fields);
    let mut records: Vec<Record<'_>> = Vec::new();
    for span in &segment.spans {
        decoder.decode(&piece(&segment.bytes, span.clone()), &mut records);
    }
    let mut builder = BronzeBuilder::new(scan.schema.clone(), fields, scan.ingest_us);
    let mut batches = Vec::new();
    for (index, record) in records.iter().enumerate() {
        builder.push(file_id, index as i64, record);
        if builder.len() >= scan.batch_size {
            batches.push(builder.finish()?);
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish()?);
    }
    Ok((batches, records.len() as u64))
}

/// Shifts a batch's `_record` numbers by `base`, the records of its file read before it.
fn renumber(batch: RecordBatch, base: i64) -> Result<RecordBatch> {
    let Some(index) = batch
        .schema()
        .index_of("_record")
        .ok()
        .filter(|_| base != 0)
    else {
        return Ok(batch);
    };
    let numbers = batch.column(index).as_primitive::<Int64Type>();
    let shifted: Int64Array = numbers.unary(|n| n + base);
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[index] = Arc::new(shifted);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use arrow::array::Array;
    use futures::TryStreamExt;

    use super::*;
    use crate::sources::landing::{self, split_values};

    const SPOT: &[&str] = &[
        r#"{"data":{"amount":"43000.12","base":"BTC","currency":"USD"},"timestamp_utc":"2026-01-01T00:00:01Z"}"#,
        "not json",
        r#"[{"data":{"amount":"1.5","base":"XRP","currency":"USD"},"timestamp_utc":"2026-01-01T00:00:02Z"},7]"#,
        "{\n  \"data\": {\"amount\": \"2.25\", \"base\": \"ETH\", \"currency\": \"USD\"},\n  \"timestamp_utc\": \"2026-01-01T00:00:03Z\"\n}",
    ];

    /// `rounds` repetitions of every SPOT layout, one per line, numbered by their amounts.
    fn spot_file(rounds: usize) -> Vec<u8> {
        let mut out = String::new();
        for round in 0..rounds {
            for line in SPOT {
                out.push_str(&line.replace("43000.12", &format!("{round}.5")));
                out.push('\n');
            }
        }
        out.into_bytes()
    }

    fn scan_of(
        dir: &std::path::Path,
        names: &[(&str, Vec<u8>)],
    ) -> (LandingScan, Vec<LandingFile>) {
        let src = dir.join("coinbase_spot");
        std::fs::create_dir_all(&src).unwrap();
        for (name, bytes) in names {
            std::fs::write(src.join(name), bytes).unwrap();
        }
        let files = landing::list_source(dir, "coinbase_spot").unwrap();
        let table = layout::bronze("coinbase_spot").unwrap().schema().unwrap();
        let scan = LandingScan {
            landing: crate::job::landing::Landing::Local(dir.to_path_buf()),
            source: "coinbase_spot".into(),
            groups: vec![files.clone()],
            schema: Arc::new(iceberg::arrow::schema_to_arrow_schema(&table).unwrap()),
            ingest_us: 5,
            batch_size: 7,
        };
        (scan, files)
    }

    /// Every row as (file, record, amount or raw), in order.
    async fn rows(scan: LandingScan, files: Vec<LandingFile>, chunk: usize) -> (Vec<String>, u64) {
        let got: Vec<(RecordBatch, u64)> = scan_files_in(Arc::new(scan), files, chunk)
            .try_collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for (batch, _) in &got {
            let file = batch.column_by_name("_file").unwrap().as_string::<i32>();
            let record = batch
                .column_by_name("_record")
                .unwrap()
                .as_primitive::<Int64Type>();
            let amount = batch.column_by_name("amount").unwrap().as_string::<i32>();
            let raw = batch.column_by_name("_raw").unwrap().as_string::<i32>();
            for i in 0..batch.num_rows() {
                let value = if amount.is_valid(i) {
                    amount.value(i)
                } else {
                    raw.value(i)
                };
                out.push(format!("{}#{}={value}", file.value(i), record.value(i)));
            }
        }
        (out, got.iter().map(|(_, n)| n).sum())
    }

    #[tokio::test]
    async fn small_chunks_give_the_rows_of_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"\xEF\xBB\xBF").unwrap();
        gz.write_all(&spot_file(40)).unwrap();
        let (scan, files) = scan_of(
            dir.path(),
            &[("a.json", spot_file(40)), ("b.gz", gz.finish().unwrap())],
        );
        let (whole, whole_n) = rows(scan.clone(), files.clone(), 1 << 20).await;
        // 40 rounds of 5 records (the array holds 2) in each file.
        assert_eq!(whole_n, 400);
        assert_eq!(whole.len(), 400);
        assert_eq!(whole[0], "coinbase_spot/a.json#0=0.5");
        assert_eq!(whole[1], "coinbase_spot/a.json#1=not json");
        assert_eq!(whole[3], "coinbase_spot/a.json#3=7");
        assert_eq!(whole[4], "coinbase_spot/a.json#4=2.25");
        assert_eq!(whole[199], "coinbase_spot/a.json#199=2.25");
        assert_eq!(whole[200], "coinbase_spot/b.gz#0=0.5");
        assert_eq!(whole[395], "coinbase_spot/b.gz#195=39.5");
        for chunk in [1, 7, 100, 333] {
            let (cut, n) = rows(scan.clone(), files.clone(), chunk).await;
            assert_eq!((&cut, n), (&whole, whole_n), "chunks of {chunk} bytes");
        }
        // The same pieces as splitting the whole file at once.
        let pieces = split_values(&spot_file(40)).len();
        assert_eq!(pieces, 160);
    }

    #[tokio::test]
    async fn a_corrupt_gzip_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&spot_file(40)).unwrap();
        let mut bytes = gz.finish().unwrap();
        bytes.truncate(bytes.len() / 2);
        let (scan, files) = scan_of(dir.path(), &[("a.gz", bytes)]);
        let err = scan_files_in(Arc::new(scan), files, 64)
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("reading ") && text.contains("coinbase_spot/a.gz"),
            "{text}"
        );
    }
}
