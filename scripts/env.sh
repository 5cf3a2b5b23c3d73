# Shared by the scripts: where builds and the Python venv are cached between runs.
# Sourced, not run.
export CRYPTOLAKE_CACHE="${CRYPTOLAKE_CACHE:-$HOME/.cache/cryptolake}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CRYPTOLAKE_CACHE/target}"
export CRYPTOLAKE_VENV="${CRYPTOLAKE_VENV:-$CRYPTOLAKE_CACHE/venv}"
mkdir -p "$CRYPTOLAKE_CACHE"
