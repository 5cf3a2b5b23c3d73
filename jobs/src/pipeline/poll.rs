//! `poll`: fetch one market-data API and land its answer, as the seeds' Lambdas and producers
//! do: a landing file `<source>/<yyyy>/<mm>/<dd>/<epoch ms>-batch_<n>.json` (local or S3,
//! written whole), or one Kafka message per response.
//!
//! Requests have a time limit and are retried with exponential backoff when the failure can
//! pass (no connection, a timeout, a body cut short, 5xx, 429; a 429's `Retry-After` is
//! waited out). A response that is not the API's JSON, and the last answer of a request that
//! failed, are kept aside under `<landing>/_errors/<source>/` with the reason, never under a
//! source's prefix; the run goes on with its other polls and then exits with the failure's
//! kind (bad data 3, refused 2, unreachable 1). Keys come from the environment and travel
//! only in headers: never in a URL, a log line, a plan or a kept-aside file.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::job::duration::parse_duration;
use crate::job::landing::Landing;
use crate::sources::api::{Api, PollSettings};
use crate::sources::kafka_config::KafkaConfig;
use crate::{Error, ErrorKind, Result};

/// Where polled payloads go.
#[derive(Debug, Clone)]
pub enum PollTarget {
    Landing(Landing),
    Kafka { config: KafkaConfig, topic: String },
}

/// `poll SOURCE`: the source, its settings and where its answers go.
#[derive(Debug)]
pub struct Poll {
    api: Api,
    settings: PollSettings,
    /// Overrides `settings.base_url` (`--base-url`).
    base_url: Option<String>,
    landing: Landing,
    kafka: Option<KafkaConfig>,
}

