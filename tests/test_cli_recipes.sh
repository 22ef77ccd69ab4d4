#!/usr/bin/env bash
# test_cli_recipes.sh BUILD: end-to-end tests of the recipe commands of Sohl-Dickstein's note with
# BUILD/natgrad: `natgrad toy` (Figure 1: the CSVs against the closed forms — the natural-gradient
# path's KL shrinks by (1 - eta)^2 a step, it lies on the segment to the optimum, phi-sgd equals
# it, the phi field points at the optimum; the four PNG panels when gnuplot exists; bad options
# exit 2 naming the option, a diverging step exits 1 saying so, an unwritable --out exits 1 naming
# it), `natgrad ica`, and net train with the recipes (--precond diag|kfac|full, --phi-every, --kfac-inverse,
# --tn-fisher: training, bit-exact resume, refusals). Runs in a mktemp -d directory removed at exit; ends with
# "RESULT passed=P failed=F skipped=S" for tests/run.sh.
. "$(dirname "$0")/cli_lib.sh"
set -u
build=${1:-build}
bin=$build/natgrad
passed=0 failed=0 skipped=0
if [ ! -x "$bin" ]; then
  echo "FAIL natgrad binary: $bin not found or not executable (build it first)"
  echo "RESULT passed=0 failed=1 skipped=0"
  exit 1
fi
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_cli_recipes.XXXXXX") || { echo "RESULT passed=0 failed=1 skipped=0"; exit 1; }
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1


# ---- natgrad toy ---------------------------------------------------------------------------
run toy_help "$bin" toy --help
if [ "$rc" = 0 ] && grep -q -- '--lr-natural' toy_help.out && grep -q 'Figure 1' toy_help.out; then pass toy_help
else fail toy_help "exit $rc"; show toy_help.out; fi

run toy "$bin" toy --out toy --steps 60 --lr 0.1 --lr-natural 0.25
if [ "$rc" != 0 ]; then
  fail toy_runs "exit $rc"; show toy.err
