//! Fields that appear later are never lost: a record's fields that no column names land in
//! bronze's `_extra`, a table written before `_extra` existed (here by PyIceberg, as an older
//! cryptolake or a neighbour would have made it) gains the column by schema evolution, `table
//! history` shows the change, and PyIceberg and DuckDB read the evolved table.

use serde_json::Value;

use crate::common::Project;
use crate::readers::run_python;

/// bronze.coinbase_spot as it was before `_extra`, with one row, made by PyIceberg.
const OLD_TABLE: &str = r#"
import sys, datetime
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType, LongType, TimestampType
from pyiceberg.partitioning import PartitionSpec, PartitionField
from pyiceberg.transforms import DayTransform
catalog = SqlCatalog("cryptolake", uri=f"sqlite:///{sys.argv[1]}", warehouse=f"file://{sys.argv[2]}")
catalog.create_namespace_if_not_exists("bronze")
schema = Schema(
    NestedField(1, "amount", StringType(), required=False),
    NestedField(2, "base", StringType(), required=False),
    NestedField(3, "currency", StringType(), required=False),
    NestedField(4, "timestamp_utc", StringType(), required=False),
    NestedField(5, "_raw", StringType(), required=False),
    NestedField(6, "_file", StringType(), required=True),
    NestedField(7, "_record", LongType(), required=True),
    NestedField(8, "_ingest_time", TimestampType(), required=True),
)
spec = PartitionSpec(PartitionField(source_id=8, field_id=1000, transform=DayTransform(), name="_ingest_day"))
table = catalog.create_table("bronze.coinbase_spot", schema, partition_spec=spec)
row = pa.Table.from_pylist([{"amount": "42000.5", "base": "BTC", "currency": "USD",
    "timestamp_utc": "2026-01-01T00:00:00Z", "_raw": None, "_file": "coinbase_spot/2026/01/01/old.json",
    "_record": 0, "_ingest_time": datetime.datetime(2026, 1, 1)}], schema=schema.as_arrow())
table.append(row)
"#;

/// `_file|_record|_extra` of every row, by PyIceberg and by DuckDB.
const READ: &str = r#"
import sys, json, glob, os
from pyiceberg.catalog.sql import SqlCatalog
import duckdb
catalog = SqlCatalog("cryptolake", uri=f"sqlite:///{sys.argv[1]}", warehouse=f"file://{sys.argv[2]}")
t = catalog.load_table("bronze.coinbase_spot")
rows = t.scan().to_arrow().to_pylist()
py = sorted(f"{r['_file']}|{r['_record']}|{r['_extra']}" for r in rows)
site = os.path.dirname(os.path.dirname(duckdb.__file__))
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
for ext in ["avro", "iceberg"]:
    con.execute(f"LOAD '{glob.glob(f'{site}/duckdb_extension_{ext}/**/*.duckdb_extension', recursive=True)[0]}'")
duck = sorted(f"{f}|{r}|{e}" for f, r, e in con.execute(
    f"SELECT _file, _record, _extra FROM iceberg_scan('{t.metadata_location}')").fetchall())
print(json.dumps({"pyiceberg": py, "duckdb": duck}))
"#;

#[test]
fn unknown_fields_land_in_extra_of_an_evolved_table_that_readers_read() {
    let p = Project::new();
    let db = p.path().join("lake/catalog.db");
    let warehouse = p.path().join("lake/warehouse");
    std::fs::create_dir_all(&warehouse).unwrap();
    run_python(
        OLD_TABLE,
        &[db.to_str().unwrap(), warehouse.to_str().unwrap()],
    );

    let dir = p.path().join("lake/landing/coinbase_spot/2026/01/01");
    std::fs::create_dir_all(&dir).unwrap();
    // The issue's record: one field more inside `data` and one beside it.
    std::fs::write(
        dir.join("new.json"),
        concat!(
            r#"{"data":{"amount":"43000.12","base":"BTC","currency":"USD","venue":"x"},"timestamp_utc":"2026-01-01T00:00:01Z","extra":"y"}"#,
            "\n",
            r#"{"data":{"amount":"2300.5","base":"ETH","currency":"USD"},"timestamp_utc":"2026-01-01T00:00:02Z","seq":{"n":12345678901234567890}}"#,
            "\n",
        ),
    )
    .unwrap();
    p.ok(&["run", "ingest-files"]);

    let history = p.json(&["table", "history", "bronze.coinbase_spot"]);
    let snapshots = history.as_array().unwrap();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(snapshots[0]["schema_change"], Value::Null);
    assert_eq!(snapshots[1]["schema_change"], "+_extra");
    assert_eq!(snapshots[1]["added_records"], 2);
    let describe = p.json(&["table", "describe", "bronze.coinbase_spot"]);
    let columns = describe["columns"].as_array().unwrap();
    assert_eq!(columns.last().unwrap()["column"], "_extra");
    assert_eq!(columns.len(), 9);

    let expected = [
        "coinbase_spot/2026/01/01/new.json|0|{\"extra\":\"y\",\"venue\":\"x\"}",
        // A number wider than any integer type keeps every digit: the text as received.
        "coinbase_spot/2026/01/01/new.json|1|{\"seq\":{\"n\":12345678901234567890}}",
        "coinbase_spot/2026/01/01/old.json|0|None",
    ];
    let read: Value = serde_json::from_slice(&run_python(
        READ,
        &[db.to_str().unwrap(), warehouse.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(read["pyiceberg"], serde_json::json!(expected));
    assert_eq!(read["duckdb"], serde_json::json!(expected));

    // Silver takes the known fields and leaves the new ones in bronze: no `venue` column.
    p.ok(&["run", "silver"]);
    let prices = p.rows_text(
        "SELECT symbol, CAST(price AS VARCHAR) AS price FROM silver.quotes ORDER BY event_time",
        &["symbol", "price"],
    );
    assert_eq!(
        prices,
        [
            "BTC-USD|42000.5000000000000000",
            "BTC-USD|43000.1200000000000000",
            "ETH-USD|2300.5000000000000000"
        ]
    );
    let silver = p.json(&["table", "describe", "silver.quotes"]);
    assert!(
        !silver["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["column"] == "venue")
    );
}
