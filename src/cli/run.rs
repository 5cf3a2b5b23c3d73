//! `cryptolake run JOB [--dry-run]`: plan, then execute, one job or all in order.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use cryptolake_catalog::Lake;
use cryptolake_catalog::lake::parse_ident;
use cryptolake_jobs::job::context::{ClusterSettings, Engine};
use cryptolake_jobs::job::progress::Progress;
use cryptolake_jobs::maintenance::compact::{Compact, CompactOptions};
use cryptolake_jobs::maintenance::expire_snapshots::{ExpireOptions, ExpireSnapshots};
use cryptolake_jobs::maintenance::options::parse_duration;
use cryptolake_jobs::maintenance::remove_orphans::{RemoveOrphans, RemoveOrphansOptions};
use cryptolake_jobs::maintenance::rewrite_manifests::{RewriteManifests, RewriteManifestsOptions};
use cryptolake_jobs::pipeline::alerts::Alerts;
use cryptolake_jobs::pipeline::assets::Assets;
use cryptolake_jobs::pipeline::gold::Gold;
use cryptolake_jobs::pipeline::ingest_files::IngestFiles;
use cryptolake_jobs::pipeline::ingest_kafka::IngestKafka;
use cryptolake_jobs::pipeline::silver::Silver;
use cryptolake_jobs::sources::BronzeInput;
use cryptolake_jobs::sources::kafka_config::{KafkaConfig, OnMissingOffsets};
use cryptolake_jobs::{Job, JobContext, RunSummary};
use iceberg::TableIdent;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

/// The jobs `run` runs, one name each as the CLI spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobName {
    IngestFiles,
    IngestKafka,
    Silver,
    Gold,
    Alerts,
    Assets,
    All,
    Compact,
    RewriteManifests,
    RemoveOrphans,
    ExpireSnapshots,
    Maintain,
    Poll,
}

impl JobName {
    const ALL: [JobName; 13] = [
        JobName::IngestFiles,
        JobName::IngestKafka,
        JobName::Silver,
        JobName::Gold,
        JobName::Alerts,
        JobName::Assets,
        JobName::All,
        JobName::Compact,
        JobName::RewriteManifests,
        JobName::RemoveOrphans,
        JobName::ExpireSnapshots,
        JobName::Maintain,
        JobName::Poll,
    ];
}

/// `cryptolake run JOB [FLAGS]`: each job takes its own flags.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(subcommand)]
    pub job: RunJob,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RunJob {
    /// New landing files (and files changed since they were taken) → bronze.<source>.
    IngestFiles {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        landing: LandingArgs,
    },
    /// Every message in the [kafka] topics now → their bronze tables (exactly once).
    IngestKafka {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// New bronze rows → silver.quotes, silver.trades, silver.quarantine.
    Silver {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        silver: SilverArgs,
    },
    /// New silver rows → gold candles, market snapshot, trader positions.
    Gold(CommonArgs),
    /// The [[alert]] rules on new silver quotes: firings → gold.alerts, then SNS and webhooks.
    Alerts(CommonArgs),
    /// New CoinCap assets and CoinAPI icons in bronze → silver.assets, an upsert (with
    /// [assets] history = true, SCD type 2).
    Assets(CommonArgs),
    /// ingest-files, ingest-kafka (with a [kafka] section), silver, gold, and alerts (with
    /// [[alert]] rules), in order.
    All {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        landing: LandingArgs,
        #[command(flatten)]
        silver: SilverArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Rewrite small files into files of the target size (bin-pack, `replace` snapshots).
    Compact {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        compact: CompactArgs,
        #[command(flatten)]
        tables: TableArgs,
    },
    /// Merge a table's data manifests into one when it has --min-manifests or more.
    RewriteManifests {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        tables: TableArgs,
    },
    /// Delete files under a table's location that no snapshot reaches (older than --older-than).
    RemoveOrphans {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        age: AgeArgs,
        #[command(flatten)]
        tables: TableArgs,
    },
    /// Remove snapshots older than --older-than (default 5d), keeping --retain-last and every
    /// bookmarked one, and delete the files only they reached.
    ExpireSnapshots {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        age: AgeArgs,
        #[command(flatten)]
        retain: RetainArgs,
        #[command(flatten)]
        tables: TableArgs,
    },
    /// Fetch a market-data API into the landing zone or Kafka (as `cryptolake poll`).
    Poll(super::poll::PollArgs),
    /// Table maintenance: compact, rewrite-manifests, expire-snapshots, remove-orphans.
    Maintain {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        compact: CompactArgs,
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        age: AgeArgs,
        #[command(flatten)]
        retain: RetainArgs,
        #[command(flatten)]
        tables: TableArgs,
    },
}

/// Flags every job takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// Print the plan (what would be read, written and committed) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Roll data files at this many bytes (overrides the config; for compact, overrides each
    /// table's `write.target-file-size-bytes`).
    #[arg(long, alias = "target-size", env = "CRYPTOLAKE_TARGET_FILE_SIZE")]
    pub target_file_size: Option<u64>,
    /// Run the job's plans on this Ballista cluster (df://HOST:PORT) instead of in this
    /// process (overrides cluster.url).
    #[arg(long, value_name = "URL", env = "CRYPTOLAKE_CLUSTER")]
    pub cluster: Option<String>,
    /// On a cluster: runs of a job that failed for a reason that can pass, such as a lost
    /// executor (overrides cluster.max_attempts; default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
}

/// silver's flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SilverArgs {
    /// Fail the run when more than this fraction of records is bad (overrides the config).
    #[arg(long, env = "CRYPTOLAKE_MAX_BAD_FRACTION")]
    pub max_bad_fraction: Option<f64>,
}

