//! Damaged table metadata: a table's current metadata file, its manifest list or its manifests
//! truncated, as a torn copy or a full disk leaves them. Every job that needs the file and
//! `table check` stop with a clear error naming the file: never a panic, never a commit built
//! on what could not be read. Once the file is back, the same commands succeed.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::Project;

const TABLE: &str = "silver.quotes";

/// What is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Metadata,
    ManifestList,
    Manifests,
}

fn local(location: &str) -> PathBuf {
    PathBuf::from(location.strip_prefix("file://").unwrap_or(location))
}

fn metadata_location(p: &Project) -> String {
    let d = p.json(&["table", "describe", TABLE]);
    d["metadata_location"].as_str().unwrap().to_string()
}

/// The files `damage` truncates, for the table as it is now.
fn files(p: &Project, damage: Damage) -> Vec<PathBuf> {
    let metadata = local(&metadata_location(p));
    let m: Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    match damage {
        Damage::Metadata => vec![metadata],
        Damage::ManifestList => {
            let current = &m["current-snapshot-id"];
            let snapshot = m["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| &s["snapshot-id"] == current)
                .unwrap();
            vec![local(snapshot["manifest-list"].as_str().unwrap())]
        }
        Damage::Manifests => {
            let dir = metadata.parent().unwrap();
            let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|f| {
                    let name = f.file_name().unwrap().to_string_lossy();
                    name.ends_with(".avro") && !name.starts_with("snap-")
                })
                .collect();
            manifests.sort();
            manifests
        }
    }
}

/// Truncates each file to half its size; returns what to put back.
fn truncate(files: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            std::fs::write(f, &bytes[..bytes.len() / 2]).unwrap();
            (f.clone(), bytes)
        })
        .collect()
}

fn named(stderr: &str, files: &[PathBuf]) -> bool {
    files
        .iter()
        .any(|f| stderr.contains(f.file_name().unwrap().to_str().unwrap()))
}

/// The commands tried on a damaged table; each must fail naming the file, or (for a command
/// that has no need of it) succeed without changing the table.
const COMMANDS: [&[&str]; 6] = [
    &["run", "all"],
    &["run", "compact", "--table", TABLE, "--min-input-files", "1"],
    &[
        "run",
        "expire-snapshots",
        "--table",
        TABLE,
        "--older-than",
        "0s",
    ],
    &[
        "run",
        "remove-orphans",
        "--table",
        TABLE,
        "--older-than",
        "0s",
    ],
    &["table", "check", TABLE],
    &["sql", "SELECT count(*) AS n FROM silver.quotes"],
];

fn attempt(p: &Project, damage: Damage) -> Vec<String> {
    p.generate(&[
        "--minutes",
        "1",
        "--seed",
        "2",
        "--symbols",
        "2",
        "--start",
        "2026-01-01T00:03:00Z",
    ]);
    let damaged = files(p, damage);
    assert!(!damaged.is_empty(), "{damage:?}");
    let pointer = metadata_location(p);
    let originals = truncate(&damaged);
    let mut outcomes = Vec::new();
    for args in COMMANDS {
        let out = p.output(args);
        // `table check` reports its findings on stdout, errors go to stderr.
        let stderr = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            out.status.code(),
            Some(101),
            "{damage:?} {args:?} panicked: {stderr}"
        );
        assert!(
            out.status.signal().is_none(),
            "{damage:?} {args:?}: {stderr}"
        );
        let outcome = if out.status.success() {
            "ok".to_string()
        } else {
            assert!(
                named(&stderr, &damaged),
                "{damage:?} {args:?}: the error names no damaged file: {stderr}"
            );
            format!("exit {}", out.status.code().unwrap())
        };
        let label = if args[0] == "run" { args[1] } else { args[0] };
        outcomes.push(format!("{label} {outcome}"));
    }
    for (f, bytes) in originals {
        std::fs::write(f, bytes).unwrap();
    }
    // Nothing was committed on what could not be read.
    assert_eq!(metadata_location(p), pointer, "{damage:?}");
    outcomes
}

