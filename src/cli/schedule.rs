//! `cryptolake schedule list|next|validate|export`: the config's `[[schedule]]` entries and any
//! EventBridge expression, evaluated the way EventBridge Scheduler evaluates them.

use chrono::{DateTime, SecondsFormat, Utc};
use cryptolake_scheduler::config::validate_schedules;
use cryptolake_scheduler::export::{self, Target};
use cryptolake_scheduler::expr::{ScheduleExpression, parse_timezone};
use serde_json::Value;

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule with its expression, zone and next fire time.
    List,
    /// The next fire times of a schedule (by name) or of any `--expression`, one RFC 3339
    /// time per line (in the schedule's zone).
    Next(NextArgs),
    /// Check every schedule: expressions, zones, unique names, known jobs.
    Validate,
    /// Print the schedules as EventBridge Scheduler definitions with a CloudFormation template.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct NextArgs {
    /// A schedule of the config file.
    #[arg(required_unless_present = "expression", conflicts_with = "expression")]
    pub name: Option<String>,
    /// Any expression: rate(...), cron(...) or at(...).
    #[arg(long)]
    pub expression: Option<String>,
    /// IANA time zone for --expression (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Times after this instant (RFC 3339; default now).
    #[arg(long)]
    pub after: Option<String>,
    /// How many times.
    #[arg(short = 'n', default_value_t = 5)]
    pub count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Eventbridge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportTarget {
    /// ECS RunTask of the cryptolake container with the job's command.
    Ecs,
    /// An EventBridge API destination calling the submission API.
    ApiDestination,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = ExportFormat::Eventbridge)]
    pub format: ExportFormat,
    #[arg(long, value_enum, default_value_t = ExportTarget::Ecs)]
    pub target: ExportTarget,
}

pub fn run(cmd: &ScheduleCommand, config: &Config, format: Format) -> Result<(), CliError> {
    match cmd {
        ScheduleCommand::List => list(config, format),
        ScheduleCommand::Next(args) => next(args, config, format),
        ScheduleCommand::Validate => {
            validate(config)?;
            println!("{} schedule(s) valid", config.schedule.len());
            Ok(())
        }
        ScheduleCommand::Export(args) => {
            let target = match args.target {
                ExportTarget::Ecs => Target::Ecs,
                ExportTarget::ApiDestination => Target::ApiDestination,
            };
            let out = export::eventbridge(&config.schedule, target).map_err(config_error)?;
            println!("{}", super::output::to_json(&out)?);
            Ok(())
        }
    }
}

fn config_error(e: cryptolake_scheduler::Error) -> CliError {
    CliError::Config(e.to_string())
}

/// The schedules are valid and name jobs `cryptolake run` knows.
pub fn validate(config: &Config) -> Result<(), CliError> {
    validate_schedules(&config.schedule).map_err(config_error)?;
    // The rules `run all` and `run alerts` evaluate: a bad one fails here, not at 3 a.m.
    config.alert_rules()?;
    let jobs = super::run::job_names();
    if let Some(s) = config.schedule.iter().find(|s| !jobs.contains(&s.job)) {
        return Err(CliError::Config(format!(
            "schedule {:?}: unknown job {:?} (jobs: {})",
            s.name,
            s.job,
            jobs.join(", ")
        )));
    }
    for s in config.schedule.iter().filter(|s| s.job == "poll") {
        let source = s.args.first().map(String::as_str).unwrap_or_default();
        if !cryptolake_jobs::sources::api::POLL_SOURCES.contains(&source) {
            return Err(CliError::Config(format!(
                "schedule {:?}: job \"poll\" needs args = [SOURCE], SOURCE one of {}",
                s.name,
                cryptolake_jobs::sources::api::POLL_SOURCES.join(", ")
            )));
        }
    }
    Ok(())
}

fn list(config: &Config, format: Format) -> Result<(), CliError> {
    let now = Utc::now();
    let mut rows = Vec::new();
    for s in &config.schedule {
        let expression = s.expression().map_err(config_error)?;
        let tz = s.tz().map_err(config_error)?;
        let next = expression.next_after(now, tz).map(|t| {
            t.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        });
        rows.push(row([
            ("name", s.name.clone().into()),
            ("job", s.job.clone().into()),
            ("args", s.args.join(" ").into()),
            ("expression", s.expression.clone().into()),
            ("timezone", s.timezone.clone().into()),
            ("enabled", s.enabled.into()),
            ("next", next.map_or(Value::Null, Value::from)),
        ]));
    }
    let columns = [
        "name",
        "job",
        "args",
        "expression",
        "timezone",
        "enabled",
        "next",
    ];
    print_rows(&rows, &columns, format);
    Ok(())
}

fn next(args: &NextArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let (expression, tz) = match (&args.name, &args.expression) {
        (Some(name), _) => {
            let s = config
                .schedule
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| CliError::Config(format!("no schedule named {name:?}")))?;
            (
                s.expression().map_err(config_error)?,
                s.tz().map_err(config_error)?,
            )
        }
        (None, Some(text)) => {
            let e: ScheduleExpression = text.parse().map_err(config_error)?;
            let tz =
                parse_timezone(args.timezone.as_deref().unwrap_or("UTC")).map_err(config_error)?;
            (e, tz)
        }
        (None, None) => {
            return Err(CliError::Config(
                "give a schedule name or --expression".into(),
            ));
        }
    };
    let after = match &args.after {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map_err(|e| CliError::Config(format!("--after {t:?}: {e} (want RFC 3339)")))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let times: Vec<String> = expression
        .upcoming(after, tz, args.count)
        .iter()
        .map(|t| {
            t.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        })
        .collect();
    match format {
        Format::Json => println!("{}", super::output::to_json(&times)?),
        Format::Text => times.iter().for_each(|t| println!("{t}")),
    }
    Ok(())
}
