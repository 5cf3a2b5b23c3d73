//! Landing files: `<landing>/<source>/**`, any name and depth.
//!
//! A file holds JSON, JSON lines, concatenated objects (`{..}{..}`, as Firehose writes them),
//! or a JSON array, optionally gzip-compressed (detected by its magic bytes, not its name), with
//! an optional UTF-8 byte-order mark. An empty file holds no records. A malformed stretch becomes
//! one bad piece (up to the end of its line) and reading resumes after it, so one broken line
//! never hides the good lines around it.

use std::io::Read;
use std::ops::Range;
use std::path::Path;

use arrow::datatypes::SchemaRef;
use serde_json::value::RawValue;

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
    /// A complete JSON value, as written.
    Json(&'a str),
    /// Text that is not JSON, kept as it was (lossily decoded when not UTF-8).
    Malformed(String),
}

/// Where a piece is in the bytes it was split from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    Json(Range<usize>),
    Malformed(Range<usize>),
}

/// How close to the end of a prefix an error must be to count as "needs more input": serde
/// reads one byte ahead at most, so a few bytes suffice; more only costs a later re-parse.
const EOF_MARGIN: usize = 64;

/// Splits a file's content into top-level JSON values, resynchronising after malformed text at
/// the next line break.
pub fn split_values(bytes: &[u8]) -> Vec<Piece<'_>> {
    let (spans, _) = split_spans(bytes, true);
    spans.into_iter().map(|span| piece(bytes, span)).collect()
}

/// The piece a span of `bytes` is.
pub fn piece(bytes: &[u8], span: Span) -> Piece<'_> {
    match span {
        // A span only ever covers a value serde_json read, and serde_json reads UTF-8 only.
        Span::Json(range) => Piece::Json(std::str::from_utf8(&bytes[range]).unwrap_or_default()),
        Span::Malformed(range) => Piece::Malformed(
            String::from_utf8_lossy(&bytes[range])
                .trim_end()
                .to_string(),
        ),
    }
}

/// Splits `bytes` as [`split_values`] splits a whole input that `bytes` begins. With `last`
/// false, more input may follow: it stops before the first piece that more input could change
/// (a value cut off at the end, a number that may go on, a malformed stretch whose line has
/// not ended). Returns the spans and the offset where the rest begins, so that splitting the
/// rest with what follows gives the same pieces as splitting the whole.
pub fn split_spans(bytes: &[u8], last: bool) -> (Vec<Span>, usize) {
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let mut stream =
            serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<&RawValue>();
        let error = loop {
            let before = pos + stream.byte_offset();
            match stream.next() {
                None => return (spans, bytes.len()),
                Some(Ok(value)) => {
                    let end = pos + stream.byte_offset();
                    if !last && end >= bytes.len() {
                        return (spans, before);
                    }
                    // The value's text is a slice of `bytes`: its start is where it points.
                    let start = value.get().as_ptr() as usize - bytes.as_ptr() as usize;
                    spans.push(Span::Json(start..end));
                }
                Some(Err(e)) => break (before, e),
            }
        };
        let (before, e) = error;
        if !last
            && (e.is_eof() || error_offset(&bytes[pos..], &e) + EOF_MARGIN >= bytes.len() - pos)
        {
            return (spans, before);
        }
        // The bad value starts after the whitespace that follows the last good value.
        let mut start = before;
        while start < bytes.len() && bytes[start].is_ascii_whitespace() {
            start += 1;
        }
        let end = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start + i,
            None if !last => return (spans, before),
            None => bytes.len(),
        };
        // Kept unless blank, as `piece` will trim it.
        if !String::from_utf8_lossy(&bytes[start..end])
            .trim_end()
            .is_empty()
        {
            spans.push(Span::Malformed(start..end));
        }
        pos = end + 1;
    }
    (spans, bytes.len().min(pos))
}

/// The byte offset of a parse error in `bytes` (serde_json reports a line and a column).
fn error_offset(bytes: &[u8], e: &serde_json::Error) -> usize {
    let line_start = if e.line() <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(e.line() - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    line_start + e.column()
}

/// A run of whole pieces cut from a landing file's content.
#[derive(Debug)]
pub struct Segment {
    pub bytes: Vec<u8>,
    pub spans: Vec<Span>,
}

/// Cuts a landing file's content, fed in chunks, into [`Segment`]s of whole pieces: the same
/// pieces [`split_values`] finds in the whole content, with only a chunk or two held at a
/// time. A piece longer than a chunk (a large JSON array) is held until it ends; the content
/// is parsed again only once what is held has doubled, so a long piece costs linear time.
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
    /// Parse again once `pending` is this long.
    retry_at: usize,
}

