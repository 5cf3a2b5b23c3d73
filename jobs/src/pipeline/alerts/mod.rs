//! `alerts`: price alert rules (`[[alert]]`) evaluated on the silver quotes no run has
//! evaluated, each firing recorded in `gold.alerts` and then delivered, exactly once per
//! successful delivery.
//!
//! A run has two commits. The first appends the firings (delivery state `pending`) with the
//! table's bookmark on `silver.quotes` and the rules' state ([`rules::AlertState`], whether each
//! rule's last quote per symbol satisfied it) in one snapshot: a crash before it leaves nothing,
//! and the re-run evaluates the same quotes from the same state. Then every undelivered row
//! (this run's, and earlier runs' failures) is sent to its rule's channels, and the files
//! holding them are rewritten with the outcome per channel (an `overwrite` snapshot). A channel
//! that succeeded is never sent to again once that commit lands; a crash between a send and the
//! commit sends again on the next run, with the same `alert_id` as the idempotency key (SNS
//! FIFO topics drop the repeat; a webhook sees the key twice). A run whose deliveries failed
//! ends with a transient error (exit 1), its firings recorded as `failed`, and the next run
//! retries them.
//!
//! The quotes are evaluated in this process (a run's new quotes, and for `change_pct` rules the
//! quotes of the longest window before them, read from the files whose `event_time` bounds
//! meet that span), in `(symbol, event_time, source)` order, streamed, one symbol's window kept.

pub mod deliver;
pub mod rules;
pub mod table;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, TimeUnit, TimestampMicrosecondType};
use cryptolake_catalog::SnapshotCommit;
use cryptolake_catalog::commit::bookmarks_unchanged;
use cryptolake_catalog::layout::{gold_alerts, silver_quotes};
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, SessionContext, col, lit};
use futures::TryStreamExt;
use iceberg::spec::{DataFile, Literal, PrimitiveLiteral};
use iceberg::table::Table;
use serde::Serialize;

use self::deliver::Channels;
use self::rules::{AlertRule, AlertState, Evaluator, Firing, Quote, SCALE};
use self::table::{AlertRow, DELIVERED, FAILED};
use crate::engine;
use crate::iceberg::scan;
use crate::job::context::{Engine, JobContext};
use crate::job::fault::maybe_crash;
use crate::job::summary::{RunSummary, TableRun};
use crate::physical_plan::IcebergProvider;
use crate::{Error, Result};

const JOB: &str = "alerts";

/// Snapshot summary key of the rules' state (JSON). Under the bookmark prefix, so every other
/// commit to the table carries it forward.
pub const STATE_KEY: &str = "cryptolake.bookmark.alerts.state";

/// `gold.alerts`' bookmark on `silver.quotes`.
pub fn bookmark_key() -> String {
    crate::bookmarks::gold_key("silver.quotes")
}

/// What an alerts run will do.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsPlan {
    pub rules: Vec<String>,
    /// The table's bookmark, which the first commit requires unchanged.
    pub bookmark: Option<i64>,
    /// The `silver.quotes` snapshot evaluated through; `None` when nothing is new.
    pub through_snapshot: Option<i64>,
    pub new_files: usize,
    pub new_records: u64,
    /// Data files of `gold.alerts` that may hold undelivered firings.
    pub undelivered_files: usize,
    #[serde(skip)]
    files: Vec<DataFile>,
    #[serde(skip)]
    state: AlertState,
}

/// Builder for an alerts run.
#[derive(Debug, Clone)]
pub struct Alerts {
    ctx: JobContext,
    rules: Vec<AlertRule>,
}

/// What the deliveries of a run came to.
#[derive(Debug, Default)]
struct Deliveries {
    delivered: u64,
    failed: Vec<String>,
}

impl Alerts {
    /// An alerts run over validated rules ([`rules::parse_rules`]).
    pub fn new(ctx: JobContext, rules: Vec<AlertRule>) -> Self {
        Self { ctx, rules }
    }

