//! Independent Iceberg readers standing in for Athena find the rows `cryptolake sql` finds:
//! PyIceberg through the same catalog (the SQLite file, or its own Glue client against moto),
//! and DuckDB's `iceberg_scan` on each table's current metadata file (for Glue, the
//! `metadata_location` Glue holds, read over S3 with httpfs; extensions loaded from their PyPI
//! wheels, offline).

use std::process::Command;

use crate::common::Project;

/// Per table: a decimal or integer column whose sum is compared.
pub const CHECKS: [(&str, &str); 13] = [
    ("bronze.alpaca_quotes", "_record"),
    ("bronze.coinbase_spot", "_record"),
    ("bronze.coincap_assets", "_record"),
    ("bronze.coincap_rates", "_record"),
    ("bronze.coingecko_markets", "_record"),
    ("bronze.trades", "_record"),
    ("silver.quotes", "price"),
    ("silver.trades", "quantity"),
    ("silver.quarantine", "record"),
    ("gold.candles_1m", "close"),
    ("gold.candles_1h", "high"),
    ("gold.market_snapshot", "market_cap"),
    ("gold.trader_positions", "net_quantity"),
];

const SCRIPT: &str = r#"
import decimal, json, sys
from decimal import Decimal
decimal.getcontext().prec = 80  # the default 28 digits would round decimal(38, 16) sums
spec, checks, locations = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
name = lambda table: table  # cryptolake's layer.table as the catalog knows it
if spec["kind"] == "sql":
    from pyiceberg.catalog.sql import SqlCatalog
    catalog = SqlCatalog("cryptolake", uri=f"sqlite:///{spec['db']}", warehouse=f"file://{spec['warehouse']}")
else:
    import boto3
    from pyiceberg.catalog.glue import GlueCatalog
    aws = {"endpoint_url": spec["endpoint"], "region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    catalog = GlueCatalog("glue", **{"glue.endpoint": spec["endpoint"], "glue.region": "us-east-1",
        "glue.access-key-id": "testing", "glue.secret-access-key": "testing",
        "s3.endpoint": spec["endpoint"], "s3.region": "us-east-1",
        "s3.access-key-id": "testing", "s3.secret-access-key": "testing"})
    name = lambda table: spec["databases"][table.split(".")[0]] + "." + table.split(".")[1]
    glue = boto3.client("glue", **aws)
    locations = {t: glue.get_table(DatabaseName=name(t).split(".")[0], Name=t.split(".")[1])["Table"]["Parameters"]["metadata_location"] for t, _ in checks}
out = {}
for table, column in checks:
    t = catalog.load_table(name(table)).scan().to_arrow()
    values = [v for v in t.column(column).to_pylist() if v is not None]
    out[table] = {"rows": t.num_rows, "sum": format(sum((Decimal(v) for v in values), Decimal(0)).normalize(), "f")}
import duckdb, glob, os
site = os.path.dirname(os.path.dirname(duckdb.__file__))
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
for ext in ["avro", "iceberg", "httpfs"]:
    con.execute(f"LOAD '{glob.glob(f'{site}/duckdb_extension_{ext}/**/*.duckdb_extension', recursive=True)[0]}'")
if spec["kind"] == "glue":
    host = spec["endpoint"].removeprefix("http://")
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)")
out["duckdb"] = {}
for table, column in checks:
    n, total = con.execute(f"SELECT count(*), sum({column}) FROM iceberg_scan('{locations[table]}')").fetchone()
    out["duckdb"][table] = {"rows": n, "sum": format((Decimal(str(total)) if total is not None else Decimal(0)).normalize(), "f")}
if any(t == "silver.trades" for t, _ in checks):
    trades = catalog.load_table(name("silver.trades")).scan().to_arrow()
    cols = ["trade_id", "user_id", "symbol", "side", "quantity", "price"]
    text = lambda v: format(v, "f") if isinstance(v, Decimal) else str(v)  # not 0E-16
    out["trade_rows"] = sorted("|".join(text(v) for v in r) for r in zip(*(trades.column(c).to_pylist() for c in cols)))
print(json.dumps(out))
"#;

/// How the readers find the project's catalog: its SQLite file, or Glue at its endpoint with
/// the layers' database names.
fn reader_catalog(p: &Project) -> serde_json::Value {
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(&p.config).unwrap()).unwrap();
    let catalog = &config["catalog"];
    if catalog["type"].as_str() == Some("glue") {
        let databases = &catalog["databases"];
        serde_json::json!({
            "kind": "glue",
            "endpoint": catalog["endpoint"].as_str().unwrap(),
            "databases": {
                "bronze": databases["bronze"].as_str().unwrap(),
                "silver": databases["silver"].as_str().unwrap(),
                "gold": databases["gold"].as_str().unwrap(),
            },
        })
    } else {
        serde_json::json!({
            "kind": "sql",
            "db": p.path().join("lake/catalog.db"),
            "warehouse": p.path().join("lake/warehouse"),
        })
    }
}

