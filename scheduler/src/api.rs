//! The submission API, for EventBridge API destinations and scripts:
//!
//! - `POST /v1/jobs/{job}/runs`: body empty, `{"args": [...]}`, or an EventBridge event whose
//!   `detail` holds `args`; 201 with the run, 409 when the job is at its concurrency limit.
//! - `GET /v1/runs[?job=J&active=true&limit=N]`, `GET /v1/runs/{id}`,
//!   `GET /v1/runs/{id}/logs`, `DELETE /v1/runs/{id}` (cancel; 202).
//!
//! Every request needs `Authorization: Bearer <token>` (401 otherwise); bodies over the limit
//! get 413. `GET /healthz` alone needs no token: it answers `ok` and tells nothing else.

use std::time::Duration;

use axum::body::Bytes;
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
        .with_state(state)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::RunNotFound(_) => StatusCode::NOT_FOUND,
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
    // An EventBridge event carries `detail-type`, `source` and the payload in `detail`.
    let (payload, trigger) = match (value.get("detail"), value.get("source")) {
        (Some(detail), Some(source)) => (
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
    body: Bytes,
) -> Result<Response, Error> {
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
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
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

async fn status(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Response, Error> {
    Ok(Json(state.dispatcher.history().get(id).await?).into_response())
}

async fn cancel(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Response, Error> {
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

async fn logs(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Response, Error> {
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
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
