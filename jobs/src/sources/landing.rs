//! Landing files: `<landing>/<source>/**`, any name and depth.
//!
//! A file holds JSON, JSON lines, concatenated objects (`{..}{..}`, as Firehose writes them),
//! or a JSON array, optionally gzip-compressed (detected by its magic bytes, not its name), with
//! an optional UTF-8 byte-order mark. An empty file holds no records. A malformed stretch becomes
//! one bad piece (up to the end of its line) and reading resumes after it, so one broken line
//! never hides the good lines around it.

use std::io::Read;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use cryptolake_catalog::layout;
use serde_json::value::RawValue;

use super::bronze::BronzeBuilder;
use super::records::{Record, RecordDecoder};
use crate::job::landing::Landing;
use crate::{Error, Result};

pub use crate::job::landing::LandingFile;

/// Lists a local landing directory's files of one source, sorted by relative path (see
/// [`Landing::list_source`]).
pub fn list_source(landing: &Path, source: &str) -> Result<Vec<LandingFile>> {
    let mut files = crate::job::landing::list_local(landing, source)?;
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(files)
}

/// Reads a file's bytes, gunzipping when it starts with the gzip magic and dropping a BOM.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    decode(bytes).map_err(|e| Error::io(format!("decompressing {}", path.display()), e))
}

/// Gunzips (all members) when gzip-compressed and strips a UTF-8 BOM.
pub fn decode(bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 8);
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out)?;
        out
    } else {
        bytes
    };
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    Ok(bytes)
}

/// A top-level piece of a landing file.
#[derive(Debug)]
pub enum Piece<'a> {
    /// A complete JSON value.
    Json(&'a RawValue),
    /// Text that is not JSON, kept as it was (lossily decoded when not UTF-8).
    Malformed(String),
}

/// Splits a file's content into top-level JSON values, resynchronising after malformed text at
/// the next line break.
pub fn split_values(bytes: &[u8]) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let mut stream =
            serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<&RawValue>();
        let mut failed = false;
        for item in stream.by_ref() {
            match item {
                Ok(value) => out.push(Piece::Json(value)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            break;
        }
        // The bad value starts after the whitespace that follows the last good value.
        let mut start = pos + stream.byte_offset();
        while start < bytes.len() && bytes[start].is_ascii_whitespace() {
            start += 1;
        }
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| start + i);
        let text = String::from_utf8_lossy(&bytes[start..end])
            .trim_end()
            .to_string();
        if !text.is_empty() {
            out.push(Piece::Malformed(text));
        }
        pos = end + 1;
    }
    out
}

/// Landing files of one source to read, in groups: group `i` is plan partition `i`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LandingScan {
    /// Where the files are: each task reads its own from there.
    pub landing: Landing,
    pub source: String,
    pub groups: Vec<Vec<LandingFile>>,
    /// The bronze table's Arrow schema.
    #[serde(with = "crate::job::wire")]
    pub schema: SchemaRef,
    pub ingest_us: i64,
    pub batch_size: usize,
}

/// Splits and decodes one landing file's bytes (as stored: gzip is detected) into bronze
/// batches (CPU work). Returns the batches and the number of records, one bronze row each.
pub fn decode_file(
    scan: &LandingScan,
    file: &LandingFile,
    bytes: Vec<u8>,
) -> Result<(Vec<RecordBatch>, u64)> {
    let bytes =
        decode(bytes).map_err(|e| Error::io(format!("decompressing {}", file.location), e))?;
    let fields = layout::bronze_source_fields(&scan.source).unwrap_or(&[]);
    let decoder = RecordDecoder::new(&scan.source, fields);
    let mut records: Vec<Record<'_>> = Vec::new();
    for piece in split_values(&bytes) {
        decoder.decode(&piece, &mut records);
    }
    let file_id = format!("{}/{}", scan.source, file.rel_path);
    let mut builder = BronzeBuilder::new(scan.schema.clone(), scan.ingest_us);
    let mut batches = Vec::new();
    for (index, record) in records.iter().enumerate() {
        builder.push(&file_id, index as i64, record);
        if builder.len() >= scan.batch_size {
            batches.push(builder.finish()?);
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish()?);
    }
    Ok((batches, records.len() as u64))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn texts(bytes: &[u8]) -> Vec<String> {
        split_values(bytes)
            .into_iter()
            .map(|p| match p {
                Piece::Json(v) => v.get().to_string(),
                Piece::Malformed(t) => format!("BAD:{t}"),
            })
            .collect()
    }

    #[test]
    fn splits_every_layout() {
        assert_eq!(texts(b"{\"a\":1}{\"a\":2}"), ["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(texts(b"{\"a\":1}\n{\"a\":2}\n"), ["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(texts(b"[{\"a\":1},{\"a\":2}]"), ["[{\"a\":1},{\"a\":2}]"]);
        assert!(texts(b"").is_empty());
        assert!(texts(b"  \n").is_empty());
    }

    #[test]
    fn malformed_lines_are_kept_and_reading_resumes() {
        let input = b"{\"a\":1}\nnot json at all\n{\"a\":\"trunc\n{\"a\":2}\n{\"a\":3,\n{\"a\":4}";
        assert_eq!(
            texts(input),
            [
                "{\"a\":1}",
                "BAD:not json at all",
                "BAD:{\"a\":\"trunc",
                "{\"a\":2}",
                "BAD:{\"a\":3,",
                "{\"a\":4}"
            ]
        );
    }

    #[test]
    fn gzip_and_bom_are_detected_by_content() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"\xEF\xBB\xBF{\"a\":1}").unwrap();
        let decoded = decode(gz.finish().unwrap()).unwrap();
        assert_eq!(decoded, b"{\"a\":1}");
        assert_eq!(decode(b"\xEF\xBB\xBF[]".to_vec()).unwrap(), b"[]");
    }

    #[test]
    fn listing_skips_markers_and_recurses() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("trades/2026/01/02");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("b.json"), "{}").unwrap();
        std::fs::write(src.join("a"), "{}").unwrap();
        std::fs::write(src.join("_SUCCESS"), "").unwrap();
        std::fs::write(src.join(".hidden"), "").unwrap();
        let files = list_source(dir.path(), "trades").unwrap();
        let names: Vec<_> = files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(names, ["2026/01/02/a", "2026/01/02/b.json"]);
        assert!(list_source(dir.path(), "nothing").unwrap().is_empty());
    }
}
