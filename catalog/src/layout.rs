//! Every table cryptolake writes: its schema, partition spec and properties, in one place.
//!
//! Types follow what Athena reads: `timestamp` without zone (event times are UTC), exact
//! `decimal(38, 16)` for prices and amounts (CoinCap sends 16 decimal places), Iceberg format
//! v2, Parquet with zstd, and only the transforms Athena supports (identity, day, month).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iceberg::spec::{
    NestedField, PrimitiveType, Schema, SchemaRef, TableMetadata, Transform, Type,
    UnboundPartitionSpec,
};
use iceberg::{NamespaceIdent, TableCreation, TableIdent};

use crate::{Error, Result};

/// Precision and scale of every price and amount column.
pub const DECIMAL_PRECISION: u32 = 38;
/// Decimal places kept for prices and amounts.
pub const DECIMAL_SCALE: u32 = 16;

/// The column types the layouts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    Long,
    Double,
    /// `decimal(38, 16)`.
    Decimal,
    /// Microsecond timestamp without zone, holding UTC.
    Timestamp,
    Date,
}

impl ColumnType {
    fn iceberg(self) -> Type {
        Type::Primitive(match self {
            ColumnType::String => PrimitiveType::String,
            ColumnType::Int => PrimitiveType::Int,
            ColumnType::Long => PrimitiveType::Long,
            ColumnType::Double => PrimitiveType::Double,
            ColumnType::Decimal => PrimitiveType::Decimal {
                precision: DECIMAL_PRECISION,
                scale: DECIMAL_SCALE,
            },
            ColumnType::Timestamp => PrimitiveType::Timestamp,
            ColumnType::Date => PrimitiveType::Date,
        })
    }
}

/// One column of a layout.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub required: bool,
}

/// One partition field: a source column and an Athena-supported transform.
#[derive(Debug, Clone)]
pub struct PartitionField {
    pub column: &'static str,
    pub transform: Transform,
    pub name: &'static str,
}

/// A table's full definition.
#[derive(Debug, Clone)]
pub struct TableLayout {
    pub namespace: String,
    pub name: String,
    pub columns: Vec<Column>,
    pub partition: Vec<PartitionField>,
}

const fn opt(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        required: true,
    }
}

fn part(column: &'static str, transform: Transform, name: &'static str) -> PartitionField {
    PartitionField {
        column,
        transform,
        name,
    }
}

use ColumnType::{Date, Decimal, Double, Int, Long, String as Str, Timestamp};

/// The landing sources, in the order jobs process them.
pub const LANDING_SOURCES: [&str; 6] = [
    "coincap_assets",
    "coincap_rates",
    "coinbase_spot",
    "coingecko_markets",
    "alpaca_quotes",
    "trades",
];

/// Landing sources `ingest-files` takes into bronze that silver's quotes and trades do not
/// read: Alpaca's market trades (no user, so not silver.trades) and CoinAPI's asset icons
/// (silver.assets reads them).
pub const REFERENCE_SOURCES: [&str; 2] = ["alpaca_trades", "coinapi_icons"];

/// Metadata columns every bronze table ends with.
pub const BRONZE_META: [Column; 4] = [
    opt("_raw", Str),
    req("_file", Str),
    req("_record", Long),
    req("_ingest_time", Timestamp),
];

/// Sources the configuration defines (`[[source]]`), by name: their bronze fields. Set once
/// per process from the config, before any job; the names live as long as the process (a
/// config's few field names).
static DEFINED: std::sync::RwLock<BTreeMap<String, &'static [&'static str]>> =
    std::sync::RwLock::new(BTreeMap::new());

