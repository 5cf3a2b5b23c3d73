"""One-minute batches on Glue and S3 (moto, the real AWS SDK): an hour of history, then BATCHES
runs of `gen --minutes 1` and `run all`, each a cold process, as a per-minute schedule runs them.
Prints the wall time and moto's request count (S3 GET, PUT, HEAD, LIST; Glue calls) of the
first run and of every EVERY-th, so growth with history shows. With --compact-every N, a
`run compact` after every N batches (an hourly maintenance schedule at N = 60), timed apart;
with --expire-every N, a `run expire-snapshots --older-than 0s` likewise.
Run by benches/minute-batches.sh.
"""

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP')
# moto's server colours some log lines (partial-content GETs among them).
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def classify(log: str) -> collections.Counter:
    """Requests by kind in moto's access log."""
    counts = collections.Counter()
    for method, path in LINE.findall(COLOUR.sub("", log)):
        if path.startswith("/moto-api"):
            continue
        if method == "POST" and path == "/":
            counts["glue"] += 1
        elif method == "GET" and ("list-type=" in path or "?prefix=" in path or path.endswith("/lake")):
            counts["list"] += 1
        elif method == "GET" and "/metadata/" in path:
            counts["get_metadata"] += 1
        elif method == "GET":
            counts["get_data"] += 1
        else:
            counts[method.lower()] += 1
    return counts


TABLE = re.compile(r"/warehouse/([^/?]+)/([^/?]+)/data/")


def data_gets_by_table(log: str) -> collections.Counter:
    """Data-file GETs in moto's access log, by the table whose files they read."""
    counts = collections.Counter()
    for method, path in LINE.findall(COLOUR.sub("", log)):
        m = TABLE.search(path)
        if method == "GET" and m:
            counts[f"{m.group(1).removesuffix('.db')}.{m.group(2)}"] += 1
    return counts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--history-minutes", type=int, default=60)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--compact-every", type=int, default=0)
    ap.add_argument("--expire-every", type=int, default=0,
                    help="after every N batches, run expire-snapshots --older-than 0s "
                         "(every snapshot that no bookmark needs)")
    ap.add_argument("--json", help="write every run's figures to this file")
    ap.add_argument("--log", help="write moto's access log of the last batch to this file")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="cryptolake-minutes-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true",
               CRYPTOLAKE_MOTO_BUCKETS="lake")
    env.pop("RUST_LOG", None)
    log_path = os.path.join(work, "moto.log")
    log = open(log_path, "w")
    moto = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts/moto_server.py"),
                             "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env)
    try:
        wait_for(f"{endpoint}/moto-api/data.json")
        project = os.path.join(work, "p")
        subprocess.run([args.bin, "init", project, "--catalog", "glue", "--warehouse",
                        "s3://lake/warehouse", "--endpoint", endpoint, "--landing",
                        "s3://lake/landing"], check=True, env=env, stdout=subprocess.DEVNULL)
        config = os.path.join(project, "cryptolake.toml")

        def cl(*cmd: str) -> str:
            out = subprocess.run([args.bin, "-c", config, *cmd], env=env, check=True,
                                 capture_output=True, text=True)
            return out.stdout

        start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

        def gen(minute: int, minutes: int) -> None:
            t = start + datetime.timedelta(minutes=minute)
            cl("gen", "--minutes", str(minutes), "--seed", str(minute + 1), "--symbols",
               str(args.symbols), "--start", t.strftime("%Y-%m-%dT%H:%M:%SZ"))

        gen(0, args.history_minutes)
        t0 = time.time()
        cl("run", "all", "-o", "json")
        print(f"history: {args.history_minutes} minutes, {args.symbols} symbols, "
              f"first run all {time.time() - t0:.2f} s", flush=True)
        rows = []
        print(f"{'run':>5} {'seconds':>8} {'requests':>9}  by kind", flush=True)
        for i in range(1, args.batches + 1):
            gen(args.history_minutes + i - 1, 1)
            log.flush()
            before = os.path.getsize(log_path)
            t0 = time.time()
            out = cl("run", "all", "-o", "json")
            seconds = time.time() - t0
            time.sleep(0.05)  # moto writes its last log lines after answering
            with open(log_path) as f:
                f.seek(before)
                text = f.read()
                counts = classify(text)
            rows.append({"run": i, "seconds": round(seconds, 3), "requests": sum(counts.values()),
                         **counts})
            if i == 1 or i % args.every == 0 or i == args.batches:
                kinds = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                print(f"{i:>5} {seconds:>8.2f} {sum(counts.values()):>9}  {kinds}", flush=True)
                tables = " ".join(f"{t}={n}" for t, n in sorted(data_gets_by_table(text).items()))
                print(f"{'':>25}data GETs by table: {tables}", flush=True)
            json.loads(out)
            if args.log and i == args.batches:
                with open(args.log, "w") as f:
                    f.write(COLOUR.sub("", text))
            if args.expire_every and i % args.expire_every == 0:
                t0 = time.time()
                cl("run", "expire-snapshots", "--older-than", "0s", "-o", "json")
                print(f"      run expire-snapshots after batch {i}: {time.time() - t0:.2f} s",
                      flush=True)
            if args.compact_every and i % args.compact_every == 0:
                t0 = time.time()
                cl("run", "compact", "-o", "json")
                print(f"      run compact after batch {i}: {time.time() - t0:.2f} s", flush=True)
        first, last = rows[0], rows[-1]
        print(f"run {last['run']} / run 1: {last['seconds'] / first['seconds']:.2f}x time, "
              f"{last['requests'] / first['requests']:.2f}x requests")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    finally:
        moto.terminate()
        moto.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
