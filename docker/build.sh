#!/usr/bin/env bash
# Builds the images docker/compose.yaml runs, from what this machine reaches (no registry:
# nothing is pulled, every image starts FROM scratch or from a Debian root file system made
# here with debootstrap):
#   cryptolake        FROM scratch: the cryptolake binary, the shared libraries it links, CA
#                     certificates, a non-root user (10001) and a writable /work.
#   cryptolake-moto   Debian bookworm (debootstrap, minbase) with moto's server and
#                     scripts/moto_server.py: the compose cluster's S3 and Glue.
#   cryptolake-tansu  FROM scratch: the tansu Kafka broker scripts/setup.sh builds.
#
# docker/build.sh [--release] [--binary PATH] [cryptolake|moto|tansu ...]
#   By default the cryptolake image takes the binary the tests built (debug, in
#   $CARGO_TARGET_DIR); --release builds and takes the `image` profile's binary (release
#   code with fat LTO, Cargo.toml; about 45 minutes cold).
#   The Debian root file system is cached in $CRYPTOLAKE_CACHE/docker; an image already
#   built from the same inputs is kept.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
source scripts/env.sh

profile=debug
binary=""
images=()
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=image ;;
    --binary) binary="$2"; shift ;;
    cryptolake|moto|tansu) images+=("$1") ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "docker/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#images[@]} -gt 0 ] || images=(cryptolake moto tansu)
command -v docker >/dev/null || { echo "docker/build.sh: no docker command" >&2; exit 1; }
cache="$CRYPTOLAKE_CACHE/docker"
mkdir -p "$cache"

# Temporary build contexts, removed on exit.
tmpdirs=()
trap 'rm -rf "${tmpdirs[@]}"' EXIT
new_dir() { NEW_DIR="$(mktemp -d)"; tmpdirs+=("$NEW_DIR"); }

# The label an image carries: a hash of what it was built from, so a rebuild is skipped
# when nothing changed.
have_image() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "cryptolake.inputs" }}' "$1" 2>/dev/null)" = "$2" ]
}

# Copies a binary and every shared library it loads into a root file system.
copy_with_libs() {
  local bin="$1" root="$2" dest="$3"
  mkdir -p "$root$(dirname "$dest")"
  cp "$bin" "$root$dest"
  ldd "$bin" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# /etc for a FROM scratch image: the non-root user, name resolution through /etc/hosts first
# (a container's own name), CA certificates for AWS.
scratch_etc() {
  local root="$1" user="$2"
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/work"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\n%s:x:10001:10001:%s:/work:/sbin/nologin\n' "$user" "$user" > "$root/etc/passwd"
  printf 'root:x:0:\n%s:x:10001:\n' "$user" > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
}

build_cryptolake() {
  if [ -z "$binary" ]; then
    if [ "$profile" = image ]; then
      cargo build --profile image --bin cryptolake
    fi
    binary="$CARGO_TARGET_DIR/$profile/cryptolake"
  fi
  [ -x "$binary" ] || { echo "docker/build.sh: $binary missing: build it first (cargo build, or --release)" >&2; exit 1; }
  new_dir; local ctx="$NEW_DIR"
  local root="$ctx/rootfs"
  copy_with_libs "$binary" "$root" /usr/local/bin/cryptolake
  # Debug information and symbols are not needed to run; they would make the image larger.
  objcopy --strip-all "$root/usr/local/bin/cryptolake"
  scratch_etc "$root" cryptolake
  local inputs; inputs="$(cd "$root" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  if have_image cryptolake "$inputs"; then echo "image cryptolake is up to date"; return; fi
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY --chown=10001:10001 rootfs/ /
USER 10001:10001
WORKDIR /work
ENV HOME=/work TMPDIR=/tmp RUST_LOG=info
LABEL cryptolake.inputs="$inputs" org.opencontainers.image.title="cryptolake"
EXPOSE 50050 50051 50052 8790
ENTRYPOINT ["/usr/local/bin/cryptolake"]
CMD ["--help"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t cryptolake:latest "$ctx" >/dev/null 2>&1
  echo "image cryptolake: $(docker image inspect -f '{{ .Size }}' cryptolake | awk '{ printf "%.1f MiB", $1 / 1048576 }')"
}

# Debian bookworm, minbase, with Python: made once with debootstrap, cached as a tarball.
debian_rootfs() {
  local tarball="$cache/bookworm-python.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || {
      if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
      $SUDO apt-get install -y -qq debootstrap >/dev/null 2>&1
    }
    local root; root="$(mktemp -d)"
    echo "docker/build.sh: debootstrap bookworm (once; cached in $cache)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1
    # moto's wheels are fetched by this machine's pip (its index, proxy and CA settings),
    # then installed in the root file system without a network.
    mkdir -p "$root/tmp/wheels"
    python3 -m pip download -q -d "$root/tmp/wheels" "moto[server]==5.2.5" >&2
    chroot "$root" python3 -m venv /opt/moto
    chroot "$root" env -u PIP_FIND_LINKS /opt/moto/bin/pip install -q --no-index \
      --find-links /tmp/wheels "moto[server]==5.2.5" >&2
    rm -rf "$root/tmp/wheels" "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* \
      "$root/usr/share/doc" "$root/usr/share/man"
    tar -C "$root" -cf "$tarball.tmp" .
    rm -rf "$root"
    mv "$tarball.tmp" "$tarball"
  fi
  echo "$tarball"
}

build_moto() {
  local inputs; inputs="$(cat scripts/moto_server.py docker/build.sh | sha256sum | cut -c1-16)"
  if have_image cryptolake-moto "$inputs"; then echo "image cryptolake-moto is up to date"; return; fi
  local tarball; tarball="$(debian_rootfs)"
  docker import "$tarball" cryptolake-debian:bookworm >/dev/null
  new_dir; local ctx="$NEW_DIR"
  cp scripts/moto_server.py "$ctx/"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM cryptolake-debian:bookworm
COPY moto_server.py /opt/moto/moto_server.py
RUN useradd -u 10001 -m moto
USER 10001
LABEL cryptolake.inputs="$inputs"
EXPOSE 5000
ENTRYPOINT ["/opt/moto/bin/python", "/opt/moto/moto_server.py"]
CMD ["-H", "0.0.0.0", "-p", "5000"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t cryptolake-moto:latest "$ctx" >/dev/null
  echo "image cryptolake-moto: built"
}

build_tansu() {
  local tansu="$CRYPTOLAKE_CACHE/tansu/bin/tansu"
  [ -x "$tansu" ] || { echo "docker/build.sh: $tansu missing: run scripts/setup.sh" >&2; exit 1; }
  new_dir; local ctx="$NEW_DIR"
  local root="$ctx/rootfs"
  copy_with_libs "$tansu" "$root" /usr/local/bin/tansu
  scratch_etc "$root" tansu
  local inputs; inputs="$(cd "$root" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  if have_image cryptolake-tansu "$inputs"; then echo "image cryptolake-tansu is up to date"; return; fi
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY --chown=10001:10001 rootfs/ /
USER 10001:10001
WORKDIR /work
LABEL cryptolake.inputs="$inputs"
EXPOSE 9092
ENTRYPOINT ["/usr/local/bin/tansu"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t cryptolake-tansu:latest "$ctx" >/dev/null
  echo "image cryptolake-tansu: built"
}

for image in "${images[@]}"; do
  "build_$image"
done