/// Registers a configured source's bronze fields (`[[source]]`). A built-in name, or a second
/// definition of a name with other fields, is an error.
pub fn define_source(name: &str, fields: &[String]) -> Result<()> {
    if builtin_fields(name).is_some() {
        return Err(Error::invalid(format!(
            "source {name}: a built-in source has that name"
        )));
    }
    let mut defined = DEFINED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(have) = defined.get(name) {
        if have.iter().copied().eq(fields.iter().map(String::as_str)) {
            return Ok(());
        }
        return Err(Error::invalid(format!(
            "source {name} is defined twice with other fields"
        )));
    }
    let leaked: Vec<&'static str> = fields
        .iter()
        .map(|f| &*Box::leak(f.clone().into_boxed_str()))
        .collect();
    defined.insert(name.to_string(), Box::leak(leaked.into_boxed_slice()));
    Ok(())
}

/// The configured sources' names, sorted.
pub fn defined_sources() -> Vec<String> {
    let defined = DEFINED.read().unwrap_or_else(|e| e.into_inner());
    defined.keys().cloned().collect()
}

/// The source fields a bronze table keeps for a landing source (built in, or defined by the
/// configuration), as text exactly as received.
pub fn bronze_source_fields(source: &str) -> Option<&'static [&'static str]> {
    builtin_fields(source).or_else(|| {
        let defined = DEFINED.read().unwrap_or_else(|e| e.into_inner());
        defined.get(source).copied()
    })
}

/// The built-in sources' fields, as text exactly as received (numbers keep every digit). Field
/// names are snake_case; Alpaca's one-letter names are spelled out (`ap` -> `ask_price`,
/// `as` -> `ask_size`, `bp`, `bs`, `t` -> `timestamp`).
fn builtin_fields(source: &str) -> Option<&'static [&'static str]> {
    Some(match source {
        "coincap_assets" => &[
            "id",
            "rank",
            "symbol",
            "name",
            "supply",
            "max_supply",
            "market_cap_usd",
            "volume_usd_24hr",
            "price_usd",
            "change_percent_24hr",
            "vwap_24hr",
            "explorer",
            "timestamp",
        ],
        "coincap_rates" => &[
            "id",
            "symbol",
            "currency_symbol",
            "type",
            "rate_usd",
            "timestamp",
        ],
        "coinbase_spot" => &["amount", "base", "currency", "timestamp_utc"],
        "coingecko_markets" => &[
            "id",
            "symbol",
            "name",
            "current_price",
            "market_cap",
            "market_cap_rank",
            "total_volume",
            "high_24h",
            "low_24h",
            "price_change_percentage_24h",
            "circulating_supply",
            "total_supply",
            "max_supply",
            "last_updated",
        ],
        "alpaca_quotes" => &[
            "symbol",
            "ask_price",
            "ask_size",
            "bid_price",
            "bid_size",
            "timestamp",
        ],
        "alpaca_trades" => &[
            "symbol",
            "trade_id",
            "price",
            "size",
            "timestamp",
            "taker_side",
        ],
        "coinapi_icons" => &["asset_id", "url", "exchange_id"],
        "trades" => &[
            "trade_id",
            "user_id",
            "symbol",
            "side",
            "quantity",
            "price",
            "timestamp",
        ],
        _ => return None,
    })
}

/// Columns a Kafka bronze table has after [`BRONZE_META`]: where each message was and what came
/// with it. `_file` holds `<topic>/<partition>` and `_record` the offset, so silver and
/// quarantine name a message the way they name a landing record.
pub const KAFKA_META: [Column; 5] = [
    req("_kafka_partition", Int),
    req("_kafka_offset", Long),
    opt("_kafka_timestamp", Timestamp),
    opt("_kafka_key", Str),
    opt("_kafka_headers", Str),
];

/// `bronze.<name>` for a Kafka topic whose values carry `format`'s fields (a landing source's):
/// the landing layout's columns, then [`KAFKA_META`]; partitioned by ingest day.
pub fn kafka_bronze(name: &str, format: &str) -> Result<TableLayout> {
    let mut layout = bronze_columns(format)?;
    layout.name = name.into();
    layout.columns.extend(KAFKA_META.iter().cloned());
    layout.columns.push(EXTRA);
    Ok(layout)
}

