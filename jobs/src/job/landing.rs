//! Where landing files are: a local directory or an S3 prefix, `<root>/<source>/**` in both.
//!
//! A [`Landing`] lists a source's files with the version each has now (a local file's size and
//! modification time; an object's ETag), opens one file to read as a stream (on whichever
//! process runs the task: it carries no credentials, each process takes its own from the AWS
//! default chain),
//! and writes files (the generator's). A location that cannot be read is an error, never an
//! empty input: a missing landing directory or bucket stops the run.
//!
//! Listing S3 is bounded by what was taken before ([`Landing::list_source`]'s `after`): keys
//! are listed from the directory of the newest key already taken (S3's `start-after`), so a
//! per-minute run over a year of Firehose files lists about a day of them, not the year.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptolake_catalog::storage::S3Settings;
use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One landing file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LandingFile {
    /// Path relative to `<landing>/<source>/`, with `/` separators: the file's identity.
    pub rel_path: String,
    /// Where it is read from: a local path, or the object's key in the landing bucket.
    pub location: String,
    pub size: u64,
    /// Its content's version when listed (a local file's size and modification time, an
    /// object's ETag): a file whose version changed after it was taken is taken again.
    pub version: String,
}

/// The landing zone's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Landing {
    /// A local directory (or one every executor mounts at the same path).
    Local(PathBuf),
    /// `s3://bucket/prefix`, reached with `settings` (region, endpoint; never credentials).
    S3 {
        bucket: String,
        /// The key prefix, without a trailing `/` (empty for the bucket's root).
        prefix: String,
        settings: S3Settings,
    },
}

impl From<PathBuf> for Landing {
    fn from(dir: PathBuf) -> Self {
        Landing::Local(dir)
    }
}

