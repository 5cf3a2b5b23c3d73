//! The submission API, for EventBridge API destinations and scripts:
//!
//! - `POST /v1/jobs/{job}/runs`: body empty, `{"args": [...]}`, or an EventBridge event whose
//!   `detail` holds `args`; 201 with the run, 409 when the job is at its concurrency limit.
//! - `GET /v1/runs[?job=J&active=true&limit=N]`, `GET /v1/runs/{id}`,
//!   `GET /v1/runs/{id}/logs`, `DELETE /v1/runs/{id}` (cancel; 202).
//! - `GET /v1/openapi.json`: this API's OpenAPI 3 description (no token needed).
//!
//! Every answer but a log and `/healthz` is JSON, errors included (`{"error": "..."}`), also
//! for a path, query or body that does not parse.
//!
//! A submission's `args` are the job's own flags only, as the daemon's [`ArgsCheck`] allows:
//! a submitter cannot point a run at another config, warehouse, landing zone or cluster (400).
//!
//! Every request needs `Authorization: Bearer <token>` (401 otherwise); bodies over the limit
//! get 413. `GET /healthz` (it answers `ok` and tells nothing else) and the description need no
//! token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Error;
use crate::config::ScheduleSpec;
use crate::daemon::{Dispatcher, Submission, Submitted};

type CheckFn = dyn Fn(&str, &[String]) -> std::result::Result<(), String> + Send + Sync;

/// Checks a submission's `args` for the named job: `Err` says why they are refused (400).
/// The CLI supplies it from its own flag definitions, so this crate knows no flags.
#[derive(Clone)]
pub struct ArgsCheck(Arc<CheckFn>);

impl ArgsCheck {
    pub fn new(
        check: impl Fn(&str, &[String]) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(check))
    }

    pub fn check(&self, job: &str, args: &[String]) -> std::result::Result<(), String> {
        (self.0)(job, args)
    }
}

impl std::fmt::Debug for ArgsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArgsCheck")
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub dispatcher: Dispatcher,
    pub token: String,
    /// Jobs that may be submitted.
    pub jobs: Vec<String>,
    /// For a submitted job's timeout and retries, when a schedule runs the same job.
    pub schedules: Vec<ScheduleSpec>,
    pub max_body_bytes: usize,
    /// Refuses arguments a submitter may not give (another config, warehouse, landing zone,
    /// cluster or broker), before any run starts.
    pub args_check: ArgsCheck,
}

/// The API's routes, with authentication and the body limit; `/healthz` (no token: it says
/// only that the daemon answers) for container and pod health checks.
pub fn router(state: ApiState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/jobs/{job}/runs", post(submit))
        .route("/v1/runs", get(list))
        .route("/v1/runs/{id}", get(status).delete(cancel))
        .route("/v1/runs/{id}/logs", get(logs))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// The API's OpenAPI 3 description, with the jobs this daemon accepts. Served without a token:
/// it describes the routes, and tells nothing a token would guard.
async fn openapi(State(state): State<ApiState>) -> Response {
    match openapi_document(&state.jobs) {
        Ok(doc) => Json(doc).into_response(),
        Err(why) => problem(StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}

fn openapi_document(jobs: &[String]) -> Result<Value, String> {
    let mut doc: Value = serde_json::from_str(include_str!("openapi.json"))
        .map_err(|e| format!("the OpenAPI document does not parse: {e}"))?;
    let job = doc
        .pointer_mut("/paths/~1v1~1jobs~1{job}~1runs/post/parameters/0/schema/enum")
        .ok_or("the OpenAPI document has no job parameter")?;
    *job = json!(jobs);
    Ok(doc)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::RunNotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Config(_) | Error::Expression(_) => StatusCode::CONFLICT,
            Error::History(_) | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        problem(status, self.to_string())
    }
}

async fn authenticate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), state.token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let mut r = problem(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// Compares without an early exit (`subtle`), so timing does not tell how much of a token was
/// right; only its length can show.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// The arguments in a submission body, and the trigger it names.
fn parse_body(body: &[u8]) -> Result<(Vec<String>, String), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((Vec::new(), "api".into()));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("body must be a JSON object".into());
    }
    // An EventBridge event carries `detail-type`, `source` and the payload in `detail`.
    let (payload, trigger) = match (value.get("detail"), value.get("source")) {
        (Some(detail), Some(source)) if detail.is_object() => (
            detail.clone(),
            format!("eventbridge:{}", source.as_str().unwrap_or("unknown")),
        ),
        _ => (value, "api".into()),
    };
    let args = match payload.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or("args must be strings"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("args must be an array of strings".into()),
    };
    Ok((args, trigger))
}

