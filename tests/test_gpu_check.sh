#!/usr/bin/env bash
# test_gpu_check.sh BUILD: bench/gpu_check.sh's rehearsal (GPU_CHECK_REHEARSAL=1) on the SIMT
# emulator, so the one-shot GPU check's commands run before a lent GPU ever sees them.
# Covers: every step of the script (build, make test-gpu's recipe on emulated tests, the RBM / network / K-FAC factor / truncated-Newton
# benchmarks on emulated CUDA and on the CPU, the kernel lab's sweep, the profiled RBM and K-FAC
# runs, NAG / RBM-SGD / K-FAC / NGD eager vs --cuda-graph 1) exits 0 with the script's own options
# at reduced sizes; the report has a row per step, the RBM table's six rows, a per-update profile
# line for each run and "identical" for each of the four checkpoint comparisons; nothing is written
# to bench/results; a spent time budget turns the remaining steps into SKIPPED rows and a non-zero
# exit; a bad GPU_CHECK_REHEARSAL value is refused. bench/gpu_deps.sh: the packages for a machine
# without a registry are fetched (skipped when apt-get download cannot reach Debian), unpacked and
# used by `make deps-check NG_DEPS_PREFIX` (OpenBLAS, LAPACKE, zlib and their own dependencies
# loaded from the prefix), a truncated package / missing folder / the root as prefix refused.
# The real path with a fake nvidia-smi (no device answers): GPU steps recorded as failed, CPU steps
# ok, the report written. bench/gpu_check.sh's refusal without a GPU is tested in test_cli_profile.sh. Ends with "RESULT passed=P failed=F skipped=S".
. "$(dirname "$0")/cli_lib.sh"
set -u
build=${1:-build}
root=$PWD
passed=0 failed=0 skipped=0
if [ "$build" != build ]; then
  skip gpu_check_rehearsal "gpu_check.sh builds into ./build (this run tests $build)"
  echo "RESULT passed=$passed failed=$failed skipped=$skipped"; exit 0
fi
if [ ! -f build/config-1.stamp ]; then
  # gpu_check.sh's build steps run make in the default configuration (NG_CUDA=1 where nvcc is): on a
  # build made with NG_CUDA=0 they would relink it as the other configuration under the tests' feet
  skip gpu_check_rehearsal "the build under test is not the NG_CUDA=1 configuration gpu_check.sh builds (make test NG_CUDA=0, or no nvcc)"
  echo "RESULT passed=$passed failed=$failed skipped=$skipped"; exit 0
fi
if [ ! -x build/simt/natgrad ]; then
  skip gpu_check_rehearsal "build/simt/natgrad is not built: the SIMT emulator needs the CUDA headers, a C++ compiler, OpenBLAS and LAPACKE (make test-build builds it when they are there)"
  echo "RESULT passed=$passed failed=$failed skipped=$skipped"; exit 0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/natgrad_gpucheck.XXXXXX") || { echo "RESULT passed=0 failed=1 skipped=0"; exit 1; }
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

before=$(ls -la "$root/bench/results" | md5sum)
stamps=$(cat "$root"/build/flags-*.txt 2>/dev/null | md5sum)
run "$work/rehearsal" env GPU_CHECK_REHEARSAL=1 GPU_CHECK_COPY_TO="$work/out" bash "$root/bench/gpu_check.sh" "$work/res"
md=$work/res/gpu-rehearsal.md
if [ "$rc" = 0 ] && [ -s "$md" ]; then pass gpu_check_rehearsal_exit
else fail gpu_check_rehearsal_exit "exit $rc, report: $([ -s "$md" ] && echo written || echo missing)"; show "$work/rehearsal.err" 12; fi

steps="build test-gpu"
for d in cuda0 cpu; do
  steps="$steps bench_rbm-$d-sgd bench_rbm-$d-centering bench_rbm-$d-fang bench_net-$d bench_factors-$d bench_tn-$d"