#[test]
fn truncated_metadata_manifest_lists_and_manifests_stop_every_job_with_the_files_name() {
    let p = Project::new();
    // Two runs: the table has a snapshot expire-snapshots would expire, whose files it can
    // delete only once it knows what the current snapshot still reaches.
    p.generate(&["--minutes", "2", "--seed", "1", "--symbols", "2"]);
    p.ok(&["run", "all"]);
    p.generate(&[
        "--minutes",
        "1",
        "--seed",
        "3",
        "--symbols",
        "2",
        "--start",
        "2026-01-01T00:02:00Z",
    ]);
    p.ok(&["run", "all"]);
    let quotes = p.count(TABLE);
    let mut seen = Vec::new();
    for damage in [Damage::Metadata, Damage::ManifestList, Damage::Manifests] {
        seen.push((damage, attempt(&p, damage)));
    }
    let seen: Vec<String> = seen
        .iter()
        .map(|(d, o)| format!("{d:?}: {}", o.join(", ")))
        .collect();
    // Jobs and `sql` fail with the internal kind (exit 70: nothing a retry or another flag
    // mends), `table check` with its findings (exit 5).
    let every = "all exit 70, compact exit 70, expire-snapshots exit 70, remove-orphans exit 70, \
                 table exit 5, sql exit 70";
    assert_eq!(
        seen,
        [
            format!("Metadata: {every}"),
            format!("ManifestList: {every}"),
            format!("Manifests: {every}"),
        ]
    );
    // With the files back, the minute that waited lands: every record exactly once.
    p.ok(&["run", "all"]);
    assert!(p.count(TABLE) > quotes);
    let dup = p.sql(
        "SELECT count(*) AS n FROM (SELECT source, symbol, event_time FROM silver.quotes \
         GROUP BY 1, 2, 3 HAVING count(*) > 1)",
    );
    assert_eq!(dup[0]["n"], 0);
    p.ok(&["table", "check", TABLE]);
}

/// A tmpfs mounted over a project's warehouse, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir)
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The disk fills while a job writes (the warehouse on a 1 MiB tmpfs): a clear error, every
/// table unchanged, and once there is space again the re-run lands exactly what a project with
/// room landed; `remove-orphans` then takes what the failed run left.
#[test]
fn a_full_disk_fails_clearly_leaves_tables_unchanged_and_the_rerun_is_exact() {
    let big = [
        "--minutes",
        "30",
        "--seed",
        "2",
        "--symbols",
        "20",
        "--start",
        "2026-01-01T00:01:00Z",
    ];
    let first = ["--minutes", "1", "--seed", "1", "--symbols", "3"];
    let roomy = Project::new();
    roomy.generate(&first);
    roomy.ok(&["run", "all"]);
    roomy.generate(&big);
    roomy.ok(&["run", "all"]);

    let p = Project::new();
    let disk = SmallDisk::mount(p.path().join("lake/warehouse"), "1m");
    p.generate(&first);
    p.ok(&["run", "all"]);
    // Bronze's smaller files fit; silver's do not: silver and gold stay as they were.
    let derived = |p: &Project| {
        let mut s = p.snapshots();
        s.retain(|table, _| !table.starts_with("bronze."));
        s
    };
    let before = derived(&p);
    p.generate(&big);
    let out = p.output(&["run", "all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(derived(&p), before, "a table changed on a full disk");
    disk.resize("256m");
    p.ok(&["run", "all"]);
    assert_eq!(p.table_counts(), roomy.table_counts());
    for (query, columns) in [
        (
            "SELECT symbol, CAST(sum(price) AS VARCHAR) AS s, count(*) AS n FROM silver.quotes \
             GROUP BY symbol ORDER BY symbol",
            &["symbol", "s", "n"][..],
        ),
        (
            "SELECT symbol, CAST(sum(close) AS VARCHAR) AS s, sum(quote_count) AS n \
             FROM gold.candles_1m GROUP BY symbol ORDER BY symbol",
            &["symbol", "s", "n"],
        ),
    ] {
        assert_eq!(p.rows_text(query, columns), roomy.rows_text(query, columns));
    }
    p.ok(&["run", "remove-orphans", "--older-than", "0s"]);
    crate::kills::no_orphans(&p);
}
