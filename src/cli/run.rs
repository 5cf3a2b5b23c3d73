//! `cryptolake run JOB [--dry-run]`: plan, then execute, one job or all in order.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use cryptolake_catalog::Lake;
use cryptolake_catalog::lake::parse_ident;
use cryptolake_jobs::compact::{Compact, CompactOptions};
use cryptolake_jobs::dist::{ClusterSettings, Engine};
use cryptolake_jobs::expire::{ExpireOptions, ExpireSnapshots};
use cryptolake_jobs::gold::Gold;
use cryptolake_jobs::ingest_files::IngestFiles;
use cryptolake_jobs::ingest_kafka::IngestKafka;
use cryptolake_jobs::manifests::{RewriteManifests, RewriteManifestsOptions};
use cryptolake_jobs::orphans::{RemoveOrphans, RemoveOrphansOptions, parse_duration};
use cryptolake_jobs::progress::Progress;
use cryptolake_jobs::silver::Silver;
use cryptolake_jobs::sources::BronzeInput;
use cryptolake_jobs::sources::kafka_config::{KafkaConfig, OnMissingOffsets};
use cryptolake_jobs::{Job, JobContext, RunSummary};
use iceberg::TableIdent;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobName {
    /// New landing files → bronze.<source>.
    IngestFiles,
    /// Every message in the [kafka] topics now → their bronze tables (exactly once).
    IngestKafka,
    /// New bronze rows → silver.quotes, silver.trades, silver.quarantine.
    Silver,
    /// New silver rows → gold candles, market snapshot, trader positions.
    Gold,
    /// ingest-files, ingest-kafka (with a [kafka] section), silver, gold, in order.
    All,
    /// Rewrite small files into files of the target size (bin-pack, `replace` snapshots).
    Compact,
    /// Merge a table's data manifests into one when it has --min-manifests or more.
    RewriteManifests,
    /// Delete files under a table's location that no snapshot reaches (older than --older-than).
    RemoveOrphans,
    /// Remove snapshots older than --older-than (default 5d), keeping --retain-last and every
    /// bookmarked one, and delete the files only they reached.
    ExpireSnapshots,
    /// Table maintenance: compact, rewrite-manifests, expire-snapshots, remove-orphans.
    Maintain,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub job: JobName,
    /// Print the plan (what would be read, written and committed) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Fail the run when more than this fraction of records is bad (overrides the config).
    #[arg(long, env = "CRYPTOLAKE_MAX_BAD_FRACTION")]
    pub max_bad_fraction: Option<f64>,
    /// Roll data files at this many bytes (overrides the config; for compact, overrides each
    /// table's `write.target-file-size-bytes`).
    #[arg(long, alias = "target-size", env = "CRYPTOLAKE_TARGET_FILE_SIZE")]
    pub target_file_size: Option<u64>,
    /// compact: fewest small files that make a partition worth rewriting.
    #[arg(long, default_value_t = 5)]
    pub min_input_files: usize,
    /// compact: only files that may hold rows matching this SQL condition, such as
    /// "symbol = 'BTC-USD' AND event_time >= TIMESTAMP '2026-01-01'".
    #[arg(long = "where", value_name = "CONDITION")]
    pub filter: Option<String>,
    /// compact: commit each file group as soon as it is rewritten instead of all at the end.
    #[arg(long)]
    pub partial_progress: bool,
    /// rewrite-manifests: rewrite a table once it has this many data manifests.
    #[arg(long, default_value_t = 10)]
    pub min_manifests: usize,
    /// Maintenance jobs: only these tables (repeatable); every table when absent.
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// expire-snapshots, remove-orphans: only snapshots or files older than this (3d, 12h,
    /// 30m, 45s); defaults 5d for snapshots and 3d for orphan files.
    #[arg(long)]
    pub older_than: Option<String>,
    /// expire-snapshots: always keep this many of the latest snapshots.
    #[arg(long, default_value_t = 1)]
    pub retain_last: usize,
    /// ingest-kafka: brokers as host:port[,host:port...] (overrides kafka.brokers).
    #[arg(long, env = "CRYPTOLAKE_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Run the job's plans on this Ballista cluster (df://HOST:PORT) instead of in this
    /// process (overrides cluster.url).
    #[arg(long, value_name = "URL", env = "CRYPTOLAKE_CLUSTER")]
    pub cluster: Option<String>,
    /// On a cluster: runs of a job that failed for a reason that can pass, such as a lost
    /// executor (overrides cluster.max_attempts; default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// ingest-kafka: when retention deleted messages never ingested, fail (the default) or
    /// go on from the earliest offset and report how many were skipped.
    #[arg(long, value_enum)]
    pub on_missing_offsets: Option<MissingOffsets>,
}

