//! `cryptolake.toml`: found with `-c FILE`, `CRYPTOLAKE_CONFIG`, or in the working directory;
//! environment variables and flags override it. Relative paths are relative to the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cryptolake_catalog::CatalogConfig;
use cryptolake_cluster::process::{ClusterExecutorConfig, ClusterSchedulerConfig};
use cryptolake_jobs::JobSettings;
use cryptolake_jobs::job::landing::Landing;
use cryptolake_jobs::pipeline::alerts::rules::{AlertRule, AlertSpec, parse_rules};
use cryptolake_jobs::sources::api::{POLL_SOURCES, PollSettings};
use cryptolake_jobs::sources::defined::SourceDef;
use cryptolake_jobs::sources::kafka_config::KafkaConfig;
use cryptolake_scheduler::{ScheduleSpec, SchedulerConfig};
use serde::{Deserialize, Serialize};

use super::CliError;

/// The prefix of environment variables that set any config key: `CRYPTOLAKE__CATALOG__TYPE=glue`
/// sets `[catalog] type`, `CRYPTOLAKE__CLUSTER__EXECUTOR__CONCURRENT_TASKS=4` sets
/// `[cluster.executor] concurrent_tasks` (what a container or pod is configured with).
pub const ENV_PREFIX: &str = "CRYPTOLAKE__";

/// Sets `table`'s keys from `CRYPTOLAKE__A__B=value` variables. A value is read as a TOML value
/// when it is one (`4`, `true`, `["a"]`), as a string otherwise.
fn overlay_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), CliError> {
    for (name, value) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(CliError::Config(format!("{name}: an empty key")));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let (last, parents) = keys.split_last().expect("at least one key");
        let mut at = &mut *table;
        for key in parents {
            let entry = at
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry
                .as_table_mut()
                .ok_or_else(|| CliError::Config(format!("{name}: `{key}` is not a section")))?;
        }
        at.insert(last.clone(), parsed);
    }
    Ok(())
}

/// A landing location relative to `base` when it is a relative local path; URLs as they are.
pub fn resolve_landing(base: &Path, location: &str) -> String {
    if location.contains("://") || Path::new(location).is_absolute() {
        return location.to_string();
    }
    base.join(location).to_string_lossy().into_owned()
}

/// The config file's name in a project directory.
pub const CONFIG_FILE: &str = "cryptolake.toml";

/// Landing files: `<path>/<source>/**`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LandingConfig {
    /// A local directory (relative to the config file) or `s3://BUCKET/PREFIX`, reached with
    /// the catalog's region, endpoint and the AWS default credential chain.
    pub path: String,
}

impl Default for LandingConfig {
    fn default() -> Self {
        Self {
            path: "lake/landing".into(),
        }
    }
}

/// Job settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Data files roll at this size (Iceberg's `write.target-file-size-bytes`).
    pub target_file_size_bytes: u64,
    /// Glue's error threshold: fail the silver run when more than this fraction is bad.
    pub max_bad_fraction: f64,
    pub batch_size: usize,
    /// Tasks per stage when jobs run in this process (Spark's `local[N]`); by default the
    /// machine's cores. On a cluster, the executors' task slots decide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        let d = JobSettings::default();
        Self {
            target_file_size_bytes: d.target_file_size as u64,
            max_bad_fraction: d.max_bad_fraction,
            batch_size: d.batch_size,
            parallelism: None,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub catalog: CatalogConfig,
    pub landing: LandingConfig,
    pub jobs: JobsConfig,
    /// EventBridge-style schedules the scheduler daemon fires (`cryptolake scheduler`).
    pub schedule: Vec<ScheduleSpec>,
    /// The scheduler daemon and its submission API.
    pub scheduler: SchedulerConfig,
    /// Kafka brokers and topics for `ingest-kafka`; when present, `run all` ingests them too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaConfig>,
    /// A Ballista cluster: where jobs run (`url`) and how its processes start.
    pub cluster: ClusterConfig,
    /// Price alert rules (`[[alert]]`): `run alerts` evaluates them, and `run all` when any
    /// exist.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alert: Vec<AlertSpec>,
    /// `[assets]`: how `run assets` keeps silver.assets.
    #[serde(skip_serializing_if = "AssetsConfig::is_default")]
    pub assets: AssetsConfig,
    /// `[[source]]`: landing sources beyond the built-in ones, with their silver mapping.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<SourceDef>,
    /// `[poll.<source>]`: how `cryptolake poll SOURCE` fetches each API.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub poll: BTreeMap<String, PollSettings>,
}

/// `[assets]`: the assets dimension.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssetsConfig {
    /// Keep every version of an asset (SCD type 2: `valid_from`, `valid_to`) instead of
    /// replacing a changed row.
    pub history: bool,
}

