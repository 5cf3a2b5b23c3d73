#!/usr/bin/env bash
# silver on the compose cluster (docker/compose.yaml) with 1, 2 and 4 executor containers,
# against in-process, on the same generated data; and how long a container takes from a cold
# start to healthy.
#
#   benches/silver-compose.sh [MINUTES] [SYMBOLS] [--debug]     (defaults 720 and 12; at most 24 symbols)
#
# Builds the image binary (the `image` profile: release code with LTO) and the images from it
# (docker/build.sh --release; --debug takes the debug binary the tests built instead, whose
# figures say nothing about speed). For each cluster size: brings the cluster up, generates
# MINUTES of data into its S3 landing (the same seed every time), runs ingest-files,
# then times `run silver` while sampling `docker stats`; prints records/s and each container's peak memory as docker stats saw it, and the peak the
# kernel recorded for the container (cgroup `memory.max_usage_in_bytes` or `memory.peak`,
# page cache included). Then the same in-process, with the same binary, data in a local
# project. Checks that every run wrote the same silver rows.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
minutes=720
symbols=12
profile=release
positional=()
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        *) positional+=("$arg") ;;
    esac
done
[ ${#positional[@]} -lt 1 ] || minutes="${positional[0]}"
[ ${#positional[@]} -lt 2 ] || symbols="${positional[1]}"
gen=(gen --minutes "$minutes" --symbols "$symbols" --seed 5 --dup-rate 0.02)

if [ "$profile" = release ]; then
    docker/build.sh --release
else
    docker/build.sh
fi
bin="$CARGO_TARGET_DIR/$profile/cryptolake"
work="$(mktemp -d)"
project="cryptolake-bench-$$"
compose() { docker compose -f docker/compose.yaml -p "$project" "$@"; }
export CRYPTOLAKE_API_PORT=$((20000 + RANDOM % 20000))
cleanup() {
    compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# Prints "name peak" for each container of the project as docker stats sampled it, until the
# file $1 exists.
sample_stats() {
    local stop="$1"
    while [ ! -e "$stop" ]; do
        docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' \
            $(compose ps -q) 2>/dev/null || true
    done
}

# The kernel's peak memory for container $1, in MiB (cgroup v1 or v2), or "?".
cgroup_peak() {
    local id f
    id="$(docker inspect -f '{{.Id}}' "$1")"
    for f in /sys/fs/cgroup/memory/docker/"$id"/memory.max_usage_in_bytes \
        /sys/fs/cgroup/system.slice/docker-"$id".scope/memory.peak; do
        if [ -r "$f" ]; then
            echo $(($(cat "$f") / 1048576))
            return
        fi
    done
    echo "?"
}

# Prints records, wall time and records/s of a `run silver -o json` output ($1) that took
# from $2 to $3 (seconds), labelled $4.
figures() {
    python3 benches/run-figures.py "$@"
}

# The silver row counts a project holds, one line.
counts() {
    for table in silver.quotes silver.trades silver.quarantine; do
        "$@" sql "SELECT count(*) AS n FROM $table" -o json | tr -d ' \n'
    done
    echo
}

echo "silver on $minutes minutes x $symbols symbols ($profile build)"
for executors in 1 2 4; do
    compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
    start="$(date +%s.%N)"
    compose up -d --wait --scale executor="$executors" >/dev/null 2>&1
    echo "cluster of $executors executors healthy in $(python3 -c "import time; print(f'{time.time() - $start:.1f}')") s"
    compose run --rm -T cli "${gen[@]}" >/dev/null
    compose run --rm -T cli run ingest-files >/dev/null
    rm -f "$work/stop"
    sample_stats "$work/stop" >"$work/stats-$executors" &
    sampler=$!
    start="$(date +%s.%N)"
    compose run --rm -T cli run silver -o json >"$work/cluster-$executors.json"
    end="$(date +%s.%N)"
    touch "$work/stop"
    wait "$sampler"
    figures "$work/cluster-$executors.json" "$start" "$end" "compose, $executors executor(s)"
    python3 - "$work/stats-$executors" <<'EOF'
import re, sys
units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
peak = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) ([\d.]+)(\w+) /", line)
    if m:
        name = re.sub(r"^cryptolake-bench-\d+-", "", m.group(1))
        peak[name] = max(peak.get(name, 0), float(m.group(2)) * units[m.group(3)])
print("  docker stats peak: " + ", ".join(f"{n} {v:.0f} MiB" for n, v in sorted(peak.items())))
EOF
    peaks=""
    for id in $(compose ps -q scheduler executor); do
        peaks+=" $(docker inspect -f '{{.Name}}' "$id" | sed "s|^/$project-||") $(cgroup_peak "$id") MiB"
    done
    echo "  cgroup peak (with page cache):$peaks"
    counts compose run --rm -T cli >"$work/counts-$executors"
    if [ "$executors" = 4 ]; then
        # One more executor on a running cluster: a container's cold start to healthy.
        start="$(date +%s.%N)"
        compose up -d --wait --no-recreate --scale executor=5 executor >/dev/null 2>&1
        echo "one more executor container: cold start to healthy in $(python3 -c "import time; print(f'{time.time() - $start:.1f}')") s"
    fi
done
compose down -v --remove-orphans -t 5 >/dev/null 2>&1

"$bin" init "$work/local" >/dev/null
"$bin" -c "$work/local/cryptolake.toml" "${gen[@]}" >/dev/null
"$bin" -c "$work/local/cryptolake.toml" run ingest-files >/dev/null
start="$(date +%s.%N)"
/usr/bin/time -f '%M' -o "$work/rss" \
    "$bin" -c "$work/local/cryptolake.toml" run silver -o json >"$work/local.json"
end="$(date +%s.%N)"
figures "$work/local.json" "$start" "$end" "in-process"
echo "  peak RSS $(($(cat "$work/rss") / 1024)) MiB"
counts "$bin" -c "$work/local/cryptolake.toml" >"$work/counts-local"
for executors in 1 2 4; do
    if ! cmp -s "$work/counts-local" "$work/counts-$executors"; then
        echo "silver differs: in-process $(cat "$work/counts-local"), $executors executors $(cat "$work/counts-$executors")" >&2
        exit 1
    fi
done
echo "every run wrote the same silver rows: $(cat "$work/counts-local")"
