#!/usr/bin/env bash
# Line and branch coverage of src/ by the unit and integration suites (SQLite) plus the PostgreSQL
# repetition: a -Db_coverage=true build in build-coverage/, then gcovr (Debian package gcovr).
# Prints the summary; the HTML report is build-coverage/coverage/index.html.
set -uo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh || exit 1
[ -f build-coverage/build.ninja ] || meson setup build-coverage -Db_coverage=true -Dbuildtype=debug >/dev/null || exit 1
ninja -C build-coverage >/dev/null || exit 1
find build-coverage -name '*.gcda' -delete
meson test -C build-coverage --suite unit --suite integration --suite postgres --num-processes 2 --print-errorlogs \
  --logbase coverage | tail -8
mkdir -p build-coverage/coverage
# gcov of GCC 12 wants to be run from the build directory
cd build-coverage
gcovr -r .. --filter ../src/ --exclude ../src/main.c --exclude-unreachable-branches --exclude-throw-branches \
  --html-details coverage/index.html --txt coverage/summary.txt --print-summary . | tail -3