done
steps="$steps kernel-lab profile-rbm profile-kfac"
for w in nag rbmsgd kfac ngd; do steps="$steps profile-$w-eager profile-$w-graph"; done
steps="$steps sanitizers"
bad=
for s in $steps; do
  grep -qE "^\| $s \| ok \|" "$md" 2>/dev/null || bad="$bad $s"
done
if [ -z "$bad" ]; then pass gpu_check_rehearsal_every_step_ok
else
  fail gpu_check_rehearsal_every_step_ok "steps not ok:$bad"
  for s in $bad; do show "$work/res/gpu-rehearsal/$s.log" 4; done
fi

n=$(grep -cE '^\| (cpu|cuda:0)[^|]*\| (sgd|centering|fang) \|' "$md" 2>/dev/null)
if [ "$n" = 6 ] && grep -q '^| sgd | [0-9.]* | [0-9.]* | [0-9.]* |$' "$md"; then pass gpu_check_rehearsal_rbm_table
else fail gpu_check_rehearsal_rbm_table "$n RBM rows (want 3 on emulated CUDA + 3 on the CPU), or no GPU / CPU row for sgd"; fi

n=$(grep -c 'identical (\(graph\|segments\) = eager bit for bit)' "$md" 2>/dev/null)
if [ "$n" = 4 ] && ! grep -q 'DIFFERENT or missing' "$md"; then pass gpu_check_rehearsal_checkpoints_identical
else fail gpu_check_rehearsal_checkpoints_identical "$n of 4 eager-vs-graph checkpoint comparisons say identical"; grep 'checkpoints after' "$md" | sed 's/^/  | /'; fi

bad=
for p in rbm kfac nag-eager nag-graph rbmsgd-eager rbmsgd-graph kfac-eager kfac-graph ngd-eager ngd-graph; do
  grep -q "^## natgrad --profile on cuda:0: $p\$" "$md" || bad="$bad $p"
done
n=$(grep -c '^per update: [0-9.]* ms' "$md" 2>/dev/null)
if [ -z "$bad" ] && [ "$n" -ge 10 ]; then pass gpu_check_rehearsal_profiles
else fail gpu_check_rehearsal_profiles "profile sections missing:${bad:- none}; $n 'per update' lines (want >= 10)"; fi

tg=$work/res/gpu-rehearsal/test-gpu.log
if ! grep -q '^## Failed steps' "$md"; then pass gpu_check_rehearsal_no_failed_section
else fail gpu_check_rehearsal_no_failed_section "the report lists failed steps in a run where every step was ok"; sed -n '/^## Failed steps/,$p' "$md" | head -8 | sed 's/^/  | /'; fi
# the peer's rows: PyTorch on the CPU when this machine has it, a row saying why not otherwise; on
# emulated CUDA never (PyTorch sees no GPU here)
if grep -qE "^\| bench_net-torch-cuda0 \| skipped: .*(no python3 with PyTorch|sees no CUDA device)" "$md" &&
   { grep -qE '^\| bench_net-torch-cpu \| ok \|' "$md" && grep -qE '^\| cpu \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$md" ||
     grep -qE '^\| bench_net-torch-cpu \| skipped: no python3 with PyTorch' "$md"; }; then pass gpu_check_rehearsal_torch_peer
else fail gpu_check_rehearsal_torch_peer "no PyTorch row (or its reason) beside natgrad's bench_net rows"; grep 'torch' "$md" | sed 's/^/  | /'; fi
if grep -q '^REHEARSAL' "$md" && grep -q '^test-gpu: all passed' "$md" &&
   grep -q '^== build/simt/tests/test_update on the SIMT emulator (rehearsal)' "$tg" && grep -q '^test-gpu: rehearsal: compute-sanitizer not run' "$tg" &&
   ! grep -q '^== ' "$work/res/gpu-rehearsal/sanitizers.log"; then pass gpu_check_rehearsal_labelled
