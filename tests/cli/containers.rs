//! The compose cluster (docker/compose.yaml): a Ballista scheduler, executors, moto's S3 and
//! Glue, tansu and the schedule daemon as containers on a private network, the images built
//! by docker/build.sh from the binary these tests run. The pipeline on it equals the
//! in-process one row for row; an executor killed mid-job costs nothing. Skipped, saying why,
//! where no Docker engine answers. The Kubernetes manifests are checked against the
//! Kubernetes schemas.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::checksum_query;
use crate::common::{BIN, Project};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a Docker engine answers; when it does not, why.
fn docker() -> Result<(), String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("no docker command: {e}")),
    }
}

/// Builds the images once per test run, from this test run's binary.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(repo().join("docker/build.sh"))
            .args(["--binary", BIN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker/build.sh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    });
}

/// One compose cluster at a time: they would share the machine's two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A compose project of docker/compose.yaml, taken down (with its volumes) when dropped.
struct Compose {
    project: String,
    api_port: u16,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Compose {
    /// Brings the cluster up with `executors` executors, or says why it cannot.
    fn up(executors: usize) -> Option<Self> {
        if let Err(why) = docker() {
            eprintln!("skipped: no Docker engine ({why})");
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        images();
        let compose = Self {
            project: format!("cryptolake-test-{}", std::process::id()),
            api_port: cryptolake_testkit::free_port(),
            _turn: turn,
        };
        let started = Instant::now();
        let scale = format!("executor={executors}");
        compose.ok(&["up", "-d", "--wait", "--scale", &scale]);
        eprintln!(
            "compose cluster with {executors} executors healthy in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Some(compose)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(["compose", "-f"])
            .arg(repo().join("docker/compose.yaml"))
            .args(["-p", &self.project])
            .args(args)
            .env("CRYPTOLAKE_API_PORT", self.api_port.to_string());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker compose run --rm cli ARGS --output json`.
    fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["run", "--rm", "-T", "cli"];
        a.extend(args);
        a.extend(["--output", "json"]);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn sql(&self, query: &str) -> Value {
        self.cli_json(&["sql", query])
    }

    /// Host names (short container ids) of a service's running containers.
    fn hosts(&self, service: &str) -> Vec<String> {
        self.ok(&["ps", "-q", service])
            .lines()
            .map(|id| id.chars().take(12).collect())
            .collect()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self
            .command(&["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
    }
}

/// The tables of the pipeline, compared row for row.
const TABLES: [&str; 6] = [
    "bronze.trades",
    "bronze.coinbase_spot",
    "silver.quotes",
    "silver.trades",
    "gold.candles_1m",
    "gold.market_snapshot",
];

/// An in-process project given the same data: `gen`'s counts, and the row counts and
/// checksums of `TABLES`.
fn in_process_reference(gen_args: &[&str]) -> (Project, Value, Vec<Value>) {
    let local = Project::new();
    let mut args = vec!["gen"];
    args.extend(gen_args);
    let generated = local.json(&args);
    local.ok(&["run", "all"]);
    let sums = TABLES
        .iter()
        .map(|t| {
            let rows = local.sql(&checksum_query(&local, t));
            Value::Array(rows.into_iter().map(Value::Object).collect())
        })
        .collect();
    (local, generated, sums)
}

/// The hosts (`host` of `host:pid`) that wrote the files of every job in a `run` output.
fn writers(summary: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for job in summary.as_array().unwrap() {
        for table in job["tables"].as_object().unwrap().values() {
            for w in table["writers"].as_array().into_iter().flatten() {
                let host = w.as_str().unwrap().split(':').next().unwrap().to_string();
                out.push(host);
            }
        }
    }
    out
}

#[test]
fn the_pipeline_on_the_compose_cluster_equals_in_process_and_executors_write_every_file() {
    let Some(compose) = Compose::up(2) else {
        return;
    };
    let gen_args = [
        "--minutes",
        "240",
        "--seed",
        "11",
        "--symbols",
        "6",
        "--dup-rate",
        "0.02",
    ];
    let (local, generated, expected) = in_process_reference(&gen_args);
    assert_eq!(
        compose.cli_json(&[&["gen"][..], &gen_args].concat()),
        generated
    );
    let summary = compose.cli_json(&["run", "all"]);
    let executors = compose.hosts("executor");
    assert_eq!(executors.len(), 2);
    let written = writers(&summary);
    assert!(!written.is_empty(), "{summary}");
    for host in &written {
        assert!(
            executors.contains(host),
            "{host} is not an executor container ({executors:?}): {summary}"
        );
    }
    for (table, want) in TABLES.iter().zip(&expected) {
        assert_eq!(
            &compose.sql(&checksum_query(&local, table)),
            want,
            "{table}"
        );
    }
}

#[test]
fn an_executor_container_killed_during_silver_costs_nothing() {
    let Some(compose) = Compose::up(2) else {
        return;
    };
    let gen_args = ["--minutes", "360", "--seed", "12", "--symbols", "12"];
    let (local, generated, expected) = in_process_reference(&gen_args);
    assert_eq!(
        compose.cli_json(&[&["gen"][..], &gen_args].concat()),
        generated
    );
    compose.cli_json(&["run", "ingest-files"]);
    let silver = compose
        .command(&[
            "run", "--rm", "-T", "cli", "run", "silver", "--output", "json",
        ])
        .spawn()
        .unwrap();
    wait_for_a_running_job(&compose);
    let victim = compose
        .ok(&["ps", "-q", "executor"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let killed = Command::new("docker")
        .args(["kill", &victim])
        .output()
        .unwrap();
    assert!(killed.status.success());
    let out: Output = silver.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "silver after an executor was killed: {out:?}"
    );
    compose.cli_json(&["run", "gold"]);
    for (table, want) in TABLES.iter().zip(&expected) {
        assert_eq!(
            &compose.sql(&checksum_query(&local, table)),
            want,
            "{table}"
        );
    }
}

/// Polls the scheduler's REST API (from inside its container) until a job runs.
fn wait_for_a_running_job(compose: &Compose) {
    let started = Instant::now();
    loop {
        let out = compose
            .command(&[
                "exec",
                "-T",
                "scheduler",
                "/usr/local/bin/cryptolake",
                "cluster",
                "status",
                "--cluster",
                "df://127.0.0.1:50050",
                "--output",
                "json",
            ])
            .output()
            .unwrap();
        if let Ok(status) = serde_json::from_slice::<Value>(&out.stdout) {
            let running = status["jobs"].as_array().into_iter().flatten().any(|j| {
                j["status"]
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().contains("running"))
            });
            if running {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no job ran on the cluster"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_kubernetes_manifests_are_valid_kubernetes_objects() {
    let python = std::env::var("CRYPTOLAKE_TEST_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/cryptolake/venv/bin/python")
    });
    let validate = Path::new(&python).with_file_name("kubernetes-validate");
    let manifests: Vec<PathBuf> = std::fs::read_dir(repo().join("docker/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert_eq!(manifests.len(), 5, "{manifests:?}");
    let out = Command::new(&validate)
        .args(["--strict", "--kubernetes-version", "1.31.0"])
        .args(&manifests)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", validate.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One line per object: config, scheduler Deployment and Service, executor, account, job.
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(all.matches(" passed for resource ").count(), 6, "{all}");
}
