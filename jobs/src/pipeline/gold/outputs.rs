//! What each gold table is: which silver tables feed it, which keys new silver rows touch, and
//! the SQL that recomputes the rows of those keys from all of silver.
//!
//! The SQL sees `new_quotes` / `new_trades` (only the silver files appended since the gold
//! table's bookmark), `quotes` / `trades` (the silver partitions the touched keys fall into) and
//! `t` (the touched keys). Prices stay exact decimals; products of two decimals are taken in
//! `decimal(76, 16)` so that no sum can overflow before the final cast.

use cryptolake_catalog::TableLayout;
use cryptolake_catalog::layout;

/// A silver table gold reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilverTable {
    Quotes,
    Trades,
}

impl SilverTable {
    pub fn layout(self) -> TableLayout {
        match self {
            SilverTable::Quotes => layout::silver_quotes(),
            SilverTable::Trades => layout::silver_trades(),
        }
    }

    /// Name of the "new rows" view in the SQL.
    pub fn new_view(self) -> &'static str {
        match self {
            SilverTable::Quotes => "new_quotes",
            SilverTable::Trades => "new_trades",
        }
    }

    /// Name of the "all rows of the touched partitions" view in the SQL.
    pub fn view(self) -> &'static str {
        match self {
            SilverTable::Quotes => "quotes",
            SilverTable::Trades => "trades",
        }
    }
}

/// How a gold table's partition value follows from a day number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoldPartition {
    Day,
    Month,
}

/// One gold table.
#[derive(Debug, Clone)]
pub struct GoldOutput {
    pub layout: TableLayout,
    pub inputs: &'static [SilverTable],
    pub touched_sql: String,
    pub compute_sql: String,
    /// Columns of `t` that identify gold rows (same names in the gold table).
    pub keys: &'static [&'static str],
    /// The column of `t` (timestamp or date) that places a key in a day.
    pub time_column: &'static str,
    /// The span of event time a key of `t` covers from its `time_column` (a candle's window,
    /// a day), in microseconds: silver files whose `event_time` bounds miss every touched span
    /// hold no row the recomputation needs.
    pub span_us: i64,
    /// Whether `t` has `symbol`, so silver can be read for those symbols only.
    pub by_symbol: bool,
    pub partition: GoldPartition,
}

fn candles(layout: TableLayout, unit: &str, partition: GoldPartition) -> GoldOutput {
    let span_us = if unit == "hour" {
        3_600_000_000
    } else {
        60_000_000
    };
    GoldOutput {
        span_us,
        layout,
        inputs: &[SilverTable::Quotes, SilverTable::Trades],
        touched_sql: format!(
            "SELECT DISTINCT symbol, date_trunc('{unit}', event_time) AS window_start FROM new_quotes \
             UNION SELECT DISTINCT symbol, date_trunc('{unit}', event_time) AS window_start FROM new_trades"
        ),
        compute_sql: format!(
            "WITH q AS (
               SELECT s.symbol, t.window_start, s.price, s.event_time, s.source
               FROM quotes s JOIN t ON s.symbol = t.symbol AND date_trunc('{unit}', s.event_time) = t.window_start),
             qa AS (
               SELECT symbol, window_start,
                 first_value(price ORDER BY event_time, source) AS open, max(price) AS high,
                 min(price) AS low, last_value(price ORDER BY event_time, source) AS close,
                 count(*) AS quote_count
               FROM q GROUP BY symbol, window_start),
             tr AS (
               SELECT s.symbol, t.window_start,
                 sum(CAST(s.quantity AS DECIMAL(76, 16))) AS volume,
                 sum(CAST(s.price AS DECIMAL(76, 16)) * CAST(s.quantity AS DECIMAL(76, 16))) AS notional,
                 count(*) AS trade_count
               FROM trades s JOIN t ON s.symbol = t.symbol AND date_trunc('{unit}', s.event_time) = t.window_start
               GROUP BY s.symbol, t.window_start)
             SELECT qa.symbol, qa.window_start, qa.window_start + INTERVAL '1 {unit}' AS window_end,
               qa.open, qa.high, qa.low, qa.close,
               CAST(tr.volume AS DECIMAL(38, 16)) AS volume,
               CAST(tr.notional / tr.volume AS DECIMAL(38, 16)) AS vwap,
               qa.quote_count, COALESCE(tr.trade_count, 0) AS trade_count
             FROM qa LEFT JOIN tr ON qa.symbol = tr.symbol AND qa.window_start = tr.window_start"
        ),
        keys: &["symbol", "window_start"],
        time_column: "window_start",
        by_symbol: true,
        partition,
    }
}