else
  pass toy_runs
  # G printed as the note's section 1.2 value
  if grep -qF 'G = [[9.111111, 1.000000], [1.000000, 0.111111]]' toy.out; then pass toy_prints_fisher
  else fail toy_prints_fisher; show toy.out; fi
  # natural path: KL_k = 0.75^(2k) KL_0 and theta_k = 0.75^k theta_0 (0.25 is exact in float) (optimum 0); phi-sgd the same
  # rows; steepest's KL after 60 steps still above 1e-4
  if awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
      $c["method"] == "natural" { if ($1 == 0) kl0 = $c["kl"]; f = 0.75 ^ $1;
        if (($c["kl"] - f * f * kl0) ^ 2 > (1e-12 * kl0) ^ 2) { print "KL row " $1; bad = 1 }
        if (($c["theta1"] - f) ^ 2 > 1e-24 || ($c["theta2"] + f) ^ 2 > 1e-24) { print "theta row " $1; bad = 1 }
        nat[$1] = $c["theta1"] "," $c["theta2"]; n++ }
      $c["method"] == "phi-sgd" { split(nat[$1], t, ","); if (($c["theta1"] - t[1]) ^ 2 > 1e-20 || ($c["theta2"] - t[2]) ^ 2 > 1e-20) { print "phi-sgd row " $1; bad = 1 }; p++ }
      $c["method"] == "steepest" && $1 == 60 { sd = $c["kl"] }
      END { if (n != 61 || p != 61) { print "rows " n " " p; bad = 1 }; if (!(sd > 1e-4)) { print "steepest KL " sd; bad = 1 }; exit bad }' toy/paths.csv > toy_paths.check; then
    pass toy_paths_closed_form
  else fail toy_paths_closed_form; show toy_paths.check; fi
  # the phi field: every -gradient is parallel to phi_star - phi = -phi (cross product 0, dot > 0)
  if awk -F, 'NR > 1 { cr = $1 * $4 - $2 * $3; dt = -($1 * $3 + $2 * $4); n = $1 * $1 + $2 * $2;
        if (n > 0 && (cr * cr > 1e-18 * n * ($3 * $3 + $4 * $4) || dt <= 0)) { print "row " NR; bad = 1 }; rows++ }
      END { if (rows != 225) { print "rows " rows; bad = 1 }; exit bad }' toy/field_phi.csv > toy_field.check; then
    pass toy_phi_field_points_at_optimum
  else fail toy_phi_field_points_at_optimum; show toy_field.check; fi
  if grep -q '^natural,0.25,60,' toy/summary.csv && grep -q '^steepest,0.1,60,' toy/summary.csv; then pass toy_summary
  else fail toy_summary; show toy/summary.csv; fi
  if command -v gnuplot >/dev/null 2>&1; then
    ok=1
    for p in a_paths b_kl c_field_theta d_field_phi; do
      if [ "$(head -c 8 toy/$p.png 2>/dev/null | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then ok=0; echo "  $p.png missing or not a PNG"; fi
    done
    if [ $ok = 1 ]; then pass toy_png_panels; else fail toy_png_panels; fi
  else
    skip toy_png_panels "gnuplot not installed (apt-get install gnuplot-nox)"
  fi
fi
# samples: the optimum is A^-1 xbar, no longer theta_true, and the natural path still ends there
run toy_samples "$bin" toy --out toy_s --steps 200 --samples 40 --seed 3 --theta-true 0.5,-0.25
if [ "$rc" = 0 ] && ! grep -q 'theta_star = (0.5, -0.25)' toy_samples.out &&
   awk -F, '$1 == "natural" { exit !($6 < 1e-8) }' toy_s/summary.csv; then pass toy_samples
else fail toy_samples "exit $rc"; show toy_samples.out; show toy_s/summary.csv; fi

expect_exit toy_bad_theta 2 "--theta-init 'abc'" "$bin" toy --out bad --theta-init abc
expect_exit toy_bad_theta_nan 2 "--theta-true 'nan,1'" "$bin" toy --out bad --theta-true nan,1
expect_exit toy_bad_lr 2 "--lr 0" "$bin" toy --out bad --lr 0
expect_exit toy_bad_lr_natural 2 "--lr-natural -1" "$bin" toy --out bad --lr-natural -1
expect_exit toy_bad_steps 2 "--steps 0" "$bin" toy --out bad --steps 0
expect_exit toy_bad_grid 2 "--grid 1" "$bin" toy --out bad --grid 1
expect_exit toy_bad_samples 2 "--samples -3" "$bin" toy --out bad --samples -3
expect_exit toy_unknown_option 2 "--bogus" "$bin" toy --bogus 1
expect_exit toy_diverges 1 "diverged" "$bin" toy --out div --lr 5 --steps 2000
touch notadir
expect_exit toy_unwritable_out 1 "notadir/x" "$bin" toy --out notadir/x

# ---- net train --precond diag (eq. 34) -------------------------------------------------------
D=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --optimizer adam --lr 0.01
   --precond diag --diag-power 0.5 --diag-lambda 1e-3)
run diag_full "$bin" "${D[@]}" --steps 40 --log-every 10 --out dfull
if [ "$rc" = 0 ] && grep -q 'diagonal preconditioner (Sohl-Dickstein eq. 34): metric fisher' diag_full.err &&
   awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { e = $c["train_error"]; if (NR == 2) first = e; last = e }
            END { exit !(last < first) }' dfull/train.csv; then pass net_diag_trains
else fail net_diag_trains "exit $rc (or the training error did not fall)"; show diag_full.err; fi
# resume: 20 + 20 updates give the checkpoint of 40 in one go (the moving average and the sampled
# targets' stream position are part of the state)
run diag_half "$bin" "${D[@]}" --steps 20 --log-every 10 --out dhalf
run diag_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume dhalf/net.ckpt --steps 40 --log-every 10 --out dhalf
if [ "$rc" = 0 ] && cmp -s dfull/net.ckpt dhalf/net.ckpt; then pass net_diag_resume_identical
else fail net_diag_resume_identical "exit $rc"; show diag_rest.err; fi
run diag_emp "$bin" "${D[@]}" --diag-metric empirical --optimizer sgd --steps 10 --log-every 5 --out demp
if [ "$rc" = 0 ] && grep -q 'metric empirical' diag_emp.err; then pass net_diag_empirical
else fail net_diag_empirical "exit $rc"; show diag_emp.err; fi
expect_exit net_diag_bad_power 2 "--diag-power" "$bin" "${D[@]}" --diag-power 2 --steps 2 --out dbad
expect_exit net_diag_bad_beta 2 "--diag-beta" "$bin" "${D[@]}" --diag-beta 1 --steps 2 --out dbad
expect_exit net_diag_bad_lambda 2 "--diag-lambda" "$bin" "${D[@]}" --diag-lambda -1 --steps 2 --out dbad
expect_exit net_diag_energy_metric 2 "--diag-metric 'energy'" "$bin" "${D[@]}" --diag-metric energy --steps 2 --out dbad
expect_exit net_diag_with_kfac 2 "--precond diag goes under a first-order rule" "$bin" "${D[@]}" --optimizer kfac --steps 2 --out dbad
expect_exit net_diag_batchnorm 1 "batch normalisation" "$bin" net train --device cpu --data bars-stripes --layers 16-8+bn-16 --batch 10 \
  --precond diag --steps 2 --out dbn
