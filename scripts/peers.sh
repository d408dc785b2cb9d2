#!/usr/bin/env bash
# Build the real peers pinned in peers/versions.tsv into .peers/bin/ (idempotent).
#
# Usage: scripts/peers.sh [NAME ...]      (default: every peer in the file)
#
# Each peer is built with Go from the module proxy, using Go's module and build
# caches, so a rebuild after the first takes seconds and an unchanged peer is not
# rebuilt at all (.peers/stamps/NAME holds what was built). A peer that fails to
# build does not stop the others: its log is kept in .peers/logs/NAME.log and
# the tests that need it fail with the log's last lines (tests/support/peers.py).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/.peers
VERSIONS=$ROOT/peers/versions.tsv
mkdir -p "$PEERS/bin" "$PEERS/stamps" "$PEERS/logs" "$PEERS/build"
export GOFLAGS=-buildvcs=false

if ! command -v go >/dev/null 2>&1; then
  echo "peers: go is not installed (scripts/system-deps.sh installs it)" >&2
  exit 1
fi

wanted=("$@")
want() {
  [ ${#wanted[@]} -eq 0 ] && return 0
  local name
  for name in "${wanted[@]}"; do [ "$name" = "$1" ] && return 0; done
  return 1
}

# A peer is built in a small module of its own that requires it as a tool (go get
# -tool), so that modules whose go.mod holds replace directives (etcd, kubernetes)
# build as well as the rest: `go install PKG@VERSION` refuses those.
tool_module() {
  local name=$1 package=$2 version=$3 dir=$PEERS/build/$1-$3
  if [ -f "$dir/go.mod" ] && grep -q "^tool" "$dir/go.mod"; then
    echo "$dir"
    return 0
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module attest.dev/peers/%s\n\ngo 1.26.0\n' "$name" >"$dir/go.mod"
  case $package in
    k8s.io/kubernetes/*) kubernetes_replaces "$dir" "$version" || return 1 ;;
  esac
  (cd "$dir" && go get -tool "$package@$version") >&2 || return 1
  echo "$dir"
}

# k8s.io/kubernetes requires every staging module it carries at v0.0.0, which the
# proxy does not serve: replace each with its published v0.MINOR.PATCH.
kubernetes_replaces() {
  local dir=$1 version=$2 staging=v0.${2#v1.} gomod
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$version" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])') || return 1
  {
    printf '\nreplace (\n'
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod" |
      while read -r module; do
        if grep -Eq "^[[:space:]]+$module v0\.0\.0" "$gomod"; then
          printf '\t%s => %s %s\n' "$module" "$module" "$staging"
        fi
      done
    printf ')\n'
  } >>"$dir/go.mod"
}

build() {
  local name=$1 binary=$2 package=$3 version=$4
  local stamp=$PEERS/stamps/$name want_stamp="$package@$version" dir ldflags=""
  case $package in
    # what make sets from git in kubernetes' own build: /version and kubectl report it
    k8s.io/kubernetes/*)
      local minor=${version#v1.}
      minor=${minor%%.*}
      ldflags="-X k8s.io/component-base/version.gitVersion=$version"
      ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
      ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
      ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
      ;;
  esac
  # the stamp names what was built; .flags what it was linked with (a change rebuilds)
  if [ -x "$PEERS/bin/$binary" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ] &&
    [ "$(cat "$stamp.flags" 2>/dev/null)" = "$ldflags" ]; then
    return 0
  fi
  rm -f "$stamp" "$stamp.flags" "$PEERS/logs/$name.failed"
  local began=$SECONDS status=0
  echo "peers: building $name ($want_stamp)" >&2
  {
    dir=$(tool_module "$name" "$package" "$version") &&
      (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$PEERS/bin/$binary" "$package")
  } >"$PEERS/logs/$name.log" 2>&1 || status=$?
  if [ $status -ne 0 ]; then
    touch "$PEERS/logs/$name.failed"
    echo "peers: $name failed to build (log: .peers/logs/$name.log):" >&2
    tail -5 "$PEERS/logs/$name.log" | sed 's/^/peers:   /' >&2
    return 0
  fi
  echo "$want_stamp" >"$stamp"
  echo "$ldflags" >"$stamp.flags"
  echo "peers: $name built in $((SECONDS - began)) s" >&2
}

while IFS=$'\t' read -r name binary package version; do
  case $name in '' | '#'*) continue ;; esac
  want "$name" || continue
  build "$name" "$binary" "$package" "$version"
done <"$VERSIONS"
exit 0
