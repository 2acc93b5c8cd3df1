#!/usr/bin/env bash
# libFuzzer targets of the parsers (tests/fuzz/fuzz-parsers.c), built with clang in build-fuzz/
# (-Dfuzzing=true, ASan + UBSan; Debian: clang-14, libclang-rt-14-dev):
#   tools/fuzz.sh            the meson "fuzz" suite: each target replays tests/fuzz/corpus/<name>, then
#                            mutates for 10 s (part of the test command)
#   tools/fuzz.sh SECONDS    a longer run by hand, growing build-fuzz/corpus-<name>
# Crashes are written to build-fuzz/tests/fuzz-<name>-crash-*; once fixed, copy the file into
# tests/fuzz/corpus/<name>/ so that every later run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
# --werror: clang warns where gcc does not (a test's unused g_autoptr, a mistyped argument)
[ -f build-fuzz/build.ninja ] || CC=clang-14 meson setup build-fuzz --werror -Dfuzzing=true \
  -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C build-fuzz >/dev/null
if [ -z "${1:-}" ]; then
  exec meson test -C build-fuzz --suite fuzz --print-errorlogs --num-processes 2
fi
status=0
for exe in build-fuzz/tests/fuzz-*; do
  [ -x "$exe" ] && [ -f "$exe" ] || continue
  name=${exe##*/fuzz-}
  mkdir -p "build-fuzz/corpus-$name"
  echo "fuzz-$name: $1 s"
  ASAN_OPTIONS=detect_leaks=0 "$exe" -max_total_time="$1" -max_len=65536 -timeout=10 \
    -artifact_prefix="build-fuzz/tests/fuzz-$name-" "build-fuzz/corpus-$name" "tests/fuzz/corpus/$name" \
    > "build-fuzz/fuzz-$name.log" 2>&1 || { echo "fuzz-$name FAILED, see build-fuzz/fuzz-$name.log"; status=1; }
done
exit $status