impl Landing {
    /// `s3://bucket/prefix` (or `s3a://`) on S3 with `settings`, anything else a local path.
    pub fn parse(location: &str, settings: S3Settings) -> Result<Self> {
        let Some(rest) = location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))
        else {
            if location.contains("://") {
                return Err(Error::Usage(format!(
                    "landing {location}: only local directories and s3:// locations are supported"
                )));
            }
            return Ok(Landing::Local(PathBuf::from(location)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Usage(format!(
                "landing {location}: no bucket (s3://BUCKET/PREFIX)"
            )));
        }
        Ok(Landing::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            settings,
        })
    }

    /// The location as a user writes it.
    pub fn url(&self) -> String {
        match self {
            Landing::Local(dir) => dir.display().to_string(),
            Landing::S3 { bucket, prefix, .. } if prefix.is_empty() => format!("s3://{bucket}"),
            Landing::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The directory of a local landing zone.
    pub fn as_local(&self) -> Option<&Path> {
        match self {
            Landing::Local(dir) => Some(dir),
            Landing::S3 { .. } => None,
        }
    }

    /// True for an S3 landing zone.
    pub fn is_s3(&self) -> bool {
        matches!(self, Landing::S3 { .. })
    }

    fn store(&self) -> Result<Arc<AmazonS3>> {
        match self {
            Landing::S3 {
                bucket, settings, ..
            } => Ok(Arc::new(settings.store(bucket).map_err(|e| {
                Error::Usage(format!("landing {}: {e}", self.url()))
            })?)),
            Landing::Local(_) => Err(Error::Internal("a local landing has no store".into())),
        }
    }

    /// `<prefix>/<source>/` as an object key prefix.
    fn source_prefix(&self, source: &str) -> String {
        match self {
            Landing::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{source}/"),
            _ => format!("{source}/"),
        }
    }

    /// A source's files, sorted by relative path, each with its current version. Hidden files
    /// (`.x`), Spark/Hadoop markers (`_SUCCESS`, `_x`) and in-flight uploads (`*.tmp`,
    /// `*.crc`) are skipped. On S3, `after` (the newest relative path already taken) bounds
    /// the listing to keys from that path's directory on (see the module docs); `None` lists
    /// everything.
    pub async fn list_source(&self, source: &str, after: Option<&str>) -> Result<Vec<LandingFile>> {
        let mut files = match self {
            Landing::Local(dir) => {
                let dir = dir.clone();
                let source = source.to_string();
                tokio::task::spawn_blocking(move || list_local(&dir, &source))
                    .await
                    .map_err(|e| Error::Internal(format!("listing task failed: {e}")))??
            }
            Landing::S3 { .. } => self.list_s3(source, after).await?,
        };
        files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        Ok(files)
    }

    async fn list_s3(&self, source: &str, after: Option<&str>) -> Result<Vec<LandingFile>> {
        let store = self.store()?;
        let prefix = self.source_prefix(source);
        let list_prefix = StorePath::from(prefix.trim_end_matches('/'));
        let listing = match after.and_then(|a| a.rsplit_once('/')) {
            // Everything from the newest taken key's directory on: late files and overwrites
            // in that directory, and every later one.
            Some((dir, _)) => {
                let offset = StorePath::from(format!("{prefix}{dir}/"));
                store.list_with_offset(Some(&list_prefix), &offset)
            }
            None => store.list(Some(&list_prefix)),
        };
        let objects: Vec<ObjectMeta> = listing
            .try_collect()
            .await
            .map_err(|e| storage_error(format!("listing {}", self.url()), e))?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let key = meta.location.to_string();
                let rel = key.strip_prefix(&prefix)?.to_string();
                (!skipped(&rel)).then(|| LandingFile {
                    version: meta
                        .e_tag
                        .clone()
                        .unwrap_or_else(|| format!("{}@{}", meta.size, meta.last_modified)),
                    location: key,
                    rel_path: rel,
                    size: meta.size,
                })
            })
            .collect())
    }

    /// Opens one file to read as stored (compressed or not), for blocking code: a local file,
    /// or an object's body as it arrives (read on the blocking pool while the runtime fetches
    /// the next part; an error fetching it comes out of `read` as an `io::Error` wrapping this
    /// crate's [`Error`]). Memory stays at a few parts of the body, whatever its size.
    pub async fn open(&self, file: &LandingFile) -> Result<Box<dyn std::io::Read + Send>> {
        match self {
            Landing::Local(_) => {
                let path = PathBuf::from(&file.location);
                let opened = tokio::task::spawn_blocking(move || {
                    std::fs::File::open(&path)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))
                })
                .await
                .map_err(|e| Error::Internal(format!("opening task failed: {e}")))??;
                Ok(Box::new(opened))
            }
            Landing::S3 { bucket, .. } => {
                let store = self.store()?;
                let path = StorePath::from(file.location.as_str());
                let context = format!("reading s3://{bucket}/{path}");
                let got = store
                    .get(&path)
                    .await
                    .map_err(|e| storage_error(context.clone(), e))?;
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                tokio::spawn(forward_body(got.into_stream(), context, tx));
                Ok(Box::new(BodyReader {
                    rx,
                    current: bytes::Bytes::new(),
                    ended: false,
                }))
            }
        }
    }

    /// Writes `<root>/<source>/<rel_path>` (the generator's files; a local file appears whole,
    /// by rename).
    pub async fn put(&self, source: &str, rel_path: &str, bytes: Vec<u8>) -> Result<()> {
        match self {
            Landing::Local(dir) => {
                let path = dir.join(source).join(rel_path);
                tokio::task::spawn_blocking(move || write_local(&path, &bytes))
                    .await
                    .map_err(|e| Error::Internal(format!("writing task failed: {e}")))?
            }
            Landing::S3 { .. } => {
                let store = self.store()?;
                let key = format!("{}{rel_path}", self.source_prefix(source));
                store
                    .put(&StorePath::from(key.as_str()), PutPayload::from(bytes))
                    .await
                    .map(|_| ())
                    .map_err(|e| storage_error(format!("writing {key} in {}", self.url()), e))
            }
        }
    }
}

fn write_local(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {}", path.display()), e))
}

/// A part of an object's body, or its end: a body whose sender went away without `End`
/// was cut short, never complete.
enum BodyPart {
    Bytes(bytes::Bytes),
    End,
}

/// Sends an object's body to its [`BodyReader`] part by part, then `End` (or the error that
/// stopped it); stops early when the reader is gone.
async fn forward_body(
    mut body: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    context: String,
    tx: tokio::sync::mpsc::Sender<Result<BodyPart>>,
) {
    loop {
        let part = match body.try_next().await {
            Ok(Some(bytes)) => Ok(BodyPart::Bytes(bytes)),
            Ok(None) => Ok(BodyPart::End),
            Err(e) => Err(storage_error(context.clone(), e)),
        };
        let last = !matches!(part, Ok(BodyPart::Bytes(_)));
        if tx.send(part).await.is_err() || last {
            return;
        }
    }
}

