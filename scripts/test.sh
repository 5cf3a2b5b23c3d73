#!/usr/bin/env bash
# The test command: installs what is missing, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
export CRYPTOLAKE_TEST_PYTHON="$CRYPTOLAKE_VENV/bin/python"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# cargo's last lines are the (empty) doc-test runs; close with the whole suite's total.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
