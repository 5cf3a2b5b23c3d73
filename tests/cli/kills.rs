//! Crashes anywhere, not only at fault points: jobs SIGKILLed at seeded random moments of their
//! run (`run all`, `run compact`, `run expire-snapshots`, `run remove-orphans`, `run
//! ingest-kafka`), then run again. After every recovery each table holds exactly the rows of
//! a project whose runs were never killed (row by row), no row twice, every reachable file
//! readable, and a final `remove-orphans` leaves no file that no snapshot reaches.
//!
//! A kill lands somewhere in the job's run as long as the reference project took: planning,
//! writing, committing, or (when the job was faster this time) after it finished; the test
//! counts only kills that met a running job, and requires at least 20.

use std::time::{Duration, Instant};

use crate::common::Project;

/// A small seeded generator (xorshift64*), so that every run of the test kills at the same
/// moments relative to each job's length.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A moment within `span`.
    fn within(&mut self, span: Duration) -> Duration {
        let ms = span.as_millis().max(1) as u64;
        Duration::from_millis(self.next() % ms)
    }
}

/// The jobs a round runs, with their flags, in order.
const JOBS: [&[&str]; 4] = [
    &["run", "all"],
    &["run", "compact", "--min-input-files", "2"],
    &[
        "run",
        "expire-snapshots",
        "--older-than",
        "0s",
        "--retain-last",
        "1",
    ],
    &["run", "remove-orphans", "--older-than", "0s"],
];

/// Columns that hold when a row was written, which differ between two projects.
const WHEN_WRITTEN: [&str; 4] = ["_ingest_time", "ingest_time", "quarantined_at", "fired_at"];

/// Every table's rows as sorted text of the columns that do not record when they were written.
fn rows(p: &Project) -> Vec<(String, Vec<String>)> {
    let tables = p.json(&["table", "list"]);
    let mut out = Vec::new();
    for t in tables.as_array().unwrap() {
        let name = t["table"].as_str().unwrap().to_string();
        let d = p.json(&["table", "describe", &name]);
        let columns: Vec<String> = d["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["column"].as_str().unwrap().to_string())
            .filter(|c| !WHEN_WRITTEN.contains(&c.as_str()))
            .collect();
        let select: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST(\"{c}\" AS VARCHAR) AS \"{c}\""))
            .collect();
        let query = format!("SELECT {} FROM {name}", select.join(", "));
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let mut text = p.rows_text(&query, &names);
        text.sort();
        out.push((name, text));
    }
    out
}

/// Runs `args` in `p` and kills it (SIGKILL) `after` it started; true when the kill met the
/// job still running.
fn kill_after(p: &Project, args: &[&str], after: Duration) -> bool {
    let mut child = p
        .command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    if running {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    running
}

/// Minute `m` of three symbols.
fn land(p: &Project, m: u32) {
    let start = format!("2026-01-01T00:{m:02}:00Z");
    let seed = (m + 70).to_string();
    let args = [
        "--minutes",
        "1",
        "--seed",
        &seed,
        "--symbols",
        "3",
        "--dup-rate",
        "0.02",
        "--start",
        &start,
    ];
    p.generate(&args);
}

/// No orphan is left that remove-orphans would not remove, and none it would.
pub(crate) fn no_orphans(p: &Project) {
    let plan = p.json(&["run", "remove-orphans", "--older-than", "0s", "--dry-run"]);
    let tables = plan["remove-orphans"]["tables"].as_array().unwrap();
    for t in tables {
        assert_eq!(t["orphans"].as_array().unwrap().len(), 0, "{t}");
        assert_eq!(t["too_young"], 0, "{t}");
    }
}

#[test]
fn jobs_killed_at_random_moments_recover_exactly() {
    let reference = Project::new();
    let p = Project::new();
    let mut moments = Moments(0x5eed_c0ff_ee21);
    let (mut kills, mut tried) = (0, 0);
    for round in 0..6 {
        land(&reference, round);
        land(&p, round);
        for job in JOBS {
            let started = Instant::now();
            reference.ok(job);
            let took = started.elapsed();
            tried += 1;
            if kill_after(&p, job, moments.within(took)) {
                kills += 1;
            }
            p.ok(job);
            assert_eq!(rows(&p), rows(&reference), "round {round}, {job:?}");
        }
    }
    p.ok(&["run", "remove-orphans", "--older-than", "0s"]);
    no_orphans(&p);
    p.ok(&["table", "check"]);
    let dup = p.sql(
        "SELECT count(*) AS n FROM (SELECT source, symbol, event_time FROM silver.quotes \
         GROUP BY 1, 2, 3 HAVING count(*) > 1)",
    );
    assert_eq!(dup[0]["n"], 0);
    eprintln!("kills: {kills} of {tried} runs met a running job; every one recovered exactly");
    assert!(
        kills >= 20,
        "only {kills} of {tried} kills met a running job"
    );
}

#[test]
fn ingest_kafka_killed_at_random_moments_lands_every_message_once() {
    let broker = crate::kafka::broker_with_trades();
    let reference = crate::kafka::kafka_project(&broker);
    let p = crate::kafka::kafka_project(&broker);
    let mut moments = Moments(0x0ff5_e7ca_fe17);
    let (mut kills, rounds) = (0, 8);
    let mut produced = 0;
    for round in 0..rounds {
        crate::kafka::produce(&broker, produced, 40);
        produced += 40;
        let started = Instant::now();
        reference.ok(&["run", "ingest-kafka"]);
        let took = started.elapsed();
        if kill_after(&p, &["run", "ingest-kafka"], moments.within(took)) {
            kills += 1;
        }
        p.ok(&["run", "ingest-kafka"]);
        assert_eq!(
            crate::kafka::distinct_messages(&p),
            u64::from(produced),
            "round {round}"
        );
        assert_eq!(p.count("bronze.coinbase_trades"), u64::from(produced));
        assert_eq!(rows(&p), rows(&reference), "round {round}");
    }
    p.ok(&["run", "remove-orphans", "--older-than", "0s"]);
    no_orphans(&p);
    eprintln!(
        "ingest-kafka kills: {kills} of {rounds} met a running job; every one recovered exactly"
    );
    assert!(
        kills >= 5,
        "only {kills} of {rounds} kills met a running ingest-kafka"
    );
}
