# cli_lib.sh: the helpers every tests/test_*.sh sources (`. "$(dirname "$0")/cli_lib.sh"` before it
# changes directory). Each script keeps its counters passed / failed / skipped and ends with
# "RESULT passed=P failed=F skipped=S", which tests/run.sh sums.
passed=${passed:-0} failed=${failed:-0} skipped=${skipped:-0}
pass() { echo "PASS $1"; passed=$((passed + 1)); }
# fail NAME [DETAIL ...]: one indented line per detail
fail() { local n=$1; shift; echo "FAIL $n"; local l; for l in "$@"; do echo "  $l"; done; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
# show FILE [N]: the last N lines (6) of FILE, indented, after a failure
show() { tail -n "${2:-6}" "$1" 2>/dev/null | sed 's/^/  | /'; }
# run NAME CMD...: stdout to NAME.out, stderr to NAME.err, exit status in $rc
run() { local name=$1; shift; "$@" >"$name.out" 2>"$name.err"; rc=$?; }
# expect_exit NAME CODE PATTERN CMD...: CMD exits with CODE and its stderr contains PATTERN
expect_exit() {
  local name=$1 code=$2 pat=$3; shift 3
  run "$name" "$@"
  if [ "$rc" != "$code" ]; then fail "$name" "exit $rc, want $code: $*"; show "$name.err"
  elif ! grep -qF -- "$pat" "$name.err"; then fail "$name" "stderr does not mention '$pat': $*"; show "$name.err"
  else pass "$name"; fi
}
