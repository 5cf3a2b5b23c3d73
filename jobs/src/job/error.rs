//! The jobs' one error type, and what kind of failure each error is.
//!
//! Every error has an [`ErrorKind`]; the kind alone decides the exit code and whether running
//! again may help, for the CLI, the scheduler daemon (which sees only its children's exit
//! codes, so each kind has its own) and the cluster engine alike. An error raised inside a
//! plan node keeps its kind through DataFusion's wrapping in-process, and through Ballista's
//! string-only task failures on a cluster ([`Error::from_datafusion`]).

use std::fmt;

use datafusion::error::DataFusionError;

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bad usage or configuration: the same command fails the same way. Exit 2.
    Usage,
    /// Bad records over the configured threshold; nothing was committed. Exit 3.
    BadData,
    /// Another writer committed first, or a commit's requirement no longer holds: planning
    /// again from the new table state may succeed. Exit 4, retryable.
    Conflict,
    /// A service or the storage failed or could not be reached. Exit 1, retryable.
    Transient,
    /// An internal invariant failed (a bug, or state that must be looked at, such as an
    /// unreadable bookmark): running again cannot help. Exit 70 (sysexits' `EX_SOFTWARE`).
    Internal,
}

impl ErrorKind {
    /// Every kind, for the mapping's tests and docs.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Usage,
        ErrorKind::BadData,
        ErrorKind::Conflict,
        ErrorKind::Transient,
        ErrorKind::Internal,
    ];

    /// The process exit code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Transient => 1,
            ErrorKind::Usage => 2,
            ErrorKind::BadData => 3,
            ErrorKind::Conflict => 4,
            ErrorKind::Internal => 70,
        }
    }

    /// True when running the same job again may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Conflict | ErrorKind::Transient)
    }

    /// The kind a child process's exit code says (the scheduler's view of a run). Codes no
    /// kind has (a signal, a panic's 101) count as transient: the process died, not the job's
    /// logic.
    pub fn from_exit_code(code: i32) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| i32::from(k.exit_code()) == code)
            .unwrap_or(ErrorKind::Transient)
    }

    /// The kind's name, as carried in a remote task's failure message.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::BadData => "bad-data",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Transient => "transient",
            ErrorKind::Internal => "internal",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors from sources, transforms, the write path and job planning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Catalog(#[from] cryptolake_catalog::Error),
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// DataFusion's own failure (planning, execution). Converting a `DataFusionError` takes
    /// our own error back out of it first ([`Error::from_datafusion`]), so a node's error that
    /// passes through another node (a write reading a failed scan) is never nested.
    #[error("datafusion: {0}")]
    DataFusion(DataFusionError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bad records passed the configured threshold: the run commits nothing.
    #[error(
        "{bad} of {total} records are bad ({pct:.2}%), over the threshold of {max_pct:.2}%: nothing committed",
        pct = 100.0 * *bad as f64 / (*total).max(1) as f64,
        max_pct = 100.0 * max_fraction
    )]
    TooManyBadRecords {
        bad: u64,
        total: u64,
        max_fraction: f64,
    },
    /// A broker could not be reached or refused a request.
    #[error("kafka: {0}")]
    Kafka(String),
    /// Committed offsets point at messages retention has deleted.
    #[error(
        "kafka {topic}/{partition}: the table's offset {committed} is older than the first kept \
         offset {earliest}: {missing} messages were deleted before they were ingested \
         (run with --on-missing-offsets earliest to skip them)"
    )]
    OffsetsMissing {
        topic: String,
        partition: i32,
        committed: i64,
        earliest: i64,
        missing: i64,
    },
    /// A bookmark (an input position: snapshot ids, files taken, Kafka offsets) is unreadable
    /// or points at history the table no longer has. Input positions are never guessed.
    #[error("{0}")]
    Bookmark(String),
    /// Bad usage or configuration.
    #[error("{0}")]
    Usage(String),
    /// An internal invariant failed.
    #[error("{0}")]
    Internal(String),
    /// The Ballista cluster failed the run (an executor lost, a task failed for a reason of
    /// its own) or could not be reached; running the job again may succeed.
    #[error("cluster: {0}")]
    Cluster(String),
    /// Alert deliveries failed (a channel down); the firings are recorded and the next run
    /// retries them.
    #[error("{0}")]
    Delivery(String),
    /// One of our errors, raised in a task on a cluster executor: Ballista returns only its
    /// text, which carries the kind.
    #[error("{message}")]
    Remote { kind: ErrorKind, message: String },
    /// A polled API failed: not reached or 5xx/429 after the retries (transient), refused the
    /// request (4xx: usage), or answered with something that is not its JSON (bad data).
    #[error("{message}")]
    Api { kind: ErrorKind, message: String },
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Error::from_datafusion(e)
    }
}