expect_exit net_diag_multichunk 1 "at most one chunk" "$bin" net train --device cpu --data bars-stripes --layers 16-8-16 --batch 10 \
  --chunk 5 --precond diag --steps 2 --out dchunk
expect_exit net_diag_resume_fixed 2 "--diag-power cannot be combined with --resume" "$bin" net train --resume dhalf/net.ckpt --diag-power 0.7 --out dhalf

# ---- rbm train --optimizer diag (eq. 33 / 34) ------------------------------------------------
B=(rbm train --data bars-stripes --device cpu --threads 1 --hidden 8 --batch 16 --particles 16 --lr 0.05 --log-every 20
   --optimizer diag)
run rdiag_full "$bin" "${B[@]}" --steps 60 --out rfull
if [ "$rc" = 0 ] && grep -q 'diagonal metric (Sohl-Dickstein 2012): energy' rdiag_full.err && [ -s rfull/rbm.ckpt ]; then pass rbm_diag_energy_trains
else fail rbm_diag_energy_trains "exit $rc"; show rdiag_full.err; fi
run rdiag_half "$bin" "${B[@]}" --steps 30 --out rhalf
run rdiag_rest "$bin" rbm train --data bars-stripes --device cpu --threads 1 --resume rhalf/rbm.ckpt --steps 60 --log-every 20 --out rhalf
if [ "$rc" = 0 ] && cmp -s rfull/rbm.ckpt rhalf/rbm.ckpt; then pass rbm_diag_resume_identical
else fail rbm_diag_resume_identical "exit $rc"; show rdiag_rest.err; fi
run rdiag_fisher "$bin" "${B[@]}" --diag-metric fisher --diag-power 0.5 --steps 20 --out rfisher
if [ "$rc" = 0 ] && grep -q 'model Fisher (eq. 34, over the particles), lambda 0.0001, power 0.5' rdiag_fisher.err; then pass rbm_diag_fisher
else fail rbm_diag_fisher "exit $rc"; show rdiag_fisher.err; fi
expect_exit rbm_diag_bad_power 2 "--diag-power" "$bin" "${B[@]}" --diag-power 0 --steps 2 --out rbad
expect_exit rbm_diag_bad_metric 2 "--diag-metric 'empirical'" "$bin" "${B[@]}" --diag-metric empirical --steps 2 --out rbad
expect_exit rbm_diag_resume_fixed 2 "--diag-beta cannot be combined with --resume" "$bin" rbm train --data bars-stripes --resume rhalf/rbm.ckpt --diag-beta 0.5 --out rhalf

# ---- net train --optimizer kfac --kfac-inverse regularized (eq. 35) ----------------------------
K=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --optimizer kfac
   --kfac-inverse regularized --T3 2 --T2 4 --T1 2)
run kreg_full "$bin" "${K[@]}" --steps 12 --log-every 4 --out kfull
if [ "$rc" = 0 ] && awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { e = $c["train_error"]; if (NR == 2) first = e; last = e }
     END { exit !(last < first) }' kfull/train.csv; then pass kfac_regularized_trains
