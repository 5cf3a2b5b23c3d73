//! `GET /metrics`: Prometheus text format, every name prefixed `cryptolake_`, computed when
//! scraped from what is durable: the run history (runs, durations, what each run's summary says
//! of each table), the tables' current snapshots, and the plans `ingest-files` and
//! `ingest-kafka` would make now (files waiting in the landing zone, Kafka lag), which read and
//! never write. So the daemon and a console report the same figures, a restart loses none, and
//! counters only fall if the history is deleted.
//!
//! A probe that cannot answer (the broker down, the landing zone unreadable) reports
//! `cryptolake_probe_up{probe} 0` and its error in the log; the scrape still succeeds.

use std::time::{Duration, Instant};

use cryptolake_jobs::Job;
use cryptolake_jobs::JobContext;
use cryptolake_jobs::maintenance::compact::{Compact, CompactOptions};
use cryptolake_jobs::pipeline::ingest_files::IngestFiles;
use cryptolake_jobs::pipeline::ingest_kafka::IngestKafka;
use cryptolake_jobs::sources::kafka_config::KafkaConfig;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{ConsoleState, Error, Result};

/// How long a probe (a listing, a broker) may take before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Run durations' histogram buckets, in seconds: a one-minute batch to a long backfill.
const DURATION_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

/// What the probes need: a job context (landing zone, lake) and the Kafka settings, when the
/// config has them.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub jobs: Option<JobContext>,
    pub kafka: Option<KafkaConfig>,
}

fn prom(e: prometheus::Error) -> Error {
    Error::Internal(format!("metrics: {e}"))
}

/// A registry and the helpers that add families to it.
struct Families(Registry);

impl Families {
    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(format!("cryptolake_{name}"), help), labels)
            .map_err(prom)?;
        self.0.register(Box::new(c.clone())).map_err(prom)?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(format!("cryptolake_{name}"), help), labels)
            .map_err(prom)?;
        self.0.register(Box::new(g.clone())).map_err(prom)?;
        Ok(g)
    }

    fn ratio(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
        let g =
            GaugeVec::new(Opts::new(format!("cryptolake_{name}"), help), labels).map_err(prom)?;
        self.0.register(Box::new(g.clone())).map_err(prom)?;
        Ok(g)
    }
}

/// The scrape's text.
pub async fn render(state: &ConsoleState) -> Result<String> {
    let started = Instant::now();
    let families = Families(Registry::new());
    let up = families.gauge(
        "probe_up",
        "1 when the probe answered this scrape, 0 when it failed (see the log)",
        &["probe"],
    )?;
    history(&families, state).await?;
    let ok = tables(&families, state).await;
    up.with_label_values(&["tables"]).set(i64::from(ok));
    if let Some(ctx) = &state.probes.jobs {
        let ok = landing(&families, ctx).await;
        up.with_label_values(&["landing"]).set(i64::from(ok));
        if let Some(kafka) = &state.probes.kafka {
            let ok = kafka_lag(&families, ctx, kafka).await;
            up.with_label_values(&["kafka"]).set(i64::from(ok));
        }
    }
    let took = prometheus::Gauge::new(
        "cryptolake_scrape_duration_seconds",
        "How long this scrape took",
    )
    .map_err(prom)?;
    families.0.register(Box::new(took.clone())).map_err(prom)?;
    took.set(started.elapsed().as_secs_f64());
    TextEncoder::new()
        .encode_to_string(&families.0.gather())
        .map_err(prom)
}

/// Runs, durations and per-table figures from the run history.
async fn history(families: &Families, state: &ConsoleState) -> Result<()> {
    let runs = families.counter("runs_total", "Runs by job and state", &["job", "state"])?;
    let durations = HistogramVec::new(
        HistogramOpts::new(
            "cryptolake_run_duration_seconds",
            "Run durations (start to end) by job",
        )
        .buckets(DURATION_BUCKETS.to_vec()),
        &["job"],
    )
    .map_err(prom)?;
    families
        .0
        .register(Box::new(durations.clone()))
        .map_err(prom)?;
    let per_table = [
        (
            "rows_in_total",
            "Rows read for the table by the runs in the history",
        ),
        ("rows_out_total", "Rows written to the table"),
        (
            "rows_quarantined_total",
            "Records set aside in the quarantine",
        ),
        ("rows_duplicate_total", "Records dropped as duplicates"),
        ("files_written_total", "Data files written"),
        ("bytes_written_total", "Bytes of data files written"),
        ("commit_attempts_total", "Commit attempts"),
        (
            "commit_races_lost_total",
            "Commits retried because another writer committed first",
        ),
    ]
    .iter()
    .map(|(name, help)| families.counter(name, help, &["table"]))
    .collect::<Result<Vec<_>>>()?;
    let Some(history) = &state.history else {
        return Ok(());
    };
    for (job, run_state, n) in history.counts().await? {
        runs.with_label_values(&[job.as_str(), run_state.as_str()])
            .inc_by(u64::try_from(n).unwrap_or(0));
    }
    for (job, seconds) in history.durations().await? {
        durations
            .with_label_values(&[job.as_str()])
            .observe(seconds.max(0.0));
    }
    for t in history.table_totals().await? {
        let values = [
            t.rows_in,
            t.rows_out,
            t.quarantined,
            t.duplicates_dropped,
            t.files_written,
            t.bytes_written,
            t.commit_attempts,
            t.races_lost,
        ];
        for (counter, value) in per_table.iter().zip(values) {
            counter.with_label_values(&[t.table.as_str()]).inc_by(value);
        }
    }
    Ok(())
}