/// `--on-missing-offsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MissingOffsets {
    Fail,
    Earliest,
}

/// The Kafka settings of this run: the config's, with the flags over them.
fn kafka_config(args: &RunArgs, config: &Config) -> KafkaConfig {
    let mut kafka = config.kafka();
    if let Some(brokers) = &args.brokers {
        kafka.brokers = brokers.clone();
    }
    match args.on_missing_offsets {
        Some(MissingOffsets::Fail) => kafka.on_missing_offsets = OnMissingOffsets::Fail,
        Some(MissingOffsets::Earliest) => kafka.on_missing_offsets = OnMissingOffsets::Earliest,
        None => {}
    }
    kafka
}

/// Where this run's plans run: `--cluster` or `[cluster] url`, else in this process.
fn engine(args: &RunArgs, config: &Config) -> Result<Engine, CliError> {
    let Some(url) = args.cluster.clone().or_else(|| config.cluster.url.clone()) else {
        return Ok(Engine::InProcess);
    };
    let defaults = ClusterSettings::default();
    let settings = ClusterSettings {
        url,
        partitions: config.cluster.partitions,
        max_attempts: args
            .max_attempts
            .or(config.cluster.max_attempts)
            .unwrap_or(defaults.max_attempts),
    };
    settings.validate()?;
    Ok(Engine::Cluster(settings))
}

/// Draws job progress as a bar on stderr when stdout is a terminal and output is text.
#[derive(Debug)]
struct Bar(ProgressBar);