/// ingest-files' flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LandingArgs {
    /// List every landing file anew. On S3 a listing starts by default from the directory of
    /// the newest file taken (`start-after`), so its cost does not grow with the bucket's
    /// history; a file written under an older key is found by a full listing.
    #[arg(long)]
    pub full_listing: bool,
}

/// ingest-kafka's flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaArgs {
    /// Brokers as host:port[,host:port...] (overrides kafka.brokers).
    #[arg(long, env = "CRYPTOLAKE_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// When retention deleted messages never ingested, fail (the default) or go on from the
    /// earliest offset and report how many were skipped.
    #[arg(long, value_enum)]
    pub on_missing_offsets: Option<MissingOffsets>,
}

/// compact's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CompactArgs {
    /// Fewest small files that make a partition worth rewriting.
    #[arg(long, default_value_t = 5)]
    pub min_input_files: usize,
    /// Only files that may hold rows matching this SQL condition, such as
    /// "symbol = 'BTC-USD' AND event_time >= TIMESTAMP '2026-01-01'".
    #[arg(long = "where", value_name = "CONDITION")]
    pub filter: Option<String>,
    /// Commit each file group as soon as it is rewritten instead of all at the end.
    #[arg(long)]
    pub partial_progress: bool,
}

/// rewrite-manifests' flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ManifestArgs {
    /// Rewrite a table once it has this many data manifests.
    #[arg(long, default_value_t = 10)]
    pub min_manifests: usize,
}

/// The age threshold of expire-snapshots and remove-orphans.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgeArgs {
    /// Only snapshots or files older than this (3d, 12h, 30m, 45s); defaults 5d for
    /// snapshots and 3d for orphan files.
    #[arg(long)]
    pub older_than: Option<String>,
}

/// expire-snapshots' floor.
#[derive(Debug, Clone, clap::Args)]
pub struct RetainArgs {
    /// Always keep this many of the latest snapshots.
    #[arg(long, default_value_t = 1)]
    pub retain_last: usize,
}

/// Which tables a maintenance job takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TableArgs {
    /// Only these tables (repeatable); every table when absent.
    #[arg(long = "table")]
    pub tables: Vec<String>,
}

/// Every job's settings for one `run`, the flags its job does not take at their defaults.
#[derive(Debug, Clone, Default)]
struct RunOptions {
    common: CommonArgs,
    landing: LandingArgs,
    silver: SilverArgs,
    kafka: KafkaArgs,
    compact: CompactArgs,
    manifests: ManifestArgs,
    age: AgeArgs,
    retain: RetainArgs,
    tables: TableArgs,
}

impl Default for CompactArgs {
    fn default() -> Self {
        Self {
            min_input_files: 5,
            filter: None,
            partial_progress: false,
        }
    }
}

impl Default for ManifestArgs {
    fn default() -> Self {
        Self { min_manifests: 10 }
    }
}

impl Default for RetainArgs {
    fn default() -> Self {
        Self { retain_last: 1 }
    }
}