else fail kfac_regularized_trains "exit $rc (or the error did not fall)"; show kreg_full.err; fi
run kreg_half "$bin" "${K[@]}" --steps 6 --log-every 4 --out khalf
run kreg_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume khalf/net.ckpt --steps 12 --log-every 4 --out khalf
if [ "$rc" = 0 ] && cmp -s kfull/net.ckpt khalf/net.ckpt; then pass kfac_regularized_resume_identical
else fail kfac_regularized_resume_identical "exit $rc"; show kreg_rest.err; fi
# block-tridiagonal with the regularised inverse: trains and resumes bit-exactly
run kregt_full "$bin" "${K[@]}" --kfac-approx tridiag --steps 12 --log-every 4 --out ktfull
if [ "$rc" = 0 ] && awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { e = $c["train_error"]; if (NR == 2) first = e; last = e }
     END { exit !(last < first) }' ktfull/train.csv && ! cmp -s ktfull/net.ckpt kfull/net.ckpt; then pass kfac_regularized_tridiag_trains
else fail kfac_regularized_tridiag_trains "exit $rc (or the error did not fall)"; show kregt_full.err; fi
run kregt_half "$bin" "${K[@]}" --kfac-approx tridiag --steps 6 --log-every 4 --out kthalf
run kregt_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume kthalf/net.ckpt --steps 12 --log-every 4 --out kthalf
if [ "$rc" = 0 ] && cmp -s ktfull/net.ckpt kthalf/net.ckpt; then pass kfac_regularized_tridiag_resume_identical
else fail kfac_regularized_tridiag_resume_identical "exit $rc"; show kregt_rest.err; fi
expect_exit kfac_inverse_unknown 2 "--kfac-inverse 'cholesky'" "$bin" "${K[@]}" --kfac-inverse cholesky --steps 2 --out kbad

# ---- truncated Newton's metric (--tn-fisher exact|sampled|empirical, eq. 30-31) -------------------
F=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --cg-iters 8 --optimizer ngd-l)
for fm in sampled empirical; do
  run "tnf_full_$fm" "$bin" "${F[@]}" --tn-fisher $fm --tn-fisher-samples 2 --steps 10 --log-every 5 --out "tnf_full_$fm"
  if [ "$rc" = 0 ] && grep -q "CG on $fm-Fisher" "tnf_full_$fm.err" &&
     awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { e = $c["train_objective"]; if (NR == 2) first = e; last = e }
              END { exit !(last < first) }' "tnf_full_$fm/train.csv"; then pass "net_tn_fisher_${fm}_trains"
  else fail "net_tn_fisher_${fm}_trains" "exit $rc (or the objective did not fall)"; show "tnf_full_$fm.err"; fi
  # resume: 5 + 5 updates = 10 in one go (sampled: the draws are indexed by the update count)
  run "tnf_half_$fm" "$bin" "${F[@]}" --tn-fisher $fm --tn-fisher-samples 2 --steps 5 --log-every 5 --out "tnf_half_$fm"
  run "tnf_rest_$fm" "$bin" net train --device cpu --data bars-stripes --threads 1 --resume "tnf_half_$fm/net.ckpt" --steps 10 --log-every 5 --out "tnf_half_$fm"
  if [ "$rc" = 0 ] && cmp -s "tnf_full_$fm/net.ckpt" "tnf_half_$fm/net.ckpt"; then pass "net_tn_fisher_${fm}_resume_identical"
  else fail "net_tn_fisher_${fm}_resume_identical" "exit $rc"; show "tnf_rest_$fm.err"; fi
done
run tnf_exact "$bin" "${F[@]}" --steps 10 --log-every 5 --out tnf_exact
if [ "$rc" = 0 ] && ! cmp -s tnf_exact/net.ckpt tnf_full_sampled/net.ckpt && ! cmp -s tnf_exact/net.ckpt tnf_full_empirical/net.ckpt &&
   ! cmp -s tnf_full_sampled/net.ckpt tnf_full_empirical/net.ckpt; then pass net_tn_fisher_metrics_differ
