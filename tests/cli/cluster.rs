//! A real Ballista cluster on loopback: `cluster up` starts one scheduler and two executor
//! processes of the binary; jobs run on it with `--cluster`, and the scheduler's REST API says
//! how the work was spread. Processes are stopped by `cluster down` (by pid), also on failure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use cryptolake_testkit::free_port_block;

use crate::common::Project;

/// A local cluster; `Drop` stops it.
pub struct Cluster<'a> {
    project: &'a Project,
    state_dir: PathBuf,
    pub url: String,
    rest: String,
    info: Value,
}

impl<'a> Cluster<'a> {
    pub fn up(project: &'a Project, executors: u16) -> Self {
        Self::up_with(project, executors, &[])
    }

    /// `cluster up`, its processes started with `env` set.
    fn up_with(project: &'a Project, executors: u16, env: &[(&str, &str)]) -> Self {
        Self::up_args(project, executors, env, &[])
    }

    /// `cluster up` with `args` added, its processes started with `env` set.
    fn up_args(project: &'a Project, executors: u16, env: &[(&str, &str)], args: &[&str]) -> Self {
        let port = free_port_block(1 + 2 * executors);
        let state_dir = project.path().join("cluster-state");
        let mut command = vec![
            "cluster".to_string(),
            "up".into(),
            "--executors".into(),
            executors.to_string(),
            "--port".into(),
            port.to_string(),
            "--concurrent-tasks".into(),
            "2".into(),
            "--state-dir".into(),
            state_dir.to_string_lossy().into_owned(),
            "--output".into(),
            "json".into(),
        ];
        command.extend(args.iter().map(|a| a.to_string()));
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        let out = project
            .command(&command)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        let url = info["url"].as_str().unwrap().to_string();
        let rest = format!("http://127.0.0.1:{port}");
        let cluster = Self {
            project,
            state_dir,
            url,
            rest,
            info,
        };
        cluster.wait_for_executors(executors as usize);
        cluster
    }