/// The last column of every bronze table: the fields a record carried that no column names,
/// as a JSON object with their values exactly as received (`{"venue":"x"}`), null when none.
/// Last, so a table created before it gains it by schema evolution in the same place.
pub const EXTRA: Column = opt("_extra", Str);

/// `bronze.<source>`: source fields as text plus ingest metadata and [`EXTRA`], partitioned by
/// ingest day.
pub fn bronze(source: &str) -> Result<TableLayout> {
    let mut layout = bronze_columns(source)?;
    layout.columns.push(EXTRA);
    Ok(layout)
}

fn bronze_columns(source: &str) -> Result<TableLayout> {
    let fields = bronze_source_fields(source)
        .ok_or_else(|| Error::invalid(format!("unknown landing source `{source}`")))?;
    let mut columns: Vec<Column> = fields.iter().map(|f| opt(f, Str)).collect();
    columns.extend(BRONZE_META.iter().cloned());
    Ok(TableLayout {
        namespace: "bronze".into(),
        name: source.into(),
        columns,
        partition: vec![part("_ingest_time", Transform::Day, "_ingest_day")],
    })
}

/// Seed 003's derived date columns, shared by silver tables.
const DATE_COLUMNS: [Column; 5] = [
    req("date", Date),
    req("year", Int),
    req("month", Int),
    req("day", Int),
    req("hour", Int),
];

/// `silver.quotes`: one normalized row per quote from every quote-like source.
pub fn silver_quotes() -> TableLayout {
    let mut columns = vec![
        req("source", Str),
        req("symbol", Str),
        req("price", Decimal),
        opt("bid", Decimal),
        opt("ask", Decimal),
        opt("bid_size", Decimal),
        opt("ask_size", Decimal),
        opt("volume_24h", Decimal),
        opt("market_cap", Decimal),
        req("event_time", Timestamp),
        req("ingest_time", Timestamp),
    ];
    columns.extend(DATE_COLUMNS.iter().cloned());
    columns.push(req("bronze_file", Str));
    // The bronze row's `_record` (a landing file's record, a Kafka offset): what the console's
    // lineage follows. Last and optional: schema evolution adds it to older tables.
    columns.push(opt("bronze_record", Long));
    TableLayout {
        namespace: "silver".into(),
        name: "quotes".into(),
        columns,
        partition: symbol_day("event_time"),
    }
}

/// `silver.trades`: one row per simulated trade.
pub fn silver_trades() -> TableLayout {
    let mut columns = vec![
        req("source", Str),
        req("trade_id", Str),
        req("user_id", Str),
        req("symbol", Str),
        req("side", Str),
        req("quantity", Decimal),
        req("price", Decimal),
        req("event_time", Timestamp),
        req("ingest_time", Timestamp),
    ];
    columns.extend(DATE_COLUMNS.iter().cloned());
    columns.push(req("bronze_file", Str));
    columns.push(opt("bronze_record", Long));
    TableLayout {
        namespace: "silver".into(),
        name: "trades".into(),
        columns,
        partition: symbol_day("event_time"),
    }
}

/// `silver.assets` (seed 001's `crypto_assets`): one row per asset from CoinCap's assets with
/// CoinAPI's icon, upserted by `run assets`. With history (SCD type 2) an asset has a row per
/// version, `valid_to` set on all but the current one; without, `valid_to` is always null.
pub fn silver_assets() -> TableLayout {
    TableLayout {
        namespace: "silver".into(),
        name: "assets".into(),
        columns: vec![
            req("id", Str),
            opt("symbol", Str),
            opt("name", Str),
            opt("rank", Int),
            opt("supply", Decimal),
            opt("max_supply", Decimal),
            opt("market_cap_usd", Decimal),
            opt("icon_url", Str),
            req("updated_at", Timestamp),
            req("valid_from", Timestamp),
            opt("valid_to", Timestamp),
        ],
        partition: vec![],
    }
}

