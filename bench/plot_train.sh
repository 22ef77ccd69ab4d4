#!/usr/bin/env bash
# plot_train.sh CSV PNG TITLE: plot reconstruction error and the free-energy gap of a
# `natgrad rbm train` CSV log against wall-clock time (gnuplot PNG). Says so and exits 0 when
# gnuplot is missing (install gnuplot-nox).
set -eu
csv=$1; png=$2; title=${3:-natgrad rbm train}
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "plot_train: gnuplot not found (apt-get install gnuplot-nox); skipped $png"; exit 0
fi
gnuplot <<GP
set datafile separator ','
set terminal pngcairo size 1000,450 noenhanced
set output '$png'
set multiplot layout 1,2 title '$title'
set key top right
set xlabel 'wall-clock time (s)'
set ylabel 'reconstruction error (per example)'
plot '$csv' using 3:5 every ::1 with lines title 'recon error'
set ylabel 'free energy: test - train'
plot '$csv' using 3:10 every ::1 with lines title 'FE gap'
unset multiplot
GP
echo "plot_train: wrote $png"