impl Bar {
    fn new(format: Format) -> Self {
        if format != Format::Text || !std::io::stdout().is_terminal() {
            return Self(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(0);
        let style =
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }
}

impl Progress for Bar {
    fn start(&self, stage: &str, total: u64) {
        self.0.set_message(stage.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub async fn run(args: &RunArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let mut settings = config.job_settings();
    if let Some(f) = args.max_bad_fraction {
        settings.max_bad_fraction = f;
    }
    if let Some(t) = args.target_file_size {
        settings.target_file_size = t as usize;
    }
    let lake = Lake::open(&config.catalog).await?;
    let bar = Arc::new(Bar::new(format));
    let ctx = JobContext::new(lake, config.landing.path.clone(), settings)?
        .with_progress(bar.clone())
        .with_engine(engine(args, config)?);
    let jobs = match args.job {
        JobName::All if config.kafka.is_some() => vec![
            JobName::IngestFiles,
            JobName::IngestKafka,
            JobName::Silver,
            JobName::Gold,
        ],
        JobName::All => vec![JobName::IngestFiles, JobName::Silver, JobName::Gold],
        JobName::Maintain => vec![
            JobName::Compact,
            JobName::RewriteManifests,
            JobName::ExpireSnapshots,
            JobName::RemoveOrphans,
        ],
        one => vec![one],
    };
    let tables = args
        .tables
        .iter()
        .map(|t| parse_ident(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plans = serde_json::Map::new();
    let mut summaries = Vec::new();
    for job in jobs {
        let inputs = RunInputs {
            args,
            config,
            ctx: &ctx,
            tables: &tables,
            bar: &bar,
        };
        let (plan, summary) = one(job, &inputs).await?;
        plans.insert(job_name(job).to_string(), plan);
        summaries.extend(summary);
    }
    bar.0.finish_and_clear();
    if args.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Object(plans)).unwrap_or_default()
        );
        return Ok(());
    }
    print_summaries(&summaries, format);
    Ok(())
}

/// What every job of a `run` is built from.
#[derive(Clone, Copy)]
struct RunInputs<'a> {
    args: &'a RunArgs,
    config: &'a Config,
    ctx: &'a JobContext,
    tables: &'a [TableIdent],
    bar: &'a Bar,
}

/// Plans one job from the flags and, unless this is a dry run, executes it.
async fn one(job: JobName, run: &RunInputs<'_>) -> Result<(Value, Option<RunSummary>), CliError> {
    let RunInputs {
        args,
        config,
        ctx,
        tables,
        bar,
    } = *run;
    Ok(match job {
        JobName::IngestFiles => step(IngestFiles::new(ctx.clone()), args.dry_run, bar).await?,
        JobName::IngestKafka => {
            let job = IngestKafka::new(ctx.clone(), kafka_config(args, config));
            step(job, args.dry_run, bar).await?
        }
        JobName::Silver => {
            let kafka = config.kafka().topics;
            let job = Silver::new(ctx.clone()).with_inputs(kafka.iter().map(BronzeInput::kafka));
            step(job, args.dry_run, bar).await?
        }
        JobName::Gold => step(Gold::new(ctx.clone()), args.dry_run, bar).await?,
        JobName::Compact => {
            let options = CompactOptions {
                target_size: args.target_file_size,
                min_input_files: args.min_input_files,
                tables: tables.to_vec(),
                filter: args.filter.clone(),
                partial_progress: args.partial_progress,
            };
            step(Compact::new(ctx.clone(), options), args.dry_run, bar).await?
        }
        JobName::RewriteManifests => {
            let options = RewriteManifestsOptions {
                min_manifests: args.min_manifests,
                tables: tables.to_vec(),
            };
            let job = RewriteManifests::new(ctx.clone(), options);
            step(job, args.dry_run, bar).await?
        }
        JobName::ExpireSnapshots => {
            let options = ExpireOptions {
                older_than: parse_duration(args.older_than.as_deref().unwrap_or("5d"))?,
                retain_last: args.retain_last,
                tables: tables.to_vec(),
            };
            step(
                ExpireSnapshots::new(ctx.clone(), options),
                args.dry_run,
                bar,
            )
            .await?
        }
        JobName::RemoveOrphans => {
            let options = RemoveOrphansOptions {
                older_than: parse_duration(args.older_than.as_deref().unwrap_or("3d"))?,
                tables: tables.to_vec(),
            };
            step(RemoveOrphans::new(ctx.clone(), options), args.dry_run, bar).await?
        }
        JobName::All | JobName::Maintain => unreachable!("expanded above"),
    })
}

/// Plans a job and, unless this is a dry run, executes the plan.
async fn step<J: Job>(
    job: J,
    dry_run: bool,
    bar: &Bar,
) -> Result<(Value, Option<RunSummary>), CliError> {
    bar.start(&format!("{}: planning", J::NAME), 0);
    let plan = job.plan().await?;
    let shown = json!(plan);
    let summary = if dry_run {
        None
    } else {
        cryptolake_jobs::fault::maybe_crash(J::NAME, "before-execute");
        Some(job.execute(plan).await?)
    };
    Ok((shown, summary))
}

fn job_name(job: JobName) -> &'static str {
    match job {
        JobName::IngestFiles => "ingest-files",
        JobName::IngestKafka => "ingest-kafka",
        JobName::Silver => "silver",
        JobName::Gold => "gold",
        JobName::All => "all",
        JobName::Compact => "compact",
        JobName::RewriteManifests => "rewrite-manifests",
        JobName::RemoveOrphans => "remove-orphans",
        JobName::ExpireSnapshots => "expire-snapshots",
        JobName::Maintain => "maintain",
    }
}

fn print_summaries(summaries: &[RunSummary], format: Format) {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(summaries).unwrap_or_default()
        );
        return;
    }
    let mut rows = Vec::new();
    for s in summaries {
        for (table, t) in &s.tables {
            rows.push(row([
                ("job", s.job.clone().into()),
                ("table", table.clone().into()),
                ("rows_in", t.rows_in.into()),
                ("rows_out", t.rows_out.into()),
                ("quarantined", t.quarantined.into()),
                ("duplicates", t.duplicates_dropped.into()),
                ("files", t.files_written.into()),
                ("removed", t.files_removed.into()),
                ("bytes", t.bytes_written.into()),
                ("snapshot", t.snapshot_id.map_or(Value::Null, Value::from)),
            ]));
        }
    }
    if rows.is_empty() {
        println!("nothing new: no snapshot committed");
    } else {
        print_rows(
            &rows,
            &[
                "job",
                "table",
                "rows_in",
                "rows_out",
                "quarantined",
                "duplicates",
                "files",
                "bytes",
                "snapshot",
            ],
            format,
        );
    }
    for (source, c) in summaries.iter().flat_map(|s| &s.sources) {
        if c.skipped > 0 {
            println!(
                "{source}: {} messages deleted by retention were skipped",
                c.skipped
            );
        }
    }
    let ms: u64 = summaries.iter().map(|s| s.duration_ms).sum();
    let commits: usize = summaries.iter().map(RunSummary::commits).sum();
    println!(
        "{commits} snapshot(s) committed in {:.2} s",
        ms as f64 / 1000.0
    );
}

/// Every job name `cryptolake run` accepts, as the CLI spells them.
pub fn job_names() -> Vec<String> {
    use clap::ValueEnum;
    JobName::value_variants()
        .iter()
        .map(|j| job_name(*j).to_string())
        .collect()
}
