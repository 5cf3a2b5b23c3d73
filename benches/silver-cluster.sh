#!/usr/bin/env bash
# silver in-process and on a local Ballista cluster (1 scheduler, 2 executor processes) on the
# same bronze data, so the cluster's overhead is known.
#
#   benches/silver-cluster.sh [MINUTES] [SYMBOLS]     (defaults 120 and 24)
#
# Builds the release binary, generates MINUTES of every source's data three times (same seed:
# identical projects), ingests them, then times `run silver` in-process with the default tasks
# per stage (the cores), in-process with 4 (the cluster's task slots: 2 executors x 2), and on
# the cluster. Prints records, wall time and records/s of each, and checks that all three
# silver tables hold the same number of rows.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
minutes="${1:-120}"
symbols="${2:-24}"

cargo build --release --bin cryptolake
bin="$CARGO_TARGET_DIR/release/cryptolake"
work="$(mktemp -d)"
cleanup() {
    "$bin" -c "$work/remote/cryptolake.toml" cluster down --state-dir "$work/cluster" \
        >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

for p in local local4 remote; do
    "$bin" init "$work/$p" >/dev/null
    if [ "$p" = local4 ]; then
        sed -i 's/^\[jobs\]$/[jobs]\nparallelism = 4/' "$work/$p/cryptolake.toml"
    fi
    "$bin" -c "$work/$p/cryptolake.toml" gen --minutes "$minutes" --symbols "$symbols" \
        --dup-rate 0.02 --bad-rate 0.001 >/dev/null
    "$bin" -c "$work/$p/cryptolake.toml" run ingest-files >/dev/null
done

port=$((20000 + RANDOM % 20000))
"$bin" -c "$work/remote/cryptolake.toml" cluster up --executors 2 --concurrent-tasks 2 \
    --port "$port" --state-dir "$work/cluster" >/dev/null

# Runs silver in project $1 with the remaining arguments; prints one line of figures.
measure() {
    local project="$1"
    shift
    local start end
    start="$(date +%s.%N)"
    "$bin" -c "$work/$project/cryptolake.toml" run silver "$@" -o json >"$work/$project.json"
    end="$(date +%s.%N)"
    python3 benches/run-figures.py "$work/$project.json" "$start" "$end" "$project $*"
}

echo "silver on $minutes minutes x $symbols symbols of generated data"
measure local
measure local4
measure remote --cluster "df://127.0.0.1:$port"
for table in silver.quotes silver.trades silver.quarantine; do
    a="$("$bin" -c "$work/local/cryptolake.toml" sql "SELECT count(*) AS n FROM $table" -o json)"
    for p in local4 remote; do
        b="$("$bin" -c "$work/$p/cryptolake.toml" sql "SELECT count(*) AS n FROM $table" -o json)"
        if [ "$a" != "$b" ]; then
            echo "$table differs: local $a, $p $b" >&2
            exit 1
        fi
    done
done
echo "all runs wrote the same row counts"