else fail net_tn_fisher_metrics_differ "exit $rc (or two metrics gave the same run)"; show tnf_exact.err; fi
expect_exit net_tn_fisher_unknown 2 "--tn-fisher 'hessian'" "$bin" "${F[@]}" --tn-fisher hessian --steps 2 --out tnf_bad
expect_exit net_tn_fisher_bad_samples 2 "--tn-fisher-samples 0" "$bin" "${F[@]}" --tn-fisher sampled --tn-fisher-samples 0 --steps 2 --out tnf_bad
expect_exit net_tn_fisher_with_hessian 2 "cannot go with --curvature hessian" "$bin" "${F[@]}" --optimizer hf --curvature hessian --tn-fisher sampled --steps 2 --out tnf_bad
expect_exit net_tn_fisher_empirical_unlabeled 2 "needs the data's targets" "$bin" "${F[@]}" --tn-fisher empirical --metric unlabeled --metric-batch 5 --limit 20 --steps 2 --out tnf_bad
expect_exit net_tn_fisher_resume_fixed 2 "--tn-fisher cannot be combined with --resume" "$bin" net train --resume tnf_half_sampled/net.ckpt --tn-fisher exact --out tnf_half_sampled

# ---- natural parameter space (eq. 37): --precond diag --phi-every K ------------------------------
P=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --optimizer adam --lr 0.01
   --precond diag --phi-every 5)
run phi_full "$bin" "${P[@]}" --steps 30 --log-every 10 --out pfull
if [ "$rc" = 0 ] && grep -q 'natural parameter space: G re-estimated every 5 updates' phi_full.err &&
   awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { e = $c["train_error"]; if (NR == 2) first = e; last = e }
            END { exit !(last < first) }' pfull/train.csv; then pass net_phi_adam_trains
else fail net_phi_adam_trains "exit $rc (or the error did not fall)"; show phi_full.err; fi
# resume in the middle of a refresh period (update 13; refreshes at 10 and 15)
run phi_half "$bin" "${P[@]}" --steps 13 --log-every 10 --out phalf
run phi_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume phalf/net.ckpt --steps 30 --log-every 10 --out phalf
if [ "$rc" = 0 ] && cmp -s pfull/net.ckpt phalf/net.ckpt; then pass net_phi_resume_identical
else fail net_phi_resume_identical "exit $rc"; show phi_rest.err; fi
run phi_nag "$bin" "${P[@]}" --optimizer nag --steps 12 --log-every 6 --out pnag
if [ "$rc" = 0 ]; then pass net_phi_nag; else fail net_phi_nag "exit $rc"; show phi_nag.err; fi
expect_exit net_phi_without_diag 2 "--phi-every needs --precond diag" "$bin" net train --device cpu --data bars-stripes --layers 16-8-16 \
  --batch 10 --phi-every 5 --steps 2 --out pbad
expect_exit net_phi_average 2 "--average" "$bin" "${P[@]}" --average 0.9 --steps 2 --out pbad
expect_exit net_phi_negative 2 "--phi-every -1" "$bin" "${P[@]}" --phi-every -1 --steps 2 --out pbad

# ---- natural parameter space of K-FAC's factors: --precond kfac --phi-every K ---------------------
Q=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --optimizer adam --lr 0.01
   --precond kfac --phi-every 5 --gamma0 0.1 --tau1 0.5)
run kphi_full "$bin" "${Q[@]}" --steps 30 --log-every 10 --out kpfull
if [ "$rc" = 0 ] && grep -q "natural parameter space of K-FAC's block-diagonal factors" kphi_full.err &&
   awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { e = $c["train_error"]; if (NR == 2) first = e; last = e }
            END { exit !(last < first) }' kpfull/train.csv; then pass net_kfac_phi_adam_trains
else fail net_kfac_phi_adam_trains "exit $rc (or the error did not fall)"; show kphi_full.err; fi
# resume between refreshes (update 13; refreshes at 10 and 15): factors, square roots and Adam's moments in phi
run kphi_half "$bin" "${Q[@]}" --steps 13 --log-every 10 --out kphalf
run kphi_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume kphalf/net.ckpt --steps 30 --log-every 10 --out kphalf
if [ "$rc" = 0 ] && cmp -s kpfull/net.ckpt kphalf/net.ckpt; then pass net_kfac_phi_resume_identical
else fail net_kfac_phi_resume_identical "exit $rc"; show kphi_rest.err; fi
# SGD in K-FAC's phi differs from plain SGD (the metric matters) and from Adam in phi
run kphi_sgd "$bin" "${Q[@]}" --optimizer sgd --momentum 0 --lr 0.001 --steps 10 --log-every 5 --out kpsgd
run kphi_plain "$bin" net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --optimizer sgd \
  --momentum 0 --lr 0.001 --steps 10 --log-every 5 --out kpplain