    /// `path` of the scheduler's REST API, or `None` while it answers 404 (Ballista lists a
    /// job before its stages can be read: a test that polls must wait, not fail).
    fn try_get(&self, path: &str) -> Option<Value> {
        let url = format!("{}{path}", self.rest);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let r = reqwest::get(&url)
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            if r.status() == reqwest::StatusCode::NOT_FOUND {
                return None;
            }
            let r = r
                .error_for_status()
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            Some(r.json().await.unwrap())
        })
    }

    /// GET from the scheduler's REST API; a 404 fails the test.
    fn get(&self, path: &str) -> Value {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {}{path}: 404 Not Found", self.rest))
    }

    fn wait_for_executors(&self, n: usize) {
        for _ in 0..300 {
            let status = self.project.json(&[
                "cluster",
                "status",
                "--cluster",
                &self.url,
                "--state-dir",
                &self.state_dir.to_string_lossy(),
            ]);
            if status["executors"].as_array().map_or(0, Vec::len) == n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{n} executors never registered");
    }

    /// The executors' pids, sorted.
    pub fn executor_pids(&self) -> Vec<u64> {
        let mut pids: Vec<u64> = self.info["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["role"].as_str().unwrap().starts_with("executor"))
            .map(|p| p["pid"].as_u64().unwrap())
            .collect();
        pids.sort();
        pids
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        let _ = self.project.output(&[
            "cluster",
            "down",
            "--state-dir",
            &self.state_dir.to_string_lossy(),
        ]);
    }
}

/// Columns of a table, except the ingest and quarantine times (wall clock, different in every
/// run).
fn content_columns(p: &Project, table: &str) -> Vec<String> {
    let described = p.json(&["table", "describe", table]);
    described["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("describe {table}: {described}"))
        .iter()
        .map(|c| c["column"].as_str().unwrap().to_string())
        .filter(|c| !c.ends_with("ingest_time") && c != "quarantined_at")
        .collect()
}

/// A row-level checksum: the md5 of every row's values, sorted, and the row count.
pub fn checksum(p: &Project, table: &str) -> (u64, String) {
    let rows = p.sql(&checksum_query(p, table));
    (
        rows[0]["n"].as_u64().unwrap(),
        rows[0]["h"].as_str().unwrap().to_string(),
    )
}

/// The query [`checksum`] runs (`n`, `h`), with `p`'s columns of `table`.
pub fn checksum_query(p: &Project, table: &str) -> String {
    let cols: Vec<String> = content_columns(p, table)
        .iter()
        .map(|c| format!("coalesce(CAST(\"{c}\" AS VARCHAR), '<null>')"))
        .collect();
    format!(
        "SELECT count(*) AS n, md5(coalesce(string_agg(r, '\\n' ORDER BY r), '')) AS h \
         FROM (SELECT concat_ws('|', {}) AS r FROM {table})",
        cols.join(", ")
    )
}

/// Record counts of a table's live files, by partition, sorted.
fn file_layout(p: &Project, table: &str) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for f in p.json(&["table", "files", table]).as_array().unwrap() {
        out.entry(f["partition"].to_string())
            .or_default()
            .push(f["record_count"].as_u64().unwrap());
    }
    for counts in out.values_mut() {
        counts.sort();
    }
    out
}

const TABLES: [&str; 4] = [
    "silver.quotes",
    "silver.trades",
    "bronze.coinbase_spot",
    "bronze.trades",
];

#[test]
fn compaction_on_a_two_executor_cluster_equals_in_process_and_uses_both_executors() {
    let local = Project::new();
    let remote = Project::new();
    for p in [&local, &remote] {
        for minute in 0..6 {
            p.minute(minute, "3", &[]);
        }
    }
    let before: Vec<_> = TABLES.iter().map(|t| checksum(&remote, t)).collect();
    let metrics = free_port_block(3);
    let cluster = Cluster::up_args(&remote, 2, &[], &["--metrics-port", &metrics.to_string()]);

    local.ok(&["run", "compact", "--target-size", "1048576"]);
    let summary = remote.json(&[
        "run",
        "compact",
        "--target-size",
        "1048576",
        "--cluster",
        &cluster.url,
    ]);

    // The same rows as before compaction, and the same files as compaction in-process.
    let after: Vec<_> = TABLES.iter().map(|t| checksum(&remote, t)).collect();
    assert_eq!(after, before);
    for t in TABLES {
        assert_eq!(checksum(&remote, t).1, checksum(&local, t).1, "{t}");
        assert_eq!(file_layout(&remote, t), file_layout(&local, t), "{t}");
    }
    assert_eq!(file_layout(&remote, "silver.quotes").len(), 3);
    assert!(
        file_layout(&remote, "silver.quotes")
            .values()
            .all(|files| files.len() == 1)
    );

    // Both executor processes wrote files, and no other process did.
    let quotes = &summary[0]["tables"]["silver.quotes"];
    let mut writers: Vec<u64> = summary[0]["tables"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(writer_pids)
        .collect();
    writers.sort();
    writers.dedup();
    let executors = cluster.executor_pids();
    assert_eq!(writers, executors, "{summary}");
    assert_eq!(quotes["files_written"], 3, "{quotes}");

    // The scheduler ran one job per compacted table, each a stage of one task per group,
    // every task successful.
    let jobs = cluster.get("/api/jobs");
    let jobs = jobs.as_array().unwrap();
    assert_eq!(
        jobs.len(),
        summary[0]["tables"].as_object().unwrap().len(),
        "{jobs:?}"
    );
    let (mut most_tasks, mut all_tasks) = (0, 0);
    for job in jobs {
        assert_eq!(job["status"], "Completed", "{job}");
        let id = job["job_id"].as_str().unwrap();
        let stages = cluster.get(&format!("/api/job/{id}/stages"));
        for stage in stages["stages"].as_array().unwrap() {
            let tasks = stage["tasks"].as_array().unwrap();
            assert!(tasks.iter().all(|t| t["status"] == "Successful"), "{stage}");
            all_tasks += tasks.len();
            if stage["stage_plan"]
                .as_str()
                .unwrap_or("")
                .contains("TableWriteExec")
            {
                most_tasks = most_tasks.max(tasks.len());
            }
        }
    }
    // silver.quotes: 3 groups (one per symbol) = 3 write tasks.
    assert_eq!(most_tasks, 3, "{jobs:?}");
    cluster_metrics_agree(&cluster, metrics, all_tasks);
}

/// The scheduler's and executors' `/metrics`, parsed by prometheus_client, against the
/// cluster's shape (two executors of two slots) and the tasks its REST API lists.
fn cluster_metrics_agree(cluster: &Cluster<'_>, port: u16, tasks: usize) {
    let scrape = |port: u16| crate::console::scrape(&format!("http://127.0.0.1:{port}"), None);
    let samples = scrape(port);
    let values = |name: &str| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.0 == name)
            .map(|s| s.2)
            .collect()
    };
    let executors = cluster.get("/api/executors");
    let ids: Vec<&str> = executors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(values("cryptolake_cluster_executors"), [2.0], "{samples:?}");
    for id in &ids {
        let of = |name: &str| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.0 == name && s.1["executor"] == *id)
                .map(|s| s.2)
                .collect()
        };
        assert_eq!(of("cryptolake_cluster_executor_task_slots"), [2.0], "{id}");
        assert_eq!(
            of("cryptolake_cluster_executor_running_tasks"),
            [0.0],
            "{id}"
        );
    }
    // Every task the jobs ran was bound to one of the executors once.
    let bound: f64 = values("cryptolake_cluster_tasks_bound_total").iter().sum();
    assert_eq!(bound, tasks as f64, "{samples:?}");
    for i in 0..2 {
        let samples = scrape(port + 1 + i);
        let value = |name: &str| samples.iter().find(|s| s.0 == name).map(|s| s.2);
        assert_eq!(value("cryptolake_executor_task_slots"), Some(2.0));
        assert!(value("cryptolake_executor_resident_memory_bytes").unwrap() > 1e6);
    }
}