/// How a task's error names its kind in the text Ballista sends back:
/// `[cryptolake:KIND] MESSAGE [/cryptolake]`.
const KIND_TAG: &str = "[cryptolake:";
const END_TAG: &str = "[/cryptolake]";

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Catalog(e) => catalog_kind(e),
            Error::Iceberg(e) => iceberg_kind(e),
            Error::DataFusion(e) => datafusion_kind(e),
            Error::Arrow(_) | Error::Internal(_) | Error::Bookmark(_) => ErrorKind::Internal,
            Error::Io { .. } | Error::Kafka(_) | Error::Cluster(_) | Error::Delivery(_) => {
                ErrorKind::Transient
            }
            Error::TooManyBadRecords { .. } => ErrorKind::BadData,
            // Skipping deleted messages is the operator's decision (a flag).
            Error::Usage(_) | Error::OffsetsMissing { .. } => ErrorKind::Usage,
            Error::Remote { kind, .. } | Error::Api { kind, .. } => *kind,
        }
    }

    /// True when running the same job again may succeed.
    pub fn retryable(&self) -> bool {
        self.kind().retryable()
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// This error as a DataFusion error, for a plan node to fail with. In-process
    /// [`Error::from_datafusion`] takes it out whole; on a cluster Ballista sends only the
    /// text, so the text ends with the kind.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(Tagged(self)))
    }

    /// Our error back out of DataFusion's wrapping (a node's task failed with it), so its
    /// message and kind survive: the error itself in-process, its text and kind from a cluster
    /// executor. Ballista's own failures of a submitted job (a lost executor, a cancelled job,
    /// a dropped connection) carry no kind and are [`Error::Cluster`] (transient) when
    /// `from_cluster`.
    pub fn from_datafusion(e: DataFusionError) -> Self {
        Self::unwrap_datafusion(e, false)
    }

    /// [`Error::from_datafusion`] for a plan that ran on a cluster.
    pub fn from_cluster(e: DataFusionError) -> Self {
        Self::unwrap_datafusion(e, true)
    }

    fn unwrap_datafusion(e: DataFusionError, from_cluster: bool) -> Self {
        let e = match e {
            DataFusionError::Context(_, inner) => {
                return Self::unwrap_datafusion(*inner, from_cluster);
            }
            DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
                Ok(inner) => return Self::unwrap_datafusion(inner, from_cluster),
                Err(shared) => DataFusionError::Shared(shared),
            },
            // Streams between nodes may carry a node's error inside an Arrow error.
            DataFusionError::ArrowError(arrow_error, context) => match *arrow_error {
                arrow::error::ArrowError::ExternalError(inner) => {
                    match inner.downcast::<DataFusionError>() {
                        Ok(df) => return Self::unwrap_datafusion(*df, from_cluster),
                        Err(other) => DataFusionError::ArrowError(
                            Box::new(arrow::error::ArrowError::ExternalError(other)),
                            context,
                        ),
                    }
                }
                other => DataFusionError::ArrowError(Box::new(other), context),
            },
            DataFusionError::External(inner) => match inner.downcast::<Tagged>() {
                Ok(ours) => return ours.0,
                Err(other) => match other.downcast::<Error>() {
                    Ok(ours) => return *ours,
                    Err(other) => DataFusionError::External(other),
                },
            },
            other => other,
        };
        let text = e.to_string();
        if let Some((kind, message)) = remote_kind(&text) {
            return Error::Remote { kind, message };
        }
        if from_cluster && matches!(e.find_root(), DataFusionError::Execution(_)) {
            return Error::Cluster(text);
        }
        Error::DataFusion(e)
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Our error inside DataFusion's, written with its kind so that the kind survives a trip
/// through Ballista's task status, which is text only (and made with `{:?}`, so `Debug` says
/// the same as `Display`).
struct Tagged(Error);

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KIND_TAG}{}] {} {END_TAG}", self.0.kind(), self.0)
    }
}

impl fmt::Debug for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Tagged {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The kind and our own message in a remote failure's text, if one of our errors caused it.
fn remote_kind(text: &str) -> Option<(ErrorKind, String)> {
    let end = text.rfind(END_TAG)?;
    let start = text[..end].rfind(KIND_TAG)?;
    let tagged = &text[start + KIND_TAG.len()..end];
    let (kind, message) = tagged.split_once(']')?;
    Some((ErrorKind::from_name(kind)?, message.trim().to_string()))
}

/// The kind of a catalog error.
pub fn catalog_kind(e: &cryptolake_catalog::Error) -> ErrorKind {
    use cryptolake_catalog::Error as C;
    match e {
        C::Invalid(_) | C::NoSuchTable(_) => ErrorKind::Usage,
        C::RequirementFailed { .. } | C::CommitConflict { .. } => ErrorKind::Conflict,
        C::Iceberg(e) => iceberg_kind(e),
        C::Sql(_) if e.is_retryable() => ErrorKind::Transient,
        C::Sql(_) => ErrorKind::Internal,
        C::Glue(_) | C::Io { .. } => ErrorKind::Transient,
    }
}

/// iceberg's errors are mostly storage and catalog calls (transient); data it cannot decode or
/// a feature it lacks will not pass by running again.
fn iceberg_kind(e: &iceberg::Error) -> ErrorKind {
    match e.kind() {
        iceberg::ErrorKind::DataInvalid | iceberg::ErrorKind::FeatureUnsupported => {
            ErrorKind::Internal
        }
        _ => ErrorKind::Transient,
    }
}

fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    match e {
        DataFusionError::Context(_, inner) => datafusion_kind(inner),
        DataFusionError::Shared(inner) => datafusion_kind(inner),
        // A query the user wrote (`cryptolake sql`) that does not parse or plan.
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            ErrorKind::Usage
        }
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ResourcesExhausted(_)
        | DataFusionError::External(_) => ErrorKind::Transient,
        _ => ErrorKind::Internal,
    }
}

