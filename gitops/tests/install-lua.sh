#!/usr/bin/env sh
# Installs the Lua 5.1 interpreter that gitops/tests/argocd_health.rs runs the Argo CD
# health checks with (Argo CD embeds gopher-lua, a Lua 5.1 implementation).
# Idempotent: does nothing when lua5.1 is already on PATH. Debian/Ubuntu (apt-get) only.
set -eu
if command -v lua5.1 >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-lua.sh: no apt-get; install a Lua 5.1 interpreter named lua5.1 by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends lua5.1
lua5.1 -v
