#!/usr/bin/env bash
# run.sh BUILD: run every test binary under BUILD/tests (and BUILD/simt/tests when built), sum their
# RESULT lines and end with "N passed, M failed, K skipped". Exit status is non-zero on any failure,
# including a binary that crashed or printed no RESULT line (counted as one failure).
set -u
build=${1:-build}
# OpenMP threads spin while waiting by default; on a 2-core machine shared by OpenBLAS and the
# emulator that multiplies test time, so tests wait passively (results do not depend on it)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
passed=0; failed=0; skipped=0
logdir=$build/test-logs
mkdir -p "$logdir"
bins=$(ls "$build"/tests/test_* "$build"/simt/tests/test_* 2>/dev/null | grep -v '\.d$' | sort)
extra=$(ls tests/test_*.sh 2>/dev/null | sort)
for t in $bins $extra; do
  name=$(basename "$t")
  case "$t" in */simt/tests/*) name="simt/$name" ;; esac
  log="$logdir/${name//\//_}.log"
  start=$(date +%s)
  if [[ "$t" == *.sh ]]; then bash "$t" "$build" >"$log" 2>&1; rc=$?; else "$t" >"$log" 2>&1; rc=$?; fi
  secs=$(( $(date +%s) - start ))
  line=$(grep -E '^RESULT passed=' "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "FAIL $name: exited $rc without a RESULT line (crash?); last lines of $log:"
    tail -5 "$log" | sed 's/^/    /'
    failed=$((failed + 1)); continue
  fi
  p=$(sed -E 's/.*passed=([0-9]+).*/\1/' <<<"$line")
  f=$(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$line")
  s=$(sed -E 's/.*skipped=([0-9]+).*/\1/' <<<"$line")
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; echo "FAIL $name: exit status $rc"; fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  printf '%-34s %3d passed %3d failed %3d skipped  (%ds)\n' "$name" "$p" "$f" "$s" "$secs"
  grep -E '^FAIL ' "$log" | sed 's/^/    /'
  # skips grouped by reason: "    SKIP x10: no CUDA device here: ..."
  grep -E '^SKIP ' "$log" | sed -E 's/^SKIP [^:]*: //' | sort | uniq -c | sed -E 's/^ *([0-9]+) (.*)/    SKIP x\1: \2/'
  if [ "$f" != 0 ]; then grep -E '^  ' "$log" | head -20 | sed 's/^/    /'; fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