/// An object's body for blocking readers, fed by [`forward_body`].
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<BodyPart>>,
    current: bytes::Bytes,
    ended: bool,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() && !self.ended {
            match self.rx.blocking_recv() {
                Some(Ok(BodyPart::Bytes(bytes))) => self.current = bytes,
                Some(Ok(BodyPart::End)) => self.ended = true,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the object's body stopped before its end",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// The object store's failure as ours: a missing bucket or key, or refused credentials, is the
/// user's to fix (usage); anything else (the endpoint unreachable, a 5xx) may pass.
fn storage_error(context: String, e: object_store::Error) -> Error {
    let text = e.to_string();
    let usage = matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    ) || text.contains("NoSuchBucket");
    if usage {
        Error::Usage(format!("{context}: {text}"))
    } else {
        Error::Io {
            context,
            source: std::io::Error::other(text),
        }
    }
}

/// Names that are not landing files: hidden files, Spark/Hadoop markers, in-flight uploads.
fn skipped(rel_path: &str) -> bool {
    rel_path.split('/').any(|name| {
        name.is_empty()
            || name.starts_with('.')
            || name.starts_with('_')
            || name.ends_with(".tmp")
            || name.ends_with(".crc")
    })
}

pub(crate) fn list_local(landing: &Path, source: &str) -> Result<Vec<LandingFile>> {
    if !landing.is_dir() {
        return Err(Error::Usage(format!(
            "landing directory {} does not exist (cryptolake init creates it; set [landing] \
             path, --landing or CRYPTOLAKE_LANDING)",
            landing.display()
        )));
    }
    let root = landing.join(source);
    let mut out = Vec::new();
    if root.is_dir() {
        walk(&root, &root, &mut out)?;
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<LandingFile>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if skipped(&name) {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(LandingFile {
                rel_path: rel,
                location: path.display().to_string(),
                size: meta.len(),
                version: local_version(&meta),
            });
        }
    }
    Ok(())
}

/// A local file's version: its size and modification time (nanoseconds), so a file appended
/// to or rewritten after it was taken is taken again.
fn local_version(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}@{mtime}", meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let s3 = Landing::parse("s3://lake/raw/zone/", S3Settings::default()).unwrap();
        assert_eq!(s3.url(), "s3://lake/raw/zone");
        assert_eq!(s3.source_prefix("trades"), "raw/zone/trades/");
        let root = Landing::parse("s3a://lake", S3Settings::default()).unwrap();
        assert_eq!(root.source_prefix("trades"), "trades/");
        assert!(matches!(
            Landing::parse("lake/landing", S3Settings::default()).unwrap(),
            Landing::Local(p) if p == Path::new("lake/landing")
        ));
        assert!(Landing::parse("gs://x/y", S3Settings::default()).is_err());
        assert!(Landing::parse("s3:///y", S3Settings::default()).is_err());
    }

    #[test]
    fn markers_and_uploads_are_not_landing_files() {
        assert!(skipped("2026/01/_SUCCESS"));
        assert!(skipped(".hidden"));
        assert!(skipped("a/b.json.tmp"));
        assert!(skipped("_temporary/0/a.json"));
        assert!(!skipped("2026/01/02/firehose-1-2026-01-02-00-00-00-abc"));
    }

    #[tokio::test]
    async fn a_local_file_changed_after_listing_has_a_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let landing = Landing::Local(dir.path().to_path_buf());
        landing
            .put("trades", "2026/01/02/a.json", b"{}\n".to_vec())
            .await
            .unwrap();
        let first = landing.list_source("trades", None).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].rel_path, "2026/01/02/a.json");
        assert_eq!(first[0].size, 3);
        let path = dir.path().join("trades/2026/01/02/a.json");
        std::fs::write(&path, b"{}\n{}\n").unwrap();
        let second = landing.list_source("trades", None).await.unwrap();
        assert_eq!(second[0].size, 6);
        assert_ne!(first[0].version, second[0].version);
        let mut read = Vec::new();
        let mut file = landing.open(&second[0]).await.unwrap();
        std::io::Read::read_to_end(&mut file, &mut read).unwrap();
        assert_eq!(read, b"{}\n{}\n");
        assert!(
            landing
                .list_source("nothing", None)
                .await
                .unwrap()
                .is_empty()
        );
        let missing = Landing::Local(dir.path().join("missing"));
        let err = missing.list_source("trades", None).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
