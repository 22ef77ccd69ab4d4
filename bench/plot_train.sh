#!/usr/bin/env bash
# plot_train.sh CSV PNG TITLE [LL_CSV]: plot reconstruction error and the free-energy gap of a
# `natgrad rbm train` CSV log against wall-clock time, and, with LL_CSV (step,time_s,avg_ll,
# avg_ll_lo,avg_ll_hi from bench/run_main.sh), the test log-likelihood of the snapshots by AIS
# with its 95 % interval (gnuplot PNG). Says so and exits 0 when gnuplot is missing.
set -eu
csv=$1; png=$2; title=${3:-natgrad rbm train}; ll=${4:-}
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "plot_train: gnuplot not found (apt-get install gnuplot-nox); skipped $png"; exit 0
fi
panels=2
if [ -n "$ll" ] && [ "$(tail -n +2 "$ll" 2>/dev/null | wc -l)" -gt 0 ]; then panels=3; fi
gnuplot <<GP
set datafile separator ','
set terminal pngcairo size $((500 * panels)),450 noenhanced
set output '$png'
set multiplot layout 1,$panels title '$title'
set key top right
set xlabel 'wall-clock time (s)'
set ylabel 'reconstruction error (per example)'
plot '$csv' using 3:5 every ::1 with lines title 'recon error'
set ylabel 'free energy: test - train'
plot '$csv' using 3:10 every ::1 with lines title 'FE gap'
if ($panels == 3) {
  set key bottom right
  set ylabel 'test log-likelihood (nats, AIS)'
  plot '$ll' using 2:3:4:5 every ::1 with yerrorlines title 'snapshots (95% interval)'
}
unset multiplot
GP
echo "plot_train: wrote $png"
