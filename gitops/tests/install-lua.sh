#!/usr/bin/env sh
# Installs what the tests of the Argo CD examples run: the Lua 5.1 interpreter that
# gitops/tests/argocd_health.rs runs the health checks with (Argo CD embeds gopher-lua, a
# Lua 5.1 implementation), and jq, with which operator/src/routing/tests_argocd.rs runs the
# example's ignoreDifferences jqPathExpressions (Argo CD embeds gojq).
# Idempotent: does nothing when lua5.1 and jq are already on PATH. Debian/Ubuntu (apt-get) only.
set -eu
missing=""
command -v lua5.1 >/dev/null 2>&1 || missing="$missing lua5.1"
command -v jq >/dev/null 2>&1 || missing="$missing jq"
if [ -z "$missing" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-lua.sh: no apt-get; install by hand:$missing" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
lua5.1 -v
jq --version
