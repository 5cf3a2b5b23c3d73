#!/usr/bin/env bash
# Installs what a fresh machine lacks. `scripts/setup.sh build`: what building cryptolake
# needs (protoc, for Ballista's build), as the quickstart uses it. `scripts/setup.sh` (or
# `test`): that, plus what the tests start and compare against: a Python venv with the
# independent Iceberg readers, moto and kafka-python, and the tansu Kafka broker. Safe to run
# again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
what="${1:-test}"
case "$what" in
  build|test) ;;
  *) echo "usage: scripts/setup.sh [build|test]" >&2; exit 2 ;;
esac

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if [ "$what" = test ]; then
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
  # Debian's Chromium and its driver: the console's pages are tested in a real browser.
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install Rust from https://rustup.rs" >&2
  exit 1
fi
[ "$what" = build ] && exit 0

# Pinned independent readers (stand-ins for Athena): PyIceberg (the s3fs extra is left out: it
# breaks boto3; the glue extra is its Glue catalog; pyiceberg-core lets it write partitioned
# tables, as a neighbour writer in the tests) and DuckDB with its Iceberg, Avro and httpfs
# extensions from PyPI (loaded by path, offline);
# moto's server, the local S3 (and Glue) the tests start; and kafka-python, the independent
# Kafka producer and consumer of the ingest-kafka tests; kubernetes-validate, which checks
# docker/k8s/ against the Kubernetes schemas; Selenium, which drives Debian's Chromium through
# the console's pages (with Debian's chromedriver: nothing is downloaded at test time);
# prometheus-client, whose parser reads the /metrics scrape independently; schemathesis, which
# fuzzes the submission API against its own OpenAPI description.
REQS="pyiceberg[glue,sql-sqlite,pyarrow,pyiceberg-core]==0.12.0 duckdb==1.5.5 duckdb-extension-iceberg==1.5.5 duckdb-extension-avro==1.5.5 duckdb-extension-httpfs==1.5.5 moto[server]==5.2.5 kafka-python==3.0.12 kubernetes-validate==1.31.0 selenium==4.45.0 prometheus-client==0.26.0 schemathesis==4.32.5"
stamp="$CRYPTOLAKE_VENV/.cryptolake-reqs"
if [ ! -x "$CRYPTOLAKE_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$REQS" ]; then
  echo "setup: creating $CRYPTOLAKE_VENV"
  python3 -m venv "$CRYPTOLAKE_VENV"
  "$CRYPTOLAKE_VENV/bin/pip" install -q --upgrade pip
  # shellcheck disable=SC2086
  "$CRYPTOLAKE_VENV/bin/pip" install -q $REQS
  echo "$REQS" > "$stamp"
fi

# Compose v2 (`docker compose`, with `up --wait`) for the container tests, where a Docker
# engine exists but only Debian bookworm's Compose 1.29 is installed: the plugin from Debian
# trixie's docker-compose package (checked by its hash), into ~/.docker/cli-plugins.
if command -v docker >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  deb="docker-compose_2.26.1-4_amd64.deb"
  sum="47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea"
  echo "setup: installing the Compose v2 plugin from Debian's $deb"
  tmp="$(mktemp -d)"
  curl -sSfL -o "$tmp/$deb" "http://deb.debian.org/debian/pool/main/d/docker-compose/$deb"
  echo "$sum  $tmp/$deb" | sha256sum -c --quiet
  dpkg-deb -x "$tmp/$deb" "$tmp/x"
  mkdir -p "$HOME/.docker/cli-plugins"
  cp "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$HOME/.docker/cli-plugins/"
  rm -rf "$tmp"
fi
# debootstrap, which makes the Debian root file system of the moto image (docker/build.sh).
if command -v docker >/dev/null 2>&1 && ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
fi

# tansu, the Kafka-protocol broker the ingest-kafka tests start (Apache Kafka needs Maven,
# which this network does not reach). Built once into the cache: about 20 minutes on 2 cores.
# Its SQLite engine (libsql) gives true high watermarks; memory:// does not.
TANSU="tansu 0.6.0 libsql,dynostore"
tansu_stamp="$CRYPTOLAKE_CACHE/tansu/.cryptolake-tansu"
if [ ! -x "$CRYPTOLAKE_CACHE/tansu/bin/tansu" ] || [ "$(cat "$tansu_stamp" 2>/dev/null)" != "$TANSU" ]; then
  echo "setup: building $TANSU (once; cached in $CRYPTOLAKE_CACHE/tansu)"
  CARGO_TARGET_DIR="$CRYPTOLAKE_CACHE/tansu-build" cargo install tansu --version 0.6.0 --locked \
    --features libsql,dynostore --root "$CRYPTOLAKE_CACHE/tansu" --quiet
  rm -rf "$CRYPTOLAKE_CACHE/tansu-build"
  echo "$TANSU" > "$tansu_stamp"
fi