/// `silver.quarantine`: records that could not be parsed or failed a check, with the reason.
pub fn silver_quarantine() -> TableLayout {
    TableLayout {
        namespace: "silver".into(),
        name: "quarantine".into(),
        columns: vec![
            req("source", Str),
            req("file", Str),
            req("record", Long),
            req("raw", Str),
            req("reason", Str),
            req("ingest_time", Timestamp),
            req("quarantined_at", Timestamp),
        ],
        partition: vec![part("source", Transform::Identity, "source")],
    }
}

fn candles(name: &str, transform: Transform, part_name: &'static str) -> TableLayout {
    TableLayout {
        namespace: "gold".into(),
        name: name.into(),
        columns: vec![
            req("symbol", Str),
            req("window_start", Timestamp),
            req("window_end", Timestamp),
            req("open", Decimal),
            req("high", Decimal),
            req("low", Decimal),
            req("close", Decimal),
            opt("volume", Decimal),
            opt("vwap", Decimal),
            req("quote_count", Long),
            req("trade_count", Long),
            // Sum of the window's trades' price x quantity, each rounded to the scale: what
            // `vwap` divides by `volume`, kept so that hours are rolled up from minutes exactly.
            // Last, as schema evolution added it to tables created before.
            opt("notional", Decimal),
            // The asset's name (`Bitcoin` for `BTC-USD`) from `silver.assets` when the candle
            // was computed; empty before `run assets` knows the asset. Added after `notional`.
            opt("asset_name", Str),
        ],
        partition: vec![part("window_start", transform, part_name)],
    }
}

/// `gold.candles_1m`: one-minute OHLC candles per symbol, with volume and VWAP from trades.
pub fn gold_candles_1m() -> TableLayout {
    candles("candles_1m", Transform::Day, "window_day")
}

/// `gold.candles_1h`: one-hour candles.
pub fn gold_candles_1h() -> TableLayout {
    candles("candles_1h", Transform::Month, "window_month")
}

/// `gold.market_snapshot`: seed 004's dominance and volume share per asset and snapshot.
pub fn gold_market_snapshot() -> TableLayout {
    TableLayout {
        namespace: "gold".into(),
        name: "market_snapshot".into(),
        columns: vec![
            req("snapshot_time", Timestamp),
            req("source", Str),
            req("symbol", Str),
            opt("price", Decimal),
            opt("market_cap", Decimal),
            opt("volume_24h", Decimal),
            opt("dominance_pct", Double),
            opt("volume_pct", Double),
        ],
        partition: vec![part("snapshot_time", Transform::Day, "snapshot_day")],
    }
}

/// `gold.trader_positions`: buy and sell volume and net position per user, symbol and day.
pub fn gold_trader_positions() -> TableLayout {
    TableLayout {
        namespace: "gold".into(),
        name: "trader_positions".into(),
        columns: vec![
            req("user_id", Str),
            req("symbol", Str),
            req("day", Date),
            req("buy_quantity", Decimal),
            req("sell_quantity", Decimal),
            req("net_quantity", Decimal),
            req("buy_notional", Decimal),
            req("sell_notional", Decimal),
            req("trade_count", Long),
        ],
        partition: vec![part("day", Transform::Identity, "day")],
    }
}

/// `gold.alerts`: every firing of a price alert rule, recorded before it is delivered, with its
/// delivery's state per channel (`delivered`, `failed`; null when the rule has no such
/// channel). `alert_id` is the idempotency key deliveries carry.
pub fn gold_alerts() -> TableLayout {
    TableLayout {
        namespace: "gold".into(),
        name: "alerts".into(),
        columns: vec![
            req("alert_id", Str),
            req("rule", Str),
            req("symbol", Str),
            req("source", Str),
            req("condition", Str),
            // The price, or the change in percent of a `change_pct` rule.
            req("value", Decimal),
            req("price", Decimal),
            req("event_time", Timestamp),
            req("fired_at", Timestamp),
            // `pending` (recorded, not yet sent), `failed` (retried by the next run),
            // `delivered`, or `no_channel`.
            req("delivery_state", Str),
            opt("sns_state", Str),
            opt("webhook_state", Str),
            req("attempts", Int),
            opt("last_error", Str),
            opt("delivered_at", Timestamp),
        ],
        partition: vec![part("event_time", Transform::Day, "event_day")],
    }
}

