//! cryptolake-scheduler knows time: EventBridge schedule expressions, the scheduler daemon
//! that fires them, its run history, the authenticated submission API and the export of
//! schedules to EventBridge Scheduler. (Ballista's scheduler and executor processes are the
//! cluster crate's.)
//!
//! A run is a child process of the cryptolake binary (`cryptolake run JOB ...`): a timeout or a
//! cancel kills it, which is safe because every job commits atomically with its bookmark, and a
//! crashed job cannot take the daemon down with it.

pub mod api;
pub mod config;
pub mod cron;
pub mod daemon;
mod error;
pub mod export;
pub mod expr;
pub mod history;
pub mod runner;

pub use config::{ScheduleSpec, SchedulerConfig};
pub use error::{Error, Result};
pub use expr::ScheduleExpression;