    async fn plan_impl(&self) -> Result<AlertsPlan> {
        let mut plan = AlertsPlan {
            rules: self.rules.iter().map(|r| r.spec.name.clone()).collect(),
            bookmark: None,
            through_snapshot: None,
            new_files: 0,
            new_records: 0,
            undelivered_files: 0,
            files: Vec::new(),
            state: AlertState::default(),
        };
        if self.rules.is_empty() {
            return Ok(plan);
        }
        let lake = &self.ctx.lake;
        let alerts = lake.table_if_exists(&gold_alerts().ident()).await?;
        if let Some(t) = &alerts {
            plan.bookmark = crate::bookmarks::snapshot_bookmark(t, &bookmark_key())?;
            plan.state = read_state(t)?;
            plan.undelivered_files = table::files_to_deliver(t).await?.len();
        }
        let silver = lake.table_if_exists(&silver_quotes().ident()).await?;
        let current = silver
            .as_ref()
            .and_then(|s| s.metadata().current_snapshot_id());
        if let (Some(silver), Some(current)) = (silver, current)
            && Some(current) != plan.bookmark
        {
            let files: Vec<DataFile> = scan::appended_since(&silver, plan.bookmark)
                .await?
                .into_iter()
                .flat_map(|a| a.files)
                .collect();
            if !files.is_empty() {
                plan.through_snapshot = Some(current);
                plan.new_files = files.len();
                plan.new_records = files.iter().map(|f| f.record_count()).sum();
                plan.files = files;
            }
        }
        Ok(plan)
    }

    async fn execute_impl(&self, plan: AlertsPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::new(JOB);
        if self.rules.is_empty() {
            return Ok(summary.finish(started.elapsed()));
        }
        let mut run = TableRun::default();
        if plan.through_snapshot.is_some() {
            self.record(&plan, &mut run).await?;
        }
        let deliveries = self.deliver(&mut run).await?;
        if run.snapshot_id.is_some() {
            summary
                .tables
                .insert(gold_alerts().ident().to_string(), run);
        }
        tracing::info!(
            delivered = deliveries.delivered,
            failed = deliveries.failed.len(),
            "alerts delivered"
        );
        if !deliveries.failed.is_empty() {
            return Err(Error::Delivery(format!(
                "{} alert deliveries failed ({}); they are recorded in gold.alerts as failed and \
                 the next run retries them",
                deliveries.failed.len(),
                deliveries.failed.join("; ")
            )));
        }
        Ok(summary.finish(started.elapsed()))
    }

    /// Evaluates the new quotes and commits the firings with the bookmark and the state.
    async fn record(&self, plan: &AlertsPlan, run: &mut TableRun) -> Result<()> {
        let through = plan
            .through_snapshot
            .ok_or_else(|| Error::Internal("nothing to record".into()))?;
        let alerts = self.ctx.lake.ensure_table(&gold_alerts()).await?;
        let (firings, state) = self.evaluate(plan).await?;
        let fired_us = chrono::Utc::now().timestamp_micros();
        let by_name: HashMap<&str, &AlertRule> = self
            .rules
            .iter()
            .map(|r| (r.spec.name.as_str(), r))
            .collect();
        let rows = firings
            .iter()
            .filter_map(|f| {
                let rule = by_name.get(f.rule.as_str())?;
                Some(AlertRow::fired(f, rule, fired_us))
            })
            .collect::<Vec<_>>();
        let added = table::write(&alerts, &rows, self.ctx.settings.target_file_size).await?;
        run.rows_in = plan.new_records;
        run.rows_out = rows.len() as u64;
        run.files_written = added.len() as u64;
        run.bytes_written = added.iter().map(|f| f.file_size_in_bytes()).sum();
        maybe_crash(JOB, "after-write");
        let state_text = serde_json::to_string(&state)
            .map_err(|e| Error::Internal(format!("alert state: {e}")))?;
        let commit = SnapshotCommit::append(alerts.identifier().clone())
            .add_files(added)
            .set_property(crate::bookmarks::JOB_PROPERTY, JOB)
            .set_property(bookmark_key(), through.to_string())
            .set_property(STATE_KEY, state_text)
            .require(bookmarks_unchanged(vec![(bookmark_key(), plan.bookmark)]));
        let outcome = self.ctx.lake.commit(&commit).await?;
        tracing::info!(
            fired = rows.len(),
            snapshot = outcome.snapshot_id,
            "alerts recorded"
        );
        run.snapshot_id = Some(outcome.snapshot_id);
        run.commit_attempts = outcome.attempts;
        maybe_crash(JOB, "after-record");
        Ok(())
    }

