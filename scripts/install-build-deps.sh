#!/usr/bin/env bash
# Installs the Debian packages needed to build the workspace (rdkafka builds its bundled
# librdkafka with cmake; libz-sys links the system zlib; openssl-sys if TLS is enabled).
# libcurl4-openssl-dev: librdkafka 2.12.1's rdkafka_conf.c includes <curl/curl.h> even with
# WITH_CURL=0 (its generated config.h has `#define WITH_OAUTHBEARER_OIDC 0`, tested by #ifdef).
# Idempotent and fast when everything is already installed (dpkg -s check only).
set -euo pipefail

PKGS=(cmake g++ make pkg-config zlib1g-dev libssl-dev libcurl4-openssl-dev)

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