/// What one run fetches; what `--dry-run` prints. Holds no secret: credentials are named by
/// their variables.
#[derive(Debug, Clone, Serialize)]
pub struct PollPlan {
    pub source: String,
    pub urls: Vec<String>,
    /// `landing <url>` or `kafka <topic>`.
    pub target: String,
    pub times: u32,
    pub every_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub backoff_ms: u64,
    /// The environment variables whose values are sent as headers.
    pub credentials: Vec<&'static str>,
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct PollReport {
    pub job: String,
    pub source: String,
    pub polls: u32,
    pub requests: u64,
    /// Responses kept as data.
    pub responses: u64,
    pub records: u64,
    /// Landing files written (their full locations), or `topic/partition` per message.
    pub written: Vec<String>,
    /// Kafka messages produced.
    #[serde(skip_serializing_if = "is_zero")]
    pub produced: u64,
    /// Files kept aside under `_errors/`.
    pub kept_aside: Vec<String>,
    pub errors: Vec<String>,
    pub duration_ms: u64,
    /// The run's failure, the most severe of its requests' (exit code order: refused,
    /// bad data, unreachable).
    #[serde(skip)]
    pub failure: Option<Error>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A request that failed, with the last answer when there was one.
#[derive(Debug)]
struct Failure {
    kind: ErrorKind,
    message: String,
    answer: Option<Answer>,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    body: Vec<u8>,
}

/// The longest `Retry-After` waited; a server asking more fails the request.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Poll {
    /// A poll of `source` (a [`crate::sources::api::POLL_SOURCES`] name).
    pub fn new(source: &str, settings: PollSettings, landing: Landing) -> Result<Self> {
        Ok(Self {
            api: Api::parse(source)?,
            settings,
            base_url: None,
            landing,
            kafka: None,
        })
    }

    /// Fetch from this root instead of the settings' or the API's.
    pub fn with_base_url(mut self, url: Option<String>) -> Self {
        self.base_url = url;
        self
    }

    /// The brokers a `topic` setting produces to.
    pub fn with_kafka(mut self, kafka: Option<KafkaConfig>) -> Self {
        self.kafka = kafka;
        self
    }

    /// Validates the settings and lists what a run fetches. Reads nothing, sends nothing.
    pub fn plan(&self) -> Result<PollPlan> {
        let s = &self.settings;
        let source = self.api.source();
        let base = self
            .base_url
            .as_deref()
            .or(s.base_url.as_deref())
            .unwrap_or(self.api.default_base_url());
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "[poll.{source}] base_url: `{base}` is not an http(s):// URL"
            )));
        }
        let every_ms = match &s.every {
            Some(e) => parse_duration(e)
                .map_err(|e| Error::Usage(format!("[poll.{source}] every: {e}")))?
                .as_millis() as u64,
            None => 0,
        };
        let times = s.times.unwrap_or(1);
        if times == 0 {
            return Err(Error::Usage(format!(
                "[poll.{source}] times: must be at least 1"
            )));
        }
        let timeout = s.timeout_seconds.unwrap_or(10.0);
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(Error::Usage(format!(
                "[poll.{source}] timeout_seconds: must be more than 0"
            )));
        }
        let target = match (&s.topic, &self.kafka) {
            (Some(topic), Some(_)) => format!("kafka {topic}"),
            (Some(topic), None) => {
                return Err(Error::Usage(format!(
                    "[poll.{source}] topic = {topic:?} needs a [kafka] section with the brokers"
                )));
            }
            (None, _) => format!("landing {}", self.landing.url()),
        };
        for c in self.api.credentials().iter().filter(|c| c.required) {
            if std::env::var(c.env).map_or(true, |v| v.is_empty()) {
                return Err(Error::Usage(format!(
                    "{source} needs the environment variable {} (its API key)",
                    c.env
                )));
            }
        }
        Ok(PollPlan {
            source: source.to_string(),
            urls: self.api.urls(base, s)?,
            target,
            times,
            every_ms,
            timeout_ms: (timeout * 1000.0) as u64,
            retries: s.retries.unwrap_or(3),
            backoff_ms: s.backoff_ms.unwrap_or(500),
            credentials: self.api.credentials().iter().map(|c| c.env).collect(),
        })
    }

    /// Polls `plan.times` times, `plan.every_ms` apart, and lands every good answer.
    pub async fn execute(&self, plan: PollPlan) -> Result<PollReport> {
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(plan.timeout_ms))
            .connect_timeout(Duration::from_millis(plan.timeout_ms.min(5_000)))
            .user_agent(concat!("cryptolake/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
        let headers = self.headers()?;
        let mut report = PollReport {
            job: "poll".into(),
            source: plan.source.clone(),
            ..Default::default()
        };
        for n in 0..plan.times {
            let due = Duration::from_millis(plan.every_ms * u64::from(n));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            self.poll_once(&client, &headers, &plan, n, &mut report)
                .await?;
            report.polls += 1;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    fn headers(&self) -> Result<reqwest::header::HeaderMap> {
        use reqwest::header::{HeaderName, HeaderValue};
        let mut map = reqwest::header::HeaderMap::new();
        map.insert("Accept", HeaderValue::from_static("application/json"));
        for c in self.api.credentials() {
            let Ok(value) = std::env::var(c.env) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let value = if c.bearer {
                format!("Bearer {value}")
            } else {
                value
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                Error::Usage(format!("{} holds characters a header cannot carry", c.env))
            })?;
            value.set_sensitive(true);
            let name = HeaderName::from_bytes(c.header.as_bytes())
                .map_err(|e| Error::Internal(format!("header {}: {e}", c.header)))?;
            map.insert(name, value);
        }
        Ok(map)
    }

    /// One poll: every URL once, the good answers landed together as batch `n`.
    async fn poll_once(
        &self,
        client: &reqwest::Client,
        headers: &reqwest::header::HeaderMap,
        plan: &PollPlan,
        n: u32,
        report: &mut PollReport,
    ) -> Result<()> {
        let fetched = Utc::now();
        let stamp = fetched.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for (i, url) in plan.urls.iter().enumerate() {
            report.requests += 1;
            let failure = match fetch(client, headers, url, plan).await {
                Ok(answer) => match self.api.check(&answer.body) {
                    Ok(records) => {
                        report.responses += 1;
                        report.records += records;
                        payloads.push(self.api.payload(&answer.body, &stamp));
                        continue;
                    }
                    Err(bad) => Failure {
                        kind: ErrorKind::BadData,
                        message: format!("GET {url}: {bad}"),
                        answer: Some(answer),
                    },
                },
                Err(failure) => failure,
            };
            let name = batch_name(fetched, n, (plan.urls.len() > 1).then_some(i));
            if let Some(answer) = &failure.answer {
                let kept = self
                    .keep_aside(&name, url, &failure, answer, &stamp)
                    .await?;
                report.kept_aside.push(kept);
            }
            tracing::warn!(source = %plan.source, "{}", failure.message);
            report.errors.push(failure.message.clone());
            record_failure(report, failure.kind, failure.message);
        }
        if !payloads.is_empty() {
            self.land(&payloads, fetched, n, report).await?;
        }
        Ok(())
    }

    async fn land(
        &self,
        payloads: &[Vec<u8>],
        fetched: DateTime<Utc>,
        n: u32,
        report: &mut PollReport,
    ) -> Result<()> {
        let source = self.api.source();
        match (&self.settings.topic, &self.kafka) {
            (Some(topic), Some(config)) => {
                let messages: Vec<String> = payloads
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                let first = report.produced as usize;
                let sent =
                    crate::sources::kafka::produce_from(config, topic, &messages, first).await?;
                report.produced += messages.len() as u64;
                for (partition, count) in sent.into_iter().filter(|(_, c)| *c > 0) {
                    report
                        .written
                        .push(format!("{topic}/{partition} ({count})"));
                }
            }
            _ => {
                let name = batch_name(fetched, n, None);
                let mut bytes = payloads.join(&b'\n');
                bytes.push(b'\n');
                self.landing.put(source, &name, bytes).await?;
                report
                    .written
                    .push(format!("{}/{source}/{name}", self.landing.url()));
            }
        }
        Ok(())
    }

    /// Writes the answer and why it was refused to `_errors/<source>/<name>`.
    async fn keep_aside(
        &self,
        name: &str,
        url: &str,
        failure: &Failure,
        answer: &Answer,
        stamp: &str,
    ) -> Result<String> {
        let source = self.api.source();
        let doc = serde_json::json!({
            "source": source,
            "url": url,
            "fetched_at": stamp,
            "status": answer.status,
            "content_type": answer.content_type,
            "reason": failure.message,
            "body": String::from_utf8_lossy(&answer.body),
        });
        let bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| Error::Internal(format!("encoding a kept-aside answer: {e}")))?;
        let rel = format!("{source}/{name}");
        self.landing.put("_errors", &rel, bytes).await?;
        Ok(format!("{}/_errors/{rel}", self.landing.url()))
    }
}