    /// The firings of the plan's new quotes, and the state after them.
    async fn evaluate(&self, plan: &AlertsPlan) -> Result<(Vec<Firing>, AlertState)> {
        let silver = self.ctx.lake.ensure_table(&silver_quotes()).await?;
        let mut evaluator = Evaluator::new(&self.rules, plan.state.clone());
        let df = engine::engine_session(
            &Engine::InProcess,
            self.ctx.lake.file_io(),
            self.ctx.settings.parallelism,
            self.ctx.settings.batch_size,
        )
        .await?;
        df.register_table(
            "new",
            Arc::new(IcebergProvider::with_files(
                silver.clone(),
                plan.files.clone(),
            )?),
        )?;
        let symbols = self.symbols();
        let mut quotes = select(df.table("new").await?, true, symbols.as_ref())?;
        let lookback = evaluator.lookback_us();
        if lookback > 0
            && let Some((first, last)) = time_range(&df, &silver, &plan.files).await?
        {
            let since = first.saturating_sub(lookback);
            let old = files_between(&silver, &plan.files, (since, last), symbols.as_ref()).await?;
            if !old.is_empty() {
                df.register_table("old", Arc::new(IcebergProvider::with_files(silver, old)?))?;
                let at = |us: i64| lit(ScalarValue::TimestampMicrosecond(Some(us), None));
                let old = select(df.table("old").await?, false, symbols.as_ref())?
                    .filter(col("event_time").gt_eq(at(since)))?
                    .filter(col("event_time").lt_eq(at(last)))?;
                quotes = quotes.union(old)?;
            }
        }
        let sorted = quotes.sort(vec![
            col("symbol").sort(true, false),
            col("event_time").sort(true, false),
            col("source").sort(true, false),
        ])?;
        let mut stream = sorted.execute_stream().await?;
        let mut firings = Vec::new();
        while let Some(batch) = stream.try_next().await? {
            firings.extend(observe(&mut evaluator, &batch)?);
        }
        Ok((firings, evaluator.into_state()))
    }

    /// The symbols the rules name; `None` when one takes every symbol.
    fn symbols(&self) -> Option<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for rule in &self.rules {
            if rule.spec.symbol == "*" {
                return None;
            }
            out.insert(rule.spec.symbol.clone());
        }
        Some(out)
    }

    /// Sends every undelivered firing and commits the outcome.
    async fn deliver(&self, run: &mut TableRun) -> Result<Deliveries> {
        let mut out = Deliveries::default();
        let Some(alerts) = self
            .ctx
            .lake
            .table_if_exists(&gold_alerts().ident())
            .await?
        else {
            return Ok(out);
        };
        let files = table::files_to_deliver(&alerts).await?;
        if files.is_empty() {
            return Ok(out);
        }
        let by_name: HashMap<&str, &AlertRule> = self
            .rules
            .iter()
            .map(|r| (r.spec.name.as_str(), r))
            .collect();
        let mut channels = Channels::new().map_err(Error::Internal)?;
        let (mut rows_out, mut removed) = (Vec::new(), Vec::new());
        for file in &files {
            let mut rows = table::read_file(&alerts, file, self.ctx.settings.batch_size).await?;
            let mut changed = false;
            for row in rows.iter_mut().filter(|r| r.undelivered()) {
                let Some(rule) = by_name.get(row.rule.as_str()) else {
                    tracing::warn!(rule = %row.rule, alert = %row.alert_id, "undelivered alert of a rule no longer configured");
                    continue;
                };
                changed |= send(&mut channels, rule, row, &mut out).await;
            }
            if changed {
                removed.push(file.file_path().to_string());
                rows_out.extend(rows);
            }
        }
        if removed.is_empty() {
            return Ok(out);
        }
        maybe_crash(JOB, "after-send");
        let added = table::write(&alerts, &rows_out, self.ctx.settings.target_file_size).await?;
        run.files_written += added.len() as u64;
        run.bytes_written += added.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
        run.files_removed += removed.len() as u64;
        let commit = SnapshotCommit::overwrite(alerts.identifier().clone())
            .add_files(added)
            .remove_files(removed)
            .set_property(crate::bookmarks::JOB_PROPERTY, JOB);
        let outcome = self.ctx.lake.commit(&commit).await?;
        run.snapshot_id = Some(outcome.snapshot_id);
        run.commit_attempts += outcome.attempts;
        Ok(out)
    }
}

