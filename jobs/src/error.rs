//! The jobs crate's one error type.

/// Errors from sources, transforms, the write path and job planning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Catalog(#[from] cryptolake_catalog::Error),
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
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
    /// A bookmark points at history the table no longer has.
    #[error("{0}")]
    Bookmark(String),
    #[error("{0}")]
    Invalid(String),
    /// The Ballista cluster failed the run (an executor lost, a task failed) or could not be
    /// reached; running the job again may succeed.
    #[error("cluster: {0}")]
    Cluster(String),
}

impl Error {
    /// Our own error back out of DataFusion's wrapping (a node's task failed with it), so its
    /// message, retryability and exit code survive.
    pub fn from_datafusion(e: datafusion::error::DataFusionError) -> Self {
        match e {
            datafusion::error::DataFusionError::External(inner) => {
                match inner.downcast::<Error>() {
                    Ok(ours) => *ours,
                    Err(other) => {
                        Error::DataFusion(datafusion::error::DataFusionError::External(other))
                    }
                }
            }
            other => Error::DataFusion(other),
        }
    }

    /// True when running the same job again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Catalog(e) => e.is_retryable(),
            Error::Iceberg(e) => e.retryable(),
            Error::Io { .. } | Error::Kafka(_) | Error::Cluster(_) => true,
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with the jobs' [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
