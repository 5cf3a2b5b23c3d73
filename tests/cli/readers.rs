//! Independent Iceberg readers standing in for Athena find the rows `cryptolake sql` finds:
//! PyIceberg through the same SQLite catalog file, and DuckDB's `iceberg_scan` on each table's
//! current metadata file (extensions loaded from their PyPI wheels, offline).

use std::process::Command;

use crate::common::Project;

/// Per table: a decimal or integer column whose sum is compared.
const CHECKS: [(&str, &str); 13] = [
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
from pyiceberg.catalog.sql import SqlCatalog
db, warehouse, checks, locations = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
catalog = SqlCatalog("cryptolake", uri=f"sqlite:///{db}", warehouse=f"file://{warehouse}")
out = {}
for table, column in checks:
    t = catalog.load_table(table).scan().to_arrow()
    values = [v for v in t.column(column).to_pylist() if v is not None]
    out[table] = {"rows": t.num_rows, "sum": format(sum((Decimal(v) for v in values), Decimal(0)).normalize(), "f")}
import duckdb, glob, os
site = os.path.dirname(os.path.dirname(duckdb.__file__))
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
for name in ["avro", "iceberg"]:
    con.execute(f"LOAD '{glob.glob(f'{site}/duckdb_extension_{name}/**/*.duckdb_extension', recursive=True)[0]}'")
out["duckdb"] = {}
for table, column in checks:
    n, total = con.execute(f"SELECT count(*), sum({column}) FROM iceberg_scan('{locations[table]}')").fetchone()
    out["duckdb"][table] = {"rows": n, "sum": format((Decimal(str(total)) if total is not None else Decimal(0)).normalize(), "f")}
if any(t == "silver.trades" for t, _ in checks):
    trades = catalog.load_table("silver.trades").scan().to_arrow()
    cols = ["trade_id", "user_id", "symbol", "side", "quantity", "price"]
    text = lambda v: format(v, "f") if isinstance(v, Decimal) else str(v)  # not 0E-16
    out["trade_rows"] = sorted("|".join(text(v) for v in r) for r in zip(*(trades.column(c).to_pylist() for c in cols)))
print(json.dumps(out))
"#;

fn python() -> String {
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
    let out = Command::new(python())
        .args(["-c", SCRIPT])
        .arg(p.path().join("lake/catalog.db"))
        .arg(p.path().join("lake/warehouse"))
        .arg(&checks_json)
        .arg(&locations)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyiceberg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    if seen.get("trade_rows").is_none() {
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
