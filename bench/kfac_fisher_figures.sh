#!/usr/bin/env bash
# kfac_fisher_figures.sh [BUILD] [ARGS...]: Figures 2, 3, 5 and 6 of Martens & Grosse (2015), K-FAC, in
# one command (also `make kfac-figures`): the exact Fisher F of the middle 4 layers of a partially
# trained 256-20-20-20-20-20-10 tanh network on our 16x16 area-averaged MNIST, its block-wise
# Kronecker-factored approximation F-tilde, F-tilde's damped inverse, and the block-diagonal (F-breve)
# and block-tridiagonal-inverse (F-hat) approximations, as pictures and relative errors.
# Prepares MNIST (data/prepare.sh) and builds BUILD/bench/kfac_fisher_figures when needed; ARGS go to
# the program (`BUILD/bench/kfac_fisher_figures --help` lists them: --train kfac|nag|gd, --gamma, --n,
# ...). Writes bench/results/kfac_fisher_figures.{md,csv} and
# bench/results/kfac_fisher_figures_fig{2,3,5,6}.png; exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then build=$1; shift; fi
bin=$build/bench/kfac_fisher_figures
prefix=bench/results/kfac_fisher_figures
md=$prefix.md
mkdir -p bench/results
[ -s data/mnist/train-images-idx3-ubyte ] || bash data/prepare.sh mnist >&2
make --no-print-directory BUILD="$build" "$bin" >&2
# OpenMP threads that spin while waiting lose their core to other processes on a shared machine
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gpu=$(nvidia-smi -L 2>/dev/null | head -1 || true)
start=$(date +%s)
rc=0
"$bin" --out "$prefix" "$@" > "$tmp/body.md" 2> "$tmp/log" || rc=$?
cat "$tmp/log" >&2
secs=$(( $(date +%s) - start ))
{
  echo "# K-FAC Figures 2, 3, 5 and 6: the exact Fisher and its Kronecker-factored approximations"
  echo
  echo "\`bash bench/kfac_fisher_figures.sh${*:+ $*}\` (or \`make kfac-figures\`), measured $(date -u '+%Y-%m-%d %H:%M UTC') on"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))${gpu:+, $gpu}; wall time ${secs} s."
  echo "Program: \`bench/kfac_fisher_figures.c\` (training with natgrad's library on its CPU backend; everything after"
  echo "training in float64 on the host, \`bench/kfac_fisher.h\`, checked by \`tests/test_kfac_fisher.c\`)."
  echo
  echo "Martens & Grosse (2015), sections 3-4: F-tilde approximates each block F_{i,j} = E[vec(DW_i) vec(DW_j)^T] of the"
  echo "Fisher by A-bar_{i-1,j-1} (x) G_{i,j} (figure 2); its inverse is close to block-tridiagonal (figure 3), which"
  echo "motivates F-breve (block-diagonal) and F-hat (block-tridiagonal inverse), compared with F-tilde and with"
  echo "F-tilde^-1 in figures 5 and 6. Reproduced here on a substitute data set and a substitute training run (below)."
  echo
  cat "$tmp/body.md"
  echo "<details><summary>program log (training curve and checks)</summary>"
  echo
  echo '```'
  grep -E 'iteration|check:|trained|figure 2|^gamma|^F \(|note:' "$tmp/log" || true
  echo '```'
  echo
  echo "</details>"
} > "$md"
echo "wrote $md" >&2
exit $rc
