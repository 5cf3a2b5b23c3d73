//! The compose cluster (docker/compose.yaml): a Ballista scheduler, executors, moto's S3 and
//! Glue, tansu and the schedule daemon as containers on a private network, the images built
//! by docker/build.sh from the binary these tests run. The pipeline on it equals the
//! in-process one row for row. Faults across hosts while silver runs: an executor killed,
//! paused past its heartbeat timeout or cut off the network mid-shuffle, and the scheduler
//! restarted, each cost nothing (exact tables, each committed once); the object store cut off
//! mid-write fails the run, changes nothing, and the re-run is exact. Skipped, saying why,
//! where no Docker engine answers. The Kubernetes manifests are checked against the
//! Kubernetes schemas.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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
    /// An override file giving the executors more environment, if any.
    executor_env: Option<tempfile::NamedTempFile>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Compose {
    /// Brings the cluster up with `executors` executors, or says why it cannot.
    fn up(executors: usize) -> Option<Self> {
        Self::up_with(executors, &[])
    }

    /// [`Compose::up`], with these variables in the executors' environment.
    fn up_with(executors: usize, executor_env: &[(&str, &str)]) -> Option<Self> {
        if let Err(why) = docker() {
            eprintln!("skipped: no Docker engine ({why})");
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        images();
        let compose = Self {
            project: format!("cryptolake-test-{}", std::process::id()),
            api_port: cryptolake_testkit::free_port(),
            executor_env: (!executor_env.is_empty()).then(|| override_file(executor_env)),
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
            .arg(repo().join("docker/compose.yaml"));
        if let Some(file) = &self.executor_env {
            c.arg("-f").arg(file.path());
        }
        c.args(["-p", &self.project])
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

/// A compose override file setting `env` in the executor service's environment.
fn override_file(env: &[(&str, &str)]) -> tempfile::NamedTempFile {
    let mut yaml = String::from("services:\n  executor:\n    environment:\n");
    for (key, value) in env {
        yaml.push_str(&format!("      {key}: {}\n", serde_json::json!(value)));
    }
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    file
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

/// What silver must do under a fault.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It completes. Where the fault outlives a job, the driver saw it and ran the job again:
    /// its log holds one of these texts (none are required where Ballista may recover alone).
    Completes(&'static [&'static str]),
    /// It fails with the transient exit code, saying this; a re-run once the fault is gone is
    /// exact.
    Fails(&'static str),
}

/// A fault done to the compose cluster while silver runs.
struct Fault {
    /// Does the fault; returns what undoes it, run once silver has finished.
    inject: fn(&Compose) -> Box<dyn FnOnce()>,
    outcome: Outcome,
}

/// Every task of silver's second stage sleeps this long before it reads the shuffle (the
/// `silver:sink` fault point), so a fault lands mid-shuffle whatever the machine's speed.
const SHUFFLE_PAUSE: (&str, &str) = ("CRYPTOLAKE_FAULT", "silver:sink:delay=5000");

/// Generates six hours of 12 symbols, lands them in bronze, runs silver on two executors with
/// `fault` done mid-shuffle (its first stage written, its second waiting to read it), then
/// gold; every table then equals the in-process pipeline's row for row, and each silver table
/// was committed exactly once.
fn silver_survives(fault: Fault) {
    let Some(compose) = Compose::up_with(2, &[SHUFFLE_PAUSE]) else {
        return;
    };
    let gen_args = ["--minutes", "360", "--seed", "12", "--symbols", "12"];
    let (local, generated, expected) = in_process_reference(&gen_args);
    assert_eq!(
        compose.cli_json(&[&["gen"][..], &gen_args].concat()),
        generated
    );
    compose.cli_json(&["run", "ingest-files"]);
    let before = compose.cli_json(&["table", "list"]);
    let silver = compose
        .command(&[
            "run", "--rm", "-T", "cli", "run", "silver", "--output", "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_a_running_job(&compose, 1);
    let heal = (fault.inject)(&compose);
    let out: Output = silver.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    heal();
    match fault.outcome {
        Outcome::Completes(seen) => {
            assert!(out.status.success(), "silver under the fault: {out:?}");
            assert!(
                seen.is_empty() || seen.iter().any(|s| log.contains(s)),
                "the driver never saw the fault ({seen:?}): {log}"
            );
        }
        Outcome::Fails(says) => {
            assert_eq!(out.status.code(), Some(1), "silver under the fault: {log}");
            assert!(log.contains(says), "{says:?} is not in: {log}");
            assert_unchanged(&before, &compose.cli_json(&["table", "list"]));
            compose.cli_json(&["run", "silver"]);
        }
    }
    for table in ["silver.quotes", "silver.trades"] {
        let history = compose.cli_json(&["table", "history", table]);
        assert_eq!(history.as_array().unwrap().len(), 1, "{table}: {history}");
    }
    compose.cli_json(&["run", "gold"]);
    for (table, want) in TABLES.iter().zip(&expected) {
        assert_eq!(
            &compose.sql(&checksum_query(&local, table)),
            want,
            "{table}"
        );
    }
}

/// Every table of `before` (a `table list`) is as it was; a table created since (silver
/// creates its tables before it runs) holds no snapshot.
fn assert_unchanged(before: &Value, after: &Value) {
    let before = before.as_array().unwrap();
    for table in after.as_array().unwrap() {
        match before.iter().find(|t| t["table"] == table["table"]) {
            Some(was) => assert_eq!(table, was),
            None => assert_eq!(table["snapshot_id"], Value::Null, "{table}"),
        }
    }
    assert!(after.as_array().unwrap().len() >= before.len(), "{after}");
}

/// `docker ARGS`, which must succeed.
fn docker_ok(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Compose {
    /// The id of a service's first container.
    fn container(&self, service: &str) -> String {
        let ids = self.ok(&["ps", "-q", service]);
        ids.lines().next().unwrap().to_string()
    }

    /// The cluster's private network.
    fn network(&self) -> String {
        format!("{}_lake", self.project)
    }
}

#[test]
fn an_executor_container_killed_during_silver_costs_nothing() {
    silver_survives(Fault {
        inject: |compose| {
            docker_ok(&["kill", &compose.container("executor")]);
            Box::new(|| {})
        },
        outcome: Outcome::Completes(&[]),
    });
}

#[test]
fn an_executor_paused_past_its_heartbeat_timeout_costs_nothing() {
    silver_survives(Fault {
        inject: |compose| {
            let victim = compose.container("executor");
            docker_ok(&["pause", &victim]);
            Box::new(move || {
                // Thawed, it finds the scheduler fenced it off, and stops.
                docker_ok(&["unpause", &victim]);
                docker_ok(&["rm", "-f", &victim]);
            })
        },
        outcome: Outcome::Completes(&["was lost", "running it again"]),
    });
}

#[test]
fn an_executor_cut_off_the_network_mid_shuffle_costs_nothing() {
    silver_survives(Fault {
        inject: |compose| {
            let victim = compose.container("executor");
            docker_ok(&["network", "disconnect", &compose.network(), &victim]);
            Box::new(move || docker_ok(&["rm", "-f", &victim]))
        },
        outcome: Outcome::Completes(&["was lost", "running it again"]),
    });
}

#[test]
fn the_scheduler_restarted_mid_job_is_run_again_and_commits_once() {
    silver_survives(Fault {
        inject: |compose| {
            docker_ok(&["restart", "-t", "5", &compose.container("scheduler")]);
            Box::new(|| {})
        },
        outcome: Outcome::Completes(&["running it again"]),
    });
}

#[test]
fn the_object_store_cut_off_mid_write_fails_the_run_and_changes_nothing() {
    silver_survives(Fault {
        inject: |compose| {
            let s3 = compose.container("s3");
            let network = compose.network();
            docker_ok(&["network", "disconnect", &network, &s3]);
            Box::new(move || docker_ok(&["network", "connect", "--alias", "s3", &network, &s3]))
        },
        outcome: Outcome::Fails("http://s3:5000/lake/"),
    });
}

/// Polls the scheduler's REST API (from inside its container) until a job runs that has
/// completed `stages` stages.
fn wait_for_a_running_job(compose: &Compose, stages: u64) {
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
                    && j["completed_stages"].as_u64() >= Some(stages)
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
