//! Progress reporting: jobs say how much work there is and how much is done; the CLI draws it
//! (a bar in a terminal), a scheduler could log it. Jobs never depend on how it is shown.

use std::sync::Arc;

/// Receives a job's progress. Calls are cheap and may come from several tasks.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A new stage with `total` units of work (files, tables); replaces the previous stage.
    fn start(&self, stage: &str, total: u64);
    /// `n` more units done.
    fn advance(&self, n: u64);
}

/// Shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _stage: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

/// The default: no progress shown.
pub fn none() -> Arc<dyn Progress> {
    Arc::new(NoProgress)
}
