//! What every job needs: the lake, the landing directory and the run settings.

use std::path::PathBuf;
use std::sync::Arc;

use cryptolake_catalog::Lake;

use crate::dist::Engine;
use crate::progress::{self, Progress};

use crate::{Error, Result};

/// Settings shared by the jobs (from the config file, flags and environment).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Roll data files at this size (`write.target-file-size-bytes`).
    pub target_file_size: usize,
    /// Fail the silver run, committing nothing, when more than this fraction of its records
    /// is bad (Glue's error threshold). 1.0 never fails.
    pub max_bad_fraction: f64,
    /// Record batch size for reads and transforms.
    pub batch_size: usize,
    /// Worker tasks used for parsing and writing.
    pub parallelism: usize,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            target_file_size: 512 * 1024 * 1024,
            max_bad_fraction: 0.1,
            batch_size: 8192,
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl JobSettings {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.max_bad_fraction) {
            return Err(Error::Invalid(format!(
                "max_bad_fraction must be between 0 and 1, not {}",
                self.max_bad_fraction
            )));
        }
        if self.target_file_size < 1024 || self.batch_size == 0 || self.parallelism == 0 {
            return Err(Error::Invalid(
                "target_file_size (>= 1 KiB), batch_size and parallelism must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// A job's environment.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub lake: Lake,
    /// `<landing>/<source>/**` holds the landing files.
    pub landing: PathBuf,
    pub settings: JobSettings,
    /// Where jobs report progress (nothing by default).
    pub progress: Arc<dyn Progress>,
    /// Where plans run: this process (the default) or a Ballista cluster.
    pub engine: Engine,
}

impl JobContext {
    pub fn new(lake: Lake, landing: PathBuf, settings: JobSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Self {
            lake,
            landing,
            settings,
            progress: progress::none(),
            engine: Engine::InProcess,
        })
    }

    /// Runs plans on `engine`.
    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// A DataFusion session on the engine, with the lake's storage for cryptolake's nodes.
    pub async fn session(&self) -> Result<datafusion::prelude::SessionContext> {
        self.engine
            .session(
                self.lake.file_io(),
                self.settings.parallelism,
                self.settings.batch_size,
            )
            .await
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }
}
