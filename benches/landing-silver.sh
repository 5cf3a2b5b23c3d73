#!/usr/bin/env bash
# Landing -> silver on seed 003's Coinbase spot data, each job in its own process, in three
# shapes of the same records: one large JSON-lines file, Firehose-sized files of 50,000
# records (about 5.3 MB), and one gzip file. Prints wall time and peak resident memory of
# ingest-files and of silver, and records/s of the two; with --compare also PySpark local[2]
# and DuckDB (2 threads) on the same files, and how many times faster cryptolake is than each
# engine's job time (the JVM's start is not counted against Spark). Every engine must end with
# the same rows and the same exact sum of prices, or the bench fails.
#
#   benches/landing-silver.sh [--records N] [--shape one|firehose|gzip]... [--sizes 1,4,8]
#                             [--compare] [--parallelism N] [--keep DIR] [--binary PATH]
#   (defaults: 5,000,000 records, every shape, size 1)
#
# Builds the release binary, unless --binary names one (the image profile's, say). --compare installs pyspark and duckdb into the venv when missing
# (pyspark needs Java 17 or later: `java` on the PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
python="$CRYPTOLAKE_VENV/bin/python"
[ -x "$python" ] || { echo "benches/landing-silver.sh: no venv: run scripts/setup.sh" >&2; exit 1; }
if [[ " $* " == *" --compare "* ]]; then
    "$python" -c "import pyspark, duckdb" 2>/dev/null ||
        "$python" -m pip install -q "pyspark==4.3.0" "duckdb==1.5.5"
fi
source benches/release-binary.sh
exec "$python" benches/landing_silver.py --bin "$binary" "${args[@]}"
