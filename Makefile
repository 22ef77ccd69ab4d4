# natgrad Makefile. `make` builds build/natgrad and build/libnatgrad.a; `make run` prepares data and
# runs the main job; `make test` builds and runs every test and ends with "N passed, M failed".
# NG_CUDA=0|1 forces the CUDA backend off/on (default: on when nvcc is found).
# Missing Debian packages are installed by `make deps` (run by run/test) when root; otherwise the
# exact apt-get command is printed and the build stops.

SHELL := /bin/bash
comma := ,
# `make` alone builds `all` (the flags-stamp rule below would otherwise be the first target)
.DEFAULT_GOAL := all
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
CXX ?= g++
ifeq ($(origin CXX),default)
CXX := g++
endif

# ---- detection ---------------------------------------------------------------------------
CUDA_HOME ?= /usr/local/cuda
NVCC := $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
ifeq ($(NVCC),)
NG_CUDA ?= 0
else
NG_CUDA ?= 1
endif
ifeq ($(NG_CUDA),1)
ifeq ($(NVCC),)
$(error NG_CUDA=1 but nvcc was not found (looked in PATH and $(CUDA_HOME)/bin); install the CUDA toolkit or use NG_CUDA=0)
endif
NVCC_VERSION := $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
endif

# OpenBLAS (the OpenMP build) through pkg-config, else the Debian multiarch paths of this compiler
# (x86_64-linux-gnu, aarch64-linux-gnu, ...), so GPU hosts of either architecture build.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
# NG_DEPS_PREFIX=DIR: OpenBLAS, LAPACKE and zlib from the Debian packages unpacked under DIR by
# bench/gpu_deps.sh (a lent GPU machine reaches no package registry), linked with DT_RPATH so that
# their own dependencies (liblapack.so.3, libgfortran.so.5, ...) load from DIR too.
NG_DEPS_PREFIX ?=
ifneq ($(NG_DEPS_PREFIX),)
DEPS_PREFIX := $(abspath $(NG_DEPS_PREFIX))
# the packages' own multiarch folder (a compiler that prints none, e.g. not Debian's, still finds it)
DEPS_ARCH := $(or $(notdir $(patsubst %/,%,$(dir $(firstword $(wildcard $(DEPS_PREFIX)/usr/lib/*/openblas-openmp))))),$(MULTIARCH))
OPENBLAS_INC := $(DEPS_PREFIX)/usr/include/$(DEPS_ARCH)/openblas-openmp
OPENBLAS_LIB := $(DEPS_PREFIX)/usr/lib/$(DEPS_ARCH)/openblas-openmp
DEPS_INC := $(DEPS_PREFIX)/usr/include
DEPS_LIBDIRS := $(DEPS_PREFIX)/usr/lib/$(DEPS_ARCH) $(DEPS_PREFIX)/lib/$(DEPS_ARCH)
DEPS_CFLAGS := -I$(DEPS_INC)
DEPS_LDFLAGS := $(addprefix -L,$(DEPS_LIBDIRS)) -Wl,--disable-new-dtags $(addprefix -Wl$(comma)-rpath$(comma),$(DEPS_LIBDIRS))
else
PKG_OPENBLAS_INC := $(patsubst -I%,%,$(filter -I%,$(shell pkg-config --cflags openblas 2>/dev/null)))
PKG_OPENBLAS_LIB := $(patsubst -L%,%,$(filter -L%,$(shell pkg-config --libs openblas 2>/dev/null)))
OPENBLAS_INC := $(patsubst %/,%,$(if $(wildcard $(PKG_OPENBLAS_INC)/cblas.h),$(PKG_OPENBLAS_INC),/usr/include/$(MULTIARCH)/openblas-openmp))
OPENBLAS_LIB := $(patsubst %/,%,$(if $(PKG_OPENBLAS_LIB),$(PKG_OPENBLAS_LIB),/usr/lib/$(MULTIARCH)/openblas-openmp))
DEPS_INC := /usr/include
DEPS_CFLAGS :=
DEPS_LDFLAGS :=
endif
HAVE_OPENBLAS := $(shell test -f $(OPENBLAS_INC)/cblas.h && echo yes || echo no)
HAVE_LAPACKE := $(shell test -f $(DEPS_INC)/lapacke.h && echo yes || echo no)
HAVE_ZLIB := $(shell test -f $(DEPS_INC)/zlib.h && echo yes || echo no)
HAVE_OPENMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo yes || echo no)
HAVE_GNUPLOT := $(shell command -v gnuplot >/dev/null 2>&1 && echo yes || echo no)
# Open MPI (optional): `mpirun -np N natgrad ...` data-parallel runs (host/comm/). Without it the
# binary builds and runs single-process. NG_MPI=0 forces it off.
MPICC := $(shell command -v mpicc 2>/dev/null)
MPI_CFLAGS := $(if $(MPICC),$(shell $(MPICC) --showme:compile 2>/dev/null))
MPI_LIBS := $(if $(MPICC),$(shell $(MPICC) --showme:link 2>/dev/null))
MPI_LIBDIR := $(patsubst -L%,%,$(filter -L%,$(MPI_LIBS)))
NG_MPI ?= $(if $(and $(MPI_LIBS),$(shell echo '\#include <mpi.h>' | $(CC) $(MPI_CFLAGS) -E -x c - >/dev/null 2>&1 && echo ok)),1,0)
HAVE_MPI := $(if $(filter 1,$(NG_MPI)),yes,no)
DEB_PACKAGES := libopenblas-openmp-dev liblapacke-dev zlib1g-dev gnuplot-nox libopenmpi-dev openmpi-bin

# ---- flags -------------------------------------------------------------------------------
BUILD := build
OPT ?= -O2
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp $(OPT) -g \
    -Iinclude -Ikernels -Ihost -I$(OPENBLAS_INC) $(DEPS_CFLAGS)
ifeq ($(NG_MPI),1)
CFLAGS_COMMON += -DNG_HAVE_MPI $(MPI_CFLAGS)
endif
CFLAGS := $(CFLAGS_COMMON) $(EXTRA_CFLAGS)
LDLIBS := -L$(OPENBLAS_LIB) -Wl,-rpath,$(OPENBLAS_LIB) $(DEPS_LDFLAGS) -lopenblas -llapacke -lz -lm -fopenmp -lpthread
ifeq ($(NG_MPI),1)
LDLIBS += $(MPI_LIBS) $(addprefix -Wl$(comma)-rpath$(comma),$(MPI_LIBDIR))
endif
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcusolver -lcurand -lcudart
# sm_80 and sm_90 machine code, plus compute_90 PTX that newer GPUs JIT-compile
NVCC_ARCH := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
    -gencode arch=compute_90,code=compute_90
NVCCFLAGS := -O3 -std=c++17 $(NVCC_ARCH) -Iinclude -Ikernels -DNG_NVTX \
    -Werror all-warnings -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-Werror -Xptxas -v

HOST_SRC := $(sort $(wildcard host/core/*.c host/backend/*.c host/data/*.c host/models/*.c \
    host/optim/*.c host/eval/*.c host/comm/*.c))
CLI_SRC := $(sort $(wildcard host/cli/*.c))
CU_SRC := $(sort $(wildcard kernels/*.cu))
# objects of the two configurations live apart, so switching NG_CUDA never mixes them
OBJ := $(BUILD)/obj$(NG_CUDA)
HOST_OBJ := $(HOST_SRC:%.c=$(OBJ)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(OBJ)/%.o)
# rebuilt whenever the configuration changes, so the library and binary follow NG_CUDA
CONFIG_STAMP := $(BUILD)/config-$(NG_CUDA).stamp

# NCCL (CUDA builds with MPI, when nccl.h and libnccl are found): GPU collectives of host/comm/.
# Without it a CUDA build reduces through host copies over MPI.
HAVE_NCCL := $(if $(and $(filter 1,$(NG_CUDA)),$(filter 1,$(NG_MPI)),$(wildcard $(CUDA_HOME)/include/nccl.h),$(wildcard $(CUDA_HOME)/lib64/libnccl.so $(CUDA_HOME)/lib/libnccl.so /usr/lib/$(MULTIARCH)/libnccl.so)),yes,no)
ifeq ($(NG_CUDA),1)
CU_OBJ := $(CU_SRC:%.cu=$(OBJ)/%.o)
CFLAGS += -DNG_HAVE_CUDA -DNG_NVTX -I$(CUDA_HOME)/include
ifeq ($(HAVE_NCCL),yes)
CFLAGS += -DNG_HAVE_NCCL
CUDA_LDLIBS += -lnccl
endif
LIB_LDLIBS := $(LDLIBS) $(CUDA_LDLIBS) -lstdc++
else
CU_OBJ :=
LIB_LDLIBS := $(LDLIBS)
endif

# Every object depends on a file holding the flags it was built with, rewritten only when they
# change, so `make OPT=-O0` (or another CC, EXTRA_CFLAGS, CUDA setting) rebuilds what it affects.
FLAGS_STAMP := $(BUILD)/flags-$(NG_CUDA).txt
FLAGS_NOW := $(CC) $(CFLAGS) | $(NVCC) $(NVCCFLAGS) | $(LIB_LDLIBS)
FLAGS_OLD := $(shell cat $(FLAGS_STAMP) 2>/dev/null)
ifneq ($(strip $(FLAGS_NOW)),$(strip $(FLAGS_OLD)))
$(shell mkdir -p $(BUILD) && printf '%s\n' '$(FLAGS_NOW)' > $(FLAGS_STAMP))
endif

$(FLAGS_STAMP): ;

TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps deps-check config run test test-gpu bench bench-rbm bench-kfac-cost bench-ais-coverage prong-figure2 prong-figure3 bench-prong bench-whiten bench-net bench-fang-table1 clean data-mnist data-fashion \
    kfac-autoencoders kfac-figure9 kfac-figures bench-factors bench-tn tn-figure3 tn-figure1 optimizer-table bench-dist \
    data-curves-picture bench-profile kernel-lab bench-launch-counts \
    toy-figure1 ica-bench rbm-recipes recipes-mnist conv-fashion
all: config $(BUILD)/natgrad $(BUILD)/libnatgrad.a

config:
	@echo "natgrad build: cuda: $(if $(filter 1,$(NG_CUDA)),yes (nvcc $(NVCC_VERSION), sm_80 sm_90 + compute_90 PTX),no) | openblas: $(HAVE_OPENBLAS) | lapacke: $(HAVE_LAPACKE) | zlib: $(HAVE_ZLIB) | openmp: $(HAVE_OPENMP) | gnuplot: $(HAVE_GNUPLOT) | mpi: $(HAVE_MPI) | nccl: $(HAVE_NCCL)"

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >$(BUILD)-deps.log 2>&1 \
	    || { echo "deps: apt-get failed, see $(BUILD)-deps.log"; exit 1; }; \
	  else echo "deps: missing packages; run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi; \
	else echo "deps: all Debian packages present"; fi

# Can this machine build and run natgrad's host code? A probe (tests/deps_probe.c) compiled and
# linked with the build's flags calls OpenBLAS, LAPACKE and zlib once each and says which library
# file each came from (bench/gpu_check.sh runs it first; NG_DEPS_PREFIX=DIR checks unpacked packages).
deps-check:
	@mkdir -p $(BUILD)
	@$(CC) $(CFLAGS) tests/deps_probe.c $(LDLIBS) -ldl -o $(BUILD)/deps_probe 2> $(BUILD)/deps_probe.log || \
	  { echo "deps-check: the probe does not build (OpenBLAS headers in $(OPENBLAS_INC): $(HAVE_OPENBLAS), lapacke.h: $(HAVE_LAPACKE), zlib.h: $(HAVE_ZLIB)):"; \
	    head -5 $(BUILD)/deps_probe.log; echo "deps-check: install them with 'make deps', or unpack carried packages (bash bench/gpu_deps.sh) and pass NG_DEPS_PREFIX"; exit 1; }
	@$(BUILD)/deps_probe

$(OBJ)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The CPU backend's elementwise loops vectorise only when GCC may evaluate both arms of a select
# (ng_expf's clamp, ng_sigmoid): -fno-trapping-math says no program here reads floating-point
# exception flags. It changes no value (tests/test_philox.c, test_backend compare the bits).
CPU_BACKEND_CFLAGS := -fno-trapping-math
$(OBJ)/host/backend/cpu.o: CFLAGS += $(CPU_BACKEND_CFLAGS)

$(CONFIG_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/config-*.stamp && touch $@

# nvcc writes the header dependencies of each kernel object (-MD -MF) like gcc does for C
$(OBJ)/kernels/%.o: kernels/%.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MD -MF $(@:.o=.d) -c $< -o $@ 2> $(@:.o=.ptxas.txt) || { cat $(@:.o=.ptxas.txt); exit 1; }
	@grep -E "spill stores|spill loads" $(@:.o=.ptxas.txt) | grep -vE " 0 bytes spill stores, 0 bytes spill loads" | sed 's/^/warning: ptxas spill in $(notdir $<): /' || true

$(BUILD)/libnatgrad.a: $(HOST_OBJ) $(CU_OBJ) $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(HOST_OBJ) $(CU_OBJ)

$(BUILD)/natgrad: $(CLI_OBJ) $(BUILD)/libnatgrad.a
	$(CC) $(CFLAGS) $(CLI_OBJ) $(BUILD)/libnatgrad.a $(LIB_LDLIBS) -o $@

# a test binary also depends on the test headers it includes (tests/backends.h, tests/cnn_ref.h, ...):
# recorded in BUILD/tests/test_x.d (run.sh skips *.d)
$(BUILD)/tests/%: tests/%.c tests/harness.h $(BUILD)/libnatgrad.a $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -MMD -MP -MT $@ -MF $@.d $< $(BUILD)/libnatgrad.a $(LIB_LDLIBS) -o $@

-include $(HOST_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(wildcard $(BUILD)/tests/test_*.d)

# ---- tests -------------------------------------------------------------------------------
-include tests/simt/simt.mk

test: deps
	@bash data/prepare.sh mnist > $(BUILD)-prepare.log 2>&1 || echo "test: MNIST could not be prepared (see $(BUILD)-prepare.log); tests that need it will skip"
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory test-build
	@bash tests/ptxas_report.sh $(OBJ)
	@bash tests/run.sh $(BUILD)

# The data-layer and file-format tests again (test_idx, test_checkpoint_format, test_png,
# test_curves), with the data and core sources built under ASan + UBSan; run.sh picks the binaries
# up like any test_*. Leak checking stays on (it works here); ASAN_OPTIONS=detect_leaks=0 turns it
# off where ptrace is restricted.
ASAN_TESTS := test_idx test_checkpoint_format test_png test_curves
ASAN_TEST_BIN := $(ASAN_TESTS:%=$(BUILD)/tests/%_asan)
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_SRC := $(filter host/core/%.c host/data/%.c,$(HOST_SRC))
$(ASAN_TEST_BIN): $(BUILD)/tests/%_asan: tests/%.c tests/harness.h $(ASAN_SRC) $(wildcard include/natgrad/*.h) $(BUILD)/libnatgrad.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -Itests $< $(ASAN_SRC) $(BUILD)/libnatgrad.a $(LIB_LDLIBS) -o $@

test-build: $(TEST_BIN) $(SIMT_TEST_BIN) $(SIMT_GPU_CHECK_BIN) $(ASAN_TEST_BIN)

# The backend conformance, RBM, evaluation, FANG, checkpoint, update-rule and kernel launch-shape tests on a real GPU (NG_CUDA=1 build), then again under
# compute-sanitizer (memcheck, racecheck, synccheck) when it is installed. A skipped test fails
# here: on a GPU machine the CUDA half must run. The one skip allowed is a CPU test's, on a host CPU
# without AVX-512 (TEST_GPU_CPU_SKIP: test_backend's hand-written AVX-512 loops; their compiler-clone
# twins still run). Without a GPU it says so and succeeds.
TEST_GPU_CPU_SKIP := this CPU has no AVX-512
TEST_GPU_TESTS ?= $(patsubst tests/%.c,%,$(wildcard tests/test_backend.c tests/test_rbm.c tests/test_eval.c tests/test_fang.c tests/test_checkpoint.c tests/test_update.c tests/test_kernel_blocks.c))
# TEST_GPU_REHEARSAL=1 (bench/gpu_check.sh's rehearsal, no GPU): the same recipe on the emulated
# copies of TEST_GPU_TESTS (a subset may be named), without the nvidia-smi check or compute-sanitizer.
# TEST_GPU_SANITIZE=1 (default) runs the tests then compute-sanitizer; 0 only the tests; only: only
# compute-sanitizer (gpu_check.sh runs the tests first and the slow sanitizer passes last)
TEST_GPU_SANITIZE ?= 1
ifeq ($(TEST_GPU_REHEARSAL),1)
GPU_TEST_BIN := $(TEST_GPU_TESTS:%=$(SIMT_BUILD)/tests/%)
GPU_TEST_WHERE := on the SIMT emulator (rehearsal)
else
GPU_TEST_BIN := $(TEST_GPU_TESTS:%=$(BUILD)/tests/%)
GPU_TEST_WHERE := on the GPU
endif
COMPUTE_SANITIZER := $(if $(filter 1,$(TEST_GPU_REHEARSAL)),,$(shell command -v compute-sanitizer 2>/dev/null || { test -x $(CUDA_HOME)/bin/compute-sanitizer && echo $(CUDA_HOME)/bin/compute-sanitizer; }))
test-gpu:
	@if [ "$(TEST_GPU_REHEARSAL)" != 1 ] && ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then \
	  echo "test-gpu: needs an NVIDIA GPU with its driver (nvidia-smi lists none here); nothing run."; \
	  echo "test-gpu: 'make test' covers the CUDA backend on this machine through the SIMT emulator."; \
	  exit 0; fi; \
	case "$(TEST_GPU_SANITIZE)" in 0|1|only) ;; *) echo "test-gpu: TEST_GPU_SANITIZE=$(TEST_GPU_SANITIZE): use 1 (tests, then compute-sanitizer), 0 (tests only) or only"; exit 2 ;; esac; \
	$(MAKE) --no-print-directory $(if $(filter 1,$(TEST_GPU_REHEARSAL)),,NG_CUDA=1) all $(GPU_TEST_BIN) || exit 1; \
	mkdir -p $(BUILD)/test-logs; fail=0; \
	[ "$(TEST_GPU_SANITIZE)" = only ] || for t in $(GPU_TEST_BIN); do \
	  log=$(BUILD)/test-logs/gpu-$$(basename $$t).log; \
	  echo "== $$t $(GPU_TEST_WHERE)"; $$t > $$log 2>&1; rc=$$?; grep -E '^(PASS|FAIL|SKIP|RESULT)' $$log; \
	  if [ $$rc != 0 ]; then echo "test-gpu: $$t failed (exit $$rc), see $$log"; fail=1; fi; \
	  if grep '^SKIP' $$log | grep -qv "$(TEST_GPU_CPU_SKIP)"; then echo "test-gpu: $$t skipped tests on a GPU machine"; fail=1; fi; \
	done; \
	if [ "$(TEST_GPU_REHEARSAL)" = 1 ]; then echo "test-gpu: rehearsal: compute-sanitizer not run"; \
	elif [ "$(TEST_GPU_SANITIZE)" = 0 ]; then echo "test-gpu: TEST_GPU_SANITIZE=0: compute-sanitizer not run"; \
	elif [ -n "$(COMPUTE_SANITIZER)" ]; then \
	  for tool in memcheck racecheck synccheck; do for t in $(GPU_TEST_BIN); do \
	    log=$(BUILD)/test-logs/gpu-$$tool-$$(basename $$t).log; \
	    echo "== compute-sanitizer --tool $$tool $$t"; \
	    if $(COMPUTE_SANITIZER) --tool $$tool --error-exitcode 1 $$t > $$log 2>&1; then echo "   clean"; \
	    else echo "test-gpu: compute-sanitizer $$tool reports errors for $$t, see $$log"; tail -20 $$log; fail=1; fi; \
	  done; done; \
	else echo "test-gpu: compute-sanitizer not found (PATH, $(CUDA_HOME)/bin); sanitizer runs skipped"; fi; \
	if [ $$fail = 0 ]; then echo "test-gpu: all passed"; else echo "test-gpu: FAILED"; fi; exit $$fail

# ---- main job and benchmarks -------------------------------------------------------------
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# tests/test_bench_args.sh checks every bench program's command line, so `make test` builds them
test-build: $(BENCH_BIN)
$(BUILD)/bench/%: bench/%.c $(BUILD)/libnatgrad.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libnatgrad.a $(LIB_LDLIBS) -o $@

bench-ais-coverage: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench/ais_coverage
	@bash bench/ais_coverage.sh $(BUILD)

# THREADS=1: natgrad and scikit-learn on one thread each; REPS=R interleaved natgrad/sklearn pairs
bench-rbm: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_rbm
	@THREADS=$(THREADS) REPS=$(REPS) bash bench/bench_rbm.sh $(BUILD)

# MNIST autoencoder step time next to PyTorch (installs python3-torch with apt-get when root and missing)
bench-net: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_net
	@bash bench/bench_net.sh $(BUILD)

TABLE1_HIDDEN ?= 20
bench-fang-table1: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/fang_table1
	@bash bench/fang_table1.sh $(BUILD) --hidden $(TABLE1_HIDDEN)

# one K-FAC iteration against one NAG iteration at equal m, several m (issue target: <= 1.5x)
bench-kfac-cost: deps
	@$(MAKE) --no-print-directory all
	@bash bench/kfac_cost.sh $(if $(KFAC_COST_M),--m "$(KFAC_COST_M)")

bench-fang-figure3: deps
	@$(MAKE) --no-print-directory all
	@bash bench/fang_figure3.sh $(BUILD)

# what the profiling ranges cost, off and on (natgrad/profile.h)
bench-profile: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_profile
	@bash bench/bench_profile.sh $(BUILD)

# device calls per NAG update of the curves autoencoder, eager and --cuda-graph (emulated CUDA; exact counts)
bench-launch-counts: deps
	@$(MAKE) --no-print-directory $(BUILD)/simt/tests/test_graph
	@bash bench/launch_counts.sh $(BUILD)

# the Philox-driven families variant by variant, checked against scalar references, and every custom
# kernel family's block-shape sweep (bench/kernel_lab.c); the sweep's checks also run against the
# tests/simt emulator (build/simt/bench/kernel_lab) when it can be built
kernel-lab: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/kernel_lab $(if $(filter yes,$(SIMT_ENABLED)),$(SIMT_BUILD)/bench/kernel_lab)
	@bash bench/kernel_lab.sh $(BUILD)
$(BUILD)/bench/kernel_lab $(SIMT_BUILD)/obj/bench/kernel_lab.o: bench/kernel_lab_families.h kernels/ng_kernels.h
$(BENCH_BIN) $(SIMT_BUILD)/obj/bench/kernel_lab.o: bench/bench_args.h

# im2col + gemm against a direct convolution on the CPU, the Fashion-MNIST conv shapes (bench/bench_conv.c)
.PHONY: bench-conv
bench-conv: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_conv
	@bash bench/bench_conv.sh $(BUILD)

bench-factors: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_factors
	@bash bench/bench_factors.sh $(BUILD)

# K-FAC reproductions (section 13): figures 10 / 11 with the per-iteration cost, and figure 9
KFAC_MINUTES ?= 8
kfac-autoencoders: deps
	@$(MAKE) --no-print-directory all
	@bash bench/kfac_autoencoders.sh --minutes $(KFAC_MINUTES)

TN_MINUTES ?= 10
tn-figure3: deps
	@$(MAKE) --no-print-directory all
	@bash bench/tn_figure3.sh --minutes $(TN_MINUTES)

tn-figure1: deps
	@$(MAKE) --no-print-directory all
	@bash bench/tn_figure1.sh --minutes $(TN_MINUTES)

bench-whiten: deps
	@$(MAKE) --no-print-directory all
	@bash bench/bench_whiten.sh $(BUILD)

prong-figure2: deps
	@$(MAKE) --no-print-directory all
	@bash bench/prong_figure2.sh

PRONG_STEPS ?= 500
prong-figure3: deps
	@$(MAKE) --no-print-directory all
	@bash bench/prong_figure3.sh --steps $(PRONG_STEPS)

# PRONG vs SGD per update, interleaved in one process (BENCH_PRONG_T: the T values, BENCH_PRONG_ROUNDS)
bench-prong: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_prong
	@bash bench/bench_prong.sh $(BUILD)

OPT_TABLE_MINUTES ?= 5
optimizer-table: deps
	@$(MAKE) --no-print-directory all
	@bash bench/optimizer_table.sh --minutes $(OPT_TABLE_MINUTES)

# PRONG section 4.3's conv comparison (SGD, batch norm, PRONG, PRONG+) on Fashion-MNIST
CONV_STEPS ?= 120
conv-fashion: deps
	@$(MAKE) --no-print-directory all
	@bash bench/conv_fashion.sh --steps $(CONV_STEPS)

# data parallelism on the CPU backend: all-reduce times, 1 and 2 ranks, the 8-GPU cost model
bench-dist: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_comm
	@bash bench/dist_bench.sh $(BUILD)

bench-tn: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/bench_tn
	@bash bench/bench_tn.sh $(BUILD)

# Sohl-Dickstein (2012) Figure 1: the 2-D Gaussian toy in closed form (a second)
toy-figure1:
	@$(MAKE) --no-print-directory all
	@bash bench/toy_figure1.sh

# linear ICA: the W^T W rule against the plain gradient (float64, seconds of CPU)
ica-bench:
	@bash bench/ica.sh

# Sohl-Dickstein's diagonal metrics for RBMs next to SGD, centering and FANG (exact log-likelihoods)
rbm-recipes:
	@$(MAKE) --no-print-directory all
	@bash bench/rbm_recipes.sh

# Sohl-Dickstein's recipes on the MNIST autoencoder at equal updates
recipes-mnist: deps
	@$(MAKE) --no-print-directory all
	@bash bench/recipes_mnist.sh

kfac-figure9: deps
	@$(MAKE) --no-print-directory all
	@bash bench/kfac_figure9.sh

# K-FAC Figures 2, 3, 5, 6 (Martens & Grosse 2015): exact Fisher vs its Kronecker-factored approximations
kfac-figures: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/kfac_fisher_figures
	@bash bench/kfac_fisher_figures.sh $(BUILD)

# the float64 code of the figures, shared by the program and its test
$(BUILD)/bench/kfac_fisher_figures $(BUILD)/tests/test_kfac_fisher: bench/kfac_fisher.h

bench: bench-rbm bench-net bench-fang-figure3 bench-fang-table1

run: deps
	@$(MAKE) --no-print-directory all
	@bash data/prepare.sh mnist
	@bash bench/run_main.sh

data-mnist:
	@bash data/prepare.sh mnist

data-fashion:
	@bash data/prepare.sh fashion-mnist

# data/curves_like_samples.png: 64 images of the generated curves-like set (a substitute for CURVES;
# host/data/curves.c); test_curves fails while the committed picture differs from the generator's
data-curves-picture:
	@$(MAKE) --no-print-directory all $(BUILD)/bench/curves_samples
	@$(BUILD)/bench/curves_samples data/curves_like_samples.png

clean:
	rm -rf $(BUILD)