/// Keeps the most severe failure: refused (usage), then bad data, then unreachable.
fn record_failure(report: &mut PollReport, kind: ErrorKind, message: String) {
    let rank = |k: ErrorKind| match k {
        ErrorKind::Usage => 0,
        ErrorKind::BadData => 1,
        _ => 2,
    };
    let worse = report
        .failure
        .as_ref()
        .is_none_or(|f| rank(kind) < rank(f.kind()));
    if worse {
        report.failure = Some(Error::Api { kind, message });
    }
}

/// `<yyyy>/<mm>/<dd>/<epoch ms>-batch_<n>[-<request>].json`, the seeds' layout.
fn batch_name(at: DateTime<Utc>, n: u32, request: Option<usize>) -> String {
    let part = request.map_or(String::new(), |i| format!("-{i}"));
    format!(
        "{}/{}-batch_{n}{part}.json",
        at.format("%Y/%m/%d"),
        at.timestamp_millis()
    )
}

/// GETs `url`, retrying what can pass; the answer when it is 2xx.
async fn fetch(
    client: &reqwest::Client,
    headers: &reqwest::header::HeaderMap,
    url: &str,
    plan: &PollPlan,
) -> std::result::Result<Answer, Failure> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(plan.backoff_ms))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(plan.retries as usize)
        .build();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (failure, retry_after) = match try_once(client, headers, url).await {
            Ok(answer) if (200..300).contains(&answer.status) => return Ok(answer),
            Ok(answer) => {
                let status = answer.status;
                let kind = if status == 429 || status >= 500 {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Usage
                };
                let retry_after = retry_after(&answer);
                let failure = Failure {
                    kind,
                    message: format!("GET {url}: HTTP {status}"),
                    answer: Some(answer),
                };
                if kind != ErrorKind::Transient {
                    return Err(failure);
                }
                (failure, retry_after)
            }
            Err(message) => (
                Failure {
                    kind: ErrorKind::Transient,
                    message: format!("GET {url}: {message}"),
                    answer: None,
                },
                None,
            ),
        };
        let Some(backoff) = delays.next() else {
            return Err(Failure {
                message: format!("{} (after {attempt} attempts)", failure.message),
                ..failure
            });
        };
        let wait = match retry_after {
            Some(after) if after > MAX_RETRY_AFTER => {
                return Err(Failure {
                    message: format!(
                        "{}: asked to retry after {} s, more than {} s",
                        failure.message,
                        after.as_secs(),
                        MAX_RETRY_AFTER.as_secs()
                    ),
                    ..failure
                });
            }
            Some(after) => after,
            None => backoff,
        };
        tracing::info!(
            url,
            attempt,
            wait_ms = wait.as_millis() as u64,
            "{}; retrying",
            failure.message
        );
        tokio::time::sleep(wait).await;
    }
}