else fail gpu_check_rehearsal_labelled "the report does not say it is a rehearsal, or make test-gpu did not run on the emulator"; show "$tg"; fi

if [ "$(ls -la "$root/bench/results" | md5sum)" = "$before" ]; then pass gpu_check_rehearsal_leaves_bench_results
else fail gpu_check_rehearsal_leaves_bench_results "bench/results changed"; fi

# a spent time budget: the steps after it are SKIPPED rows, the exit is non-zero, the report written
run "$work/budget" env GPU_CHECK_REHEARSAL=1 GPU_CHECK_BUDGET_S=16 bash "$root/bench/gpu_check.sh" "$work/res2"
md2=$work/res2/gpu-rehearsal.md
if [ "$rc" != 0 ] && grep -q '^| profile-ngd-graph | SKIPPED (time budget of 16 s spent) |' "$md2" 2>/dev/null &&
   grep -q '^| build | ok |' "$md2"; then pass gpu_check_budget_skips_steps
else fail gpu_check_budget_skips_steps "exit $rc (want non-zero), or no SKIPPED row for the last step"; show "$md2" 8; fi

expect_exit gpu_check_rehearsal_bad_value 2 "GPU_CHECK_REHEARSAL=yes" env GPU_CHECK_REHEARSAL=yes bash "$root/bench/gpu_check.sh" "$work/res3"
if [ ! -e "$work/res3" ]; then pass gpu_check_bad_value_writes_nothing
else fail gpu_check_bad_value_writes_nothing "$work/res3 was created"; fi

if cmp -s "$md" "$work/out/gpu-rehearsal.md" && tar tzf "$work/out/gpu-rehearsal.tar.gz" > tar.list 2>/dev/null &&
   grep -q '^gpu-rehearsal/profile-rbm.log$' tar.list && grep -q '^gpu-rehearsal.md$' tar.list && ! grep -q '\.ckpt$' tar.list; then
  pass gpu_check_copy_to
else fail gpu_check_copy_to "GPU_CHECK_COPY_TO: report or .tar.gz missing, or the archive lacks the logs / holds checkpoints"; fi
if grep -q "^| deps | ok: this machine's own packages |" "$md"; then pass gpu_check_deps_step
else fail gpu_check_deps_step "no 'deps' row saying the machine's own packages were used"; fi

# ---- the real (not rehearsed) path, with a fake nvidia-smi that lists a GPU ---------------------
# No device answers, so every GPU step must fail and be recorded, the CPU steps pass, and the script
# must go on to the report: the lines only a real run executes (the header's nvidia-smi and nvcc
# queries, make test-gpu with NG_CUDA=1 and its skip rule, the sanitizer step) run here before a
# lent GPU sees them. Two quick tests stand for make test-gpu's seven.
mkdir -p fakegpu
cat > fakegpu/nvidia-smi <<'EOF2'
#!/bin/sh
case "$*" in
  *-L*) echo "GPU 0: NVIDIA Fake Test GPU (UUID: GPU-0)" ;;
  *--query-gpu=name,driver*) echo "NVIDIA Fake Test GPU, 000.00, 1 MiB, 1 MHz" ;;
  *--query-gpu=name*) echo "NVIDIA Fake Test GPU" ;;
esac
EOF2
chmod +x fakegpu/nvidia-smi
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  skip gpu_check_real_path_records_failures "no nvcc here: the real path refuses without the CUDA toolkit (tested in test_cli_profile.sh)"
else
run "$work/real" env PATH="$work/fakegpu:$PATH" GPU_CHECK_RESULTS="$work/realres" TEST_GPU_TESTS="test_update test_kernel_blocks" \
  bash "$root/bench/gpu_check.sh"
