#!/usr/bin/env bash
# Installs what is missing, builds, and starts the server on its embedded default:
# SQLite in $XDG_STATE_HOME/realtimeplot, http://127.0.0.1:5000/. Extra arguments go to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec ./build/src/realtimeplot-server "$@"
