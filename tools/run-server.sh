#!/usr/bin/env bash
# Installs what is missing, builds, and starts the server on its embedded default:
# SQLite in $XDG_STATE_HOME/realtimeplot, http://127.0.0.1:5000/. Extra arguments go to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
# an uninstalled server finds the build's own translations (installed ones are in <prefix>/share/locale)
export RTP_LOCALEDIR="${RTP_LOCALEDIR:-$PWD/build/po}"
exec ./build/src/realtimeplot-server "$@"
