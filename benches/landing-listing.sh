#!/usr/bin/env bash
# Listing and planning an S3 landing zone that holds OBJECTS objects (default 100,000: about 70
# days of a Firehose file a minute), on moto's S3 and Glue with the real AWS SDK.
#
#   benches/landing-listing.sh [OBJECTS] [--debug]
#
# Puts OBJECTS one-trade objects under trades/yyyy/mm/dd/HH/ with boto3 (32 threads), takes
# them all with one `run ingest-files` (the backfill), puts one new object, then times
# `run ingest-files --dry-run` (listing from the newest taken key's directory, S3 start-after)
# and `run ingest-files --dry-run --full-listing` (every key), three times each, and the real
# run that takes the new object. Release build unless --debug.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
objects=100000
profile=release
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        *) objects="$arg" ;;
    esac
done
if [ "$profile" = release ]; then
    cargo build --release --bin cryptolake
fi
bin="$CARGO_TARGET_DIR/$profile/cryptolake"
python="$CRYPTOLAKE_VENV/bin/python"
work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
endpoint="http://127.0.0.1:$port"
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
    AWS_EC2_METADATA_DISABLED=true CRYPTOLAKE_MOTO_BUCKETS=lake
"$python" scripts/moto_server.py -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
until "$bin" probe "$endpoint/moto-api/data.json" >/dev/null 2>&1; do sleep 0.2; done

# Puts objects [from, to) of the layout: object i is minute i after 2026-01-01.
put() {
    "$python" - "$endpoint" "$1" "$2" <<'EOF'
import datetime, json, sys
from concurrent.futures import ThreadPoolExecutor
import boto3, botocore.config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  config=botocore.config.Config(max_pool_connections=32))
start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
def put(i):
    t = start + datetime.timedelta(minutes=i)
    key = f"landing/trades/{t:%Y/%m/%d/%H}/trades-1-{t:%Y-%m-%d-%H-%M}-00-{i:08d}"
    body = json.dumps({"trade_id": f"t{i}", "user_id": "u1", "symbol": "BTC/USD",
                       "side": "buy", "quantity": "0.5", "price": f"{43000 + i % 1000}.25",
                       "timestamp": f"{t:%Y-%m-%dT%H:%M:%S}Z"})
    s3.put_object(Bucket="lake", Key=key, Body=body.encode())
with ThreadPoolExecutor(32) as pool:
    list(pool.map(put, range(int(sys.argv[2]), int(sys.argv[3]))))
EOF
}

# Runs a command, printing its wall time.
timed() {
    local start end
    start="$(date +%s.%N)"
    "$@" >"$work/out.json"
    end="$(date +%s.%N)"
    python3 -c "print(f'{$end - $start:.2f} s')"
}

"$bin" init "$work/p" --catalog glue --warehouse s3://lake/warehouse --endpoint "$endpoint" \
    --landing s3://lake/landing >/dev/null
cl() { "$bin" -c "$work/p/cryptolake.toml" "$@"; }

echo "putting $objects objects"
start="$(date +%s)"
put 0 "$objects"
echo "  $(($(date +%s) - start)) s"
echo -n "run ingest-files taking all $objects: "
timed cl run ingest-files -o json
python3 -c "import json; s = json.load(open('$work/out.json'))[0]['sources']['trades']; print('  files', s['files'], 'records', s['records'])"
put "$objects" "$((objects + 1))"
for listing in "" --full-listing; do
    for _ in 1 2 3; do
        echo -n "run ingest-files --dry-run $listing: "
        timed cl run ingest-files --dry-run $listing -o json
    done
    python3 -c "import json; p = json.load(open('$work/out.json'))['ingest-files']; print('  plan:', json.dumps(p)[:300])"
done
echo -n "run ingest-files taking the one new object: "
timed cl run ingest-files -o json
python3 -c "import json; s = json.load(open('$work/out.json'))[0]['sources']['trades']; print('  files', s['files'], 'records', s['records'])"