fn market_snapshot() -> GoldOutput {
    GoldOutput {
        layout: layout::gold_market_snapshot(),
        inputs: &[SilverTable::Quotes],
        touched_sql: "SELECT DISTINCT source, date_trunc('minute', event_time) AS snapshot_time \
                      FROM new_quotes WHERE market_cap IS NOT NULL"
            .into(),
        // Totals are summed as decimals (exact, whatever order the rows come in), then divided
        // as doubles: a double sum's last bits would depend on the row order.
        compute_sql: "WITH s AS (
               SELECT q.source, t.snapshot_time, q.symbol, q.price, q.market_cap, q.volume_24h
               FROM quotes q JOIN t ON q.source = t.source AND date_trunc('minute', q.event_time) = t.snapshot_time
               WHERE q.market_cap IS NOT NULL),
             tot AS (
               SELECT source, snapshot_time, CAST(sum(market_cap) AS DOUBLE) AS mc,
                 CAST(sum(volume_24h) AS DOUBLE) AS vol
               FROM s GROUP BY source, snapshot_time)
             SELECT s.snapshot_time, s.source, s.symbol, s.price, s.market_cap, s.volume_24h,
               100.0 * CAST(s.market_cap AS DOUBLE) / tot.mc AS dominance_pct,
               100.0 * CAST(s.volume_24h AS DOUBLE) / tot.vol AS volume_pct
             FROM s JOIN tot ON s.source = tot.source AND s.snapshot_time = tot.snapshot_time"
            .into(),
        keys: &["source", "snapshot_time"],
        time_column: "snapshot_time",
        span_us: 60_000_000,
        by_symbol: false,
        partition: GoldPartition::Day,
    }
}

fn trader_positions() -> GoldOutput {
    let side_sum = |side: &str, expr: &str| {
        format!("CAST(sum(CASE WHEN s.side = '{side}' THEN {expr} ELSE 0 END) AS DECIMAL(38, 16))")
    };
    let notional = "CAST(s.price AS DECIMAL(76, 16)) * CAST(s.quantity AS DECIMAL(76, 16))";
    GoldOutput {
        layout: layout::gold_trader_positions(),
        inputs: &[SilverTable::Trades],
        touched_sql:
            "SELECT DISTINCT user_id, symbol, CAST(event_time AS DATE) AS day FROM new_trades"
                .into(),
        compute_sql: format!(
            "SELECT s.user_id, s.symbol, t.day,
               {buy} AS buy_quantity, {sell} AS sell_quantity,
               CAST({buy} - {sell} AS DECIMAL(38, 16)) AS net_quantity,
               {buy_n} AS buy_notional, {sell_n} AS sell_notional,
               count(*) AS trade_count
             FROM trades s JOIN t ON s.user_id = t.user_id AND s.symbol = t.symbol
               AND CAST(s.event_time AS DATE) = t.day
             GROUP BY s.user_id, s.symbol, t.day",
            buy = side_sum("buy", "s.quantity"),
            sell = side_sum("sell", "s.quantity"),
            buy_n = side_sum("buy", notional),
            sell_n = side_sum("sell", notional),
        ),
        keys: &["user_id", "symbol", "day"],
        time_column: "day",
        span_us: 86_400_000_000,
        by_symbol: true,
        partition: GoldPartition::Day,
    }
}

/// Every gold table, in the order the job builds them.
pub fn all() -> Vec<GoldOutput> {
    vec![
        candles(layout::gold_candles_1m(), "minute", GoldPartition::Day),
        candles(layout::gold_candles_1h(), "hour", GoldPartition::Month),
        market_snapshot(),
        trader_positions(),
    ]
}
