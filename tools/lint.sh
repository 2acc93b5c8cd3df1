#!/usr/bin/env bash
# Static analysis of src/ with the checked-in configuration: clang-format (.clang-format, on src/ and
# tests/), clang-tidy (.clang-tidy) and cppcheck (options below). Any finding makes the exit status non-zero; CI runs this as part of the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f build/compile_commands.json ] || meson setup build --werror >/dev/null || exit 1
ninja -C build >/dev/null || exit 1  # generated headers (D-Bus, resources) must exist
status=0

# the format: any file that clang-format would change is a finding (tools/format.sh applies it)
echo "clang-format"
clang-format-14 --dry-run --Werror src/*.c src/*.h tests/*.c tests/*.h tests/fuzz/*.c 2> build/clang-format.log || status=1
grep -E "(warning|error):" build/clang-format.log | head -20

echo "clang-tidy: $(ls src/*.c | wc -l) files"
run-clang-tidy-14 -p build -quiet -j "$(nproc)" "$PWD/src/[^/]*\.c$" > build/clang-tidy.log 2>&1 || status=1
grep -E "(warning|error):" build/clang-tidy.log | sort -u
grep -qE "(warning|error):" build/clang-tidy.log && status=1

# cppcheck: GLib/GTK and POSIX models; G_GNUC_FORMAT is an attribute cppcheck does not know, and its
# GLib model predates G_DEFINE_EXTENDED_ERROR (GLib 2.68), which defines functions at file level; it
# reads G_DEFINE_QUARK, which does too, as an unknown macro when three follow each other.
# varFuncNullUB is off: our variadic SQL helpers are G_GNUC_NULL_TERMINATED (the compiler checks the
# sentinel) and NULL is ((void *) 0) with glibc. Inline suppressions carry their reason in the code.
echo "cppcheck"
cppcheck --library=gtk --library=posix --enable=warning,performance,portability --inline-suppr \
  --error-exitcode=1 --quiet -I src -I build/src "-DG_GNUC_FORMAT(x)=" "-DG_DEFINE_EXTENDED_ERROR(a,b)=" "-DG_DEFINE_QUARK(a,b)=" \
  --suppress=missingIncludeSystem --suppress=missingInclude --suppress=varFuncNullUB \
  --suppress=unmatchedSuppression src/ || status=1

[ $status -eq 0 ] && echo "lint: no findings"
exit $status
