//! What each gold table is: which silver tables feed it, which keys new silver rows touch, and
//! the SQL that computes the rows of those keys.
//!
//! The SQL sees `new_quotes` / `new_trades` (only the silver files appended since the gold
//! table's bookmark), `t` (the touched keys), and what the table's [`Reads`] names: `quotes` /
//! `trades` (the silver partitions the touched keys fall into), `minutes` (the one-minute
//! candles of the touched days), or `prior` (the table's own rows of the touched days); the
//! candles also see `asset_names` (`base`, `asset_name` from `silver.assets`). Prices
//! stay exact decimals. A trade's notional (price x quantity) is rounded to the tables' scale
//! once, per trade, and every sum is of such values: so sums add up exactly however the rows
//! are batched, and an hour's candle rolled up from its minutes, or a day's position from its
//! previous value and the new trades, equals one computed from every row at once. Sums are
//! taken in `decimal(76, 16)` so that none can overflow before the final cast.

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

/// What a gold table reads besides the new silver rows and the touched keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Every silver row of the touched keys' partitions and spans (views `quotes`, `trades`):
    /// a key is computed from all of its rows.
    Silver,
    /// The one-minute candles of the touched days (view `minutes`), which must have consumed
    /// exactly the silver snapshots this table is about to: hours are rolled up from minutes.
    Minutes,
    /// The table's own rows of the touched days (view `prior`): a key's new value is its old
    /// value plus the new rows' (sums), so no silver row is read twice.
    Prior,
}

/// One gold table.
#[derive(Debug, Clone)]
pub struct GoldOutput {
    pub layout: TableLayout,
    pub reads: Reads,
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

/// A trade's notional rounded to the tables' scale, as the sums below take it.
const TRADE_NOTIONAL: &str = "CAST(CAST(CAST(s.price AS DECIMAL(76, 16)) * CAST(s.quantity AS DECIMAL(76, 16)) \
     AS DECIMAL(38, 16)) AS DECIMAL(76, 16))";

fn touched_windows(unit: &str) -> String {
    format!(
        "SELECT DISTINCT symbol, date_trunc('{unit}', event_time) AS window_start FROM new_quotes \
         UNION SELECT DISTINCT symbol, date_trunc('{unit}', event_time) AS window_start FROM new_trades"
    )
}

/// `gold.candles_1m`, from every silver row of the touched minutes.
fn candles_1m() -> GoldOutput {
    GoldOutput {
        layout: layout::gold_candles_1m(),
        reads: Reads::Silver,
        inputs: &[SilverTable::Quotes, SilverTable::Trades],
        touched_sql: touched_windows("minute"),
        compute_sql: format!(
            "WITH q AS (
               SELECT s.symbol, t.window_start, s.price, s.event_time, s.source
               FROM quotes s JOIN t ON s.symbol = t.symbol AND date_trunc('minute', s.event_time) = t.window_start),
             qa AS (
               SELECT symbol, window_start,
                 first_value(price ORDER BY event_time, source) AS open, max(price) AS high,
                 min(price) AS low, last_value(price ORDER BY event_time, source) AS close,
                 count(*) AS quote_count
               FROM q GROUP BY symbol, window_start),
             tr AS (
               SELECT s.symbol, t.window_start,
                 sum(CAST(s.quantity AS DECIMAL(76, 16))) AS volume,
                 sum({TRADE_NOTIONAL}) AS notional,
                 count(*) AS trade_count
               FROM trades s JOIN t ON s.symbol = t.symbol AND date_trunc('minute', s.event_time) = t.window_start
               GROUP BY s.symbol, t.window_start)
             SELECT qa.symbol, qa.window_start, qa.window_start + INTERVAL '1 minute' AS window_end,
               qa.open, qa.high, qa.low, qa.close,
               CAST(tr.volume AS DECIMAL(38, 16)) AS volume,
               CAST(tr.notional / tr.volume AS DECIMAL(38, 16)) AS vwap,
               qa.quote_count, COALESCE(tr.trade_count, 0) AS trade_count,
               CAST(tr.notional AS DECIMAL(38, 16)) AS notional, n.asset_name
             FROM qa LEFT JOIN tr ON qa.symbol = tr.symbol AND qa.window_start = tr.window_start
             LEFT JOIN asset_names n ON n.base = upper(split_part(qa.symbol, '-', 1))"
        ),
        keys: &["symbol", "window_start"],
        time_column: "window_start",
        span_us: 60_000_000,
        by_symbol: true,
        partition: GoldPartition::Day,
    }
}