/// Sends a row to each of its channels not yet delivered to; records the outcome in the row.
/// False when no channel could be tried (the rule no longer has them).
async fn send(
    channels: &mut Channels,
    rule: &AlertRule,
    row: &mut AlertRow,
    out: &mut Deliveries,
) -> bool {
    let mut tried = false;
    let mut errors = Vec::new();
    if let (Some(arn), Some(state)) = (&rule.spec.sns_topic_arn, &row.sns_state)
        && state != DELIVERED
    {
        tried = true;
        let region = rules::topic_region(arn).unwrap_or_default();
        let result = channels.sns(arn, region, row).await;
        row.sns_state = Some(outcome(result, &mut errors));
    }
    if let (Some(url), Some(state)) = (&rule.spec.webhook_url, &row.webhook_state)
        && state != DELIVERED
    {
        tried = true;
        let result = channels.webhook(url, row).await;
        row.webhook_state = Some(outcome(result, &mut errors));
    }
    if !tried {
        return false;
    }
    row.attempts += 1;
    if errors.is_empty() {
        row.delivery_state = DELIVERED.into();
        row.delivered_us = Some(chrono::Utc::now().timestamp_micros());
        row.last_error = None;
        out.delivered += 1;
    } else {
        row.delivery_state = FAILED.into();
        let error = errors.join("; ");
        tracing::warn!(alert = %row.alert_id, rule = %row.rule, %error, "alert delivery failed");
        out.failed.push(error.clone());
        row.last_error = Some(error);
    }
    true
}

fn outcome(result: std::result::Result<(), String>, errors: &mut Vec<String>) -> String {
    match result {
        Ok(()) => DELIVERED.into(),
        Err(e) => {
            errors.push(e);
            FAILED.into()
        }
    }
}

/// The rules' state in the newest snapshot cryptolake committed to the table; unreadable state
/// stops the run.
fn read_state(table: &Table) -> Result<AlertState> {
    let holder = cryptolake_catalog::commit::bookmark_snapshot(table.metadata())
        .map_err(|why| Error::Bookmark(format!("{}: {why}", table.identifier())))?;
    let Some(snapshot) = holder else {
        return Ok(AlertState::default());
    };
    let Some(text) = snapshot.summary().additional_properties.get(STATE_KEY) else {
        return Ok(AlertState::default());
    };
    serde_json::from_str(text).map_err(|e| {
        Error::Bookmark(format!(
            "{}: snapshot {}'s {STATE_KEY} is unreadable ({e}): the rules' state is never \
             guessed, so nothing was evaluated; repair or remove the property",
            table.identifier(),
            snapshot.snapshot_id()
        ))
    })
}