impl Splitter {
    /// Adds the next chunk; returns the pieces it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Segment> {
        self.pending.extend_from_slice(chunk);
        if self.pending.len() < self.retry_at {
            return None;
        }
        self.cut(false)
    }

    /// Ends the content: every piece still held.
    pub fn finish(mut self) -> Option<Segment> {
        self.cut(true)
    }

    fn cut(&mut self, last: bool) -> Option<Segment> {
        let (spans, consumed) = split_spans(&self.pending, last);
        let rest = self.pending.split_off(consumed);
        let bytes = std::mem::replace(&mut self.pending, rest);
        self.retry_at = self.pending.len().saturating_mul(2);
        (!spans.is_empty()).then_some(Segment { bytes, spans })
    }
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn text(piece: Piece<'_>) -> String {
        match piece {
            Piece::Json(v) => v.to_string(),
            Piece::Malformed(t) => format!("BAD:{t}"),
        }
    }

    fn texts(bytes: &[u8]) -> Vec<String> {
        split_values(bytes).into_iter().map(text).collect()
    }

    #[test]
    fn a_splitter_fed_in_chunks_finds_the_pieces_of_the_whole() {
        let input: &[u8] = b"{\"a\":1}\nnot json at all\n{\"a\":\"trunc\n{\"a\":2}\n{\"a\":3,\n\
            {\"a\":4} 12 345\n[1,\n2]\n{\"b\":\n1.5}{\"c\":\"\xc3\xa9\"}\n\n  \ntrue 1.";
        let whole = texts(input);
        assert_eq!(whole.len(), 13, "{whole:?}");
        for chunk in 1..=input.len() {
            let mut splitter = Splitter::default();
            let mut got = Vec::new();
            let mut take = |segment: Option<Segment>| {
                for span in segment.iter().flat_map(|s| s.spans.iter()) {
                    let bytes = &segment.as_ref().unwrap().bytes;
                    got.push(text(piece(bytes, span.clone())));
                }
            };
            for part in input.chunks(chunk) {
                take(splitter.push(part));
            }
            take(splitter.finish());
            assert_eq!(got, whole, "chunks of {chunk} bytes");
        }
    }

    #[test]
    fn a_long_piece_is_held_whole_and_parsed_again_only_as_it_doubles() {
        let mut input = b"[".to_vec();
        for i in 0..10_000 {
            input.extend_from_slice(format!("{{\"i\":{i}}},").as_bytes());
        }
        input.extend_from_slice(b"{}]\n{\"after\":1}");
        let mut splitter = Splitter::default();
        let mut segments = Vec::new();
        // Each parse that cuts nothing sets a new, larger retry length.
        let mut retries = std::collections::BTreeSet::new();
        for part in input.chunks(100) {
            segments.extend(splitter.push(part));
            retries.insert(splitter.retry_at);
        }
        segments.extend(splitter.finish());
        let texts: Vec<_> = segments
            .iter()
            .flat_map(|s| {
                s.spans
                    .iter()
                    .map(|span| text(piece(&s.bytes, span.clone())))
            })
            .collect();
        assert_eq!(texts.len(), 2);
        assert!(texts[0].starts_with("[{\"i\":0},") && texts[0].ends_with(",{}]"));
        assert_eq!(texts[1], "{\"after\":1}");
        let chunks = input.len().div_ceil(100);
        assert!(
            retries.len() <= 12,
            "{} parses for {chunks} chunks",
            retries.len()
        );
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
    fn a_value_run_into_text_is_kept_whole_as_malformed() {
        // Nothing of the line is dropped: the number is not split off its trailing text.
        assert_eq!(texts(b"123abc\n{\"a\":1}"), ["BAD:123abc", "{\"a\":1}"]);
        // After a complete object, the text that follows is its own malformed piece.
        assert_eq!(texts(b"{\"a\":1}x\n"), ["{\"a\":1}", "BAD:x"]);
        // A line of Unicode spaces is blank, not a record.
        assert_eq!(texts("\u{a0}\n{\"a\":1}".as_bytes()), ["{\"a\":1}"]);
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
