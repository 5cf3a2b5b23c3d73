//! The catalog crate's one error type.

/// Errors from catalogs, table layouts and commits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by the iceberg library (metadata, manifests, file IO).
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    /// The SQL catalog database failed.
    #[error("catalog database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Another writer moved the table's metadata pointer first.
    #[error("commit conflict on {table}: another writer committed first")]
    CommitConflict { table: String },
    /// The commit's optimistic requirement no longer holds on the table's newest metadata
    /// (a file it removes is gone, or its bookmark was already committed). Not retryable:
    /// the caller must plan again.
    #[error("commit requirement failed on {table}: {reason}")]
    RequirementFailed { table: String, reason: String },
    /// The Glue Data Catalog refused or could not be reached.
    #[error("glue: {0}")]
    Glue(String),
    /// The table does not exist.
    #[error("no such table: {0}")]
    NoSuchTable(String),
    /// Configuration or input that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// A local file system error.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when doing the same thing again may succeed (a lost race, a busy database).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::CommitConflict { .. } => true,
            Error::Iceberg(e) => e.retryable(),
            Error::Sql(e) => {
                matches!(
                    e,
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Database(_)
                ) && !e.to_string().contains("no such table")
            }
            _ => false,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// `Result` with the catalog's [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
