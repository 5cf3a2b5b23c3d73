//! Helpers shared by cryptolake's benchmarks: bulk landing data in the shape of the design
//! brief's reference workload (Coinbase spot prices as Firehose writes them) and peak memory.

use std::io::Write;
use std::path::Path;

/// Writes `records` Coinbase spot records as Firehose objects back to back, `per_file` per file
/// (no extension, as Firehose names them), with a duplicate every 50th record. Returns the
/// bytes written.
pub fn write_coinbase_spot(
    landing: &Path,
    records: usize,
    per_file: usize,
) -> std::io::Result<u64> {
    let symbols = ["BTC", "ETH", "XRP", "LTC", "SOL", "ADA", "DOGE", "DOT"];
    let start = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let mut bytes = 0u64;
    let mut written = 0usize;
    let mut file_no = 0usize;
    while written < records {
        let n = per_file.min(records - written);
        let second = start + (written / symbols.len()) as i64;
        let t = chrono::DateTime::from_timestamp(second, 0).unwrap_or_default();
        let dir = landing
            .join("coinbase_spot")
            .join(t.format("%Y/%m/%d/%H").to_string());
        std::fs::create_dir_all(&dir)?;
        let mut body = Vec::with_capacity(n * 110);
        for i in written..written + n {
            // A duplicate delivery every 50th record, as at-least-once producers do.
            let k = if i % 50 == 49 { i - 1 } else { i };
            let sym = symbols[k % symbols.len()];
            let ts = chrono::DateTime::from_timestamp(start + (k / symbols.len()) as i64, 0)
                .unwrap_or_default();
            let price = 100.0 + (k % 10_000) as f64 * 0.37;
            write!(
                body,
                "{{\"data\":{{\"amount\":\"{price:.2}\",\"base\":\"{sym}\",\"currency\":\"USD\"}},\"timestamp_utc\":\"{}\"}}",
                ts.format("%Y-%m-%dT%H:%M:%SZ")
            )?;
        }
        let name = format!(
            "bench-spot-1-{}-{file_no:06}",
            t.format("%Y-%m-%d-%H-%M-%S")
        );
        std::fs::write(dir.join(name), &body)?;
        bytes += body.len() as u64;
        written += n;
        file_no += 1;
    }
    Ok(bytes)
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The `n`-th positional argument of a bench binary as a number (`_` separators allowed).
pub fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A multi-threaded runtime for a bench's async part.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh embedded lake (SQLite catalog, local warehouse) in `dir`.
pub async fn open_lake(dir: &Path) -> cryptolake_catalog::Lake {
    let config = cryptolake_catalog::CatalogConfig {
        path: dir.join("catalog.db"),
        warehouse: dir.join("warehouse").to_string_lossy().into_owned(),
        ..cryptolake_catalog::CatalogConfig::default()
    };
    cryptolake_catalog::Lake::open(&config).await.expect("lake")
}
