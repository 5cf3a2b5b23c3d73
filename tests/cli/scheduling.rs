//! Schedules, the scheduler daemon and its API, through the real binary: fire times, no
//! overlapping runs, skipped fires recorded, a SIGKILLed daemon restarted without a double fire,
//! and the API's authentication, limits, submit, status and cancel against real jobs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cryptolake_testkit::free_port;

use crate::common::{Project, SOURCES, field};

pub const TOKEN: &str = "test-token-0123456789abcdef";

#[test]
fn next_prints_eventbridge_fire_times_in_the_zone() {
    let p = Project::new();
    let next = |args: &[&str]| {
        let mut a = vec!["schedule", "next"];
        a.extend(args);
        p.ok(&a).lines().map(str::to_string).collect::<Vec<_>>()
    };
    // Lisbon is on summer time (UTC+1) until 2026-10-25: the 3rd fire is in winter time.
    assert_eq!(
        next(&[
            "--expression",
            "cron(0 3 ? * SUN *)",
            "--timezone",
            "Europe/Lisbon",
            "--after",
            "2026-10-10T00:00:00Z",
            "-n",
            "3"
        ]),
        [
            "2026-10-11T03:00:00+01:00",
            "2026-10-18T03:00:00+01:00",
            "2026-10-25T03:00:00Z"
        ]
    );
    // The config's weekly maintenance.
    assert_eq!(
        next(&[
            "weekly-maintenance",
            "--after",
            "2026-11-21T00:00:00Z",
            "-n",
            "2"
        ]),
        ["2026-11-22T03:00:00Z", "2026-11-29T03:00:00Z"]
    );
    assert!(next(&["--expression", "at(2020-01-01T00:00:00)"]).is_empty());
    let bad = p.output(&["schedule", "next", "--expression", "cron(0 3 * * SUN *)"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be ?"));
    p.ok(&["schedule", "validate"]);
}

/// A `cryptolake scheduler` process, killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    pub port: u16,
}

impl Daemon {
    pub fn start(p: &Project, port: u16, fault: &str) -> Self {
        let child = p
            .command(&[
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--retry-backoff-secs",
                "0",
            ])
            .env("CRYPTOLAKE_API_TOKEN", TOKEN)
            .env("CRYPTOLAKE_FAULT", fault)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        cryptolake_testkit::wait_for_listener(port, "the scheduler");
        Self { child, port }
    }

    /// One HTTP/1.1 request; returns the status and the body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // The server may answer (413, 401) before reading the whole body.
        let _ = s.write_all(body);
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    fn json(&self, method: &str, path: &str) -> Value {
        let (status, body) = self.http(method, path, Some(TOKEN), b"");
        assert_eq!(status, 200, "{method} {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn time(run: &Value, key: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(
        run[key].as_str().unwrap_or_else(|| panic!("{key}: {run}")),
    )
    .unwrap()
    .into()
}

#[test]
fn a_slow_job_never_overlaps_skipped_fires_are_recorded_and_a_restart_fires_nothing_twice() {
    let p = Project::new();
    let generated = p.generate(&["--minutes", "1", "--seed", "3", "--symbols", "3"]);
    let mut config = std::fs::read_to_string(&p.config).unwrap();
    config.push_str(
        "\n[[schedule]]\nname = \"fast\"\njob = \"ingest-files\"\nexpression = \"rate(2 seconds)\"\n",
    );
    std::fs::write(&p.config, config).unwrap();
    // Each run takes 3 s, longer than the 2 s period.
    let slow = "ingest-files:before-execute:delay=3000";
    let port = free_port();
    let daemon = Daemon::start(&p, port, slow);
    std::thread::sleep(Duration::from_secs(9));
    drop(daemon); // SIGKILL: a run may be left going.
    let restarted = chrono::Utc::now();
    let daemon = Daemon::start(&p, port, slow);
    std::thread::sleep(Duration::from_secs(5));
    let runs = daemon.json("GET", "/v1/runs?job=ingest-files&limit=1000");
    drop(daemon);
    let mut runs: Vec<Value> = runs.as_array().unwrap().clone();
    runs.sort_by_key(|r| r["id"].as_i64());
    let fires: Vec<_> = runs.iter().map(|r| time(r, "scheduled_for")).collect();
    assert!(
        fires.windows(2).all(|w| w[0] < w[1]),
        "no fire time twice: {fires:?}"
    );
    assert!(
        fires
            .iter()
            .all(|t| t.timestamp_subsec_millis() == 0 && t.timestamp() % 2 == 0),
        "rate(2 seconds) fires on even seconds: {fires:?}"
    );
    // History from before the kill is intact, and the restarted daemon fired again.
    assert!(
        fires.iter().filter(|t| **t < restarted).count() >= 3,
        "{fires:?}"
    );
    assert!(fires.iter().any(|t| *t > restarted), "{fires:?}");
    let state = |r: &Value| r["state"].as_str().unwrap().to_string();
    let skipped: Vec<&Value> = runs.iter().filter(|r| state(r) == "SKIPPED").collect();
    assert!(!skipped.is_empty(), "{runs:?}");
    for s in &skipped {
        assert!(
            s["error"]
                .as_str()
                .unwrap()
                .contains("ConcurrentRunsExceeded"),
            "{s}"
        );
    }
    let ran: Vec<&Value> = runs.iter().filter(|r| state(r) != "SKIPPED").collect();
    let succeeded = ran.iter().filter(|r| state(r) == "SUCCEEDED").count();
    assert!(succeeded >= 2, "{runs:?}");
    // Every run before the last has ended, and each started after the previous one ended.
    for pair in ran.windows(2) {
        assert_ne!(state(pair[0]), "RUNNING", "{runs:?}");
        assert!(
            time(pair[0], "ended_at") <= time(pair[1], "started_at"),
            "overlap: {pair:?}"
        );
    }
    // The first run took every record, exactly once; later runs found nothing new.
    let counts = p.table_counts();
    for s in SOURCES {
        assert_eq!(
            counts[&format!("bronze.{s}")],
            field(&generated, s, "records"),
            "{s}"
        );
    }
    let first = &ran[0]["summary"][0]["tables"];
    assert_eq!(first.as_object().unwrap().len(), SOURCES.len(), "{first}");
}

#[test]
fn the_api_authenticates_limits_submits_reports_and_cancels() {
    let p = Project::new();
    let generated = p.generate(&["--minutes", "1", "--seed", "4", "--symbols", "2"]);
    let port = free_port();
    // silver is slow (20 s) so that it can be cancelled; ingest-files is not.
    let daemon = Daemon::start(&p, port, "silver:before-execute:delay=20000");
    let submit = "/v1/jobs/ingest-files/runs";
    assert_eq!(daemon.http("POST", submit, None, b"").0, 401);
    assert_eq!(
        daemon
            .http("POST", submit, Some("wrong-token-0123456789"), b"")
            .0,
        401
    );
    assert_eq!(daemon.http("GET", "/v1/runs", None, b"").0, 401);
    let big = vec![b' '; 70 * 1024];
    assert_eq!(daemon.http("POST", submit, Some(TOKEN), &big).0, 413);
    assert_eq!(
        daemon
            .http("POST", "/v1/jobs/nope/runs", Some(TOKEN), b"")
            .0,
        404
    );
    assert_eq!(daemon.http("GET", "/v1/runs/999", Some(TOKEN), b"").0, 404);
    // Args are the job's own flags: a submitter cannot point it at another landing zone (or
    // config, warehouse, cluster), nor give flags the job does not have. No run starts.
    let landing = br#"{"args":["--landing","/some/dir"]}"#;
    let (code, body) = daemon.http("POST", submit, Some(TOKEN), landing);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("--landing cannot be submitted"), "{body}");
    let (code, body) = daemon.http("POST", submit, Some(TOKEN), br#"{"args":["--table","x"]}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unexpected argument '--table'"), "{body}");
    assert_eq!(daemon.json("GET", "/v1/runs?job=ingest-files"), json!([]));

    // The CLI over the API: submit and wait, status, logs.
    let api = format!("http://127.0.0.1:{port}");
    let job = |args: &[&str]| {
        let mut a = vec!["job", "--api", &api];
        a.extend(args);
        p.command(&a)
            .env("CRYPTOLAKE_API_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let out = job(&["submit", "ingest-files", "--wait", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &run[0];
    assert_eq!(run["state"], "SUCCEEDED");
    assert_eq!(run["trigger"], "api");
    let rows_in = &run["summary"][0]["tables"]["bronze.coinbase_spot"]["rows_in"];
    assert_eq!(
        rows_in.as_u64(),
        Some(field(&generated, "coinbase_spot", "records"))
    );
    let id = run["id"].as_i64().unwrap().to_string();
    let status: Value =
        serde_json::from_slice(&job(&["status", &id, "-o", "json"]).stdout).unwrap();
    assert_eq!(status[0]["state"], "SUCCEEDED");
    let logs = String::from_utf8(job(&["logs", &id]).stdout).unwrap();
    assert!(
        logs.contains("--- attempt 0: cryptolake run ingest-files"),
        "{logs}"
    );

    // An EventBridge event starts silver; a second submission finds it running (409); cancel.
    let event = br#"{"version":"0","id":"e1","detail-type":"Scheduled Event","source":"aws.scheduler","time":"2026-11-22T03:00:00Z","detail":{"args":[]}}"#;
    let (code, body) = daemon.http("POST", "/v1/jobs/silver/runs", Some(TOKEN), event);
    assert_eq!(code, 201, "{body}");
    let silver: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(silver["trigger"], "eventbridge:aws.scheduler");
    assert_eq!(
        daemon
            .http("POST", "/v1/jobs/silver/runs", Some(TOKEN), b"")
            .0,
        409
    );
    let silver_id = silver["id"].as_i64().unwrap().to_string();
    let started = Instant::now();
    assert!(job(&["cancel", &silver_id]).status.success());
    loop {
        let now = daemon.json("GET", &format!("/v1/runs/{silver_id}"));
        if now["state"] == "STOPPED" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not stopped: {now}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Cancelled before it wrote anything: silver is untouched.
    assert!(!p.snapshots().contains_key("silver.quotes"));
    assert_eq!(
        job(&["cancel", &silver_id]).status.code(),
        Some(1),
        "not running any more"
    );
    let listed = daemon.json("GET", "/v1/runs");
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

/// The API against its own OpenAPI description (`/v1/openapi.json`), fuzzed by schemathesis
/// from PyPI with every check that applies: no 5xx, statuses, content types, headers and bodies
/// as described, a token required on every route, invalid paths, queries and bodies refused.
/// Valid submissions start real runs of the daemon's jobs on an empty project. Seeded, so a
/// failure is reproduced by the same command.
#[test]
fn the_api_holds_to_its_openapi_description_under_schemathesis() {
    let p = Project::new();
    let port = free_port();
    let daemon = Daemon::start(&p, port, "");
    let doc = daemon.http("GET", "/v1/openapi.json", None, b"");
    assert_eq!(doc.0, 200, "{}", doc.1);
    let schemathesis =
        std::path::Path::new(&crate::readers::python()).with_file_name("schemathesis");
    let out = std::process::Command::new(schemathesis)
        .current_dir(p.path())
        .args([
            "run",
            &format!("http://127.0.0.1:{port}/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--checks",
            "all",
            // A cancelled run stays readable (it is history, not a deleted resource), and
            // valid submissions may find their job at its limit (409).
            "--exclude-checks",
            "use_after_free,ensure_resource_availability,positive_data_acceptance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            "--seed",
            "21",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation was tested, and the daemon is still up.
    assert!(stdout.contains("6 selected"), "{stdout}");
    assert_eq!(daemon.http("GET", "/healthz", None, b"").0, 200);
}

/// A load of concurrent submissions and reads on loopback keeps run history consistent: every
/// 201 is a run the history holds and that ran, every 409 (the job at its limit, as Glue's
/// ConcurrentRunsExceeded) started nothing, never two runs of the job at once, every read
/// answered.
#[test]
fn concurrent_submissions_and_reads_keep_run_history_consistent() {
    let p = Project::new();
    let port = free_port();
    // gold takes at least 300 ms, so that submissions meet it running.
    let daemon = Daemon::start(&p, port, "gold:before-execute:delay=300");
    let (started, skipped, reads) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let (mut started, mut skipped, mut reads) = (0, 0, 0);
                    for i in 0..12 {
                        let (code, body) =
                            daemon.http("POST", "/v1/jobs/gold/runs", Some(TOKEN), b"");
                        match code {
                            201 => started += 1,
                            409 => skipped += 1,
                            other => panic!("submit: {other} {body}"),
                        }
                        let path = if i % 2 == 0 {
                            "/v1/runs?job=gold"
                        } else {
                            "/v1/runs"
                        };
                        let (code, body) = daemon.http("GET", path, Some(TOKEN), b"");
                        assert_eq!(code, 200, "{body}");
                        reads += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    (started, skipped, reads)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0, 0), |(a, b, c), (x, y, z)| (a + x, b + y, c + z))
    });
    assert_eq!(started + skipped, 6 * 12);
    assert_eq!(reads, 6 * 12);
    assert!(
        started >= 2 && skipped >= 1,
        "{started} started, {skipped} skipped"
    );
    // Wait for the last run, then read the whole history.
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = daemon.json("GET", "/v1/runs?job=gold&limit=1000");
        let active = runs
            .as_array()
            .unwrap()
            .iter()
            .any(|r| matches!(r["state"].as_str(), Some("STARTING" | "RUNNING")));
        if !active {
            break runs;
        }
        assert!(Instant::now() < deadline, "runs still active: {runs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let runs = runs.as_array().unwrap();
    let count = |state: &str| runs.iter().filter(|r| r["state"] == state).count();
    assert_eq!(runs.len(), started, "no run lost, none made up");
    assert_eq!(count("SUCCEEDED"), started);
    // The runs that ran never overlapped (gold's limit is one).
    let mut spans: Vec<_> = runs
        .iter()
        .filter(|r| r["state"] == "SUCCEEDED")
        .map(|r| (time(r, "started_at"), time(r, "ended_at")))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
    }
}