rmd=$work/realres/gpu-NVIDIA-Fake-Test-GPU.md
bad=
[ "$rc" != 0 ] || bad="$bad exit-0"
[ -s "$rmd" ] || bad="$bad no-report"
grep -q '^Device cuda:0: NVIDIA Fake Test GPU, 000.00' "$rmd" 2>/dev/null || bad="$bad header-device"
grep -qE '^Host: .*; nvcc [0-9]+\.[0-9]+\.$' "$rmd" 2>/dev/null || bad="$bad header-nvcc"
for s in deps build bench_rbm-cpu-sgd bench_net-cpu; do grep -qE "^\| $s \| ok" "$rmd" 2>/dev/null || bad="$bad $s-not-ok"; done
for s in test-gpu bench_rbm-cuda0-sgd profile-nag-graph; do grep -qE "^\| $s \| FAILED" "$rmd" 2>/dev/null || bad="$bad $s-not-failed"; done
grep -q 'skipped tests on a GPU machine' "$work/realres/gpu-NVIDIA-Fake-Test-GPU/test-gpu.log" 2>/dev/null || bad="$bad test-gpu-skip-rule"
grep -qE '^\| sanitizers \| (ok|FAILED|TIMED OUT|skipped: compute-sanitizer not found)' "$rmd" 2>/dev/null || bad="$bad sanitizers-row"
sed -n '/^## Failed steps/,$p' "$rmd" 2>/dev/null | grep -q '^bench_rbm-cuda0-sgd:$' || bad="$bad failed-section"
if [ -z "$bad" ]; then pass gpu_check_real_path_records_failures
else fail gpu_check_real_path_records_failures "$bad"; show "$work/real.err" 10; fi
fi

# ---- the configuration a lent GPU machine builds: no mpicc there, so NG_MPI=0 --------------------
# (host/comm/comm.c holds every NG_HAVE_MPI / NG_HAVE_NCCL branch; compiled here without them, with
# and without CUDA, warnings as errors)
bad=
for cuda in 1 0; do
  # (BUILD in the temp dir: make rewrites BUILD's flags stamp when the flags differ, which would
  # make the next plain make rebuild everything)
  flags=$(make -s -C "$root" NG_MPI=0 NG_CUDA=$cuda BUILD="$work/pc" --eval 'ngt-print-cflags: ; @echo $(CFLAGS)' ngt-print-cflags 2>/dev/null)
  case " $flags " in *NG_HAVE_MPI*|*NG_HAVE_NCCL*|"  ") bad="$bad cuda=$cuda:flags" ; continue ;; esac
  # shellcheck disable=SC2086
  (cd "$root" && gcc $flags -Werror -fsyntax-only host/comm/comm.c) > "nompi$cuda.err" 2>&1 || bad="$bad cuda=$cuda"
done
if [ -z "$bad" ]; then pass gpu_machine_build_without_mpi
else fail gpu_machine_build_without_mpi "host/comm/comm.c does not compile with NG_MPI=0:$bad"; show nompi1.err; show nompi0.err; fi

# ---- bench/gpu_deps.sh: the packages carried to a GPU machine without a registry ----------------
gd=$work/gd gp=$work/gp
if ! bash "$root/bench/gpu_deps.sh" fetch "$gd" > fetch.out 2> fetch.err; then
  skip gpu_deps_fetch "apt-get download failed here (no Debian registry reachable?): $(tail -1 fetch.err)"