/// The quote columns of a silver frame, flagged as evaluated or only read.
fn select(
    frame: DataFrame,
    evaluate: bool,
    symbols: Option<&BTreeSet<String>>,
) -> Result<DataFrame> {
    let mut frame = frame.select(vec![
        col("symbol"),
        col("source"),
        col("price"),
        col("event_time"),
        lit(evaluate).alias("evaluate"),
    ])?;
    if let Some(symbols) = symbols {
        let list = symbols.iter().map(|s| lit(s.clone())).collect();
        frame = frame.filter(col("symbol").in_list(list, false))?;
    }
    Ok(frame)
}

/// The first and last `event_time` of the new files: their bounds, or a query when a file
/// lacks them.
async fn time_range(
    df: &SessionContext,
    silver: &Table,
    files: &[DataFile],
) -> Result<Option<(i64, i64)>> {
    let id = silver
        .metadata()
        .current_schema()
        .field_id_by_name("event_time");
    let bounds: Option<Vec<(i64, i64)>> = files
        .iter()
        .map(|f| id.and_then(|id| scan::long_bounds(f, id)))
        .collect();
    if let Some(bounds) = bounds {
        let first = bounds.iter().map(|b| b.0).min();
        let last = bounds.iter().map(|b| b.1).max();
        return Ok(first.zip(last));
    }
    let batches = df
        .sql("SELECT CAST(min(event_time) AS BIGINT) AS a, CAST(max(event_time) AS BIGINT) AS b FROM new")
        .await?
        .collect()
        .await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let value = |i: usize| {
        let c = b.column(i).as_primitive::<arrow::datatypes::Int64Type>();
        c.is_valid(0).then(|| c.value(0))
    };
    Ok(value(0).zip(value(1)))
}

/// Live files other than `new` that may hold quotes of `symbols` between `span`'s ends.
async fn files_between(
    silver: &Table,
    new: &[DataFile],
    span: (i64, i64),
    symbols: Option<&BTreeSet<String>>,
) -> Result<Vec<DataFile>> {
    let taken: BTreeSet<&str> = new.iter().map(|f| f.file_path()).collect();
    let id = silver
        .metadata()
        .current_schema()
        .field_id_by_name("event_time");
    Ok(scan::live_data_files(silver)
        .await?
        .into_iter()
        .filter(|f| !taken.contains(f.file_path()))
        .filter(|f| match id.and_then(|id| scan::long_bounds(f, id)) {
            Some((lower, upper)) => upper >= span.0 && lower <= span.1,
            None => true,
        })
        .filter(|f| {
            let symbol = f.partition().iter().flatten().find_map(|v| match v {
                Literal::Primitive(PrimitiveLiteral::String(s)) => Some(s.clone()),
                _ => None,
            });
            match (symbols, symbol) {
                (Some(set), Some(s)) => set.contains(&s),
                _ => true,
            }
        })
        .collect())
}

/// Feeds one batch of sorted quotes to the evaluator.
fn observe(evaluator: &mut Evaluator<'_>, batch: &RecordBatch) -> Result<Vec<Firing>> {
    let text = |i: usize| cast(batch.column(i), &DataType::Utf8);
    let (symbol, source) = (text(0)?, text(1)?);
    let price = cast(batch.column(2), &DataType::Decimal128(38, SCALE as i8))?;
    let time = cast(
        batch.column(3),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )?;
    let (symbol, source) = (symbol.as_string::<i32>(), source.as_string::<i32>());
    let price = price.as_primitive::<Decimal128Type>();
    let time = time.as_primitive::<TimestampMicrosecondType>();
    let evaluate = batch.column(4).as_boolean();
    let mut fired = Vec::new();
    for i in 0..batch.num_rows() {
        if symbol.is_null(i) || price.is_null(i) || time.is_null(i) {
            continue;
        }
        fired.extend(evaluator.observe(&Quote {
            symbol: symbol.value(i),
            source: source.value(i),
            price: price.value(i),
            event_us: time.value(i),
            evaluate: evaluate.value(i),
        }));
    }
    Ok(fired)
}

impl crate::Job for Alerts {
    type Plan = AlertsPlan;
    const NAME: &'static str = "alerts";

    async fn plan(&self) -> Result<AlertsPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: AlertsPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}
