//! A real Ballista cluster on loopback: `cluster up` starts one scheduler and two executor
//! processes of the binary; jobs run on it with `--cluster`, and the scheduler's REST API says
//! how the work was spread. Processes are stopped by `cluster down` (by pid), also on failure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::Project;

/// A local cluster; `Drop` stops it.
struct Cluster<'a> {
    project: &'a Project,
    state_dir: PathBuf,
    url: String,
    rest: String,
    info: Value,
}

/// A base port with the 2 * executors + 1 ports after it free.
fn free_port_block(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20000 + (rand_u16() % 30000);
        let free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ std::process::id().rotate_left(7)) as u16
}

impl<'a> Cluster<'a> {
    fn up(project: &'a Project, executors: u16) -> Self {
        let port = free_port_block(1 + 2 * executors);
        let state_dir = project.path().join("cluster-state");
        let info = project.json(&[
            "cluster",
            "up",
            "--executors",
            &executors.to_string(),
            "--port",
            &port.to_string(),
            "--concurrent-tasks",
            "2",
            "--state-dir",
            &state_dir.to_string_lossy(),
        ]);
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

    /// GET from the scheduler's REST API.
    fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.rest);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            reqwest::get(&url)
                .await
                .and_then(|r| r.error_for_status())
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
                .json()
                .await
                .unwrap()
        })
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

    fn executor_pids(&self) -> Vec<u64> {
        self.info["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["role"].as_str().unwrap().starts_with("executor"))
            .map(|p| p["pid"].as_u64().unwrap())
            .collect()
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

/// Columns of a table, except the ingest times (wall clock, different in every run).
fn content_columns(p: &Project, table: &str) -> Vec<String> {
    let described = p.json(&["table", "describe", table]);
    described["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("describe {table}: {described}"))
        .iter()
        .map(|c| c["column"].as_str().unwrap().to_string())
        .filter(|c| !c.ends_with("ingest_time"))
        .collect()
}

/// A row-level checksum: the md5 of every row's values, sorted, and the row count.
pub fn checksum(p: &Project, table: &str) -> (u64, String) {
    let cols: Vec<String> = content_columns(p, table)
        .iter()
        .map(|c| format!("coalesce(CAST(\"{c}\" AS VARCHAR), '<null>')"))
        .collect();
    let sql = format!(
        "SELECT count(*) AS n, md5(coalesce(string_agg(r, '\\n' ORDER BY r), '')) AS h \
         FROM (SELECT concat_ws('|', {}) AS r FROM {table})",
        cols.join(", ")
    );
    let rows = p.sql(&sql);
    (
        rows[0]["n"].as_u64().unwrap(),
        rows[0]["h"].as_str().unwrap().to_string(),
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
    let cluster = Cluster::up(&remote, 2);

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
    let writers: Vec<u64> = summary[0]["tables"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t["writers"].as_array().cloned().unwrap_or_default())
        .map(|w| {
            w.as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .collect();
    let mut executors = cluster.executor_pids();
    executors.sort();
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
    let mut most_tasks = 0;
    for job in jobs {
        assert_eq!(job["status"], "Completed", "{job}");
        let id = job["job_id"].as_str().unwrap();
        let stages = cluster.get(&format!("/api/job/{id}/stages"));
        for stage in stages["stages"].as_array().unwrap() {
            let tasks = stage["tasks"].as_array().unwrap();
            assert!(tasks.iter().all(|t| t["status"] == "Successful"), "{stage}");
            if stage["stage_plan"]
                .as_str()
                .unwrap_or("")
                .contains("IcebergWriteExec")
            {
                most_tasks = most_tasks.max(tasks.len());
            }
        }
    }
    // silver.quotes: 3 groups (one per symbol) = 3 write tasks.
    assert_eq!(most_tasks, 3, "{jobs:?}");
}
