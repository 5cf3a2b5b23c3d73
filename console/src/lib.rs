//! cryptolake's web console: read-only pages (Markets, Runs, Tables, Lineage) and the `/v1/` read
//! endpoints they are built from, served by `cryptolake console` on its own or by the
//! scheduler daemon beside its submission API.
//!
//! Endpoints (JSON; every one needs the token or a session, see [`auth`]):
//! - `GET /v1/candles?symbol=S&interval=1m|1h[&from=RFC3339&to=RFC3339&limit=N]`: candles of
//!   `gold.candles_1m`/`_1h`, oldest first; without `from`, the newest `limit` (default 1,440).
//! - `GET /v1/market-snapshot`: the newest `gold.market_snapshot`'s shares.
//! - `GET /v1/market-snapshot/history[?source=S&limit=N]`: one source's snapshots over time.
//! - `GET /v1/positions[?user=U]`: the newest day's `gold.trader_positions`.
//! - `GET /v1/alerts[?rule=R&limit=N]`: the newest firings of `gold.alerts` (default 100).
//! - `GET /v1/tables`: every table's totals and snapshots.
//! - `GET /v1/tables/{name}`: one table's totals and health ([`detail`]): `table check`'s
//!   findings, small files, last maintenance, quarantine reasons.
//! - `GET /v1/lineage?source=S&file=F[&from=N&to=N&limit=N]`: what became of each bronze row
//!   of a landing file or Kafka partition ([`lineage`]).
//! - `GET /v1/schedules`: every schedule's next fire time.
//! - `GET /v1/runs[?job=J&limit=N]`, `GET /v1/runs/{id}`: run history (served here only when
//!   the console runs without the daemon, whose API serves them otherwise).
//! - `GET /metrics`: Prometheus text format ([`metrics`]).
//!
//! The console never writes: not to the lake, not to the run history.

pub mod auth;
pub mod chart;
pub mod data;
pub mod detail;
pub mod lineage;
pub mod metrics;
pub mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use cryptolake_catalog::{CatalogConfig, Lake};
use cryptolake_scheduler::ScheduleSpec;
use cryptolake_scheduler::history::History;
use serde::{Deserialize, Serialize};

pub use auth::Auth;

/// What can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Job(#[from] cryptolake_jobs::Error),
    #[error(transparent)]
    History(#[from] cryptolake_scheduler::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<cryptolake_catalog::Error> for Error {
    fn from(e: cryptolake_catalog::Error) -> Self {
        Self::Job(e.into())
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Job(e.into())
    }
}

impl From<iceberg::Error> for Error {
    fn from(e: iceberg::Error) -> Self {
        Self::Job(e.into())
    }
}

impl Error {
    /// The HTTP status a request that failed this way gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) | Error::History(cryptolake_scheduler::Error::RunNotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            Error::Job(e) if e.kind() == cryptolake_jobs::ErrorKind::Usage => {
                StatusCode::BAD_REQUEST
            }
            Error::Job(e) if e.kind().retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn json(self) -> Response {
        let status = self.status();
        (status, Json(serde_json::json!({"error": self.to_string()}))).into_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    pub lake: Arc<Lake>,
    /// The scheduler's run history, when there is one.
    pub history: Option<History>,
    /// Where the scheduler keeps each run's log.
    pub logs: PathBuf,
    pub schedules: Vec<ScheduleSpec>,
    pub auth: Auth,
    /// What `/metrics` asks beyond the lake and the history: the landing zone and Kafka.
    pub probes: metrics::Probes,
}

/// What a console needs to start.
#[derive(Debug, Clone)]
pub struct ConsoleParams {
    pub catalog: CatalogConfig,
    /// The API token; `None` serves without authentication.
    pub token: Option<String>,
    /// The scheduler's run history (read only if it exists) and run logs.
    pub history_db: PathBuf,
    pub logs: PathBuf,
    pub schedules: Vec<ScheduleSpec>,
    /// Served by the scheduler daemon: its API serves `/v1/runs`, and the history is opened
    /// even before the daemon's first run creates it.
    pub in_daemon: bool,
    pub probes: metrics::Probes,
}

/// Opens the lake and the run history (on its own, only if the file exists: a console creates
/// nothing).
pub async fn console_state(params: &ConsoleParams) -> Result<ConsoleState> {
    let history = if params.in_daemon || params.history_db.exists() {
        Some(History::open(&params.history_db).await?)
    } else {
        None
    };
    Ok(ConsoleState {
        lake: Arc::new(Lake::open(&params.catalog).await?),
        history,
        logs: params.logs.clone(),
        schedules: params.schedules.clone(),
        auth: Auth::new(params.token.clone()),
        probes: params.probes.clone(),
    })
}

