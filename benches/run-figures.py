"""Prints one line of figures for a `run silver -o json` output: records read, wall time,
records/s and rows written. Used by the benchmark scripts.

    python3 benches/run-figures.py SUMMARY.json START_SECONDS END_SECONDS LABEL
"""

import json
import sys

summary = json.load(open(sys.argv[1]))[0]
secs = float(sys.argv[3]) - float(sys.argv[2])
records = sum(s["records"] for s in summary["sources"].values())
rows = sum(t["rows_out"] for t in summary["tables"].values())
print(
    f"{sys.argv[4]:<40} {records:>10,} records  {secs:7.2f} s wall  "
    f"{records / secs:>10,.0f} records/s  {rows:,} rows written"
)