/// `gen` for `minutes` minutes from `start` with bad and duplicated records; returns the good
/// and bad record counts over all sources.
fn generate_messy(p: &Project, start: &str, seed: &str) -> (u64, u64) {
    let counts = p.generate(&[
        "--minutes",
        "2",
        "--seed",
        seed,
        "--symbols",
        "4",
        "--bad-rate",
        "0.03",
        "--dup-rate",
        "0.05",
        "--start",
        start,
    ]);
    counts.values().fold((0, 0), |(good, bad), c| {
        (
            good + c["good"].as_u64().unwrap(),
            bad + c["bad"].as_u64().unwrap(),
        )
    })
}

/// The run summary of `job` in `run all`'s output.
fn job_summary<'v>(summaries: &'v Value, job: &str) -> &'v Value {
    summaries
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["job"] == job)
        .unwrap_or_else(|| panic!("no {job} in {summaries}"))
}

/// The pids of a table run's writers (`host:pid`), sorted; none when it lists none.
pub fn writer_pids(table: &Value) -> Vec<u64> {
    let mut pids: Vec<u64> = table["writers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            w.as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    pids.sort();
    pids.dedup();
    pids
}

#[test]
fn the_whole_pipeline_on_a_two_executor_cluster_equals_in_process() {
    let local = Project::new();
    let remote = Project::new();
    let cluster = Cluster::up(&remote, 2);
    let (mut good, mut bad) = (0, 0);
    // Two rounds: the second deduplicates against the same (symbol, day) partitions the first
    // committed.
    for (start, seed) in [("2026-01-01T00:00:00Z", "3"), ("2026-01-01T00:02:00Z", "4")] {
        for p in [&local, &remote] {
            let counts = generate_messy(p, start, seed);
            if std::ptr::eq(p, &remote) {
                good += counts.0;
                bad += counts.1;
            }
        }
        local.ok(&["run", "all"]);
        let summaries = remote.json(&["run", "all", "--cluster", &cluster.url]);
        let silver = job_summary(&summaries, "silver");
        let executors = cluster.executor_pids();
        for t in ["silver.quotes", "silver.trades"] {
            assert_eq!(writer_pids(&silver["tables"][t]), executors, "{silver}");
        }
        // Bronze and gold files are written by the executors too, never by the driver; over
        // all bronze tables, by both. (Gold's rows meet in one write task per table.)
        for job in ["ingest-files", "gold"] {
            let summary = job_summary(&summaries, job);
            let tables = summary["tables"].as_object().unwrap();
            assert!(tables.len() >= 4, "{summary}");
            let mut all = Vec::new();
            for (name, run) in tables {
                let pids = writer_pids(run);
                assert!(!pids.is_empty(), "{name}: {summary}");
                assert!(
                    pids.iter().all(|p| executors.contains(p)),
                    "{name}: {summary}"
                );
                all.extend(pids);
            }
            all.sort();
            all.dedup();
            if job == "ingest-files" {
                assert_eq!(all, executors, "{summary}");
            }
        }
        // Every landing record was counted by the tasks that read it: the records the
        // summary reports are the rows bronze gained.
        let ingest = job_summary(&summaries, "ingest-files");
        let records: u64 = ingest["sources"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["records"].as_u64().unwrap())
            .sum();
        let rows: u64 = ingest["tables"]
            .as_object()
            .unwrap()
            .values()
            .map(|t| t["rows_out"].as_u64().unwrap())
            .sum();
        assert_eq!(records, rows, "{ingest}");
        assert!(records > 0, "{ingest}");
    }

    // Every table holds the same rows either way.
    let tables = local.table_counts();
    assert_eq!(tables, remote.table_counts());
    assert!(tables.len() >= 13, "{tables:?}");
    for t in tables.keys() {
        assert_eq!(checksum(&remote, t), checksum(&local, t), "{t}");
    }
    // Every good record once, every bad one in quarantine.
    let silver_rows = remote.count("silver.quotes") + remote.count("silver.trades");
    assert_eq!(silver_rows, good);
    assert_eq!(remote.count("silver.quarantine"), bad);

    // Each silver run was one job: a normalize stage, then a sink stage of one task per
    // slot (4), every task successful.
    let mut sink_stages = 0;
    for job in cluster.get("/api/jobs").as_array().unwrap() {
        let id = job["job_id"].as_str().unwrap();
        let stages = cluster.get(&format!("/api/job/{id}/stages"));
        let plans: Vec<&str> = stages["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stage_plan"].as_str().unwrap_or(""))
            .collect();
        if !plans.iter().any(|p| p.contains("SilverSinkExec")) {
            continue;
        }
        assert_eq!(job["status"], "Completed", "{job}");
        assert!(
            plans.iter().any(|p| p.contains("SilverNormalizeExec")),
            "{plans:?}"
        );
        for stage in stages["stages"].as_array().unwrap() {
            let tasks = stage["tasks"].as_array().unwrap();
            assert!(tasks.iter().all(|t| t["status"] == "Successful"), "{stage}");
            if stage["stage_plan"]
                .as_str()
                .unwrap_or("")
                .contains("SilverSinkExec")
            {
                assert_eq!(tasks.len(), 4, "{stage}");
                sink_stages += 1;
            }
        }
    }
    assert_eq!(sink_stages, 2);
}

