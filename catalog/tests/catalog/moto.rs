//! A moto server (S3 and Glue, with Glue's VersionId check) on a free loopback port, started
//! from the project's venv with `scripts/moto_server.py` and killed by process id when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cryptolake_catalog::config::{CatalogConfig, Secret};

pub struct Moto {
    child: Child,
    pub port: u16,
}

fn venv() -> std::path::PathBuf {
    std::env::var_os("CRYPTOLAKE_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::Path::new(&home).join(".cache/cryptolake/venv")
        })
}

impl Moto {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the server with extra environment (e.g. `CRYPTOLAKE_MOTO_INTERLOPE`, see
    /// `scripts/moto_server.py`).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "{} missing: run scripts/setup.sh",
            python.display()
        );
        // Our launcher: moto with Glue's VersionId check (stock moto ignores it).
        // Found from any crate of the workspace that includes this file. Looked up when the
        // test runs (cargo runs tests in the package's directory): a test binary reused from a
        // shared target directory may have been built in another checkout.
        let here = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::current_dir().ok())
            .expect("a working directory");
        let script = here
            .ancestors()
            .map(|dir| dir.join("scripts/moto_server.py"))
            .find(|p| p.exists())
            .expect("scripts/moto_server.py");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .arg(script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let request = format!(
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// `config` with its warehouse on this server.
    pub fn configure(&self, config: CatalogConfig, warehouse: &str) -> CatalogConfig {
        CatalogConfig {
            warehouse: warehouse.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some(Secret("testing".into())),
            ..config
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
