//! Run history in SQLite: every run with its state, attempts, times, exit code and summary, and
//! each schedule's last fire time.
//!
//! A schedule's fire is recorded (run row and last fire time) in one transaction before the run
//! starts, and `(trigger, scheduled_for)` is unique: a restarted daemon can neither lose a run
//! nor fire the same time twice.

use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, sqlite::SqliteRow};

use crate::{Error, Result};

/// Glue's run states, plus SKIPPED for a fire that came while the last run was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Starting,
    Running,
    Succeeded,
    Failed,
    Timeout,
    Stopped,
    Skipped,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::Stopped => "STOPPED",
            Self::Skipped => "SKIPPED",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, Self::Starting | Self::Running)
    }
}

impl FromStr for RunState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "STARTING" => Self::Starting,
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "TIMEOUT" => Self::Timeout,
            "STOPPED" => Self::Stopped,
            "SKIPPED" => Self::Skipped,
            other => return Err(Error::Config(format!("unknown run state {other:?}"))),
        })
    }
}

/// One run as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: i64,
    pub job: String,
    pub args: Vec<String>,
    /// The schedule's name, `api`, or `eventbridge:<source>`.
    pub trigger: String,
    /// The fire time this run is for (scheduled runs).
    pub scheduled_for: Option<String>,
    pub state: RunState,
    pub attempt: u32,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The job's run summary (`cryptolake run -o json`).
    pub summary: Option<serde_json::Value>,
    pub pid: Option<u32>,
}

/// What a new run is.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub job: &'a str,
    pub args: &'a [String],
    pub trigger: &'a str,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub state: RunState,
    pub error: Option<String>,
}