if [ "$rc" = 0 ] && [ -s kpsgd/net.ckpt ] && ! cmp -s kpsgd/net.ckpt kpplain/net.ckpt; then pass net_kfac_phi_sgd_differs_from_sgd
else fail net_kfac_phi_sgd_differs_from_sgd "exit $rc"; show kphi_sgd.err; fi
expect_exit net_kfac_phi_needs_every 2 "--precond kfac needs --phi-every K" "$bin" "${Q[@]}" --phi-every 0 --steps 2 --out kpbad
expect_exit net_kfac_phi_tridiag 2 "only --kfac-approx blockdiag" "$bin" "${Q[@]}" --kfac-approx tridiag --steps 2 --out kpbad
expect_exit net_kfac_phi_regularized 2 "no square root" "$bin" "${Q[@]}" --kfac-inverse regularized --steps 2 --out kpbad
expect_exit net_kfac_phi_under_kfac 2 "--precond kfac goes under a first-order rule" "$bin" "${Q[@]}" --optimizer kfac --steps 2 --out kpbad
expect_exit net_kfac_phi_average 2 "--average" "$bin" "${Q[@]}" --average 0.9 --steps 2 --out kpbad
expect_exit net_kfac_phi_bad_gamma 2 "--gamma0" "$bin" "${Q[@]}" --gamma0 -1 --steps 2 --out kpbad
expect_exit net_kfac_phi_batchnorm 1 "batch normalisation" "$bin" net train --device cpu --data bars-stripes --layers 16-8+bn-16 --batch 10 \
  --optimizer adam --precond kfac --phi-every 5 --steps 2 --out kpbn
expect_exit net_kfac_phi_resume_fixed 2 "--phi-every cannot be combined with --resume" "$bin" net train --resume kphalf/net.ckpt --phi-every 3 --out kphalf

# ---- natural parameter space of the dense Fisher: --precond full --phi-every K --------------------
R=(net train --device cpu --data bars-stripes --layers 16-8-3:linear-8-16 --batch 10 --threads 1 --optimizer adam --lr 0.01
   --precond full --phi-every 5 --full-lambda 0.01)
run fphi_full "$bin" "${R[@]}" --steps 30 --log-every 10 --out fpfull
if [ "$rc" = 0 ] && grep -q "natural parameter space of the dense Fisher" fphi_full.err &&
   awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { e = $c["train_error"]; if (NR == 2) first = e; last = e }
            END { exit !(last < first) }' fpfull/train.csv; then pass net_full_phi_adam_trains
else fail net_full_phi_adam_trains "exit $rc (or the error did not fall)"; show fphi_full.err; fi
run fphi_half "$bin" "${R[@]}" --steps 13 --log-every 10 --out fphalf
run fphi_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume fphalf/net.ckpt --steps 30 --log-every 10 --out fphalf
if [ "$rc" = 0 ] && cmp -s fpfull/net.ckpt fphalf/net.ckpt; then pass net_full_phi_resume_identical
else fail net_full_phi_resume_identical "exit $rc"; show fphi_rest.err; fi
expect_exit net_full_phi_too_big 2 "2656 parameters, above the limit of 2048" "$bin" "${R[@]}" --layers 16-80-16 --steps 2 --out fpbad
expect_exit net_full_phi_needs_every 2 "--precond full needs --phi-every K" "$bin" "${R[@]}" --phi-every 0 --steps 2 --out fpbad
expect_exit net_full_phi_bad_lambda 2 "--full-lambda 0" "$bin" "${R[@]}" --full-lambda 0 --steps 2 --out fpbad
expect_exit net_full_phi_under_hf 2 "--precond full goes under a first-order rule" "$bin" "${R[@]}" --optimizer hf --steps 2 --out fpbad
expect_exit net_full_phi_resume_fixed 2 "--full-lambda cannot be combined with --resume" "$bin" net train --resume fphalf/net.ckpt --full-lambda 0.1 --out fphalf
# --full-inverse regularized: trains, differs from the Tikhonov root, resumes bit for bit, keeps its choice
run fphi_reg "$bin" "${R[@]}" --full-inverse regularized --steps 30 --log-every 10 --out fpreg
if [ "$rc" = 0 ] && [ -s fpreg/net.ckpt ] && ! cmp -s fpreg/net.ckpt fpfull/net.ckpt; then pass net_full_phi_regularized_trains_and_differs
else fail net_full_phi_regularized_trains_and_differs "exit $rc (or identical to the Tikhonov run)"; show fphi_reg.err; fi
run fphi_reg_half "$bin" "${R[@]}" --full-inverse regularized --steps 13 --log-every 10 --out fpreghalf
run fphi_reg_rest "$bin" net train --device cpu --data bars-stripes --threads 1 --resume fpreghalf/net.ckpt --steps 30 --log-every 10 --out fpreghalf
if [ "$rc" = 0 ] && cmp -s fpreg/net.ckpt fpreghalf/net.ckpt; then pass net_full_phi_regularized_resume_identical
else fail net_full_phi_regularized_resume_identical "exit $rc"; show fphi_reg_rest.err; fi
expect_exit net_full_phi_bad_inverse 2 "--full-inverse" "$bin" "${R[@]}" --full-inverse cholesky --steps 2 --out fpbad
expect_exit net_full_phi_inverse_fixed 2 "--full-inverse cannot be combined with --resume" "$bin" net train --resume fpreghalf/net.ckpt --full-inverse tikhonov --out fpreghalf