#[test]
fn an_executor_killed_during_silver_leaves_exact_tables() {
    let local = Project::new();
    let remote = Project::new();
    // Lost executors are noticed within seconds, not a minute.
    let config = std::fs::read_to_string(&remote.config).unwrap();
    let config = config
        .replace("executor_timeout_secs = 60", "executor_timeout_secs = 4")
        .replace(
            "heartbeat_interval_secs = 10",
            "heartbeat_interval_secs = 1",
        );
    std::fs::write(&remote.config, config).unwrap();
    // Every sink task waits 3 s before it reads, so the kill lands mid-job.
    let cluster = Cluster::up_with(
        &remote,
        2,
        &[("CRYPTOLAKE_FAULT", "silver:sink:delay=3000")],
    );
    let (mut good, mut bad) = (0, 0);
    for p in [&local, &remote] {
        (good, bad) = generate_messy(p, "2026-01-01T00:00:00Z", "5");
        p.ok(&["run", "ingest-files"]);
    }
    local.ok(&["run", "silver"]);

    let driver = remote
        .command(&[
            "run",
            "silver",
            "--cluster",
            &cluster.url,
            "--output",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the sink stage runs, then kill one executor.
    let victim = cluster.executor_pids()[0];
    let mut running = false;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let jobs = cluster.get("/api/jobs");
        let Some(job) = jobs.as_array().unwrap().first() else {
            continue;
        };
        let id = job["job_id"].as_str().unwrap();
        let Some(stages) = cluster.try_get(&format!("/api/job/{id}/stages")) else {
            continue;
        };
        running = stages["stages"].as_array().is_some_and(|stages| {
            stages.iter().any(|s| {
                s["stage_plan"]
                    .as_str()
                    .unwrap_or("")
                    .contains("SilverSinkExec")
                    && s["stage_status"].as_str().unwrap_or("").contains("Running")
            })
        });
        if running {
            break;
        }
    }
    assert!(running, "the sink stage never ran");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let out = driver.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "silver on a cluster that lost an executor: {stderr}"
    );
    // Completed by Ballista or run again by the driver: either way, the log says which.
    eprintln!("driver log:\n{stderr}");
    for t in ["silver.quotes", "silver.trades", "silver.quarantine"] {
        assert_eq!(checksum(&remote, t), checksum(&local, t), "{t}");
    }
    assert_eq!(
        remote.count("silver.quotes") + remote.count("silver.trades"),
        good
    );
    assert_eq!(remote.count("silver.quarantine"), bad);
    // One commit per table: a failed run committed nothing.
    let history = remote.json(&["table", "history", "silver.quotes"]);
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
}

