//! The console's HTML pages: Markets, Runs and Tables. Each page is built from the same readers
//! the `/v1/` endpoints serve (so a number on a page is the number a script gets), with charts
//! inline as SVG and the style inline: a page loads nothing from anywhere else.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::data::{self, CandleQuery, Interval};
use crate::{ConsoleState, Error, Result, chart};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#111827;background:#f9fafb}
nav{background:#111827;padding:10px 20px}nav a{color:#e5e7eb;margin-right:18px;text-decoration:none;font-weight:600}
nav a.on{color:#fbbf24}main{padding:16px 24px}h1{font-size:22px;margin:8px 0 14px}h2{font-size:17px;margin:22px 0 8px}
table{border-collapse:collapse;background:#fff;font-size:13px}td,th{border:1px solid #e5e7eb;padding:4px 8px;text-align:right}
th{background:#f3f4f6}td.l,th.l{text-align:left}.muted{color:#6b7280;font-size:13px}.error{color:#b91c1c}
form.pick{margin:8px 0 12px}form.pick *{margin-right:8px}.chart{background:#fff;border:1px solid #e5e7eb;display:inline-block}
.bar{display:inline-block;height:10px;background:#2563eb}.SUCCEEDED{color:#15803d}.FAILED,.TIMEOUT,.ERROR{color:#b91c1c}
.RUNNING,.WAITING,.STARTING{color:#b45309}pre{background:#fff;border:1px solid #e5e7eb;padding:8px;overflow:auto;max-height:480px}";

/// Text made safe for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: the navigation (with `active` marked) around `body`.
pub fn page(title: &str, active: &str, body: &str) -> String {
    let nav: String = [
        ("markets", "Markets"),
        ("runs", "Runs"),
        ("tables", "Tables"),
        ("lineage", "Lineage"),
    ]
    .iter()
    .map(|(path, name)| {
        let on = if *path == active { " class=\"on\"" } else { "" };
        format!("<a href=\"/{path}\"{on} id=\"nav-{path}\">{name}</a>")
    })
    .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · cryptolake</title>\
<style>{STYLE}</style></head><body><nav>{nav}<a href=\"/logout\" style=\"float:right\">Log out</a></nav>\
<main>{body}</main></body></html>",
        esc(title)
    )
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        (
            status,
            Html(page(
                "Error",
                "",
                &format!(
                    "<h1>Error</h1><p class=\"error\">{}</p>",
                    esc(&self.to_string())
                ),
            )),
        )
            .into_response()
    }
}

fn raw(v: &serde_json::value::RawValue) -> String {
    esc(v.get())
}

fn opt_raw(v: Option<&serde_json::value::RawValue>) -> String {
    v.map_or(String::new(), raw)
}

/// `/markets`: the picker, the candle chart, the newest candles' exact values, the market
/// snapshot's shares and the traders' positions.
#[derive(Debug, Default, Deserialize)]
pub struct MarketsQuery {
    symbol: Option<String>,
    #[serde(default)]
    interval: Interval,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

pub async fn markets(
    State(state): State<ConsoleState>,
    Query(q): Query<MarketsQuery>,
) -> Result<Html<String>> {
    let symbols = data::symbols(&state.lake, q.interval).await?;
    let symbol = q
        .symbol
        .clone()
        .or_else(|| symbols.first().cloned())
        .unwrap_or_default();
    let candles = if symbol.is_empty() {
        Vec::new()
    } else {
        let query = CandleQuery {
            symbol: symbol.clone(),
            interval: q.interval,
            from: q.from,
            to: q.to,
            limit: Some(if q.interval == Interval::Minute {
                240
            } else {
                168
            }),
        };
        data::candles(&state.lake, &query).await?
    };
    let mut body = String::from("<h1>Markets</h1>");
    body.push_str(&picker(&symbols, &symbol, &q));
    let title = format!("{symbol} {}", q.interval.as_str());
    let _ = write!(
        body,
        "<div class=\"chart\" id=\"candle-chart\">{}</div>",
        chart::candles(&candles, &title)?
    );
    body.push_str(&candle_table(&candles));
    body.push_str(&shares(&data::market_snapshot(&state.lake).await?));
    body.push_str(&assets(&data::assets(&state.lake).await?));
    let history = data::share_history(&state.lake, None, 2_000).await?;
    let source = history.first().map_or("", |s| s.source.as_str());
    let _ = write!(
        body,
        "<div class=\"chart\" id=\"dominance-chart\">{}</div>",
        chart::dominance_over_time(&history, &format!("dominance over time ({source})"))?
    );
    body.push_str(&alerts(&data::alerts(&state.lake, None, 50).await?));
    body.push_str(&positions(&data::positions(&state.lake, None).await?));
    Ok(Html(page("Markets", "markets", &body)))
}

fn picker(symbols: &[String], symbol: &str, q: &MarketsQuery) -> String {
    let options: String = symbols
        .iter()
        .map(|s| {
            let sel = if s == symbol { " selected" } else { "" };
            format!("<option{sel}>{}</option>", esc(s))
        })
        .collect();
    let interval = |i: Interval| {
        let sel = if q.interval == i { " selected" } else { "" };
        format!("<option value=\"{0}\"{sel}>{0}</option>", i.as_str())
    };
    let time = |t: Option<DateTime<Utc>>| t.map_or(String::new(), |t| t.to_rfc3339());
    format!(
        "<form class=\"pick\" method=\"get\" action=\"/markets\"><select name=\"symbol\" id=\"symbol\">{options}</select>\
<select name=\"interval\" id=\"interval\">{}{}</select>\
<input name=\"from\" placeholder=\"from (RFC 3339)\" value=\"{}\"><input name=\"to\" placeholder=\"to (RFC 3339)\" value=\"{}\">\
<button type=\"submit\">Show</button></form>",
        interval(Interval::Minute),
        interval(Interval::Hour),
        esc(&time(q.from)),
        esc(&time(q.to))
    )
}

fn candle_table(candles: &[data::Candle]) -> String {
    let mut out = String::from(
        "<h2>Newest candles</h2><table id=\"candles\"><tr><th class=\"l\">window start</th><th>open</th><th>high</th>\
<th>low</th><th>close</th><th>volume</th><th>vwap</th><th>quotes</th><th>trades</th></tr>",
    );
    for c in candles.iter().rev().take(30) {
        let _ = write!(
            out,
            "<tr data-window=\"{0}\"><td class=\"l\">{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td>\
<td>{6}</td><td>{7}</td><td>{8}</td></tr>",
            esc(&c.window_start),
            raw(&c.open),
            raw(&c.high),
            raw(&c.low),
            raw(&c.close),
            opt_raw(c.volume.as_deref()),
            opt_raw(c.vwap.as_deref()),
            c.quote_count,
            c.trade_count
        );
    }
    out.push_str("</table>");
    if candles.is_empty() {
        out.push_str(
            "<p class=\"muted\">No candles yet: run <code>cryptolake run gold</code>.</p>",
        );
    }
    out
}

fn shares(rows: &[data::Share]) -> String {
    let when = rows
        .first()
        .map_or("none yet", |r| r.snapshot_time.as_str());
    let mut out = format!(
        "<h2>Market snapshot <span class=\"muted\">({})</span></h2><table id=\"snapshot\"><tr><th class=\"l\">asset</th>\
<th class=\"l\">source</th><th>price</th><th>market cap</th><th>dominance %</th><th></th><th>volume %</th><th></th></tr>",
        esc(when)
    );
    for r in rows {
        let pct = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
        let bar = |v: Option<f64>| {
            format!(
                "<span class=\"bar\" style=\"width:{:.0}px\"></span>",
                v.unwrap_or(0.0).clamp(0.0, 100.0) * 2.0
            )
        };
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td>\
<td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&r.symbol),
            esc(&r.source),
            opt_raw(r.price.as_deref()),
            opt_raw(r.market_cap.as_deref()),
            pct(r.dominance_pct),
            bar(r.dominance_pct),
            pct(r.volume_pct),
            bar(r.volume_pct)
        );
    }
    out.push_str("</table>");
    out
}

/// The assets dimension with each asset's icon (seed 001's dashboard); nothing before the
/// first `run assets`.
fn assets(rows: &[data::Asset]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Assets</h2><table id=\"assets\"><tr><th></th><th class=\"l\">symbol</th>\
<th class=\"l\">name</th><th>rank</th><th>market cap</th><th class=\"l\">updated</th></tr>",
    );
    for r in rows {
        // Only an http(s) URL becomes an image source.
        let icon = r
            .icon_url
            .as_deref()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .map_or(String::new(), |u| {
                format!(
                    "<img class=\"icon\" src=\"{}\" alt=\"\" width=\"16\" height=\"16\">",
                    esc(u)
                )
            });
        let _ = write!(
            out,
            "<tr><td>{icon}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(r.symbol.as_deref().unwrap_or("")),
            esc(r.name.as_deref().unwrap_or("")),
            r.rank.map_or(String::new(), |v| v.to_string()),
            opt_raw(r.market_cap_usd.as_deref()),
            esc(r.updated_at.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>");
    out
}

fn positions(rows: &[data::Position]) -> String {
    let day = rows.first().map_or("none yet", |r| r.day.as_str());
    let mut out = format!(
        "<h2>Trader positions <span class=\"muted\">({})</span></h2><table id=\"positions\"><tr><th class=\"l\">user</th>\
<th class=\"l\">symbol</th><th>bought</th><th>sold</th><th>net</th><th>buy notional</th><th>sell notional</th><th>trades</th></tr>",
        esc(day)
    );
    for r in rows.iter().take(200) {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.user_id),
            esc(&r.symbol),
            raw(&r.buy_quantity),
            raw(&r.sell_quantity),
            raw(&r.net_quantity),
            raw(&r.buy_notional),
            raw(&r.sell_notional),
            r.trade_count
        );
    }
    out.push_str("</table>");
    out
}

fn alerts(rows: &[data::Alert]) -> String {
    let mut out = String::from(
        "<h2>Alerts <span class=\"muted\">(newest first)</span></h2><table id=\"alerts\"><tr><th class=\"l\">event time</th>\
<th class=\"l\">rule</th><th class=\"l\">symbol</th><th class=\"l\">condition</th><th>value</th><th>price</th>\
<th class=\"l\">delivery</th><th>attempts</th><th class=\"l\">last error</th></tr>",
    );
    for r in rows {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td>\
<td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&r.event_time),
            esc(&r.rule),
            esc(&r.symbol),
            esc(&r.condition),
            raw(&r.value),
            raw(&r.price),
            esc(&r.delivery_state),
            r.attempts,
            esc(r.last_error.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>");
    out
}

/// Totals of `key` over every table a run summary names (a summary of `run all` is an array of
/// job summaries). Only the `tables` figures count: the `sources` figures of the same run count
/// the same records again from the input's side.
pub fn summary_total(summary: &Value, key: &str) -> u64 {
    let jobs = match summary {
        Value::Array(jobs) => jobs.as_slice(),
        one => std::slice::from_ref(one),
    };
    jobs.iter()
        .filter_map(|job| job.get("tables")?.as_object())
        .flat_map(|tables| tables.values())
        .filter_map(|figures| figures.get(key)?.as_u64())
        .sum()
}

fn duration(run: &cryptolake_scheduler::history::Run) -> String {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    };
    match (parse(&run.started_at), parse(&run.ended_at)) {
        (Some(a), Some(b)) => format!("{:.1} s", (b - a).num_milliseconds() as f64 / 1000.0),
        (Some(_), None) => "running".into(),
        _ => String::new(),
    }
}

/// `/runs`: the schedules' next fire times and the run history, newest first.
pub async fn runs(State(state): State<ConsoleState>) -> Result<Html<String>> {
    let mut body = String::from("<h1>Runs</h1><h2>Schedules</h2>");
    body.push_str(&schedules_table(&crate::next_fires(&state.schedules)));
    body.push_str("<h2>History</h2>");
    let Some(history) = &state.history else {
        body.push_str("<p class=\"muted\">No run history yet (the scheduler keeps it).</p>");
        return Ok(Html(page("Runs", "runs", &body)));
    };
    let runs = history.list(None, false, 200).await?;
    let _ = write!(
        body,
        "<div class=\"chart\" id=\"runs-chart\">{}</div>",
        chart::runs_timeline(&timeline(&runs))?
    );
    body.push_str(
        "<table id=\"runs\"><tr><th>id</th><th class=\"l\">job</th><th class=\"l\">trigger</th><th class=\"l\">state</th>\
<th class=\"l\">started</th><th>duration</th><th>rows in</th><th>rows out</th><th>quarantined</th><th>attempt</th></tr>",
    );
    for run in &runs {
        let summary = run.summary.clone().unwrap_or(Value::Null);
        let state_name = run.state.as_str();
        let _ = write!(
            body,
            "<tr id=\"run-{0}\"><td><a href=\"/runs/{0}\">{0}</a></td><td class=\"l\">{1}</td><td class=\"l\">{2}</td>\
<td class=\"l {3}\">{3}</td><td class=\"l\">{4}</td><td>{5}</td><td>{6}</td><td>{7}</td><td>{8}</td><td>{9}</td></tr>",
            run.id,
            esc(&run.job),
            esc(&run.trigger),
            state_name,
            esc(run.started_at.as_deref().unwrap_or("")),
            duration(run),
            summary_total(&summary, "rows_in"),
            summary_total(&summary, "rows_out"),
            summary_total(&summary, "quarantined"),
            run.attempt
        );
    }
    body.push_str("</table>");
    Ok(Html(page("Runs", "runs", &body)))
}

/// The runs that started, as spans on the timeline (a running one ends now).
fn timeline(runs: &[cryptolake_scheduler::history::Run]) -> Vec<chart::RunSpan> {
    let at = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    runs.iter()
        .filter_map(|r| {
            let start = at(r.started_at.as_deref()?)?;
            let end = r.ended_at.as_deref().and_then(at).unwrap_or_else(Utc::now);
            Some(chart::RunSpan {
                job: r.job.clone(),
                start,
                end,
                state: r.state.as_str().to_string(),
            })
        })
        .collect()
}

fn schedules_table(fires: &[crate::NextFire]) -> String {
    if fires.is_empty() {
        return "<p class=\"muted\">No schedules in the config.</p>".into();
    }
    let mut out = String::from(
        "<table id=\"schedules\"><tr><th class=\"l\">schedule</th><th class=\"l\">job</th><th class=\"l\">expression</th>\
<th class=\"l\">next fire (UTC)</th></tr>",
    );
    for f in fires {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            esc(&f.schedule),
            esc(&f.job),
            esc(&f.expression),
            esc(f.next_fire.as_deref().unwrap_or("never"))
        );
    }
    out.push_str("</table>");
    out
}

/// `/runs/{id}`: one run's record, summary and log.
pub async fn run(State(state): State<ConsoleState>, Path(id): Path<i64>) -> Result<Html<String>> {
    let history = state
        .history
        .as_ref()
        .ok_or_else(|| Error::NotFound("no run history".into()))?;
    let run = history.get(id).await?;
    let (out, log) = cryptolake_scheduler::runner::run_files(&state.logs, id);
    let text = format!(
        "{}{}",
        std::fs::read_to_string(log).unwrap_or_default(),
        std::fs::read_to_string(out).unwrap_or_default()
    );
    let summary = run
        .summary
        .as_ref()
        .map(|s| serde_json::to_string_pretty(s).unwrap_or_default())
        .unwrap_or_default();
    let state_name = run.state.as_str();
    let body = format!(
        "<h1>Run {id}: {job} <span class=\"{state_name}\" id=\"run-state\">{state_name}</span></h1>\
<p>trigger {trigger}, attempt {attempt}, started {started}, ended {ended}, exit code {code}{error}</p>\
<h2>Summary</h2><pre id=\"summary\">{summary}</pre><h2>Log</h2><pre id=\"log\">{log}</pre>",
        job = esc(&run.job),
        trigger = esc(&run.trigger),
        attempt = run.attempt,
        started = esc(run.started_at.as_deref().unwrap_or("-")),
        ended = esc(run.ended_at.as_deref().unwrap_or("-")),
        code = run.exit_code.map_or("-".into(), |c| c.to_string()),
        error = run
            .error
            .as_deref()
            .map_or(String::new(), |e| format!(", error: {}", esc(e))),
        summary = esc(&summary),
        log = esc(&text)
    );
    Ok(Html(page(&format!("Run {id}"), "runs", &body)))
}

/// `/tables`: every table's totals; `/tables/{name}`: one table's files over time and
/// snapshots.
pub async fn tables(State(state): State<ConsoleState>) -> Result<Html<String>> {
    let tables = data::tables(&state.lake).await?;
    let mut body = String::from(
        "<h1>Tables</h1><table id=\"tables\"><tr><th class=\"l\">table</th><th>snapshots</th><th>records</th><th>files</th>\
<th>bytes</th><th>mean file</th><th class=\"l\">last operation</th><th class=\"l\">last updated</th></tr>",
    );
    for t in &tables {
        let mean = t.bytes.checked_div(t.files).unwrap_or(0);
        let _ = write!(
            body,
            "<tr id=\"table-{0}\"><td class=\"l\"><a href=\"/tables/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td>\
<td>{4}</td><td>{5}</td><td class=\"l\">{6}</td><td class=\"l\">{7}</td></tr>",
            esc(&t.table),
            t.snapshots,
            t.records,
            t.files,
            t.bytes,
            mean,
            esc(t.last_operation.as_deref().unwrap_or("")),
            esc(t.last_updated.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table>");
    Ok(Html(page("Tables", "tables", &body)))
}

pub async fn table(
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
) -> Result<Html<String>> {
    let d = crate::detail::table_detail(&state, &name).await?;
    let t = &d.info;
    let mut body = format!(
        "<h1>{}</h1><p>{} records in {} files ({} bytes), {} snapshots kept.</p>",
        esc(&t.table),
        t.records,
        t.files,
        t.bytes,
        t.snapshots,
    );
    body.push_str(&health(&d));
    let _ = write!(
        body,
        "<div class=\"chart\" id=\"files-chart\">{}</div>",
        chart::files_over_time(&t.history, &format!("{}: data files", t.table))?
    );
    body.push_str(&quarantine(&d.quarantine));
    body.push_str(
        "<h2>Snapshots</h2><table id=\"snapshots\"><tr><th>snapshot</th><th class=\"l\">committed</th><th class=\"l\">operation</th>\
<th class=\"l\">job</th><th>records</th><th>files</th><th>bytes</th></tr>",
    );
    for s in t.history.iter().rev() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.snapshot_id,
            esc(&s.committed_at),
            esc(&s.operation),
            esc(s.job.as_deref().unwrap_or("")),
            s.records,
            s.files,
            s.bytes
        );
    }
    body.push_str("</table>");
    Ok(Html(page(&t.table, "tables", &body)))
}

/// Small files, last maintenance and `table check`'s findings.
fn health(d: &crate::detail::TableDetail) -> String {
    let small = match (d.small_files, d.small_file_share) {
        (Some(n), Some(share)) => format!("{n} ({:.1} % of the live files)", share * 100.0),
        _ => "not planned here".into(),
    };
    let maintenance = d.last_maintenance.as_ref().map_or_else(
        || "none kept".to_string(),
        |s| {
            format!(
                "{} at {} (snapshot {})",
                s.job.as_deref().unwrap_or(&s.operation),
                s.committed_at,
                s.snapshot_id
            )
        },
    );
    let mut out = format!(
        "<table id=\"health\"><tr><th class=\"l\">small files compaction would rewrite</th><td class=\"l\" id=\"small-files\">{}</td></tr>\
<tr><th class=\"l\">last maintenance</th><td class=\"l\" id=\"last-maintenance\">{}</td></tr>\
<tr><th class=\"l\">table check</th><td class=\"l\" id=\"check\">",
        esc(&small),
        esc(&maintenance)
    );
    if d.findings.is_empty() {
        out.push_str("ok: Athena reads it as it is");
    }
    for f in &d.findings {
        let severity = match f.severity {
            cryptolake_catalog::check::Severity::Error => "error",
            cryptolake_catalog::check::Severity::Warning => "warning",
        };
        let _ = write!(
            out,
            "<div class=\"finding\">{severity} {}: {}</div>",
            esc(f.rule),
            esc(&f.message)
        );
    }
    out.push_str("</td></tr></table>");
    out
}

fn quarantine(rows: &[crate::detail::ReasonCount]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Quarantine reasons</h2><table id=\"quarantine\"><tr><th class=\"l\">source</th><th class=\"l\">reason</th><th>records</th></tr>",
    );
    for r in rows {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
            esc(&r.source),
            esc(&r.reason),
            r.records
        );
    }
    out.push_str("</table>");
    out
}

/// `/lineage?source=S&file=F[&from=&to=]`: a form, and what became of each bronze row.
pub async fn lineage(
    State(state): State<ConsoleState>,
    Query(q): Query<crate::lineage::LineageQuery>,
) -> Result<Html<String>> {
    let sources: Vec<String> = state
        .lake
        .list_tables()
        .await?
        .iter()
        .filter(|t| t.namespace().to_url_string() == "bronze")
        .map(|t| t.name().to_string())
        .collect();
    let options: String = sources
        .iter()
        .map(|s| {
            let sel = if *s == q.source { " selected" } else { "" };
            format!("<option{sel}>{}</option>", esc(s))
        })
        .collect();
    let number = |n: Option<i64>| n.map_or(String::new(), |n| n.to_string());
    let mut body = format!(
        "<h1>Lineage</h1><p class=\"muted\">A landing file (its path under the landing zone, as bronze's <code>_file</code>: \
<code>source/2026/...</code>) or a Kafka partition (<code>topic/partition</code>, records are offsets): what became of each of its bronze rows.</p>\
<form class=\"pick\" method=\"get\" action=\"/lineage\"><select name=\"source\" id=\"source\">{options}</select>\
<input name=\"file\" id=\"file\" placeholder=\"file\" size=\"60\" value=\"{}\">\
<input name=\"from\" placeholder=\"from record\" value=\"{}\"><input name=\"to\" placeholder=\"to record\" value=\"{}\">\
<button type=\"submit\" id=\"follow\">Follow</button></form>",
        esc(&q.file),
        number(q.from),
        number(q.to)
    );
    if !q.source.is_empty() && !q.file.is_empty() {
        let l = crate::lineage::lineage(&state.lake, &q).await?;
        let _ = write!(
            body,
            "<p id=\"lineage-counts\">{} bronze rows: {} in silver, {} quarantined, {} duplicates, {} pending</p>\
<table id=\"lineage\"><tr><th>record</th><th class=\"l\">outcome</th><th class=\"l\">silver row or reason</th><th class=\"l\">bronze row</th></tr>",
            l.bronze_rows, l.silver, l.quarantined, l.duplicates, l.pending
        );
        for r in &l.rows {
            let what = match (&r.table, &r.silver, &r.reason) {
                (Some(t), Some(s), _) => format!("{t}: {s}"),
                (_, _, Some(reason)) => reason.clone(),
                _ if r.outcome == "duplicate" => "silver already had its key".into(),
                _ => String::new(),
            };
            let _ = write!(
                body,
                "<tr id=\"record-{0}\"><td>{0}</td><td class=\"l\">{1}</td><td class=\"l\">{2}</td><td class=\"l\"><code>{3}</code></td></tr>",
                r.record,
                r.outcome,
                esc(&what),
                esc(&r.bronze)
            );
        }
        body.push_str("</table>");
    }
    Ok(Html(page("Lineage", "lineage", &body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_summaries_are_totalled() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let summary = serde_json::json!([
            {"tables": {"silver.quotes": {"rows_in": 10, "rows_out": 8, "quarantined": 2}},
             "sources": {"coinbase_spot": {"records": 10, "quarantined": 2}}},
            {"tables": {"gold.candles_1m": {"rows_in": 8, "rows_out": 3, "quarantined": 0}}}
        ]);
        assert_eq!(summary_total(&summary, "rows_in"), 18);
        assert_eq!(summary_total(&summary, "rows_out"), 11);
        assert_eq!(summary_total(&summary, "quarantined"), 2);
        let one = serde_json::json!({"tables": {"silver.trades": {"rows_in": 4}}});
        assert_eq!(summary_total(&one, "rows_in"), 4);
        let html = page("A <b>", "runs", "x");
        assert!(html.contains("<title>A &lt;b&gt; · cryptolake</title>"));
        assert!(html.contains("<a href=\"/runs\" class=\"on\" id=\"nav-runs\">Runs</a>"));
    }
}
