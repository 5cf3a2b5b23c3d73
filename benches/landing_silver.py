"""Landing -> silver on Coinbase spot JSON lines, in three shapes and several sizes, each job in
its own process: wall time and peak resident memory (the process's own, from wait4), and with
--compare the same job in PySpark local[2] and in DuckDB (2 threads) on the same files.

Run by benches/landing-silver.sh, which builds the release binary; see there for the options.

The data is seed 003's: one Coinbase spot quote per symbol per second, 20 symbols, a duplicate
delivery every 50th line, as `{"data":{"amount","base","currency"},"timestamp_utc"}` lines.
The job is seed 003's silver job: type the price (exact decimal), derive date, year, month,
day and hour, drop duplicates on (symbol, time), write zstd Parquet partitioned by symbol and
day. Every engine must end with the same row count and the same sum of prices.
"""

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

SYMBOLS = ["BTC", "ETH", "XRP", "LTC", "SOL", "ADA", "DOGE", "DOT", "AVAX", "LINK",
           "MATIC", "UNI", "ATOM", "XLM", "ALGO", "FIL", "NEAR", "APT", "ARB", "OP"]
START = 1767225600  # 2026-01-01T00:00:00Z
FIREHOSE_RECORDS = 50_000  # about 5.3 MB a file


def lines(records):
    """The records as JSON lines, with the exact sum of their distinct prices at the end."""
    total = Decimal(0)
    for i in range(records):
        # A duplicate delivery every 50th line, as at-least-once producers do.
        k = i - 1 if i % 50 == 49 else i
        sym = SYMBOLS[k % len(SYMBOLS)]
        second = START + k // len(SYMBOLS)
        cents = 10_000 + (k * 7919) % 5_000_000
        price = f"{cents // 100}.{cents % 100:02d}"
        if k == i:
            total += Decimal(price)
        ts = dt.datetime.fromtimestamp(second, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        yield ('{"data":{"amount":"%s","base":"%s","currency":"USD"},"timestamp_utc":"%s"}\n'
               % (price, sym, ts))
    yield total


def write_landing(src, shape, records):
    """Writes one shape's landing files into `src`; returns (bytes of JSON, rows, sum)."""
    src.mkdir(parents=True, exist_ok=True)
    size, files, out = 0, 0, None
    for n, line in enumerate(lines(records)):
        if isinstance(line, Decimal):
            total = line
            break
        if out is None or (shape == "firehose" and n % FIREHOSE_RECORDS == 0):
            if out:
                out.close()
            if shape == "gzip":
                out = gzip.open(src / "spot-all.json.gz", "wt", compresslevel=6)
            elif shape == "one":
                out = open(src / "spot-all.json", "w")
            else:
                out = open(src / f"coinbase-spot-1-2026-01-01-00-00-00-{files:06d}", "w")
            files += 1
        out.write(line)
        size += len(line)
    out.close()
    return size, records - records // 50, total


def timed(cmd, env=None):
    """Runs a command; returns (seconds, peak RSS MiB of the process, stdout)."""
    t = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.monotonic() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{err.decode()[-3000:]}")
    return secs, usage.ru_maxrss / 1024, out.decode()


def run_cryptolake(binary, proj, expect):
    cfg = ["-c", proj / "cryptolake.toml"]
    ingest = timed([binary, *cfg, "run", "ingest-files"])
    silver = timed([binary, *cfg, "run", "silver"])
    _, _, out = timed([binary, *cfg, "--output", "json", "sql",
                       "SELECT count(*) AS n, CAST(sum(price) AS VARCHAR) AS s FROM silver.quotes"])
    row = json.loads(out)[0]
    check("cryptolake", int(row["n"]), Decimal(row["s"]), *expect)
    return ingest, silver


def set_parallelism(config, n):
    """Sets `[jobs] parallelism` in a project's config."""
    text = config.read_text()
    line = f"parallelism = {n}\n"
    if "\n[jobs]\n" in text:
        text = text.replace("\n[jobs]\n", f"\n[jobs]\n{line}", 1)
    else:
        text += f"\n[jobs]\n{line}"
    config.write_text(text)


def check(engine, rows, total, want_rows, want_total):
    """Every engine ends with the same rows: the distinct quotes and their exact sum."""
    if rows != want_rows or total != want_total:
        sys.exit(f"{engine}: {rows} rows summing to {total}; expected {want_rows} and {want_total}")


SPARK_JOB = r"""
import os, sys, time
from pyspark.sql import SparkSession, functions as F


def descendants_peak_mib():
    # The JVM is a child of this process that is never waited for, so wait4 does not see it:
    # read the peak (VmHWM) of every live descendant instead.
    children = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            children.setdefault(int(stat[1]), []).append(int(pid))
        except OSError:
            pass
    peak, todo = 0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) // 1024)
        except OSError:
            pass
    return peak


src, dst = sys.argv[1], sys.argv[2]
spark = (SparkSession.builder.master("local[2]").appName("seed003-silver")
         .config("spark.sql.shuffle.partitions", "2")
         .config("spark.ui.enabled", "false").getOrCreate())
t = time.monotonic()
raw = spark.read.schema("data struct<amount:string,base:string,currency:string>, timestamp_utc string").json(src)
df = (raw.select(F.concat_ws("-", "data.base", "data.currency").alias("symbol"),
                 F.col("data.amount").cast("decimal(38,18)").alias("price"),
                 F.to_timestamp("timestamp_utc").alias("event_time"))
         .withColumn("date", F.to_date("event_time"))
         .withColumn("year", F.year("event_time")).withColumn("month", F.month("event_time"))
         .withColumn("day", F.dayofmonth("event_time")).withColumn("hour", F.hour("event_time"))
         .dropDuplicates(["symbol", "event_time"]))
df.write.mode("overwrite").option("compression", "zstd").partitionBy("symbol", "date").parquet(dst)
secs = time.monotonic() - t
out = spark.read.parquet(dst).agg(F.count("*"), F.sum("price")).collect()[0]
print(f"{secs} {out[0]} {out[1]} {descendants_peak_mib()}")
"""

DUCKDB_JOB = r"""
import sys, time, duckdb
src, dst = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 2")
t = time.monotonic()
con.execute(f'''
COPY (
  SELECT * FROM (
    SELECT data.base || '-' || data.currency AS symbol,
           CAST(data.amount AS DECIMAL(38,18)) AS price,
           CAST(timestamp_utc AS TIMESTAMPTZ) AS event_time,
           CAST(CAST(timestamp_utc AS TIMESTAMPTZ) AS DATE) AS date,
           year(CAST(timestamp_utc AS TIMESTAMPTZ)) AS year,
           month(CAST(timestamp_utc AS TIMESTAMPTZ)) AS month,
           day(CAST(timestamp_utc AS TIMESTAMPTZ)) AS day,
           hour(CAST(timestamp_utc AS TIMESTAMPTZ)) AS hour
    FROM read_json('{src}', format = 'newline_delimited',
                   columns = {{'data': 'STRUCT(amount VARCHAR, base VARCHAR, currency VARCHAR)',
                              'timestamp_utc': 'VARCHAR'}})
  ) QUALIFY row_number() OVER (PARTITION BY symbol, event_time) = 1
) TO '{dst}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (symbol, date))''')
secs = time.monotonic() - t
n, s = con.execute(f"SELECT count(*), CAST(sum(price) AS VARCHAR) FROM read_parquet('{dst}/**/*.parquet')").fetchone()
print(f"{secs} {n} {s} 0")
"""


def run_other(engine, script, work, src, expect):
    """The same job in PySpark or DuckDB on the same landing files."""
    job = work / f"job_{engine}.py"
    job.write_text(script)
    secs, rss, out = timed([sys.executable, job, str(src / "*"), str(work / f"{engine}-out")])
    inner, n, s, jvm = out.split()[-4:]
    check(engine, int(n), Decimal(s), *expect)
    # Spark's memory is its JVM's; DuckDB runs in the Python process wait4 measured.
    return secs, float(inner), max(rss, float(jvm))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--shape", choices=["one", "firehose", "gzip"], action="append")
    p.add_argument("--records", type=int, default=5_000_000)
    p.add_argument("--sizes", default="1")
    p.add_argument("--compare", action="store_true")
    p.add_argument("--parallelism", type=int, metavar="N",
                   help="[jobs] parallelism of the project (tasks per stage; default: the cores)")
    p.add_argument("--keep", metavar="DIR",
                   help="make each run's project under DIR and keep it, to run or profile a job "
                        "on it again")
    args = p.parse_args()
    shapes = args.shape or ["one", "firehose", "gzip"]
    print(f"{dt.date.today()}, {os.cpu_count()} cores; each job in its own process; "
          "peak RSS is the process's own; [jobs] parallelism "
          f"{args.parallelism or 'default (the cores)'}")
    print(f"{'shape':<9} {'records':>10} {'MB':>7} {'ingest s':>9} {'MiB':>6} {'silver s':>9} "
          f"{'MiB':>6} {'total s':>8} {'rec/s':>10}")
    for shape in shapes:
        for factor in [int(x) for x in args.sizes.split(",")]:
            records = args.records * factor
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f"cl-bench-{shape}-", dir=args.keep))
            try:
                proj = work / "cl"
                subprocess.run([args.bin, "init", proj], check=True, stdout=subprocess.DEVNULL)
                if args.parallelism:
                    set_parallelism(proj / "cryptolake.toml", args.parallelism)
                # Every engine reads these same files.
                src = proj / "lake" / "landing" / "coinbase_spot" / "2026" / "01" / "01"
                size, *expect = write_landing(src, shape, records)
                (ti, ri, _), (ts, rs, _) = run_cryptolake(args.bin, proj, expect)
                total = ti + ts
                print(f"{shape:<9} {records:>10} {size / 1e6:>7.0f} {ti:>9.2f} {ri:>6.0f} "
                      f"{ts:>9.2f} {rs:>6.0f} {total:>8.2f} {records / total:>10.0f}", flush=True)
                if args.compare:
                    for engine, script in [("pyspark", SPARK_JOB), ("duckdb", DUCKDB_JOB)]:
                        secs, inner, rss = run_other(engine, script, work, src, expect)
                        print(f"  {engine:<8} process {secs:6.2f} s, job {inner:6.2f} s, "
                              f"peak RSS {rss:5.0f} MiB: cryptolake {inner / total:4.1f}x "
                              "faster than its job", flush=True)
            finally:
                if args.keep:
                    print(f"  kept in {work}", flush=True)
                else:
                    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