else
  n=$(ls "$gd"/*.deb | wc -l)
  if [ "$n" = 11 ] && [ -s "$gd/SHA256SUMS" ]; then pass gpu_deps_fetch; else fail gpu_deps_fetch "$n packages (want 11)"; show fetch.err; fi
  # the carried path as gpu_check.sh takes it, the machine's own packages skipped
  out=$(cd "$root" && GPU_DEPS_SKIP_SYSTEM=1 GPU_DEPS_BUILD="$work/gb" bash bench/gpu_deps.sh ensure "$gd" "$gp" 2> "$work/ensure.err")
  rc=$?
  bad=
  for lib in libopenblas.so.0 liblapacke.so.3 libz.so.1; do
    grep -q "^deps-check: .*: $gp/.*/$lib\$" "$work/ensure.err" || bad="$bad $lib"
  done
  if [ "$rc" = 0 ] && [ "$out" = "export NG_DEPS_PREFIX=$gp" ] && [ -z "$bad" ] && grep -q 'LAPACKE and zlib work' "$work/ensure.err"; then
    pass gpu_deps_ensure_uses_carried_packages
  else fail gpu_deps_ensure_uses_carried_packages "exit $rc, stdout '$out', not loaded from $gp:${bad:- -}"; show "$work/ensure.err" 8; fi
  # what the loader resolves for the probe's libraries' own dependencies (DT_RPATH)
  bad=$(ldd "$work/gb/deps_probe" 2>/dev/null | grep -E 'lib(lapack|blas|gfortran|quadmath|tmglib)\.so' | grep -v "=> $gp/")
  if [ -x "$work/gb/deps_probe" ] && [ -z "$bad" ]; then pass gpu_deps_transitive_libraries_from_prefix
  else fail gpu_deps_transitive_libraries_from_prefix "loaded from elsewhere: $bad"; fi
  # without dpkg-deb (ar + tar): the same files, the same links (each into its own prefix)
  if GPU_DEPS_NO_DPKG=1 bash "$root/bench/gpu_deps.sh" unpack "$gd" "$work/gp_ar" > ar.out 2> ar.err &&
     diff <(cd "$gp" && find . -type f -exec sha256sum {} + | sort) <(cd "$work/gp_ar" && find . -type f -exec sha256sum {} + | sort) > ar.diff &&
     diff <(cd "$gp" && find . -type l -printf '%p %l\n' | sed "s|$gp|P|" | sort) \
          <(cd "$work/gp_ar" && find . -type l -printf '%p %l\n' | sed "s|$work/gp_ar|P|" | sort) >> ar.diff; then
    pass gpu_deps_unpack_without_dpkg
  else fail gpu_deps_unpack_without_dpkg "ar + tar unpacked something else than dpkg-deb"; show ar.err; show ar.diff; fi
  # a truncated package, a missing folder, the root as prefix: refused by name
  cp -r "$gd" "$work/gd_bad" && f=$(ls "$work"/gd_bad/libopenblas0-openmp_*.deb) && head -c 100000 "$f" > "$f.part" && mv "$f.part" "$f"
  expect_exit gpu_deps_corrupt_package 1 "does not match SHA256SUMS" bash "$root/bench/gpu_deps.sh" unpack "$work/gd_bad" "$work/gp_bad"
  if [ ! -e "$work/gp_bad" ]; then pass gpu_deps_corrupt_unpacks_nothing; else fail gpu_deps_corrupt_unpacks_nothing "$work/gp_bad was created"; fi
  expect_exit gpu_deps_missing_folder 1 "no carried packages: $work/none is missing" \
    env GPU_DEPS_SKIP_SYSTEM=1 GPU_DEPS_BUILD="$work/gb" bash "$root/bench/gpu_deps.sh" ensure "$work/none" "$work/gp_none"
  expect_exit gpu_deps_refuses_root 1 "refusing to unpack over the machine's root" bash "$root/bench/gpu_deps.sh" unpack "$gd" /
  expect_exit gpu_deps_usage 2 "usage:" bash "$root/bench/gpu_deps.sh" unpack "$gd"
fi

# nothing here may change the flags the build was made with (make rewrites build/flags-*.txt when a
# call's flags differ, and the next plain make then rebuilds everything)
if [ "$(cat "$root"/build/flags-*.txt 2>/dev/null | md5sum)" = "$stamps" ]; then pass gpu_check_leaves_build_flags
else fail gpu_check_leaves_build_flags "build/flags-*.txt changed: the next make would rebuild everything"; fi

echo "RESULT passed=$passed failed=$failed skipped=$skipped"
[ "$failed" = 0 ]
