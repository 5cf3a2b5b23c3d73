//! `cryptolake job submit|list|status|cancel|logs`: the submission API of a running
//! `cryptolake scheduler`, from the command line.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::output::{Format, print_rows, row};
use super::{CliError, Config};

#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The API's base URL (default: http://<[scheduler] bind>).
    #[arg(long, env = "CRYPTOLAKE_API_URL", global = true)]
    pub api: Option<String>,
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Start a run of JOB with `cryptolake run` arguments after `--`.
    Submit {
        job: String,
        /// Arguments for the job (`-- --table silver.quotes`).
        #[arg(last = true)]
        args: Vec<String>,
        /// Wait until the run ends; exit non-zero unless it SUCCEEDED.
        #[arg(long)]
        wait: bool,
    },
    /// Recent runs, newest first.
    List {
        #[arg(long)]
        job: Option<String>,
        /// Only STARTING and RUNNING runs.
        #[arg(long)]
        active: bool,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run.
    Status { id: i64 },
    /// Stop a running run (state STOPPED).
    Cancel { id: i64 },
    /// A run's log and output.
    Logs { id: i64 },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, CliError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Io(std::io::Error::other(format!("{}: {e}", self.base))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => {
                CliError::Config(format!("{status}: {message}"))
            }
            _ => CliError::Io(std::io::Error::other(format!("{status}: {message}"))),
        })
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        self.call(method, path, body)
            .await?
            .json()
            .await
            .map_err(|e| CliError::Io(std::io::Error::other(e.to_string())))
    }
}

pub async fn run(args: &JobArgs, config: &Config, format: Format) -> Result<(), CliError> {
    let token = config.scheduler.token.clone().ok_or_else(|| {
        CliError::Config("no API token: set [scheduler] token or CRYPTOLAKE_API_TOKEN".into())
    })?;
    let client = Client {
        http: reqwest::Client::new(),
        base: args
            .api
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.scheduler.bind))
            .trim_end_matches('/')
            .to_string(),
        token,
    };
    match &args.command {
        JobCommand::Submit { job, args, wait } => {
            let run = client
                .json(
                    Method::POST,
                    &format!("/v1/jobs/{job}/runs"),
                    Some(json!({ "args": args })),
                )
                .await?;
            let run = if *wait {
                wait_for(&client, &run).await?
            } else {
                run
            };
            show(std::slice::from_ref(&run), format)?;
            match run["state"].as_str() {
                Some("SUCCEEDED") | Some("STARTING") | Some("RUNNING") => Ok(()),
                Some(state) => Err(CliError::Io(std::io::Error::other(format!(
                    "run ended {state}"
                )))),
                None => Ok(()),
            }
        }
        JobCommand::List { job, active, limit } => {
            let mut path = format!("/v1/runs?limit={limit}&active={active}");
            if let Some(j) = job {
                path.push_str(&format!("&job={j}"));
            }
            let runs = client.json(Method::GET, &path, None).await?;
            show(runs.as_array().map_or(&[][..], Vec::as_slice), format)?;
            Ok(())
        }
        JobCommand::Status { id } => {
            let run = client
                .json(Method::GET, &format!("/v1/runs/{id}"), None)
                .await?;
            show(&[run], format)?;
            Ok(())
        }
        JobCommand::Cancel { id } => {
            let run = client
                .json(Method::DELETE, &format!("/v1/runs/{id}"), None)
                .await?;
            show(&[run], format)?;
            Ok(())
        }
        JobCommand::Logs { id } => {
            let text = client
                .call(Method::GET, &format!("/v1/runs/{id}/logs"), None)
                .await?
                .text()
                .await
                .map_err(|e| CliError::Io(std::io::Error::other(e.to_string())))?;
            print!("{text}");
            Ok(())
        }
    }
}

async fn wait_for(client: &Client, run: &Value) -> Result<Value, CliError> {
    let id = run["id"].as_i64().unwrap_or_default();
    loop {
        let now = client
            .json(Method::GET, &format!("/v1/runs/{id}"), None)
            .await?;
        if !matches!(now["state"].as_str(), Some("STARTING" | "RUNNING")) {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn show(runs: &[Value], format: Format) -> Result<(), CliError> {
    if format == Format::Json {
        println!("{}", super::output::to_json(runs)?);
        return Ok(());
    }
    let rows: Vec<_> = runs
        .iter()
        .map(|r| {
            row([
                ("id", r["id"].clone()),
                ("job", r["job"].clone()),
                ("trigger", r["trigger"].clone()),
                ("state", r["state"].clone()),
                ("attempt", r["attempt"].clone()),
                ("started_at", r["started_at"].clone()),
                ("ended_at", r["ended_at"].clone()),
                ("error", r["error"].clone()),
            ])
        })
        .collect();
    let columns = [
        "id",
        "job",
        "trigger",
        "state",
        "attempt",
        "started_at",
        "ended_at",
        "error",
    ];
    print_rows(&rows, &columns, format);
    Ok(())
}
