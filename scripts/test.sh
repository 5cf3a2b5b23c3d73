#!/usr/bin/env bash
# The test command: installs what is missing, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
export CRYPTOLAKE_TEST_PYTHON="$CRYPTOLAKE_VENV/bin/python"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