# ---- rbm train --optimizer fang --fang-inverse regularized (eq. 35 for Sigma_un) -----------------
FR=(rbm train --data bars-stripes --device cpu --threads 1 --hidden 8 --batch 16 --particles 16 --log-every 10
    --optimizer fang --fang-refit-every 5 --fang-inverse regularized)
run freg_full "$bin" "${FR[@]}" --steps 40 --out frfull
run freg_tik "$bin" "${FR[@]}" --fang-inverse tikhonov --steps 40 --out frtik
if [ "$rc" = 0 ] && [ -s frfull/rbm.ckpt ] && ! cmp -s frfull/rbm.ckpt frtik/rbm.ckpt; then pass rbm_fang_regularized_trains_and_differs
else fail rbm_fang_regularized_trains_and_differs "exit $rc"; show freg_full.err; fi
run freg_half "$bin" "${FR[@]}" --steps 17 --out frhalf
run freg_rest "$bin" rbm train --data bars-stripes --device cpu --threads 1 --resume frhalf/rbm.ckpt --steps 40 --log-every 10 --out frhalf
# FANG's checkpoint holds its refit seconds (a clock), so the logs are compared without the *_s columns:
# every monitored value at steps 10..40 (the half run adds its last row, 17; recon error, norms, free energies, fang_cond, fang_min_sigma2) must be identical
nostime() { python3 -c 'import sys,csv
r=list(csv.reader(open(sys.argv[1]))); keep=[i for i,n in enumerate(r[0]) if not n.endswith("_s")]
for row in r: print(",".join(row[i] for i in keep))' "$1"; }
if [ "$rc" = 0 ] && diff <(nostime frfull/train.csv) <(nostime frhalf/train.csv | grep -v '^17,') >/dev/null &&
   [ "$(wc -l < frfull/train.csv)" = 5 ]; then
  pass rbm_fang_regularized_resume_same_log
else fail rbm_fang_regularized_resume_same_log "exit $rc: $(diff <(nostime frfull/train.csv) <(nostime frhalf/train.csv | grep -v '^17,') | head -4)"; show freg_rest.err; fi
expect_exit rbm_fang_inverse_needs_fang 2 "--fang-inverse is an option of --optimizer fang" "$bin" "${FR[@]}" --optimizer sgd --steps 2 --out frbad
expect_exit rbm_fang_inverse_unknown 2 "--fang-inverse 'cholesky'" "$bin" "${FR[@]}" --fang-inverse cholesky --steps 2 --out frbad
expect_exit rbm_fang_inverse_resume_fixed 2 "--fang-inverse cannot be combined with --resume" "$bin" rbm train --data bars-stripes --resume frhalf/rbm.ckpt --fang-inverse tikhonov --out frhalf

echo "RESULT passed=$passed failed=$failed skipped=$skipped"
[ "$failed" = 0 ]