fn symbol_day(time_column: &'static str) -> Vec<PartitionField> {
    vec![
        part("symbol", Transform::Identity, "symbol"),
        part(time_column, Transform::Day, "event_day"),
    ]
}

impl TableLayout {
    /// The table's identifier, `namespace.name`.
    pub fn ident(&self) -> TableIdent {
        TableIdent::new(
            NamespaceIdent::new(self.namespace.clone()),
            self.name.clone(),
        )
    }

    /// The Iceberg schema, field ids from 1 in column order.
    pub fn schema(&self) -> Result<SchemaRef> {
        let fields = self
            .columns
            .iter()
            .zip(1..)
            .map(|(c, id)| {
                let f = if c.required {
                    NestedField::required(id, c.name, c.ty.iceberg())
                } else {
                    NestedField::optional(id, c.name, c.ty.iceberg())
                };
                Arc::new(f)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(Schema::builder().with_fields(fields).build()?))
    }

    /// The layout's columns that `schema` lacks (by name), in layout order: what a table
    /// created by an older cryptolake gains by schema evolution ([`crate::MetadataCommit::add_columns`]).
    /// A required column cannot be added (the rows already written have no value for it), so
    /// one missing is an error that names it.
    pub fn missing_columns(&self, schema: &Schema) -> Result<Vec<(&'static str, Type)>> {
        let mut out = Vec::new();
        for c in &self.columns {
            if schema.field_by_name(c.name).is_some() {
                continue;
            }
            if c.required {
                return Err(Error::invalid(format!(
                    "{}.{} lacks the required column {}: a required column cannot be added to \
                     rows already written; recreate the table",
                    self.namespace, self.name, c.name
                )));
            }
            out.push((c.name, c.ty.iceberg()));
        }
        Ok(out)
    }

    /// That `metadata`'s default partition spec is this layout's (the same source columns and
    /// transforms, in order). Every job writes a layout's tables by its own spec, and the
    /// readers of silver and gold prune by it: a table whose spec another writer changed
    /// (PyIceberg's `update_spec`, Spark's `ADD PARTITION FIELD`) is refused with a usage error
    /// rather than written or read under assumptions that no longer hold.
    pub fn check_partition_spec(&self, metadata: &TableMetadata) -> Result<()> {
        let spec = metadata.default_partition_spec();
        let schema = metadata.current_schema();
        let show = |column: &str, transform: Transform| match transform {
            Transform::Identity => column.to_string(),
            t => format!("{t}({column})"),
        };
        let have: Vec<String> = spec
            .fields()
            .iter()
            .map(|f| {
                let column = schema.name_by_field_id(f.source_id).unwrap_or("?");
                show(column, f.transform)
            })
            .collect();
        let want: Vec<String> = self
            .partition
            .iter()
            .map(|p| show(p.column, p.transform))
            .collect();
        if have == want {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "{}.{} is partitioned by ({}) (spec {}), not by ({}) as cryptolake writes it: \
             another writer changed its partition spec; set it back (PyIceberg `update_spec`, \
             Spark `ALTER TABLE ... DROP/ADD PARTITION FIELD`) for cryptolake's jobs to use it",
            self.namespace,
            self.name,
            have.join(", "),
            spec.spec_id(),
            want.join(", ")
        )))
    }

    /// The unbound partition spec.
    pub fn partition_spec(&self) -> Result<UnboundPartitionSpec> {
        let mut builder = UnboundPartitionSpec::builder().with_spec_id(0);
        for p in &self.partition {
            let id = self
                .columns
                .iter()
                .position(|c| c.name == p.column)
                .ok_or_else(|| Error::invalid(format!("no column {} to partition", p.column)))?;
            builder = builder.add_partition_field(id as i32 + 1, p.name, p.transform)?;
        }
        Ok(builder.build())
    }

    /// What the catalog needs to create the table.
    pub fn creation(&self) -> Result<TableCreation> {
        let properties: HashMap<String, String> = [
            ("write.format.default", "parquet"),
            ("write.parquet.compression-codec", "zstd"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Ok(TableCreation::builder()
            .name(self.name.clone())
            .schema(self.schema()?.as_ref().clone())
            .partition_spec(self.partition_spec()?)
            .properties(properties)
            .build())
    }
}

/// The layout of the pipeline's table `ident`, if it is one of them (defined sources included).
pub fn layout_of(ident: &TableIdent) -> Option<TableLayout> {
    let name = ident.name();
    if ident.namespace().to_url_string() == "bronze" {
        return bronze(name).ok();
    }
    all_layouts().into_iter().find(|l| &l.ident() == ident)
}

/// Every table the pipeline writes.
pub fn all_layouts() -> Vec<TableLayout> {
    let mut all: Vec<TableLayout> = LANDING_SOURCES
        .iter()
        .chain(REFERENCE_SOURCES.iter())
        .map(|s| bronze(s).expect("known source"))
        .collect();
    all.extend([
        silver_quotes(),
        silver_trades(),
        silver_assets(),
        silver_quarantine(),
        gold_candles_1m(),
        gold_candles_1h(),
        gold_market_snapshot(),
        gold_trader_positions(),
        gold_alerts(),
    ]);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schema` without the column `name`.
    fn without(schema: &Schema, name: &str) -> Schema {
        let fields = schema
            .as_struct()
            .fields()
            .iter()
            .filter(|f| f.name != name);
        Schema::builder()
            .with_fields(fields.cloned())
            .build()
            .unwrap()
    }

    #[test]
    fn missing_columns_are_the_optional_ones_a_schema_lacks() {
        let layout = gold_candles_1m();
        let full = layout.schema().unwrap();
        assert!(layout.missing_columns(&full).unwrap().is_empty());
        // The schema a table had before `notional` was added.
        let older = without(&full, "notional");
        let missing = layout.missing_columns(&older).unwrap();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, "notional");
        assert_eq!(missing[0].1, ColumnType::Decimal.iceberg());
        // A required column cannot be added.
        let no_open = without(&full, "open");
        let err = layout.missing_columns(&no_open).unwrap_err().to_string();
        assert!(
            err.contains("gold.candles_1m lacks the required column open"),
            "{err}"
        );
    }

    #[test]
    fn every_layout_builds_a_schema_and_spec() {
        for layout in all_layouts() {
            let schema = layout.schema().unwrap();
            assert_eq!(schema.as_struct().fields().len(), layout.columns.len());
            let spec = layout.partition_spec().unwrap();
            iceberg::spec::PartitionSpec::builder(schema.clone())
                .add_unbound_fields(spec.fields().iter().cloned())
                .unwrap()
                .build()
                .unwrap();
        }
    }

    #[test]
    fn unknown_source_is_an_error() {
        assert!(bronze("nope").is_err());
        assert_eq!(bronze("trades").unwrap().columns.len(), 7 + 4 + 1);
        let kafka = kafka_bronze("coinbase_trades", "trades").unwrap();
        assert_eq!(kafka.ident().to_string(), "bronze.coinbase_trades");
        assert_eq!(kafka.columns.len(), 7 + 4 + 5 + 1);
        assert_eq!(kafka.columns.last().unwrap().name, "_extra");
        assert!(kafka_bronze("x", "nope").is_err());
    }
}