async fn submit(
    State(state): State<ApiState>,
    Path(job): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let body = match body {
        Ok(body) => body,
        Err(e) => return Ok(problem(e.status(), e.body_text())),
    };
    if !state.jobs.contains(&job) {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            format!("no job {job:?}; jobs: {}", state.jobs.join(", ")),
        ));
    }
    let (args, trigger) = match parse_body(&body) {
        Ok(parsed) => parsed,
        Err(why) => return Ok(problem(StatusCode::BAD_REQUEST, why)),
    };
    if let Err(why) = state.args_check.check(&job, &args) {
        return Ok(problem(StatusCode::BAD_REQUEST, why));
    }
    let like = state.schedules.iter().find(|s| s.job == job);
    let submission = Submission {
        job,
        args,
        trigger,
        scheduled_for: None,
        timeout: Duration::from_secs(like.map_or(2880, |s| s.timeout_minutes) * 60),
        max_retries: like.map_or(0, |s| s.max_retries),
    };
    match state.dispatcher.submit(submission).await? {
        Submitted::Started(id) => {
            let run = state.dispatcher.history().get(id).await?;
            Ok((StatusCode::CREATED, Json(run)).into_response())
        }
        Submitted::Skipped(_, why) => Ok(problem(StatusCode::CONFLICT, why)),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    job: Option<String>,
    #[serde(default)]
    active: bool,
    limit: Option<u32>,
}

async fn list(
    State(state): State<ApiState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return Ok(problem(e.status(), e.body_text())),
    };
    let runs = state
        .dispatcher
        .history()
        .list(
            q.job.as_deref(),
            q.active,
            q.limit.unwrap_or(100).min(10_000),
        )
        .await?;
    Ok(Json(runs).into_response())
}

/// A run id from the path; one that is not an integer names no run.
fn run_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, Error> {
    match id {
        Ok(Path(id)) => Ok(id),
        Err(e) => Err(Error::BadRequest(e.body_text())),
    }
}

async fn status(
    State(state): State<ApiState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, Error> {
    let id = run_id(id)?;
    Ok(Json(state.dispatcher.history().get(id).await?).into_response())
}

async fn cancel(
    State(state): State<ApiState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, Error> {
    let id = run_id(id)?;
    if state.dispatcher.cancel(id).await? {
        let run = state.dispatcher.history().get(id).await?;
        Ok((StatusCode::ACCEPTED, Json(run)).into_response())
    } else {
        Ok(problem(
            StatusCode::CONFLICT,
            format!("run {id} is not running"),
        ))
    }
}

async fn logs(
    State(state): State<ApiState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, Error> {
    let id = run_id(id)?;
    state.dispatcher.history().get(id).await?;
    let (out, log) = crate::runner::run_files(state.dispatcher.logs(), id);
    let text = format!(
        "{}{}",
        std::fs::read_to_string(log).unwrap_or_default(),
        std::fs::read_to_string(out).unwrap_or_default()
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_lists_every_route_and_the_daemons_jobs() {
        let doc = openapi_document(&["silver".into(), "gold".into()]).unwrap();
        let job = &doc["paths"]["/v1/jobs/{job}/runs"]["post"]["parameters"][0]["schema"];
        assert_eq!(job["enum"], json!(["silver", "gold"]));
        let mut paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "/healthz",
                "/v1/jobs/{job}/runs",
                "/v1/runs",
                "/v1/runs/{id}",
                "/v1/runs/{id}/logs"
            ]
        );
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(b"").unwrap(), (vec![], "api".to_string()));
        assert_eq!(
            parse_body(br#"{"args": ["--table", "silver.quotes"]}"#).unwrap(),
            (vec!["--table".into(), "silver.quotes".into()], "api".into())
        );
        let event = br#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.scheduler","time":"2026-11-22T03:00:00Z","detail":{"args":["--dry-run"]}}"#;
        assert_eq!(
            parse_body(event).unwrap(),
            (vec!["--dry-run".into()], "eventbridge:aws.scheduler".into())
        );
        assert!(parse_body(br#"{"args": "x"}"#).is_err());
        assert!(parse_body(b"{").is_err());
        assert!(parse_body(b"[]").is_err());
        assert!(parse_body(br#""--landing""#).is_err());
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
