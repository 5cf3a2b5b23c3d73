//! What every job stands on: its context and settings, where its landing files are and where
//! its plans run, the error type with
//! its kinds (one mapping to exit codes and retries for the CLI, the scheduler and the
//! cluster), the run summary, progress reporting and fault injection for tests.

pub mod context;
pub mod duration;
pub mod error;
pub mod fault;
pub mod landing;
pub mod progress;
pub mod summary;
pub mod wire;
