//! `cryptolake cluster up|down`: a local Ballista cluster of one scheduler and N executor
//! processes of the cryptolake binary, started in the background. Their process ids, ports and
//! log files are kept in a state file so that `down` (or anyone) can stop them by pid.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct LocalClusterSpec {
    /// The cryptolake binary.
    pub program: PathBuf,
    /// Passed to every process as `-c FILE`.
    pub config_file: Option<PathBuf>,
    /// State file, logs and executor work directories.
    pub state_dir: PathBuf,
    pub executors: usize,
    /// Scheduler port; executor `i` takes the two ports after `port + 2 i`.
    pub port: u16,
    /// Task slots per executor.
    pub concurrent_tasks: usize,
    /// Prometheus `/metrics`: the scheduler on this port, executor `i` on `metrics_port + 1 + i`.
    pub metrics_port: Option<u16>,
}

/// One background process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub role: String,
    pub pid: u32,
    pub port: u16,
    pub log: PathBuf,
}

/// A running local cluster, as the state file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCluster {
    /// `df://127.0.0.1:PORT`
    pub url: String,
    pub processes: Vec<ProcessInfo>,
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("cluster.json")
}

impl LocalCluster {
    /// The cluster recorded in `state_dir`, if any.
    pub fn load(state_dir: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(state_file(state_dir)) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Config(format!("{}: {e}", state_file(state_dir).display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The recorded processes that are still alive.
    pub fn alive(&self) -> Vec<&ProcessInfo> {
        self.processes.iter().filter(|p| is_alive(p.pid)).collect()
    }
}

fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

fn spawn(spec: &LocalClusterSpec, role: &str, args: &[String], port: u16) -> Result<ProcessInfo> {
    let log = spec.state_dir.join(format!("{role}.log"));
    let out = std::fs::File::create(&log)?;
    let mut command = Command::new(&spec.program);
    if let Some(file) = &spec.config_file {
        command.arg("-c").arg(file);
    }
    command
        .args(["cluster"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // Its own process group: a Ctrl-C in the terminal that ran `up` does not stop the cluster.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn()?;
    Ok(ProcessInfo {
        role: role.into(),
        pid: child.id(),
        port,
        log,
    })
}

/// Waits until something listens on `port`, or the process died.
fn wait_for_port(process: &ProcessInfo, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", process.port)).is_ok() {
            return Ok(());
        }
        if !is_alive(process.pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(&process.log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    Err(Error::Cluster(format!(
        "{} (pid {}) did not start listening on port {}: {}",
        process.role,
        process.pid,
        process.port,
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )))
}

/// Starts the cluster in the background and records it; refuses when one is already up.
pub fn up(spec: &LocalClusterSpec) -> Result<LocalCluster> {
    if spec.executors == 0 || spec.concurrent_tasks == 0 {
        return Err(Error::Config(
            "a cluster needs at least one executor with one task slot".into(),
        ));
    }
    if let Some(existing) = LocalCluster::load(&spec.state_dir)?
        && !existing.alive().is_empty()
    {
        return Err(Error::Config(format!(
            "a cluster is already up at {} (stop it with `cryptolake cluster down`)",
            existing.url
        )));
    }
    std::fs::create_dir_all(&spec.state_dir)?;
    let mut cluster = LocalCluster {
        url: format!("df://127.0.0.1:{}", spec.port),
        processes: Vec::new(),
    };
    let result = start_all(spec, &mut cluster);
    // Recorded even when a process failed, so `down` stops whatever did start.
    std::fs::write(
        state_file(&spec.state_dir),
        serde_json::to_string_pretty(&cluster).expect("serializable"),
    )?;
    if let Err(e) = result {
        stop(&cluster);
        return Err(e);
    }
    Ok(cluster)
}

fn start_all(spec: &LocalClusterSpec, cluster: &mut LocalCluster) -> Result<()> {
    let mut args = vec!["scheduler".into(), "--port".into(), spec.port.to_string()];
    if let Some(m) = spec.metrics_port {
        args.extend(["--metrics-port".into(), m.to_string()]);
    }
    let scheduler = spawn(spec, "scheduler", &args, spec.port)?;
    cluster.processes.push(scheduler.clone());
    wait_for_port(&scheduler, Duration::from_secs(30))?;
    for i in 0..spec.executors {
        let port = spec.port + 1 + 2 * i as u16;
        let work = spec.state_dir.join(format!("executor-{i}"));
        let args = [
            "executor",
            "--port",
            &port.to_string(),
            "--grpc-port",
            &(port + 1).to_string(),
            "--scheduler",
            &format!("127.0.0.1:{}", spec.port),
            "--concurrent-tasks",
            &spec.concurrent_tasks.to_string(),
            "--work-dir",
            &work.to_string_lossy(),
        ]
        .map(String::from)
        .to_vec();
        let mut args = args;
        if let Some(m) = spec.metrics_port {
            args.extend(["--metrics-port".into(), (m + 1 + i as u16).to_string()]);
        }
        start_executor(spec, cluster, &format!("executor-{i}"), &args, port)?;
    }
    Ok(())
}

/// Starts one executor, again (up to three times) when it exits while starting. Ballista 53's
/// executor registers before its gRPC server listens; on a loaded machine the scheduler's
/// call back can come first, and the executor exits with "could not connect".
fn start_executor(
    spec: &LocalClusterSpec,
    cluster: &mut LocalCluster,
    role: &str,
    args: &[String],
    port: u16,
) -> Result<()> {
    let mut attempt = 1;
    loop {
        let executor = spawn(spec, role, args, port)?;
        cluster.processes.push(executor.clone());
        match wait_for_port(&executor, Duration::from_secs(30)) {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 3 && !is_alive(executor.pid) => {
                tracing::warn!(role, attempt, error = %e, "executor exited while starting; starting it again");
                cluster.processes.pop();
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends SIGTERM, then SIGKILL to what is still alive after a grace period.
fn stop(cluster: &LocalCluster) -> usize {
    let signal = |sig: &str, pid: u32| {
        let _ = Command::new("kill")
            .args([sig, &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    };
    let alive: Vec<u32> = cluster.alive().iter().map(|p| p.pid).collect();
    for pid in &alive {
        signal("-TERM", *pid);
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) && alive.iter().any(|p| is_alive(*p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in alive.iter().filter(|p| is_alive(**p)) {
        signal("-KILL", *pid);
    }
    alive.len()
}

/// Stops the recorded cluster and forgets it; returns how many processes were stopped.
pub fn down(state_dir: &Path) -> Result<usize> {
    let Some(cluster) = LocalCluster::load(state_dir)? else {
        return Ok(0);
    };
    let stopped = stop(&cluster);
    std::fs::remove_file(state_file(state_dir))?;
    Ok(stopped)
}
