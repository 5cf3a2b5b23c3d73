//! What every job needs: the lake, the landing directory, the run settings and where its plans
//! run (the engine's settings; [`crate::engine`] runs them).

use std::sync::Arc;

use cryptolake_catalog::Lake;

use serde::{Deserialize, Serialize};

use crate::job::landing::Landing;
use crate::job::progress::{self, Progress};

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
            return Err(Error::Usage(format!(
                "max_bad_fraction must be between 0 and 1, not {}",
                self.max_bad_fraction
            )));
        }
        if self.target_file_size < 1024 || self.batch_size == 0 || self.parallelism == 0 {
            return Err(Error::Usage(
                "target_file_size (>= 1 KiB), batch_size and parallelism must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Running on a Ballista cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The scheduler, `df://HOST:PORT`.
    pub url: String,
    /// Plan partitions (tasks per stage); by default the executors' task slots.
    pub partitions: Option<usize>,
    /// Runs of one job when the cluster fails it for a reason that can pass (an executor
    /// lost). Safe: files are written first and the commit, with its bookmark, is atomic.
    pub max_attempts: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            url: "df://127.0.0.1:50050".into(),
            partitions: None,
            max_attempts: 3,
        }
    }
}

impl ClusterSettings {
    pub fn validate(&self) -> Result<()> {
        let rest = self.url.strip_prefix("df://").ok_or_else(|| {
            Error::Usage(format!(
                "cluster url {} must look like df://HOST:PORT",
                self.url
            ))
        })?;
        let port_ok = rest
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(Error::Usage(format!(
                "cluster url {} must look like df://HOST:PORT",
                self.url
            )));
        }
        if self.max_attempts == 0 || self.partitions == Some(0) {
            return Err(Error::Usage(
                "cluster max_attempts and partitions must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// `http://HOST:PORT`: Ballista serves its REST API on the gRPC port.
    pub fn rest_base(&self) -> String {
        format!("http://{}", self.url.trim_start_matches("df://"))
    }
}

/// Where plans run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    InProcess,
    Cluster(ClusterSettings),
}

/// A job's environment.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub lake: Lake,
    /// `<landing>/<source>/**` holds the landing files (a local directory or an S3 prefix).
    pub landing: Landing,
    pub settings: JobSettings,
    /// Where jobs report progress (nothing by default).
    pub progress: Arc<dyn Progress>,
    /// Where plans run: this process (the default) or a Ballista cluster.
    pub engine: Engine,
}

impl JobContext {
    pub fn new(lake: Lake, landing: impl Into<Landing>, settings: JobSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Self {
            lake,
            landing: landing.into(),
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

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_checked() {
        ClusterSettings::default().validate().unwrap();
        let with = |url: &str| ClusterSettings {
            url: url.into(),
            ..Default::default()
        };
        assert!(with("df://scheduler.internal:50050").validate().is_ok());
        assert!(with("http://h:50050").validate().is_err());
        assert!(with("df://h").validate().is_err());
        assert!(with("df://:50050").validate().is_err());
        assert_eq!(with("df://h:7").rest_base(), "http://h:7");
        let none = ClusterSettings {
            max_attempts: 0,
            ..Default::default()
        };
        assert!(none.validate().is_err());
    }
}
