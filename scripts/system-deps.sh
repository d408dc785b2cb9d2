#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those missing.
# Usage: scripts/system-deps.sh [--demo] [extra-package ...]
set -euo pipefail

# command-to-check:debian-package
needed=(
  "docker-registry:docker-registry"
  "htpasswd:apache2-utils"
  "skopeo:skopeo"
  "umoci:umoci"
  "node:nodejs"
  "npm:npm"
  "/usr/lib/postgresql/15/bin/initdb:postgresql"
  "openssl:openssl"
  "buildah:buildah"
  "crun:crun"
  "mmdebstrap:mmdebstrap"
  "rpmbuild:rpm"
  "go:golang-go"
  "db5.3_load:db5.3-util"
  "chromium:chromium"
)
# `--demo`: only what `make demo` needs (the loopback registry).
if [ "${1:-}" = "--demo" ]; then
  shift
  needed=("docker-registry:docker-registry")
fi
packages=("$@")
for pair in "${needed[@]}"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/bin/$cmd" ] && [ ! -x "/usr/sbin/$cmd" ]; then
    packages+=("$pkg")
  fi
done

if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "system-deps: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# With recommends: the suite was developed and verified on machines where buildah,
# mmdebstrap and chromium came with theirs (fonts, fuse/slirp helpers, keyrings).
$SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
# Debian's docker-registry package starts a system service on :5000; the tests start their own.
if [ -x /etc/init.d/docker-registry ]; then
  $SUDO /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi
