#!/usr/bin/env bash
# A per-minute schedule on Glue and S3 (moto's server, the real AWS SDK): an hour of history,
# then one-minute batches (`gen --minutes 1`, `run all`, each a cold process), printing the time
# and moto's request count of the first run and of every hundredth; with --compact-every 60, an
# hourly `run compact` between batches, timed apart.
#
#   benches/minute-batches.sh [--batches 1000] [--every 100] [--history-minutes 60]
#                             [--symbols 20] [--compact-every N] [--expire-every N] [--json FILE]
#                             [--log FILE]
#                             [--binary PATH]
#
# Builds the release binary, unless --binary names one.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
python="$CRYPTOLAKE_VENV/bin/python"
[ -x "$python" ] || { echo "benches/minute-batches.sh: no venv: run scripts/setup.sh" >&2; exit 1; }
source benches/release-binary.sh
exec "$python" benches/minute_batches.py --bin "$binary" "${args[@]}"