impl RunJob {
    /// The job named and every job's settings (the flags it does not take at their defaults,
    /// which are clap's defaults too).
    fn options(&self) -> (JobName, RunOptions) {
        use RunJob as R;
        let d = RunOptions::default;
        match self.clone() {
            R::IngestFiles { common, landing } => (
                JobName::IngestFiles,
                RunOptions {
                    common,
                    landing,
                    ..d()
                },
            ),
            R::Gold(common) => (JobName::Gold, RunOptions { common, ..d() }),
            R::Alerts(common) => (JobName::Alerts, RunOptions { common, ..d() }),
            R::Assets(common) => (JobName::Assets, RunOptions { common, ..d() }),
            R::IngestKafka { common, kafka } => (
                JobName::IngestKafka,
                RunOptions {
                    common,
                    kafka,
                    ..d()
                },
            ),
            R::Silver { common, silver } => (
                JobName::Silver,
                RunOptions {
                    common,
                    silver,
                    ..d()
                },
            ),
            R::All {
                common,
                landing,
                silver,
                kafka,
            } => {
                let o = RunOptions {
                    common,
                    landing,
                    silver,
                    kafka,
                    ..d()
                };
                (JobName::All, o)
            }
            R::Compact {
                common,
                compact,
                tables,
            } => {
                let o = RunOptions {
                    common,
                    compact,
                    tables,
                    ..d()
                };
                (JobName::Compact, o)
            }
            R::RewriteManifests {
                common,
                manifests,
                tables,
            } => {
                let o = RunOptions {
                    common,
                    manifests,
                    tables,
                    ..d()
                };
                (JobName::RewriteManifests, o)
            }
            R::RemoveOrphans {
                common,
                age,
                tables,
            } => {
                let o = RunOptions {
                    common,
                    age,
                    tables,
                    ..d()
                };
                (JobName::RemoveOrphans, o)
            }
            R::ExpireSnapshots {
                common,
                age,
                retain,
                tables,
            } => {
                let o = RunOptions {
                    common,
                    age,
                    retain,
                    tables,
                    ..d()
                };
                (JobName::ExpireSnapshots, o)
            }
            // `run` hands poll to its own module before asking for options.
            R::Poll(_) => (JobName::Poll, d()),
            R::Maintain {
                common,
                compact,
                manifests,
                age,
                retain,
                tables,
            } => {
                let o = RunOptions {
                    common,
                    compact,
                    manifests,
                    age,
                    retain,
                    tables,
                    ..d()
                };
                (JobName::Maintain, o)
            }
        }
    }
}

/// `--on-missing-offsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MissingOffsets {
    Fail,
    Earliest,
}

/// The Kafka settings of this run: the config's, with the flags over them.
fn kafka_config(args: &RunOptions, config: &Config) -> KafkaConfig {
    let mut kafka = config.kafka();
    if let Some(brokers) = &args.kafka.brokers {
        kafka.brokers = brokers.clone();
    }
    match args.kafka.on_missing_offsets {
        Some(MissingOffsets::Fail) => kafka.on_missing_offsets = OnMissingOffsets::Fail,
        Some(MissingOffsets::Earliest) => kafka.on_missing_offsets = OnMissingOffsets::Earliest,
        None => {}
    }
    kafka
}

/// Where this run's plans run: `--cluster` or `[cluster] url`, else in this process.
fn engine(args: &RunOptions, config: &Config) -> Result<Engine, CliError> {
    let Some(url) = args
        .common
        .cluster
        .clone()
        .or_else(|| config.cluster.url.clone())
    else {
        return Ok(Engine::InProcess);
    };
    let defaults = ClusterSettings::default();
    let settings = ClusterSettings {
        url,
        partitions: config.cluster.partitions,
        max_attempts: args
            .common
            .max_attempts
            .or(config.cluster.max_attempts)
            .unwrap_or(defaults.max_attempts),
    };
    settings.validate()?;
    Ok(Engine::Cluster(settings))
}

/// Draws job progress as a bar on stderr, where indicatif draws, when stderr is a terminal and
/// output is text (so `run all > summary.txt` in a terminal still shows the bar, and a log
/// file of stderr never gets one).
#[derive(Debug)]
struct Bar(ProgressBar);

