#!/usr/bin/env bash
# Formats the C sources with the checked-in .clang-format (tools/lint.sh checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
clang-format-14 -i src/*.c src/*.h tests/*.c tests/*.h tests/fuzz/*.c