/// Runs `silver` with every sink task failing its invariant (fault `silver:sink:error`):
/// returns the exit code and stderr, and checks that silver is unchanged.
fn silver_failing_its_sink(p: &Project, cluster: Option<&str>) -> (Option<i32>, String) {
    let before = p.snapshots();
    let mut args = vec!["run", "silver"];
    if let Some(url) = cluster {
        args.extend(["--cluster", url]);
    }
    let out = p
        .command(&args)
        .env("CRYPTOLAKE_FAULT", "silver:sink:error")
        .output()
        .unwrap();
    assert_eq!(p.snapshots(), before, "a failed silver run committed");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_internal_failure_has_the_same_exit_code_and_retry_decision_in_process_and_on_a_cluster() {
    let local = Project::new();
    let remote = Project::new();
    let cluster = Cluster::up_with(&remote, 1, &[("CRYPTOLAKE_FAULT", "silver:sink:error")]);
    for p in [&local, &remote] {
        generate_messy(p, "2026-01-01T00:00:00Z", "7");
        p.ok(&["run", "ingest-files"]);
    }
    let (code, err) = silver_failing_its_sink(&local, None);
    assert_eq!(code, Some(70), "in-process: {err}");
    assert!(err.contains("fault injected at silver:sink"), "{err}");

    let (code, err) = silver_failing_its_sink(&remote, Some(&cluster.url));
    assert_eq!(code, Some(70), "on the cluster: {err}");
    assert!(err.contains("fault injected at silver:sink"), "{err}");
    // Not retryable: the driver ran the job once, not up to max_attempts.
    assert!(!err.contains("running it again"), "{err}");
    let jobs = cluster.get("/api/jobs");
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
}
