#!/usr/bin/env bash
# test_bench_args.sh BUILD: the command line of every bench program (bench/*.c, bench/bench_args.h).
# For each BUILD/bench/NAME (`make test` builds them: the Makefile's test-build needs $(BENCH_BIN)):
#   --help exits 0, prints "usage: NAME" and names the program's options, writes nothing;
#   an unknown option exits 2 naming it; for one whole-number option (or positional) per program
#   "abc", "5x" and an out-of-range value each exit 2 with a message naming the option and what is
#   allowed; an option without its value (or a missing positional) exits 2;
#   in every refused case stdout stays empty (nothing ran) and the program's output file, pointed
#   into a fresh directory, is not created.
# Then three tiny valid runs (bench_profile --n=1000, ica_bench OUT 5, curves_samples OUT) write
# their outputs, so a parser that refused everything would fail too. Every program runs in a
# temporary directory, so a default output path (bench/results/...) cannot touch the repository.
# Ends with "RESULT passed=P failed=F skipped=S".
. "$(dirname "$0")/cli_lib.sh"
set -u
build=${1:-build}
case $build in /*) ;; *) build=$PWD/$build ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0 failed=0 skipped=0
work=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_bargs.XXXXXX") || { echo "RESULT passed=0 failed=1 skipped=0"; exit 1; }
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OMP_NUM_THREADS=1 NG_NO_BLAS_REEXEC=1

# refused NAME BIN OUTFILE PATTERN ARGS...: BIN ARGS exits 2, stderr names PATTERN, stdout is
# empty and OUTFILE (when not -) does not exist afterwards; nothing is left in the working directory
refused() {
  local name=$1 bin=$2 out=$3 pat=$4; shift 4
  rm -rf "$work/o" && mkdir "$work/o"
  run "$name" timeout 30 "$bin" "$@"
  if [ "$rc" != 2 ]; then fail "$name" "exit $rc, want 2: ${bin##*/} $*"; show "$name.err"
  elif ! grep -qF -- "$pat" "$name.err"; then fail "$name" "stderr does not mention '$pat': ${bin##*/} $*"; show "$name.err"
  elif [ "$(wc -l <"$name.err")" != 1 ]; then fail "$name" "want one line on stderr: ${bin##*/} $*"; show "$name.err"
  elif [ -s "$name.out" ]; then fail "$name" "printed on stdout (did it run?): ${bin##*/} $*"; show "$name.out"
  elif [ "$out" != - ] && [ -e "$out" ]; then fail "$name" "wrote $out: ${bin##*/} $*"
  elif [ -n "$(ls -A "$work/o")" ] || [ -e "$work/bench" ] || [ -e "$work/data" ]; then fail "$name" "left files behind: ${bin##*/} $*"
  else pass "$name"; fi
}

