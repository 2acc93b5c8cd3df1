#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite three ways:
#   1. a normal build with -Werror,
#   2. a build with AddressSanitizer + UndefinedBehaviorSanitizer (SQLite suites),
#   3. the services' unit tests under valgrind (leaks).
# Prints "N passed, N failed" at the end; exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh || exit 1

status=0
run() { echo "+ $*"; "$@" || status=1; }

[ -f build/build.ninja ] || meson setup build --werror >/dev/null || exit 1
run ninja -C build
run meson test -C build --print-errorlogs --num-processes 2

[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || exit 1
run ninja -C build-asan
# the PostgreSQL repetition runs in the normal build only: the same code paths are covered here via SQLite
run meson test -C build-asan --print-errorlogs --num-processes 2 --logbase sanitizers --suite unit --suite integration --suite data

run meson test -C build --setup valgrind --suite unit --print-errorlogs --logbase valgrind

# libFuzzer targets of the parsers: the meson "fuzz" suite in build-fuzz/ (tools/fuzz.sh SECONDS for a long run)
run ./tools/fuzz.sh

# static analysis of src/ (clang-tidy + cppcheck, checked-in configuration): any finding fails
lint_status=0
echo "+ ./tools/lint.sh"
./tools/lint.sh || { lint_status=1; status=1; }

LINT_STATUS=$lint_status python3 - <<'PY'
import json, glob
passed = failed = skipped = 0
for path in ["build/meson-logs/testlog.json", "build-asan/meson-logs/sanitizers.json", "build/meson-logs/valgrind-valgrind.json",
             "build-fuzz/meson-logs/testlog.json"]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        failed += 1
        print(f"missing test log {path}")
        continue
    for line in lines:
        t = json.loads(line)
        if t["result"] == "OK":
            passed += 1
        elif t["result"] == "SKIP":
            skipped += 1
        else:
            failed += 1
            print(f"FAILED: {t['name']} ({path})")
import os
if os.environ["LINT_STATUS"] == "0":
    passed += 1
else:
    failed += 1
    print("FAILED: lint (tools/lint.sh)")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
raise SystemExit(1 if failed else 0)
PY
summary=$?
[ $summary -eq 0 ] || status=1
exit $status
