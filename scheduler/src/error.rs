//! The scheduler's errors.

/// A scheduler failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A schedule expression or time zone that EventBridge would refuse.
    #[error("{0}")]
    Expression(String),
    /// A configuration that cannot work (duplicate names, no token for a public bind, ...).
    #[error("{0}")]
    Config(String),
    #[error("run {0} not found")]
    RunNotFound(i64),
    /// A request the API cannot take (a path or query that does not parse).
    #[error("{0}")]
    BadRequest(String),
    #[error("run history: {0}")]
    History(#[from] sqlx::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether trying again may succeed: a busy or unreachable history database, I/O.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::History(_) | Error::Io(_))
    }
}

/// A `Result` with the scheduler's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
