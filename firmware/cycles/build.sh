#!/usr/bin/env bash
# Builds the cycle-estimating QEMU plugin (cycles.c) with the host's C compiler:
#   cycles/build.sh [OUT]      default OUT: firmware/target/cycles/libcycles.so
# Prints the path of the library it wrote.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/cycles/libcycles.so}
mkdir -p "$(dirname "$out")"
"${CC:-cc}" -O2 -std=c11 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
    -o "$out" "$here/cycles.c"
echo "$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
