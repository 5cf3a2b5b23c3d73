//! What cryptolake's tests and benchmarks start, shared once: free loopback ports and the
//! tansu Kafka-protocol broker (its SQLite storage in a temporary directory, stopped by process
//! id). moto, the other service they start, has its helper in `catalog/tests/catalog/moto.rs`,
//! shared by path because the catalog's own tests need it before this crate's users build.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback TCP port (the OS picks it; another process may take it before use, which
/// the caller's start-up check then reports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something listens on the loopback `port`; panics naming `what` after 30 s.
pub fn wait_for_listener(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A base port with the `n - 1` ports after it free too, for a process that takes a block.
///
/// The block is drawn from below the kernel's ephemeral range: a port in that range is also
/// what `free_port` hands out and what every outgoing connection takes as its source, so a
/// block there can be taken between this check and the process's bind (CI saw an executor's
/// gRPC port taken that way).
pub fn free_port_block(n: u16) -> u16 {
    let (low, high) = block_range(n);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut seed = nanos ^ std::process::id().rotate_left(7);
    for _ in 0..200 {
        // xorshift: a different candidate each try.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let base = low + (seed % u32::from(high - low)) as u16;
        let free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// Where `free_port_block` draws its bases: from 10000 up to the ephemeral range's start (or
/// 32768, Linux's default, when the range cannot be read), leaving room for the block.
fn block_range(n: u16) -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.saturating_sub(n);
    if high > 11000 {
        (10000, high)
    } else {
        // A machine whose ephemeral range starts low: above it, as before.
        (20000, 50000)
    }
}

/// The tansu binary: `CRYPTOLAKE_TANSU`, else the one `scripts/setup.sh` builds into the cache.
pub fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("CRYPTOLAKE_TANSU") {
        return p.into();
    }
    let cache = std::env::var_os("CRYPTOLAKE_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/cryptolake"),
        PathBuf::from,
    );
    let bin = cache.join("tansu/bin/tansu");
    assert!(
        bin.exists(),
        "{} missing: run scripts/setup.sh",
        bin.display()
    );
    bin
}

/// A tansu broker whose data (a SQLite file) outlives a stop, so it can come back.
pub struct Broker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Broker {
    /// Starts a broker on a free loopback port.
    pub fn start() -> Self {
        let mut broker = Self {
            child: None,
            dir: tempfile::tempdir().expect("a temporary directory"),
            port: free_port(),
        };
        broker.restart();
        broker
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker on its port and data (again, after `stop`).
    pub fn restart(&mut self) {
        let url = format!("tcp://{}", self.address());
        let child = Command::new(tansu())
            .args(["broker", "--storage-engine", "sqlite://tansu.db"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker by process id (SIGKILL: a lost machine).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", name, "--partitions"])
            .arg(partitions.to_string())
            .args(["--broker", &format!("tcp://{}", self.address())])
            .output()
            .expect("tansu topic create runs");
        assert!(
            out.status.success(),
            "topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
