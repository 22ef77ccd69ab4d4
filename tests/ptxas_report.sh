#!/usr/bin/env bash
# ptxas_report.sh OBJDIR: registers and spills of every kernel of the nvcc build (sm_80, sm_90), from
# the `ptxas -v` output the Makefile keeps next to each kernels/*.o. A kernel that spills is printed
# as a "warning:" line. Prints nothing when the CUDA backend was not compiled (NG_CUDA=0).
set -u
dir=${1:-build/obj1}/kernels
ls "$dir"/*.ptxas.txt >/dev/null 2>&1 || exit 0
echo "nvcc build: registers and spills per kernel (ptxas -v)"
for f in "$dir"/*.ptxas.txt; do
  awk -v file="$(basename "$f" .ptxas.txt).cu" '
    /Compiling entry function/ { fn = $0; sub(/.*function ./, "", fn); arch = fn; sub(/. for .*/, "", fn);
                                 sub(/.* for ./, "", arch); sub(/.$/, "", arch) }
    /bytes spill stores/ { st = $0; sub(/ bytes spill stores.*/, "", st); sub(/.*, /, "", st);
                           ld = $0; sub(/ bytes spill loads.*/, "", ld); sub(/.*, /, "", ld) }
    /Used [0-9]+ registers/ { r = $0; sub(/.*Used /, "", r); sub(/ registers.*/, "", r);
      printf "  %-10s %-6s %-56s %3d registers, spill %s/%s bytes\n", file, arch, fn, r, st, ld;
      if (st + 0 > 0 || ld + 0 > 0) printf "warning: %s %s %s spills %s bytes stored, %s loaded\n", file, arch, fn, st, ld }' "$f"
done
