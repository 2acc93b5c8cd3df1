#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (Debian: clang-14, libclang-rt-14-dev) and runs each from
# the seed corpora in tests/fuzz/corpus/<target>:
#   tools/fuzz.sh            a short deterministic run (fixed seed and number of inputs; part of the tests)
#   tools/fuzz.sh SECONDS    a longer random run by hand
# Crashes are written to build-fuzz/crash-*; keep each as a regression seed in the corpus once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-}
[ -f build-fuzz/build.ninja ] || CC=clang-14 meson setup build-fuzz -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C build-fuzz src/librtp.a >/dev/null
FLAGS="$(pkg-config --cflags glib-2.0 gio-2.0 json-glib-1.0 libsoup-3.0 libgda-5.0)"
LIBS="$(pkg-config --libs glib-2.0 gio-2.0 gio-unix-2.0 json-glib-1.0 libsoup-3.0 libgda-5.0 libcurl libsecret-1 libargon2 libpq) -lpaho-mqtt3as -lm"
names=(none jwt import archiver path time config)
status=0
for n in 1 2 3 4 5 6; do
  name=${names[$n]}
  clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -DFUZZ_TARGET=$n -DGETTEXT_PACKAGE='"realtimeplot-server"' \
    -Isrc -Ibuild-fuzz/src -Ibuild-fuzz/data -Idata $FLAGS tests/fuzz/fuzz-parsers.c build-fuzz/src/librtp.a $LIBS \
    -o build-fuzz/fuzz-$name
  mkdir -p tests/fuzz/corpus/$name build-fuzz/corpus-$name
  if [ -n "$SECONDS_EACH" ]; then
    limit="-max_total_time=$SECONDS_EACH"; corpus="corpus-$name"
  else
    # the same inputs every time: from the seeds only, fixed seed and count
    limit="-seed=1 -runs=$([ "$name" = archiver ] && echo 30000 || echo 200000)"; corpus=""
  fi
  echo "fuzz-$name: $limit"
  (cd build-fuzz && ASAN_OPTIONS=detect_leaks=0 ./fuzz-$name $limit -max_len=65536 -timeout=10 \
      $corpus ../tests/fuzz/corpus/$name > fuzz-$name.log 2>&1) || { echo "fuzz-$name FAILED, see build-fuzz/fuzz-$name.log"; status=1; }
done
[ $status -eq 0 ] && echo "fuzz: all targets ran clean"
exit $status