impl AssetsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[cluster]`: jobs run on the cluster at `url` when it is set (or `--cluster` is given), in
/// this process otherwise; `[cluster.scheduler]` and `[cluster.executor]` configure
/// `cryptolake cluster scheduler|executor`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `df://HOST:PORT` of the scheduler jobs are submitted to.
    pub url: Option<String>,
    /// Tasks per stage; by default the executors' task slots.
    pub partitions: Option<usize>,
    /// Runs of a job the cluster failed for a reason that can pass (default 3).
    pub max_attempts: Option<u32>,
    pub scheduler: ClusterSchedulerConfig,
    pub executor: ClusterExecutorConfig,
}

impl Config {
    /// Loads the file (or the defaults when there is none), applies `CRYPTOLAKE__SECTION__KEY`
    /// environment variables over it and resolves its relative paths.
    pub fn load(explicit: Option<&Path>) -> Result<Self, CliError> {
        let found = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(CONFIG_FILE)).filter(|p| p.exists()),
        };
        let cwd = std::env::current_dir()
            .map_err(|e| CliError::Config(format!("no working directory: {e}")))?;
        let (text, base, name) = match &found {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                let base = path.parent().map(|p| cwd.join(p)).unwrap_or(cwd);
                (text, base, path.display().to_string())
            }
            None => (String::new(), cwd, "the defaults".to_string()),
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| CliError::Config(format!("{name}: {e}")))?;
        overlay_env(&mut table, std::env::vars())?;
        let mut config: Config = table
            .try_into()
            .map_err(|e| CliError::Config(format!("{name}: {e}")))?;
        if let Some(source) = config
            .poll
            .keys()
            .find(|s| !POLL_SOURCES.contains(&s.as_str()))
        {
            return Err(CliError::Config(format!(
                "{name}: [poll.{source}]: no such poller; sources: {}",
                POLL_SOURCES.join(", ")
            )));
        }
        config.resolve(&base);
        // Every job, on this process or an executor started with this file, knows them.
        cryptolake_jobs::sources::defined::register(&config.source)?;
        Ok(config)
    }

    fn resolve(&mut self, base: &Path) {
        self.catalog.resolve_paths(base);
        self.scheduler.resolve_paths(base);
        if let Ok(token) = std::env::var("CRYPTOLAKE_API_TOKEN")
            && !token.is_empty()
        {
            self.scheduler.token = Some(token);
        }
        if let Some(kafka) = &mut self.kafka
            && let Some(ca) = &kafka.ssl_ca_location
            && Path::new(ca).is_relative()
        {
            kafka.ssl_ca_location = Some(base.join(ca).to_string_lossy().into_owned());
        }
        self.landing.path = resolve_landing(base, &self.landing.path);
    }

    /// The landing zone: a local directory or an S3 prefix on the catalog's S3.
    pub fn landing(&self) -> Result<Landing, CliError> {
        Ok(Landing::parse(
            &self.landing.path,
            self.catalog.s3_settings(),
        )?)
    }

    /// The Kafka settings: the `[kafka]` section, or seed 001's defaults without one.
    pub fn kafka(&self) -> KafkaConfig {
        self.kafka.clone().unwrap_or_default()
    }

    /// The `[[alert]]` rules, validated: a rule that does not is a usage error naming it.
    pub fn alert_rules(&self) -> Result<Vec<AlertRule>, CliError> {
        Ok(parse_rules(&self.alert)?)
    }

    pub fn job_settings(&self) -> JobSettings {
        JobSettings {
            target_file_size: self.jobs.target_file_size_bytes as usize,
            max_bad_fraction: self.jobs.max_bad_fraction,
            batch_size: self.jobs.batch_size,
            parallelism: self
                .jobs
                .parallelism
                .unwrap_or_else(|| JobSettings::default().parallelism),
        }
    }

    /// The file `init` writes: this catalog and landing zone (by default `lake/landing`),
    /// paths relative to the file, and the weekly table maintenance Glue users schedule
    /// (Sunday 03:00 UTC).
    pub fn init_text(catalog: CatalogConfig, landing: Option<&str>) -> String {
        let defaults = Config {
            catalog,
            landing: LandingConfig {
                path: landing.map_or_else(|| LandingConfig::default().path, str::to_string),
            },
            schedule: vec![ScheduleSpec::new(
                "weekly-maintenance",
                "maintain",
                "cron(0 3 ? * SUN *)",
            )],
            ..Config::default()
        };
        format!(
            "# cryptolake configuration (see `cryptolake --help`).\n\
             # Relative paths are relative to this file. Environment variables and flags\n\
             # override these values (CRYPTOLAKE_WAREHOUSE, CRYPTOLAKE_LANDING, ...).\n\n{}",
            toml::to_string_pretty(&defaults).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_text_round_trips_and_resolves_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CONFIG_FILE);
        std::fs::write(&file, Config::init_text(CatalogConfig::default(), None)).unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.catalog.path, dir.path().join("lake/catalog.db"));
        assert_eq!(
            config.landing().unwrap(),
            Landing::Local(dir.path().join("lake/landing"))
        );
        std::fs::write(
            &file,
            Config::init_text(CatalogConfig::default(), Some("s3://raw/zone")),
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.landing.path, "s3://raw/zone");
        assert!(config.landing().unwrap().is_s3());
        assert_eq!(config.jobs, JobsConfig::default());
        assert_eq!(config.schedule.len(), 1);
        assert_eq!(config.schedule[0].job, "maintain");
        assert_eq!(config.schedule[0].expression, "cron(0 3 ? * SUN *)");
    }

    #[test]
    fn parallelism_defaults_to_the_cores_and_can_be_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[jobs]\nbatch_size = 100\n").unwrap();
        let cores = JobSettings::default().parallelism;
        assert_eq!(
            Config::load(Some(&file))
                .unwrap()
                .job_settings()
                .parallelism,
            cores
        );
        std::fs::write(&file, "[jobs]\nparallelism = 4\n").unwrap();
        let settings = Config::load(Some(&file)).unwrap().job_settings();
        assert_eq!((settings.parallelism, settings.batch_size), (4, 8192));
    }

    #[test]
    fn the_kafka_section_takes_brokers_and_topics() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[kafka]\nbrokers = \"b1:9092,b2:9092\"\nssl_ca_location = \"ca.pem\"\n\
             [[kafka.topics]]\ntopic = \"coinbase-trades\"\nformat = \"trades\"\n",
        )
        .unwrap();
        let kafka = Config::load(Some(&file)).unwrap().kafka();
        assert_eq!(kafka.broker_list(), ["b1:9092", "b2:9092"]);
        assert_eq!(kafka.topics.len(), 1);
        assert_eq!(kafka.topics[0].table(), "bronze.coinbase_trades");
        let ca = dir.path().join("ca.pem");
        assert_eq!(kafka.ssl_ca_location.as_deref(), ca.to_str());
        assert_eq!(Config::default().kafka().topics.len(), 2);
    }

    #[test]
    fn environment_variables_set_any_key() {
        let mut table: toml::Table =
            toml::from_str("[catalog]\nname = \"x\"\n[jobs]\nbatch_size = 100\n").unwrap();
        let vars = [
            ("CRYPTOLAKE__CATALOG__TYPE", "glue"),
            ("CRYPTOLAKE__JOBS__BATCH_SIZE", "64"),
            ("CRYPTOLAKE__CLUSTER__EXECUTOR__BIND_HOST", "0.0.0.0"),
            ("CRYPTOLAKE__LANDING__PATH", "s3://raw/zone"),
            ("CRYPTOLAKE_WAREHOUSE", "ignored: one underscore"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        overlay_env(&mut table, vars.into_iter()).unwrap();
        let config: Config = table.try_into().unwrap();
        assert_eq!(config.catalog.name, "x");
        assert_eq!(
            config.catalog.kind,
            cryptolake_catalog::config::CatalogKind::Glue
        );
        assert_eq!(config.jobs.batch_size, 64);
        assert_eq!(config.cluster.executor.bind_host, "0.0.0.0");
        assert_eq!(config.landing.path, "s3://raw/zone");
        let mut table = toml::Table::new();
        let bad = [(
            "CRYPTOLAKE__JOBS__BATCH_SIZE__X".to_string(),
            "1".to_string(),
        )];
        overlay_env(&mut table, bad.clone().into_iter()).unwrap();
        let mut table: toml::Table = toml::from_str("[jobs]\nbatch_size = 1\n").unwrap();
        let err = overlay_env(&mut table, bad.into_iter())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a section"), "{err}");
    }

    #[test]
    fn alert_rules_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[alert]]\nname = \"btc-above\"\nsymbol = \"BTC-USD\"\nwhen = \"price > 43000\"\n\
             sns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:alerts\"\n\
             [[alert]]\nname = \"drop\"\nsymbol = \"*\"\nwhen = \"change_pct(1h) < -3\"\n\
             webhook_url = \"https://hooks.example.com/crypto\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        let rules = config.alert_rules().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[1].spec.webhook_url.as_deref(),
            Some("https://hooks.example.com/crypto")
        );
        std::fs::write(
            &file,
            "[[alert]]\nname = \"x\"\nsymbol = \"*\"\nwhen = \"price ~ 1\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&file))
            .unwrap()
            .alert_rules()
            .unwrap_err();
        assert!(err.to_string().contains("\"x\": when"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[catalog]\nwarehose = \"x\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("warehose"), "{err}");
    }
}