/// The console's routes: pages, `/v1/` reads, the login form, and `/v1/runs` unless the
/// daemon's API serves it.
pub fn router(state: ConsoleState, in_daemon: bool) -> Router {
    let mut protected = Router::new()
        .route("/", get(|| async { Redirect::to("/markets") }))
        .route("/markets", get(pages::markets))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/tables", get(pages::tables))
        .route("/tables/{name}", get(pages::table))
        .route("/lineage", get(pages::lineage))
        .route("/v1/lineage", get(lineage))
        .route("/v1/candles", get(candles))
        .route("/v1/market-snapshot", get(market_snapshot))
        .route("/v1/assets", get(assets))
        .route("/v1/market-snapshot/history", get(share_history))
        .route("/v1/positions", get(positions))
        .route("/v1/alerts", get(alerts))
        .route("/v1/tables", get(tables))
        .route("/v1/tables/{name}", get(table_detail))
        .route("/v1/schedules", get(schedules))
        .route("/metrics", get(scrape));
    if !in_daemon {
        protected = protected
            .route("/v1/runs", get(runs))
            .route("/v1/runs/{id}", get(run));
    }
    protected
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", get(auth::logout).post(auth::logout))
        .with_state(state)
}

/// Serves the console on `bind` until `shutdown` completes.
pub async fn start_console(
    params: ConsoleParams,
    bind: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let state = console_state(&params).await?;
    let app = router(state, params.in_daemon);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    tracing::info!(%addr, auth = params.token.is_some(), "console listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("console server: {e}")))
}

async fn candles(
    State(state): State<ConsoleState>,
    query: Result<Query<data::CandleQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return Error::BadRequest(e.body_text()).json(),
    };
    match data::candles(&state.lake, &q).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => e.json(),
    }
}

async fn scrape(State(state): State<ConsoleState>) -> Response {
    match metrics::render(&state).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => e.json(),
    }
}

async fn market_snapshot(State(state): State<ConsoleState>) -> Response {
    match data::market_snapshot(&state.lake).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.json(),
    }
}

async fn assets(State(state): State<ConsoleState>) -> Response {
    match data::assets(&state.lake).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.json(),
    }
}

#[derive(Debug, Deserialize)]
struct PositionsQuery {
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    rule: Option<String>,
    limit: Option<usize>,
}

async fn alerts(State(state): State<ConsoleState>, Query(q): Query<AlertsQuery>) -> Response {
    match data::alerts(&state.lake, q.rule.as_deref(), q.limit.unwrap_or(100)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.json(),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    source: Option<String>,
    limit: Option<usize>,
}

async fn share_history(
    State(state): State<ConsoleState>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(data::MAX_SHARES);
    match data::share_history(&state.lake, q.source.as_deref(), limit).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.json(),
    }
}

async fn positions(State(state): State<ConsoleState>, Query(q): Query<PositionsQuery>) -> Response {
    match data::positions(&state.lake, q.user.as_deref()).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.json(),
    }
}

async fn table_detail(
    State(state): State<ConsoleState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match detail::table_detail(&state, &name).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => e.json(),
    }
}

async fn lineage(
    State(state): State<ConsoleState>,
    Query(q): Query<lineage::LineageQuery>,
) -> Response {
    match lineage::lineage(&state.lake, &q).await {
        Ok(l) => Json(l).into_response(),
        Err(e) => e.json(),
    }
}

async fn tables(State(state): State<ConsoleState>) -> Response {
    match data::tables(&state.lake).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.json(),
    }
}

/// A schedule and when it fires next.
#[derive(Debug, Clone, Serialize)]
pub struct NextFire {
    pub schedule: String,
    pub job: String,
    pub expression: String,
    pub timezone: String,
    pub enabled: bool,
    /// RFC 3339 in UTC; `None` when the expression fires no more (a past `at(...)`).
    pub next_fire: Option<String>,
}

/// Every schedule's next fire time after now.
pub fn next_fires(schedules: &[ScheduleSpec]) -> Vec<NextFire> {
    let now = chrono::Utc::now();
    schedules
        .iter()
        .map(|s| {
            let next = match (s.expression(), s.tz()) {
                (Ok(e), Ok(tz)) if s.enabled => e.next_after(now, tz),
                _ => None,
            };
            NextFire {
                schedule: s.name.clone(),
                job: s.job.clone(),
                expression: s.expression.clone(),
                timezone: s.timezone.clone(),
                enabled: s.enabled,
                next_fire: next.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            }
        })
        .collect()
}

async fn schedules(State(state): State<ConsoleState>) -> Json<Vec<NextFire>> {
    Json(next_fires(&state.schedules))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    job: Option<String>,
    limit: Option<u32>,
}

async fn runs(State(state): State<ConsoleState>, Query(q): Query<RunsQuery>) -> Response {
    let Some(history) = &state.history else {
        return Json(Vec::<()>::new()).into_response();
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    match history.list(q.job.as_deref(), false, limit).await {
        Ok(runs) => Json(runs).into_response(),
        Err(e) => Error::from(e).json(),
    }
}

async fn run(
    State(state): State<ConsoleState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    let Some(history) = &state.history else {
        return Error::NotFound(format!("no run {id}")).json();
    };
    match history.get(id).await {
        Ok(run) => Json(run).into_response(),
        Err(e) => Error::from(e).json(),
    }
}