/// Runs a Python script from the venv with arguments, requires success, returns stdout.
pub fn run_python(script: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(python())
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn python() -> String {
    std::env::var("CRYPTOLAKE_TEST_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        let venv = format!("{home}/.cache/cryptolake/venv/bin/python");
        assert!(
            std::path::Path::new(&venv).exists(),
            "PyIceberg venv missing: run scripts/setup.sh (scripts/test.sh does) or set CRYPTOLAKE_TEST_PYTHON"
        );
        venv
    })
}

#[test]
fn independent_readers_read_every_table_with_the_same_rows() {
    let p = Project::new();
    let args = [
        "--minutes",
        "3",
        "--seed",
        "4",
        "--symbols",
        "5",
        "--bad-rate",
        "0.05",
        "--dup-rate",
        "0.02",
    ];
    p.generate(&args);
    p.ok(&["run", "all"]);
    compare_with_independent_readers(&p);
}

#[test]
fn independent_readers_read_compacted_and_expired_tables_with_the_same_rows() {
    let p = Project::new();
    for minute in 0..3 {
        p.minute(minute, "3", &["--bad-rate", "0.05"]);
    }
    p.ok(&[
        "run",
        "maintain",
        "--target-size",
        "1048576",
        "--min-input-files",
        "2",
        "--older-than",
        "0s",
    ]);
    let history = p.json(&["table", "history", "bronze.trades"]);
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["operation"],
        "replace"
    );
    compare_with_independent_readers(&p);
}

fn compare_with_independent_readers(p: &Project) {
    compare_tables_with_independent_readers(p, &CHECKS);
}

/// PyIceberg and DuckDB find each table's row count and `sum(column)` that `cryptolake sql`
/// finds; with `silver.trades` among them, every trade row too.
pub fn compare_tables_with_independent_readers(p: &Project, checks: &[(&str, &str)]) {
    let locations: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(t, _)| {
            (
                t.to_string(),
                p.json(&["table", "describe", t])["metadata_location"].clone(),
            )
        })
        .collect();
    let locations = serde_json::to_string(&locations).unwrap();
    let checks_json = serde_json::to_string(checks).unwrap();
    let catalog = reader_catalog(p).to_string();
    let stdout = run_python(SCRIPT, &[&catalog, &checks_json, &locations]);
    let seen: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    for &(table, column) in checks {
        let ours = p.sql(&format!(
            "SELECT count(*) AS n, CAST(COALESCE(sum({column}), 0) AS VARCHAR) AS s FROM {table}"
        ));
        let sum = rust_decimal::Decimal::from_str_exact(ours[0]["s"].as_str().unwrap())
            .unwrap()
            .normalize();
        assert_eq!(seen[table]["rows"], ours[0]["n"], "{table} rows");
        assert_eq!(
            seen[table]["sum"].as_str().unwrap(),
            sum.to_string(),
            "{table} sum({column})"
        );
        assert!(ours[0]["n"].as_u64().unwrap() > 0, "{table} must have rows");
        let duck = &seen["duckdb"][table];
        assert_eq!(duck["rows"], ours[0]["n"], "{table} rows (DuckDB)");
        assert_eq!(
            duck["sum"].as_str().unwrap(),
            sum.to_string(),
            "{table} sum({column}) (DuckDB)"
        );
    }
    // Row by row for one table: every trade with its exact decimals.
    let wants_trades = checks.iter().any(|(table, _)| *table == "silver.trades");
    assert_eq!(
        seen.get("trade_rows").is_some(),
        wants_trades,
        "PyIceberg read silver.trades row by row exactly when it was checked"
    );
    if !wants_trades {
        return;
    }
    let rows = p.sql(
        "SELECT trade_id || '|' || user_id || '|' || symbol || '|' || side || '|' || \
           CAST(quantity AS VARCHAR) || '|' || CAST(price AS VARCHAR) AS r FROM silver.trades ORDER BY r",
    );
    let ours: Vec<&str> = rows.iter().map(|r| r["r"].as_str().unwrap()).collect();
    let theirs: Vec<&str> = seen["trade_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(ours.len(), theirs.len(), "trade rows");
    // The first difference only: a full diff of thousands of rows helps nobody.
    if let Some((i, (a, b))) = ours
        .iter()
        .zip(&theirs)
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!("trade row {i}: cryptolake {a:?}, PyIceberg {b:?}");
    }
}