/// `Result` with the jobs' [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_exit_code_and_retry_rule() {
        let table: Vec<(ErrorKind, u8, bool)> = ErrorKind::ALL
            .into_iter()
            .map(|k| (k, k.exit_code(), k.retryable()))
            .collect();
        assert_eq!(
            table,
            [
                (ErrorKind::Usage, 2, false),
                (ErrorKind::BadData, 3, false),
                (ErrorKind::Conflict, 4, true),
                (ErrorKind::Transient, 1, true),
                (ErrorKind::Internal, 70, false),
            ]
        );
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_exit_code(k.exit_code().into()), k);
        }
        // A signal or a panic: the process died, which may pass.
        assert_eq!(ErrorKind::from_exit_code(101), ErrorKind::Transient);
        assert_eq!(ErrorKind::from_exit_code(-1), ErrorKind::Transient);
    }

    #[test]
    fn errors_have_the_kind_of_their_cause() {
        let conflict = Error::Catalog(cryptolake_catalog::Error::CommitConflict {
            table: "silver.quotes".into(),
        });
        let cases = [
            (Error::Usage("bad flag".into()), ErrorKind::Usage),
            (
                Error::Internal("refusing to commit".into()),
                ErrorKind::Internal,
            ),
            (Error::Bookmark("unreadable".into()), ErrorKind::Internal),
            (
                Error::TooManyBadRecords {
                    bad: 5,
                    total: 10,
                    max_fraction: 0.1,
                },
                ErrorKind::BadData,
            ),
            (conflict, ErrorKind::Conflict),
            (Error::Kafka("refused".into()), ErrorKind::Transient),
            (Error::Cluster("executor lost".into()), ErrorKind::Transient),
            (Error::Delivery("webhook down".into()), ErrorKind::Transient),
            (
                Error::Api {
                    kind: ErrorKind::BadData,
                    message: "not JSON".into(),
                },
                ErrorKind::BadData,
            ),
            (
                Error::DataFusion(DataFusionError::Plan("no column x".into())),
                ErrorKind::Usage,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }

    #[test]
    fn a_task_error_keeps_its_kind_in_process_and_through_a_cluster() {
        let ours = || Error::Internal("write task 3 read 5 records but wrote no rows".into());
        // In-process: DataFusion hands back the error itself, possibly with context.
        let wrapped = DataFusionError::Context("stage".into(), Box::new(ours().into_datafusion()));
        let back = Error::from_datafusion(wrapped);
        assert!(matches!(back, Error::Internal(_)), "{back:?}");
        // On a cluster: Ballista's task status carries the text only.
        // Ballista writes the task's failure with `{:?}`.
        let text = format!(
            "Job abc failed: Task failed due to runtime execution error: {:?}",
            ours().into_datafusion()
        );
        let remote = Error::from_cluster(DataFusionError::Execution(text));
        assert_eq!(remote.kind(), ErrorKind::Internal);
        assert_eq!(remote.exit_code(), ours().exit_code());
        assert_eq!(remote.retryable(), ours().retryable());
        assert_eq!(
            remote.to_string(),
            "write task 3 read 5 records but wrote no rows"
        );
        // A failure of the cluster itself carries no kind: transient.
        let lost = Error::from_cluster(DataFusionError::Execution("executor lost".into()));
        assert!(matches!(lost, Error::Cluster(_)) && lost.retryable());
        // The same text in-process is DataFusion's own execution error.
        let local = Error::from_datafusion(DataFusionError::Execution("boom".into()));
        assert_eq!(local.kind(), ErrorKind::Internal);
        // A node's error read by another node (a write over a failed scan) is not nested.
        let read_by_write: Error = ours().into_datafusion().into();
        let rewrapped = Error::from_datafusion(read_by_write.into_datafusion());
        assert!(matches!(rewrapped, Error::Internal(_)), "{rewrapped:?}");
    }
}
