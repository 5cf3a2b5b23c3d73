# Sourced by the benchmark scripts: takes `--binary PATH` out of the arguments (left in `args`)
# and sets `binary`, building the release binary when no other was named.
binary="$CARGO_TARGET_DIR/release/cryptolake"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
if [ "$binary" = "$CARGO_TARGET_DIR/release/cryptolake" ]; then
    cargo build --release --bin cryptolake
fi
