#!/usr/bin/env bash
# Installs what is missing, builds cryptolake, and runs the whole pipeline on the embedded
# default (SQLite catalog, local warehouse) in ./quickstart, then shows a few gold candles.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
source scripts/env.sh
# The dev profile optimizes dependencies (opt-level 1) and shares its build with the tests;
# a release build takes about 30 minutes on two cores.
cargo build --bin cryptolake
bin="$CARGO_TARGET_DIR/debug/cryptolake"
dir="${1:-quickstart}"
"$bin" init "$dir" --force
"$bin" -c "$dir/cryptolake.toml" gen --minutes 30 --seed 42 --bad-rate 0.01 --dup-rate 0.01
"$bin" -c "$dir/cryptolake.toml" run all
"$bin" -c "$dir/cryptolake.toml" table list
"$bin" -c "$dir/cryptolake.toml" sql \
  "SELECT symbol, window_start, open, high, low, close, volume, vwap, quote_count, trade_count
   FROM gold.candles_1m WHERE symbol = 'BTC-USD' ORDER BY window_start LIMIT 5"