/// One GET: the status and the whole body, or why there is none (no connection, a timeout,
/// a body cut short).
async fn try_once(
    client: &reqwest::Client,
    headers: &reqwest::header::HeaderMap,
    url: &str,
) -> std::result::Result<Answer, String> {
    let response = client
        .get(url)
        .headers(headers.clone())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().await.map_err(|e| describe(&e))?.to_vec();
    Ok(Answer {
        status,
        content_type,
        retry_after,
        body,
    })
}

/// A 429's `Retry-After` (seconds or an HTTP date).
fn retry_after(answer: &Answer) -> Option<Duration> {
    if answer.status != 429 {
        return None;
    }
    let value = answer.retry_after.as_deref()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

/// A transport error without the URL (the caller names it once).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body was cut short"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names_follow_the_seed_layout() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            batch_name(at, 3, None),
            "2026/01/02/1767323045678-batch_3.json"
        );
        assert_eq!(
            batch_name(at, 0, Some(1)),
            "2026/01/02/1767323045678-batch_0-1.json"
        );
    }

    #[test]
    fn the_worst_failure_decides_the_exit() {
        let mut report = PollReport::default();
        record_failure(&mut report, ErrorKind::Transient, "down".into());
        record_failure(&mut report, ErrorKind::BadData, "html".into());
        record_failure(&mut report, ErrorKind::Transient, "down again".into());
        let f = report.failure.unwrap();
        assert_eq!(
            (f.kind(), f.to_string()),
            (ErrorKind::BadData, "html".into())
        );
    }

    #[test]
    fn plans_name_credentials_never_their_values_and_refuse_bad_settings() {
        let landing = Landing::Local("/tmp/l".into());
        let poll = Poll::new("coincap_assets", PollSettings::default(), landing.clone()).unwrap();
        let plan = poll.plan().unwrap();
        assert_eq!(plan.urls, ["https://api.coincap.io/v2/assets?limit=100"]);
        assert_eq!(plan.credentials, ["COINCAP_API_KEY"]);
        assert_eq!((plan.times, plan.every_ms, plan.retries), (1, 0, 3));
        let settings = PollSettings {
            every: Some("5s".into()),
            times: Some(12),
            topic: Some("quotes".into()),
            ..Default::default()
        };
        let e = Poll::new("coincap_rates", settings, landing.clone())
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(e.to_string().contains("[kafka]"), "{e}");
        let e = Poll::new("coincap_rates", PollSettings::default(), landing)
            .unwrap()
            .with_base_url(Some("ftp://x".into()))
            .plan()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
    }
}
