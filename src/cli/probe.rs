//! `cryptolake probe URL`: a health check for images that have no shell or curl. Exit 0 when
//! `http(s)://...` answers 2xx or `tcp://HOST:PORT` accepts a connection within the timeout,
//! 1 otherwise (Docker's and Kubernetes' convention for exec probes).

use std::time::Duration;

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// `http://HOST:PORT/PATH` (a 2xx answer) or `tcp://HOST:PORT` (a connection).
    pub url: String,
    /// Seconds to wait.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

pub async fn run(args: &ProbeArgs) -> Result<(), CliError> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let unhealthy =
        |why: String| CliError::Io(std::io::Error::other(format!("{}: {why}", args.url)));
    if let Some(addr) = args.url.strip_prefix("tcp://") {
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unhealthy(e.to_string())),
            Err(_) => Err(unhealthy("no connection within the timeout".into())),
        };
    }
    if !(args.url.starts_with("http://") || args.url.starts_with("https://")) {
        return Err(CliError::Config(format!(
            "probe {}: expected http(s)://HOST:PORT/PATH or tcp://HOST:PORT",
            args.url
        )));
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| unhealthy(e.to_string()))?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .map_err(|e| unhealthy(e.to_string()))?;
    match response.status().is_success() {
        true => Ok(()),
        false => Err(unhealthy(format!("answered {}", response.status()))),
    }
}
