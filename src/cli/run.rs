//! `cryptolake run JOB [--dry-run]`: plan, then execute, one job or all in order.

use std::io::IsTerminal;
use std::time::Duration;

use cryptolake_catalog::Lake;
use cryptolake_jobs::gold::Gold;
use cryptolake_jobs::ingest_files::IngestFiles;
use cryptolake_jobs::silver::Silver;
use cryptolake_jobs::{JobContext, RunSummary};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobName {
    /// New landing files → bronze.<source>.
    IngestFiles,
    /// New bronze rows → silver.quotes, silver.trades, silver.quarantine.
    Silver,
    /// New silver rows → gold candles, market snapshot, trader positions.
    Gold,
    /// ingest-files, silver, gold, in order.
    All,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub job: JobName,
    /// Print the plan (what would be read, written and committed) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Fail the run when more than this fraction of records is bad (overrides the config).
    #[arg(long)]
    pub max_bad_fraction: Option<f64>,
    /// Roll data files at this many bytes (overrides the config).
    #[arg(long)]
    pub target_file_size: Option<u64>,
}

fn spinner(format: Format) -> ProgressBar {
    if format == Format::Text && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
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
    let ctx = JobContext::new(lake, config.landing.path.clone(), settings)?;
    let jobs = match args.job {
        JobName::All => vec![JobName::IngestFiles, JobName::Silver, JobName::Gold],
        one => vec![one],
    };
    let bar = spinner(format);
    let mut plans = serde_json::Map::new();
    let mut summaries = Vec::new();
    for job in jobs {
        let name = job_name(job);
        bar.set_message(format!("{name}: planning"));
        let (plan, summary) = match job {
            JobName::IngestFiles => {
                let b = IngestFiles::new(ctx.clone());
                let plan = b.plan().await?;
                let shown = json!(plan);
                (
                    shown,
                    if args.dry_run {
                        None
                    } else {
                        bar.set_message(format!("{name}: running"));
                        Some(b.execute(plan).await?)
                    },
                )
            }
            JobName::Silver => {
                let b = Silver::new(ctx.clone());
                let plan = b.plan().await?;
                let shown = json!(plan);
                (
                    shown,
                    if args.dry_run {
                        None
                    } else {
                        bar.set_message(format!("{name}: running"));
                        Some(b.execute(plan).await?)
                    },
                )
            }
            JobName::Gold => {
                let b = Gold::new(ctx.clone());
                let plan = b.plan().await?;
                let shown = json!(plan);
                (
                    shown,
                    if args.dry_run {
                        None
                    } else {
                        bar.set_message(format!("{name}: running"));
                        Some(b.execute(plan).await?)
                    },
                )
            }
            JobName::All => unreachable!("expanded above"),
        };
        plans.insert(name.to_string(), plan);
        summaries.extend(summary);
    }
    bar.finish_and_clear();
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

fn job_name(job: JobName) -> &'static str {
    match job {
        JobName::IngestFiles => "ingest-files",
        JobName::Silver => "silver",
        JobName::Gold => "gold",
        JobName::All => "all",
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
    let ms: u64 = summaries.iter().map(|s| s.duration_ms).sum();
    let commits: usize = summaries.iter().map(RunSummary::commits).sum();
    println!(
        "{commits} snapshot(s) committed in {:.2} s",
        ms as f64 / 1000.0
    );
}