/// `gold.candles_1h`, rolled up from the touched hours' one-minute candles: an hour's open is
/// its first minute's, its close its last minute's, its counts, volume and notional their sums.
/// Trades of a minute without quotes have no minute candle, so they count in no candle.
fn candles_1h() -> GoldOutput {
    GoldOutput {
        layout: layout::gold_candles_1h(),
        reads: Reads::Minutes,
        inputs: &[SilverTable::Quotes, SilverTable::Trades],
        touched_sql: touched_windows("hour"),
        compute_sql: "WITH m AS (
               SELECT c.symbol, t.window_start, c.window_start AS minute, c.open, c.high, c.low,
                 c.close, c.volume, c.notional, c.quote_count, c.trade_count
               FROM minutes c JOIN t ON c.symbol = t.symbol AND date_trunc('hour', c.window_start) = t.window_start),
             h AS (
               SELECT symbol, window_start,
                 first_value(open ORDER BY minute) AS open, max(high) AS high, min(low) AS low,
                 last_value(close ORDER BY minute) AS close,
                 sum(CAST(volume AS DECIMAL(76, 16))) AS volume,
                 sum(CAST(notional AS DECIMAL(76, 16))) AS notional,
                 sum(quote_count) AS quote_count, sum(trade_count) AS trade_count
               FROM m GROUP BY symbol, window_start)
             SELECT h.symbol, h.window_start, h.window_start + INTERVAL '1 hour' AS window_end,
               h.open, h.high, h.low, h.close,
               CAST(h.volume AS DECIMAL(38, 16)) AS volume,
               CAST(h.notional / h.volume AS DECIMAL(38, 16)) AS vwap,
               h.quote_count, h.trade_count,
               CAST(h.notional AS DECIMAL(38, 16)) AS notional, n.asset_name
             FROM h LEFT JOIN asset_names n ON n.base = upper(split_part(h.symbol, '-', 1))"
            .into(),
        keys: &["symbol", "window_start"],
        time_column: "window_start",
        span_us: 3_600_000_000,
        by_symbol: true,
        partition: GoldPartition::Month,
    }
}

fn market_snapshot() -> GoldOutput {
    GoldOutput {
        layout: layout::gold_market_snapshot(),
        reads: Reads::Silver,
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

/// `gold.trader_positions`: a touched day's position is its prior value (`prior`) plus the
/// new trades' sums, so a run reads only its own new trades, however long the day has run.
fn trader_positions() -> GoldOutput {
    let side_sum = |side: &str, expr: &str| {
        format!("sum(CASE WHEN s.side = '{side}' THEN {expr} ELSE CAST(0 AS DECIMAL(76, 16)) END)")
    };
    let total = |column: &str| {
        format!(
            "(n.{column} + COALESCE(CAST(p.{column} AS DECIMAL(76, 16)), CAST(0 AS DECIMAL(76, 16))))"
        )
    };
    GoldOutput {
        layout: layout::gold_trader_positions(),
        reads: Reads::Prior,
        inputs: &[SilverTable::Trades],
        touched_sql:
            "SELECT DISTINCT user_id, symbol, CAST(event_time AS DATE) AS day FROM new_trades"
                .into(),
        compute_sql: format!(
            "WITH n AS (
               SELECT s.user_id, s.symbol, CAST(s.event_time AS DATE) AS day,
                 {buy} AS buy_quantity, {sell} AS sell_quantity,
                 {buy_n} AS buy_notional, {sell_n} AS sell_notional,
                 count(*) AS trade_count
               FROM new_trades s
               GROUP BY s.user_id, s.symbol, CAST(s.event_time AS DATE))
             SELECT n.user_id, n.symbol, n.day,
               CAST({tb} AS DECIMAL(38, 16)) AS buy_quantity,
               CAST({ts} AS DECIMAL(38, 16)) AS sell_quantity,
               CAST({tb} - {ts} AS DECIMAL(38, 16)) AS net_quantity,
               CAST({tbn} AS DECIMAL(38, 16)) AS buy_notional,
               CAST({tsn} AS DECIMAL(38, 16)) AS sell_notional,
               n.trade_count + COALESCE(p.trade_count, 0) AS trade_count
             FROM n LEFT JOIN prior p
               ON p.user_id = n.user_id AND p.symbol = n.symbol AND p.day = n.day",
            buy = side_sum("buy", "CAST(s.quantity AS DECIMAL(76, 16))"),
            sell = side_sum("sell", "CAST(s.quantity AS DECIMAL(76, 16))"),
            buy_n = side_sum("buy", TRADE_NOTIONAL),
            sell_n = side_sum("sell", TRADE_NOTIONAL),
            tb = total("buy_quantity"),
            ts = total("sell_quantity"),
            tbn = total("buy_notional"),
            tsn = total("sell_notional"),
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
        candles_1m(),
        // After candles_1m: it reads the minutes this run has just committed.
        candles_1h(),
        market_snapshot(),
        trader_positions(),
    ]
}
