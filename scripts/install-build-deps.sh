#!/usr/bin/env bash
# Installs the Debian packages needed to build the workspace: a C toolchain (rdkafka builds
# its bundled librdkafka with its own configure script and make, curl and TLS off, zlib
# vendored by libz-sys; SQLite is bundled by libsqlite3-sys). A machine with gcc, g++ and
# make — every machine of this kind — needs nothing, so `cargo run --release -- demo`
# works on it as it is.
# Idempotent and fast when everything is already installed (dpkg -s check only).
set -euo pipefail

PKGS=(gcc g++ make)

missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
((${#missing[@]})) || exit 0

sudo=()
[[ $EUID -eq 0 ]] || sudo=(sudo)
echo "[build-deps] installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