/// The history database.
#[derive(Debug, Clone)]
pub struct History {
    pool: SqlitePool,
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job TEXT NOT NULL,
  args TEXT NOT NULL,
  trigger TEXT NOT NULL,
  scheduled_for TEXT,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  started_at TEXT,
  ended_at TEXT,
  exit_code INTEGER,
  error TEXT,
  summary TEXT,
  pid INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_per_fire ON runs(trigger, scheduled_for)
  WHERE scheduled_for IS NOT NULL;
CREATE TABLE IF NOT EXISTS schedule_state (name TEXT PRIMARY KEY, last_fire TEXT NOT NULL);
";

impl History {
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// Records a run. For a schedule's fire, also moves its last fire time, in one
    /// transaction; `None` when that fire was recorded already.
    pub async fn record(&self, run: NewRun<'_>) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let now = timestamp(Utc::now());
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO runs (job, args, trigger, scheduled_for, state, created_at, error, ended_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run.job)
        .bind(serde_json::to_string(run.args).unwrap_or_default())
        .bind(run.trigger)
        .bind(run.scheduled_for.map(timestamp))
        .bind(run.state.as_str())
        .bind(&now)
        .bind(&run.error)
        .bind((!run.state.is_active()).then_some(&now))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(at) = run.scheduled_for {
            sqlx::query(
                "INSERT INTO schedule_state (name, last_fire) VALUES (?, ?)
                 ON CONFLICT(name) DO UPDATE SET last_fire = excluded.last_fire",
            )
            .bind(run.trigger)
            .bind(timestamp(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(inserted.last_insert_rowid()))
    }

    /// The last time a schedule fired (or was skipped).
    pub async fn last_fire(&self, schedule: &str) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT last_fire FROM schedule_state WHERE name = ?")
            .bind(schedule)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .and_then(|r| r.try_get::<String, _>(0).ok())
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    pub async fn started(&self, id: i64, attempt: u32, pid: Option<u32>) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET state = 'RUNNING', attempt = ?, pid = ?,
               started_at = COALESCE(started_at, ?) WHERE id = ?",
        )
        .bind(attempt)
        .bind(pid)
        .bind(timestamp(Utc::now()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a run.
    pub async fn finish(
        &self,
        id: i64,
        state: RunState,
        exit_code: Option<i32>,
        error: Option<String>,
        summary: Option<serde_json::Value>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET state = ?, exit_code = ?, error = ?, summary = ?, ended_at = ?
             WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(exit_code)
        .bind(error)
        .bind(summary.map(|s| s.to_string()))
        .bind(timestamp(Utc::now()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: i64) -> Result<Run> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::RunNotFound(id))?;
        from_row(&row)
    }

    /// Newest first; `job` and `active_only` narrow it down.
    pub async fn list(&self, job: Option<&str>, active_only: bool, limit: u32) -> Result<Vec<Run>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE (?1 IS NULL OR job = ?1)
               AND (?2 = 0 OR state IN ('STARTING', 'RUNNING'))
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(job)
        .bind(active_only)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

/// Per table, the sums of what every run summary in the history reports for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableTotals {
    pub table: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub quarantined: u64,
    pub duplicates_dropped: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub commit_attempts: u64,
    /// Commit attempts after a run's first for the table: each one a race lost to another
    /// writer that committed first.
    pub races_lost: u64,
}

/// A table's name and its eight sums, as SQLite returns them.
type TotalsRow = (String, i64, i64, i64, i64, i64, i64, i64, i64);

/// A summary is a JSON array of job summaries (`run all` has several) or one object; either
/// way, each job summary's `tables` object, one row per table and job.
const SUMMARY_TABLES: &str = "
FROM runs,
  json_each(CASE json_type(runs.summary) WHEN 'array' THEN runs.summary
                ELSE json_array(json(runs.summary)) END) AS jobs,
  json_each(jobs.value, '$.tables') AS t
WHERE runs.summary IS NOT NULL AND json_valid(runs.summary)";

impl History {
    /// Runs per job and state, as (job, state, count).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT job, state, count(*) FROM runs GROUP BY job, state ORDER BY job, state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every ended run's duration in seconds, as (job, seconds).
    pub async fn durations(&self) -> Result<Vec<(String, f64)>> {
        Ok(sqlx::query_as(
            "SELECT job, (julianday(ended_at) - julianday(started_at)) * 86400.0 FROM runs
             WHERE started_at IS NOT NULL AND ended_at IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// What every run summary says of each table, summed (SQLite's JSON functions: one pass
    /// over the history, without loading the summaries into this process).
    pub async fn table_totals(&self) -> Result<Vec<TableTotals>> {
        let sql = format!(
            "SELECT t.key,
               sum(coalesce(json_extract(t.value, '$.rows_in'), 0)),
               sum(coalesce(json_extract(t.value, '$.rows_out'), 0)),
               sum(coalesce(json_extract(t.value, '$.quarantined'), 0)),
               sum(coalesce(json_extract(t.value, '$.duplicates_dropped'), 0)),
               sum(coalesce(json_extract(t.value, '$.files_written'), 0)),
               sum(coalesce(json_extract(t.value, '$.bytes_written'), 0)),
               sum(coalesce(json_extract(t.value, '$.commit_attempts'), 0)),
               sum(max(coalesce(json_extract(t.value, '$.commit_attempts'), 0) - 1, 0))
             {SUMMARY_TABLES} GROUP BY t.key ORDER BY t.key"
        );
        let rows: Vec<TotalsRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|r| TableTotals {
                table: r.0,
                rows_in: n(r.1),
                rows_out: n(r.2),
                quarantined: n(r.3),
                duplicates_dropped: n(r.4),
                files_written: n(r.5),
                bytes_written: n(r.6),
                commit_attempts: n(r.7),
                races_lost: n(r.8),
            })
            .collect())
    }
}

fn from_row(row: &SqliteRow) -> Result<Run> {
    let args: String = row.try_get("args")?;
    let summary: Option<String> = row.try_get("summary")?;
    let state: String = row.try_get("state")?;
    Ok(Run {
        id: row.try_get("id")?,
        job: row.try_get("job")?,
        args: serde_json::from_str(&args).unwrap_or_default(),
        trigger: row.try_get("trigger")?,
        scheduled_for: row.try_get("scheduled_for")?,
        state: state.parse()?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        exit_code: row.try_get("exit_code")?,
        error: row.try_get("error")?,
        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
        pid: row.try_get::<Option<i64>, _>("pid")?.map(|p| p as u32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fire_is_recorded_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let history = History::open(&path).await.unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-22T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let fire = |state| NewRun {
            job: "maintain",
            args: &[],
            trigger: "weekly",
            scheduled_for: Some(at),
            state,
            error: None,
        };
        let id = history
            .record(fire(RunState::Starting))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            history.record(fire(RunState::Starting)).await.unwrap(),
            None
        );
        history.started(id, 0, Some(42)).await.unwrap();
        history
            .finish(
                id,
                RunState::Succeeded,
                Some(0),
                None,
                Some(serde_json::json!([1])),
            )
            .await
            .unwrap();
        drop(history);
        let history = History::open(&path).await.unwrap();
        assert_eq!(history.last_fire("weekly").await.unwrap(), Some(at));
        let run = history.get(id).await.unwrap();
        assert_eq!(
            (run.state, run.pid, run.exit_code),
            (RunState::Succeeded, Some(42), Some(0))
        );
        assert_eq!(run.summary, Some(serde_json::json!([1])));
        assert_eq!(
            history
                .list(Some("maintain"), false, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(history.list(None, true, 10).await.unwrap().is_empty());
        assert!(matches!(history.get(99).await, Err(Error::RunNotFound(99))));
    }

    #[tokio::test]
    async fn totals_sum_every_summary_s_tables_and_count_lost_races() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(&dir.path().join("h.db")).await.unwrap();
        let run = |job: &'static str| NewRun {
            job,
            args: &[],
            trigger: "api",
            scheduled_for: None,
            state: RunState::Starting,
            error: None,
        };
        let table = |rows_in: u64, attempts: u64| {
            serde_json::json!({"rows_in": rows_in, "rows_out": rows_in - 1, "quarantined": 1,
                "duplicates_dropped": 2, "files_written": 3, "bytes_written": 1000,
                "commit_attempts": attempts})
        };
        // `run all`: an array of job summaries; `run compact`: one object; a failed run: none.
        let all = serde_json::json!([
            {"job": "ingest-files", "tables": {"bronze.trades": table(10, 1)}},
            {"job": "silver", "tables": {"silver.trades": table(9, 3)}}
        ]);
        let one = serde_json::json!({"job": "silver", "tables": {"silver.trades": table(5, 1)}});
        for (job, state, summary) in [
            ("all", RunState::Succeeded, Some(all)),
            ("silver", RunState::Succeeded, Some(one)),
            ("silver", RunState::Failed, None),
        ] {
            let id = history.record(run(job)).await.unwrap().unwrap();
            history.started(id, 0, None).await.unwrap();
            history
                .finish(id, state, Some(0), None, summary)
                .await
                .unwrap();
        }
        let totals = history.table_totals().await.unwrap();
        assert_eq!(totals.len(), 2);
        assert_eq!(
            totals[1],
            TableTotals {
                table: "silver.trades".into(),
                rows_in: 14,
                rows_out: 12,
                quarantined: 2,
                duplicates_dropped: 4,
                files_written: 6,
                bytes_written: 2000,
                commit_attempts: 4,
                races_lost: 2,
            }
        );
        assert_eq!((totals[0].rows_in, totals[0].races_lost), (10, 0));
        assert_eq!(
            history.counts().await.unwrap(),
            [
                ("all".to_string(), "SUCCEEDED".to_string(), 1),
                ("silver".to_string(), "FAILED".to_string(), 1),
                ("silver".to_string(), "SUCCEEDED".to_string(), 1),
            ]
        );
        let durations = history.durations().await.unwrap();
        assert_eq!(durations.len(), 3);
        assert!(durations.iter().all(|(_, s)| (0.0..60.0).contains(s)));
    }
}