# One row per program: NAME | the option under test (a positional's name) | a value out of its range |
# the output option ("-": none; "@": the first positional) | extra arguments before the tested one.
# For positionals, ARGS holds the whole command line with VAL where the tested value goes.
programs=(
  "bench_rbm|--iters|0|--csv|"
  "bench_net|--iters|1001|--csv|"
  "bench_factors|--reps|0|--csv|"
  "bench_tn|--iters|1|--csv|"
  "bench_conv|--reps|0|--csv|"
  "bench_profile|--n|0|--csv|"
  "bench_prong|--rounds|101|--csv|"
  "bench_whiten|--rounds|65|-|--refresh"
  "kernel_lab|--blocks|2048|--csv|"
  "fang_table1|--hidden|21|--csv|"
  "kfac_fisher_figures|--pool|421|--out|"
  "prong_figure2|--iters|0|--out|"
  "ais_coverage|SEEDS|0|-|VAL 10 10 2 0.1"
  "bench_comm|SIZE|0|-|1000 VAL"
  "ica_bench|STEPS|0|@|OUT VAL"
  "curves_samples|||@|"
)
# every bench program has a row (a new bench/*.c needs one here)
for src in "$root"/bench/*.c; do
  n=$(basename "$src" .c) found=0
  for row in "${programs[@]}"; do [ "${row%%|*}" = "$n" ] && found=1; done
  if [ $found = 1 ]; then pass "row_$n"; else fail "row_$n" "bench/$n.c has no row in tests/test_bench_args.sh"; fi
done

for row in "${programs[@]}"; do
  IFS='|' read -r name opt bad outopt extra <<<"$row"
  bin=$build/bench/$name
  if [ ! -x "$bin" ]; then fail "$name" "$bin not found (make $build/bench/$name; make test builds it)"; continue; fi
  out=$work/o/out.csv
  [ "$name" = curves_samples ] && out=$work/o/out.png
  # the arguments that point the output into $work/o
  case $outopt in
    --csv) pre=(--csv "$out") ;;
    --out) pre=(--out "$work/o/out"); out=$work/o/out.csv ;;
    *) pre=() ;;
  esac
  [ "$outopt" = - ] && out=-

  # --help: exit 0, a usage naming the tested option and the output option, nothing written
  rm -rf "$work/o" && mkdir "$work/o"
  run "${name}_help" timeout 30 "$bin" "${pre[@]}" --help
  if [ "$rc" != 0 ]; then fail "${name}_help" "exit $rc, want 0"; show "${name}_help.err"
  elif ! grep -q "^usage: $name" "${name}_help.out"; then fail "${name}_help" "no 'usage: $name' line"; show "${name}_help.out"
  elif [ -n "$opt" ] && ! grep -qF -- "$opt" "${name}_help.out"; then fail "${name}_help" "does not name $opt"
  elif [ "${outopt:0:2}" = -- ] && ! grep -qF -- "$outopt" "${name}_help.out"; then fail "${name}_help" "does not name $outopt"
  elif ! grep -qF -- "--help" "${name}_help.out"; then fail "${name}_help" "does not name --help"
  elif [ -n "$(ls -A "$work/o")" ] || [ -e "$work/bench" ]; then fail "${name}_help" "wrote a file"
  else pass "${name}_help"; fi
  run "${name}_h" timeout 30 "$bin" -h
  if [ "$rc" = 0 ] && grep -q "^usage: $name" "${name}_h.out"; then pass "${name}_h"
  else fail "${name}_h" "-h: exit $rc"; show "${name}_h.err"; fi

  # an unknown option
  if [ "$outopt" = @ ]; then refused "${name}_unknown" "$bin" "$out" "--bogus" --bogus "$out"
  else refused "${name}_unknown" "$bin" "$out" "--bogus" "${pre[@]}" --bogus 1; fi

  [ -z "$opt" ] && continue
  # not a number, trailing characters, out of range: the message names the option and the value
  for v in abc 5x "$bad"; do
    case $v in abc | 5x) what="not a whole number" ;; *) what="out of range" ;; esac
    [ "$opt" = --blocks ] && [ "$v" != "$bad" ] && v="32,$v"
    if [ "${opt:0:2}" = -- ]; then
      # shellcheck disable=SC2086
      refused "${name}_${opt#--}_${v//,/_}" "$bin" "$out" "$opt $v: $what" "${pre[@]}" $extra "$opt" "$v"
    else
      args=${extra//OUT/$out}
      # shellcheck disable=SC2086
      refused "${name}_${opt}_${v//,/_}" "$bin" "$out" "$opt $v: $what" ${args//VAL/$v}
    fi
  done
  # a missing value (options) or a missing positional
  if [ "${opt:0:2}" = -- ]; then
    # shellcheck disable=SC2086
    refused "${name}_${opt#--}_missing" "$bin" "$out" "$opt: needs a value" "${pre[@]}" $extra "$opt"
  fi
done
# missing positionals: ais_coverage without W_STD, ica_bench without OUT.csv; too many for curves_samples
refused ais_coverage_missing "$build/bench/ais_coverage" - "W_STD: missing" 1 10 10 2
refused ica_bench_missing "$build/bench/ica_bench" - "OUT.csv: missing"
refused curves_samples_extra "$build/bench/curves_samples" "$work/o/a.png" "unexpected argument" "$work/o/a.png" "$work/o/b.png"
# --opt=VALUE is checked as strictly as --opt VALUE; a flag takes no value; a choice is checked
refused bench_profile_eq "$build/bench/bench_profile" "$work/o/p.csv" "--n 12abc: not a whole number" --csv "$work/o/p.csv" --n=12abc
refused bench_factors_flag_value "$build/bench/bench_factors" "$work/o/f.csv" "--tridiag=1: takes no value" --csv "$work/o/f.csv" --tridiag=1
refused bench_prong_choice "$build/bench/bench_prong" "$work/o/p.csv" "--form diagonal: not one of the choices" --csv "$work/o/p.csv" --form diagonal
refused bench_rbm_device "$build/bench/bench_rbm" "$work/o/r.csv" "--device gpu: not a device" --csv "$work/o/r.csv" --device gpu
refused bench_net_overflow "$build/bench/bench_net" "$work/o/n.csv" "--batch 99999999999: out of range" --csv "$work/o/n.csv" --batch 99999999999
refused bench_tn_list "$build/bench/bench_tn" "$work/o/t.csv" "--batch 10,,20: not a whole number" --csv "$work/o/t.csv" --batch 10,,20
refused prong_figure2_eps "$build/bench/prong_figure2" "$work/o/p.csv" "--eps nan: not a number" --out "$work/o/p" --eps nan
refused fang_table1_lr "$build/bench/fang_table1" "$work/o/f.csv" "--lr inf: out of range" --csv "$work/o/f.csv" --lr inf

# valid values get through: tiny runs that write their outputs
rm -rf "$work/o" && mkdir "$work/o"
run profile_ok "$build/bench/bench_profile" --n=1000 --csv "$work/o/p.csv"
if [ "$rc" = 0 ] && [ -s "$work/o/p.csv" ]; then pass profile_ok; else fail profile_ok "exit $rc or no CSV"; show profile_ok.err; fi
run ica_ok "$build/bench/ica_bench" "$work/o/i.csv" 5
if [ "$rc" = 0 ] && head -1 "$work/o/i.csv" | grep -q '^cond,rule,eta,step,objective,amari$' && grep -q ',5,' "$work/o/i.csv"; then
  pass ica_ok
else fail ica_ok "exit $rc or no step 5 in the CSV"; show ica_ok.err; fi
run curves_ok "$build/bench/curves_samples" "$work/o/c.png"
if [ "$rc" = 0 ] && [ -s "$work/o/c.png" ]; then pass curves_ok; else fail curves_ok "exit $rc or no PNG"; show curves_ok.err; fi

echo "RESULT passed=$passed failed=$failed skipped=$skipped"
[ "$failed" = 0 ]