/// Each table's current snapshot: records, files, bytes, snapshots kept, and the data files
/// compaction would rewrite now (its own plan, with its defaults). `false` when the lake could
/// not be read.
async fn tables(families: &Families, state: &ConsoleState) -> bool {
    let result = async {
        let gauges = [
            ("table_records", "Records in the table's current snapshot"),
            ("table_data_files", "Live data files"),
            ("table_bytes", "Bytes of live data files"),
            ("table_snapshots", "Snapshots kept"),
            (
                "table_small_files",
                "Live data files compaction would rewrite now",
            ),
        ]
        .iter()
        .map(|(name, help)| families.gauge(name, help, &["table"]))
        .collect::<Result<Vec<_>>>()?;
        let share = families.ratio(
            "table_small_file_share",
            "Share of live data files compaction would rewrite now (0 to 1)",
            &["table"],
        )?;
        for t in crate::data::tables(&state.lake).await? {
            let values = [t.records, t.files, t.bytes, t.snapshots as u64];
            for (gauge, value) in gauges.iter().zip(values) {
                gauge
                    .with_label_values(&[t.table.as_str()])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        if let Some(ctx) = &state.probes.jobs {
            let plan = Compact::new(ctx.clone(), CompactOptions::default())
                .plan()
                .await?;
            for t in plan.tables {
                let small: usize = t.groups.iter().map(|g| g.files_in).sum();
                gauges[4]
                    .with_label_values(&[t.table.as_str()])
                    .set(small as i64);
                let ratio = if t.live_files == 0 {
                    0.0
                } else {
                    small as f64 / t.live_files as f64
                };
                share.with_label_values(&[t.table.as_str()]).set(ratio);
            }
        }
        Ok::<_, Error>(())
    };
    report("tables", tokio::time::timeout(PROBE_TIMEOUT, result).await)
}

fn report(
    probe: &str,
    outcome: std::result::Result<Result<()>, tokio::time::error::Elapsed>,
) -> bool {
    match outcome {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(probe, error = %e, "metrics probe failed");
            false
        }
        Err(_) => {
            tracing::warn!(probe, timeout = ?PROBE_TIMEOUT, "metrics probe timed out");
            false
        }
    }
}

/// Landing files (and bytes) that `ingest-files` would take now, per source.
async fn landing(families: &Families, ctx: &JobContext) -> bool {
    let result = async {
        let files = families.gauge(
            "landing_files_waiting",
            "Landing files ingest-files would take now",
            &["source"],
        )?;
        let bytes = families.gauge(
            "landing_bytes_waiting",
            "Bytes of the landing files waiting",
            &["source"],
        )?;
        let plan = IngestFiles::new(ctx.clone()).plan().await?;
        for s in plan.sources {
            files
                .with_label_values(&[s.source.as_str()])
                .set(s.new_files.len() as i64);
            bytes
                .with_label_values(&[s.source.as_str()])
                .set(i64::try_from(s.new_bytes).unwrap_or(i64::MAX));
        }
        Ok::<_, Error>(())
    };
    report("landing", tokio::time::timeout(PROBE_TIMEOUT, result).await)
}

/// Per topic and partition: the broker's end offset, the bronze table's committed offset, and
/// the lag between them (a partition never read lags by all it still holds).
async fn kafka_lag(families: &Families, ctx: &JobContext, kafka: &KafkaConfig) -> bool {
    let result = async {
        let labels = ["topic", "partition"];
        let end = families.gauge(
            "kafka_end_offset",
            "The partition's high watermark",
            &labels,
        )?;
        let committed = families.gauge(
            "kafka_committed_offset",
            "The next offset the bronze table will read (committed with its snapshot)",
            &labels,
        )?;
        let lag = families.gauge(
            "kafka_lag_messages",
            "Messages in the partition that the bronze table has not taken yet",
            &labels,
        )?;
        let plan = IngestKafka::new(ctx.clone(), kafka.clone()).plan().await?;
        for topic in plan.topics {
            for p in topic.partitions {
                let partition = p.partition.to_string();
                let l = [topic.topic.as_str(), partition.as_str()];
                end.with_label_values(&l).set(p.end);
                if let Some(c) = p.committed {
                    committed.with_label_values(&l).set(c);
                }
                lag.with_label_values(&l).set(p.end - p.start + p.skipped);
            }
        }
        Ok::<_, Error>(())
    };
    report("kafka", tokio::time::timeout(PROBE_TIMEOUT, result).await)
}
