//! cryptolake-cluster runs the Ballista cluster: the scheduler and executor processes, built
//! with cryptolake's codecs and planner ([`process`]), and a local cluster of them started in
//! the background (`cryptolake cluster up|down`, [`local`]). The driver's side of a cluster
//! (sessions, the watch over executors, the scheduler's REST API) is the jobs crate's
//! `engine`, which every job runs through.

pub mod local;
pub mod metrics;
pub mod process;

/// A cluster failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration that cannot work (a bad address, no executors).
    #[error("{0}")]
    Config(String),
    /// A Ballista scheduler or executor failed to start or stopped with an error.
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The kind of failure, for the exit code and retries ([`cryptolake_jobs::ErrorKind`]).
    pub fn kind(&self) -> cryptolake_jobs::ErrorKind {
        match self {
            Error::Config(_) => cryptolake_jobs::ErrorKind::Usage,
            Error::Cluster(_) | Error::Io(_) => cryptolake_jobs::ErrorKind::Transient,
        }
    }
}

/// A `Result` with the cluster's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