impl Bar {
    fn new(format: Format) -> Self {
        if format != Format::Text || !std::io::stderr().is_terminal() {
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
    if let RunJob::Poll(poll) = &args.job {
        return super::poll::run(poll, config, format).await;
    }
    let (job, args) = args.job.options();
    let args = &args;
    let mut settings = config.job_settings();
    if let Some(f) = args.silver.max_bad_fraction {
        settings.max_bad_fraction = f;
    }
    if let Some(t) = args.common.target_file_size {
        settings.target_file_size = t as usize;
    }
    let lake = Lake::open(&config.catalog).await?;
    let bar = Arc::new(Bar::new(format));
    let ctx = JobContext::new(lake, config.landing()?, settings)?
        .with_progress(bar.clone())
        .with_engine(engine(args, config)?);
    let jobs = match job {
        JobName::All => {
            let mut all = vec![JobName::IngestFiles];
            if config.kafka.is_some() {
                all.push(JobName::IngestKafka);
            }
            all.extend([JobName::Silver, JobName::Gold]);
            if !config.alert.is_empty() {
                all.push(JobName::Alerts);
            }
            all
        }
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
    if args.common.dry_run {
        // A JSON value always prints (`{:#}` is pretty and infallible).
        println!("{:#}", Value::Object(plans));
        return Ok(());
    }
    print_summaries(&summaries, format)?;
    Ok(())
}

/// What every job of a `run` is built from.
#[derive(Clone, Copy)]
struct RunInputs<'a> {
    args: &'a RunOptions,
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
        JobName::IngestFiles => {
            let job = IngestFiles::new(ctx.clone()).with_full_listing(args.landing.full_listing);
            step(job, args.common.dry_run, bar).await?
        }
        JobName::IngestKafka => {
            let job = IngestKafka::new(ctx.clone(), kafka_config(args, config));
            step(job, args.common.dry_run, bar).await?
        }
        JobName::Silver => {
            let kafka = config.kafka().topics;
            let job = Silver::new(ctx.clone()).with_inputs(kafka.iter().map(BronzeInput::kafka));
            step(job, args.common.dry_run, bar).await?
        }
        JobName::Gold => step(Gold::new(ctx.clone()), args.common.dry_run, bar).await?,
        JobName::Alerts => {
            let job = Alerts::new(ctx.clone(), config.alert_rules()?);
            step(job, args.common.dry_run, bar).await?
        }
        JobName::Assets => {
            let job = Assets::new(ctx.clone()).with_history(config.assets.history);
            step(job, args.common.dry_run, bar).await?
        }
        JobName::Compact => {
            let options = CompactOptions {
                target_size: args.common.target_file_size,
                min_input_files: args.compact.min_input_files,
                tables: tables.to_vec(),
                filter: args.compact.filter.clone(),
                partial_progress: args.compact.partial_progress,
            };
            step(Compact::new(ctx.clone(), options), args.common.dry_run, bar).await?
        }
        JobName::RewriteManifests => {
            let options = RewriteManifestsOptions {
                min_manifests: args.manifests.min_manifests,
                tables: tables.to_vec(),
            };
            let job = RewriteManifests::new(ctx.clone(), options);
            step(job, args.common.dry_run, bar).await?
        }
        JobName::ExpireSnapshots => {
            let options = ExpireOptions {
                older_than: parse_duration(args.age.older_than.as_deref().unwrap_or("5d"))?,
                retain_last: args.retain.retain_last,
                tables: tables.to_vec(),
            };
            step(
                ExpireSnapshots::new(ctx.clone(), options),
                args.common.dry_run,
                bar,
            )
            .await?
        }
        JobName::RemoveOrphans => {
            let options = RemoveOrphansOptions {
                older_than: parse_duration(args.age.older_than.as_deref().unwrap_or("3d"))?,
                tables: tables.to_vec(),
            };
            step(
                RemoveOrphans::new(ctx.clone(), options),
                args.common.dry_run,
                bar,
            )
            .await?
        }
        JobName::All | JobName::Maintain => unreachable!("expanded above"),
        JobName::Poll => unreachable!("run() polls before planning table jobs"),
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
        cryptolake_jobs::job::fault::maybe_crash(J::NAME, "before-execute");
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
        JobName::Alerts => "alerts",
        JobName::Assets => "assets",
        JobName::All => "all",
        JobName::Compact => "compact",
        JobName::RewriteManifests => "rewrite-manifests",
        JobName::RemoveOrphans => "remove-orphans",
        JobName::ExpireSnapshots => "expire-snapshots",
        JobName::Maintain => "maintain",
        JobName::Poll => "poll",
    }
}

fn print_summaries(summaries: &[RunSummary], format: Format) -> Result<(), CliError> {
    if format == Format::Json {
        println!("{}", super::output::to_json(summaries)?);
        return Ok(());
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
    Ok(())
}

/// Every job name `cryptolake run` accepts, as the CLI spells them.
pub fn job_names() -> Vec<String> {
    JobName::ALL
        .iter()
        .map(|j| job_name(*j).to_string())
        .collect()
}
