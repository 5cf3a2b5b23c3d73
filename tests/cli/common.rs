//! Test harness: a project directory and the real `cryptolake` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Map, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_cryptolake");

pub type Row = Map<String, Value>;

/// Every landing source.
pub const SOURCES: [&str; 6] = [
    "alpaca_quotes",
    "coinbase_spot",
    "coincap_assets",
    "coincap_rates",
    "coingecko_markets",
    "trades",
];

/// A project made by `cryptolake init` in a temporary directory.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Environment every command gets (the AWS variables of a Glue project).
    pub env: Vec<(String, String)>,
}

impl Project {
    pub fn new() -> Self {
        Self::init(&[], &[])
    }

    /// `cryptolake init DIR ARGS...` with `env` for it and every later command.
    pub fn init(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let out = Command::new(BIN)
            .arg("init")
            .arg(dir.path())
            .args(args)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("cryptolake.toml");
        Self { dir, config, env }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-c")
            .arg(&self.config)
            .args(args)
            .envs(self.env.iter().cloned())
            .env_remove("CRYPTOLAKE_FAULT");
        c
    }

    /// Runs and returns the output, whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs, requires success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "cryptolake {args:?} failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--output json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn sql(&self, query: &str) -> Vec<Row> {
        match self.json(&["sql", query]) {
            Value::Array(rows) => rows
                .into_iter()
                .map(|r| r.as_object().unwrap().clone())
                .collect(),
            other => panic!("not rows: {other}"),
        }
    }

    /// A query's rows as text: the columns' values joined by `|`, null as `-`, strings as they
    /// are and other values as JSON (what exact-value assertions compare).
    pub fn rows_text(&self, query: &str, columns: &[&str]) -> Vec<String> {
        self.sql(query)
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| match &r[*c] {
                        Value::Null => "-".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    /// `SELECT count(*)` of a table.
    pub fn count(&self, table: &str) -> u64 {
        let rows = self.sql(&format!("SELECT count(*) AS n FROM {table}"));
        rows[0]["n"].as_u64().unwrap()
    }

    /// Row counts of every table, from `table list`.
    pub fn table_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let list = self.json(&["table", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["table"].as_str().unwrap().to_string(),
                    t["records"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Current snapshot id of every table that has one. (A first run that dies may leave
    /// empty tables registered; they hold no snapshot and no rows.)
    pub fn snapshots(&self) -> std::collections::BTreeMap<String, Value> {
        let list = self.json(&["table", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .filter(|t| !t["snapshot_id"].is_null())
            .map(|t| {
                (
                    t["table"].as_str().unwrap().to_string(),
                    t["snapshot_id"].clone(),
                )
            })
            .collect()
    }

    /// One minute of data starting at minute `m` of 2026-01-01 (seed `m`), then `run all`.
    pub fn minute(&self, m: u32, symbols: &str, extra: &[&str]) {
        let (start, seed) = (format!("2026-01-01T00:{m:02}:00Z"), m.to_string());
        let mut args = vec![
            "--minutes",
            "1",
            "--seed",
            &seed,
            "--symbols",
            symbols,
            "--start",
            &start,
        ];
        args.extend(extra);
        self.generate(&args);
        self.ok(&["run", "all"]);
    }

    /// `gen` with the given extra arguments; returns per-source counts.
    pub fn generate(&self, args: &[&str]) -> Map<String, Value> {
        let mut a = vec!["gen"];
        a.extend(args);
        self.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["source"].as_str().unwrap().to_string(), r.clone()))
            .collect()
    }
}

/// The element of a JSON array whose `key` equals `value`.
pub fn find<'a>(array: &'a Value, key: &str, value: &str) -> &'a Value {
    array
        .as_array()
        .and_then(|a| a.iter().find(|e| e[key] == value))
        .unwrap_or_else(|| panic!("no {key} = {value} in {array}"))
}

/// A field of a gen count row.
pub fn field(counts: &Map<String, Value>, source: &str, key: &str) -> u64 {
    counts[source][key].as_u64().unwrap()
}
