//! `[[schedule]]` entries and `[scheduler]` settings of `cryptolake.toml`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::expr::{ScheduleExpression, parse_timezone};
use crate::{Error, Result};

/// A scheduled job, written the way EventBridge Scheduler writes schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    /// A `cryptolake run` job: ingest-files, silver, gold, all, compact, maintain, ...
    pub job: String,
    /// Extra `cryptolake run` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// `rate(...)`, `cron(...)` (EventBridge's six fields) or `at(...)`.
    pub expression: String,
    /// IANA zone the expression is read in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// EventBridge's flexible time window: start up to this many minutes late, at random,
    /// to spread load. 0 (`OFF`) starts on time.
    #[serde(default)]
    pub flexible_window_minutes: u32,
    /// Runs that fail (exit code 1 or 4) are tried again this many times, with backoff.
    #[serde(default)]
    pub max_retries: u32,
    /// A run still going after this many minutes is killed (state TIMEOUT). Glue's default.
    #[serde(default = "default_timeout")]
    pub timeout_minutes: u64,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn utc() -> String {
    "UTC".into()
}

fn default_timeout() -> u64 {
    2880
}

fn yes() -> bool {
    true
}

impl ScheduleSpec {
    /// A schedule with the defaults for everything but what names it.
    pub fn new(name: &str, job: &str, expression: &str) -> Self {
        Self {
            name: name.into(),
            job: job.into(),
            args: Vec::new(),
            expression: expression.into(),
            timezone: utc(),
            flexible_window_minutes: 0,
            max_retries: 0,
            timeout_minutes: default_timeout(),
            enabled: true,
        }
    }

    pub fn expression(&self) -> Result<ScheduleExpression> {
        self.expression
            .parse::<ScheduleExpression>()
            .map_err(|e| Error::Expression(format!("schedule {:?}: {e}", self.name)))
    }

    pub fn tz(&self) -> Result<chrono_tz::Tz> {
        parse_timezone(&self.timezone)
            .map_err(|e| Error::Expression(format!("schedule {:?}: {e}", self.name)))
    }
}

/// Checks every schedule: expressions, zones, unique names, a job name.
pub fn validate_schedules(schedules: &[ScheduleSpec]) -> Result<()> {
    let mut names = HashSet::new();
    for s in schedules {
        if !names.insert(s.name.as_str()) {
            return Err(Error::Config(format!(
                "two schedules are named {:?}",
                s.name
            )));
        }
        if s.name.is_empty() || s.job.is_empty() {
            return Err(Error::Config("a schedule needs a name and a job".into()));
        }
        s.expression()?;
        s.tz()?;
        if s.timeout_minutes == 0 {
            return Err(Error::Config(format!(
                "schedule {:?}: timeout_minutes must be positive",
                s.name
            )));
        }
    }
    Ok(())
}

/// The scheduler daemon and its API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Where the API listens. Loopback unless you say otherwise.
    pub bind: SocketAddr,
    /// Bearer token the API requires (`CRYPTOLAKE_API_TOKEN` overrides it).
    pub token: Option<String>,
    /// Run history (SQLite).
    pub db: PathBuf,
    /// One log file per run.
    pub logs: PathBuf,
    /// Requests with a larger body are refused (413).
    pub max_body_bytes: usize,
    /// Runs of one job at a time (Glue's MaxConcurrentRuns); a fire past it is skipped.
    pub max_concurrent_runs: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8790)),
            token: None,
            db: PathBuf::from("lake/scheduler.db"),
            logs: PathBuf::from("lake/runs"),
            max_body_bytes: 64 * 1024,
            max_concurrent_runs: 1,
        }
    }
}

impl SchedulerConfig {
    /// Makes relative paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.db, &mut self.logs] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(Error::Config(
                "the API token must be at least 16 characters".into(),
            ));
        }
        if self.max_body_bytes == 0 || self.max_concurrent_runs == 0 {
            return Err(Error::Config(
                "max_body_bytes and max_concurrent_runs must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_as_a_whole() {
        let ok = ScheduleSpec::new("a", "silver", "rate(5 minutes)");
        assert!(validate_schedules(std::slice::from_ref(&ok)).is_ok());
        let err = validate_schedules(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(err.to_string().contains("two schedules"), "{err}");
        let bad = ScheduleSpec {
            timezone: "Nowhere/Else".into(),
            ..ok.clone()
        };
        assert!(
            validate_schedules(&[bad])
                .unwrap_err()
                .to_string()
                .contains("time zone")
        );
        let short = SchedulerConfig {
            token: Some("short".into()),
            ..SchedulerConfig::default()
        };
        assert!(short.validate().is_err());
        assert!(SchedulerConfig::default().validate().is_ok());
    }
}
