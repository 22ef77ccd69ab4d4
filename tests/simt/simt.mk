# tests/simt/simt.mk: build rules of the SIMT emulator (included by the top Makefile; test-only).
# It builds, under $(BUILD)/simt:
#   libsimt.a           the emulator runtime and the cudart/cuBLAS/cuSOLVER/cuRAND shims (OpenBLAS,
#                       LAPACKE), compiled against the real CUDA headers
#   libnatgrad_simt.a   kernels/*.cu compiled by the host C++ compiler with -DNG_SIMT, plus every
#                       host/**/*.c object built with -DNG_HAVE_CUDA (the normal objects when the
#                       normal build already has NG_CUDA=1 and no SIMT_EXTRA_FLAGS are given)
#   tests/test_simt_*   the emulator's own tests (tests/simt/test_simt_*.cpp)
#   tests/test_backend, tests/test_rbm, ...
#                       every tests/test_*.c that calls ng_backend_cuda_init or ngt_open_backends, built against the
#                       emulator, so its CUDA half compares emulated CUDA with the CPU
# SIMT_TEST_BIN lists the test binaries for `make test-build`. It is empty when the CUDA headers,
# a C++ compiler, OpenBLAS or LAPACKE are missing. SIMT_EXTRA_FLAGS (e.g. -fsanitize=address)
# applies to every emulated object.

SIMT_DIR := tests/simt
SIMT_BUILD := $(BUILD)/simt
SIMT_CUDA_INC := $(CUDA_HOME)/include
SIMT_HAVE_HEADERS := $(shell for h in cuda_runtime.h cublas_v2.h cusolverDn.h curand.h; do \
    test -f $(SIMT_CUDA_INC)/$$h || exit 1; done && echo yes || echo no)
SIMT_HAVE_CXX := $(shell command -v $(CXX) >/dev/null 2>&1 && echo yes || echo no)
SIMT_ENABLED := $(if $(filter yesyesyesyes,$(SIMT_HAVE_HEADERS)$(SIMT_HAVE_CXX)$(HAVE_OPENBLAS)$(HAVE_LAPACKE)),yes,no)

SIMT_CXXFLAGS := -std=c++17 -D_GNU_SOURCE -DNG_SIMT -Wall -Wextra -Wno-unused-parameter -fopenmp \
    $(OPT) -g -I$(SIMT_DIR) -Ikernels -Iinclude -Ihost -I$(SIMT_CUDA_INC) -I$(OPENBLAS_INC) \
    $(SIMT_EXTRA_FLAGS)
SIMT_CFLAGS := $(CFLAGS_COMMON) $(EXTRA_CFLAGS) -DNG_HAVE_CUDA -I$(SIMT_CUDA_INC) $(SIMT_EXTRA_FLAGS)
SIMT_LDFLAGS := $(SIMT_EXTRA_FLAGS)

SIMT_LIB_SRC := $(addprefix $(SIMT_DIR)/,simt_runtime.cpp simt_memory.cpp simt_graph.cpp shim_cudart.cpp \
    shim_cublas.cpp shim_cusolver.cpp shim_curand.cpp)
# The NCCL shim (on MPI) when MPI is built in and nccl.h exists: the emulated objects then compile
# host/comm's NCCL path (-DNG_HAVE_NCCL), which `mpirun -np 2 build/simt/tests/test_comm` runs.
SIMT_HAVE_NCCL := $(if $(and $(filter 1,$(NG_MPI)),$(wildcard $(SIMT_CUDA_INC)/nccl.h)),yes,no)
ifeq ($(SIMT_HAVE_NCCL),yes)
SIMT_LIB_SRC += $(SIMT_DIR)/shim_nccl.cpp
SIMT_CXXFLAGS += $(MPI_CFLAGS)
SIMT_CFLAGS += -DNG_HAVE_NCCL
endif
SIMT_LIB_OBJ := $(SIMT_LIB_SRC:$(SIMT_DIR)/%.cpp=$(SIMT_BUILD)/obj/lib/%.o)
SIMT_CU_OBJ := $(CU_SRC:kernels/%.cu=$(SIMT_BUILD)/obj/kernels/%.o)
ifeq ($(NG_CUDA)$(SIMT_EXTRA_FLAGS)$(HAVE_NCCL),1$(SIMT_HAVE_NCCL))
SIMT_HOST_OBJ := $(HOST_OBJ)
SIMT_CLI_OBJ := $(CLI_OBJ)
else
SIMT_HOST_OBJ := $(HOST_SRC:%.c=$(SIMT_BUILD)/obj/%.o)
SIMT_CLI_OBJ := $(CLI_SRC:%.c=$(SIMT_BUILD)/obj/%.o)
endif

SIMT_OWN_TEST_SRC := $(sort $(wildcard $(SIMT_DIR)/test_simt_*.cpp))
SIMT_OWN_TEST_BIN := $(SIMT_OWN_TEST_SRC:$(SIMT_DIR)/%.cpp=$(SIMT_BUILD)/tests/%)
# Every generic test that tries the CUDA backend (test_backend.c, test_rbm.c, ...; the multi-rank ones
# through tests/ranks.h ngt_ranks_cuda or ngt_ranks_open_nccl): here its CUDA
# half runs on the emulator and is compared with the CPU (directly or through tests/backends.h).
SIMT_GENERIC_TEST_SRC := $(sort $(wildcard tests/test_backend.c tests/test_rbm.c) \
    $(shell grep -lE "ng_backend_cuda_init|ngt_open_backends|ngt_ranks_cuda|ngt_ranks_open_nccl" tests/test_*.c 2>/dev/null))
SIMT_GENERIC_TEST_BIN := $(SIMT_GENERIC_TEST_SRC:tests/%.c=$(SIMT_BUILD)/tests/%)

ifeq ($(SIMT_ENABLED),yes)
SIMT_TEST_BIN := $(SIMT_OWN_TEST_BIN) $(SIMT_GENERIC_TEST_BIN)
else
SIMT_TEST_BIN :=
endif

SIMT_LIBS := $(SIMT_BUILD)/libnatgrad_simt.a $(SIMT_BUILD)/libsimt.a

$(SIMT_BUILD)/obj/lib/%.o: $(SIMT_DIR)/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(SIMT_CXXFLAGS) -MMD -MP -c $< -o $@

$(SIMT_BUILD)/libsimt.a: $(SIMT_LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SIMT_BUILD)/obj/kernels/%.o: kernels/%.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(SIMT_CXXFLAGS) -MMD -MP -x c++ -c $< -o $@

$(SIMT_BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(SIMT_CFLAGS) -MMD -MP -c $< -o $@
$(SIMT_BUILD)/obj/host/backend/cpu.o: SIMT_CFLAGS += $(CPU_BACKEND_CFLAGS)

$(SIMT_BUILD)/libnatgrad_simt.a: $(SIMT_HOST_OBJ) $(SIMT_CU_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SIMT_BUILD)/obj/tests/%.o: $(SIMT_DIR)/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(SIMT_CXXFLAGS) -Itests -MMD -MP -c $< -o $@

$(SIMT_BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(SIMT_CFLAGS) -Itests -MMD -MP -c $< -o $@

$(SIMT_BUILD)/tests/%: $(SIMT_BUILD)/obj/tests/%.o $(SIMT_LIBS)
	@mkdir -p $(dir $@)
	$(CXX) $(SIMT_LDFLAGS) $< $(SIMT_LIBS) $(LDLIBS) -o $@

# The natgrad CLI and the bench programs on the emulator: bench/gpu_check.sh's rehearsal
# (GPU_CHECK_REHEARSAL=1) runs its GPU steps with them, so the script's commands run in `make test`
# (tests/test_gpu_check.sh) before a real GPU ever sees them.
SIMT_GPU_CHECK_BENCH := bench_rbm bench_net bench_factors bench_tn kernel_lab
ifeq ($(SIMT_ENABLED),yes)
SIMT_GPU_CHECK_BIN := $(SIMT_BUILD)/natgrad $(SIMT_GPU_CHECK_BENCH:%=$(SIMT_BUILD)/bench/%)
else
SIMT_GPU_CHECK_BIN :=
endif

$(SIMT_BUILD)/natgrad: $(SIMT_CLI_OBJ) $(SIMT_LIBS)
	@mkdir -p $(dir $@)
	$(CXX) $(SIMT_LDFLAGS) $(SIMT_CLI_OBJ) $(SIMT_LIBS) $(LDLIBS) -o $@

.SECONDARY: $(SIMT_GPU_CHECK_BENCH:%=$(SIMT_BUILD)/obj/bench/%.o)
$(SIMT_BUILD)/bench/%: $(SIMT_BUILD)/obj/bench/%.o $(SIMT_LIBS)
	@mkdir -p $(dir $@)
	$(CXX) $(SIMT_LDFLAGS) $< $(SIMT_LIBS) $(LDLIBS) -o $@

.PHONY: simt-build
simt-build: $(SIMT_TEST_BIN) $(SIMT_GPU_CHECK_BIN)

-include $(SIMT_LIB_OBJ:.o=.d) $(SIMT_CU_OBJ:.o=.d) $(SIMT_HOST_OBJ:.o=.d) \
    $(SIMT_OWN_TEST_SRC:$(SIMT_DIR)/%.cpp=$(SIMT_BUILD)/obj/tests/%.d) \
    $(SIMT_GENERIC_TEST_SRC:tests/%.c=$(SIMT_BUILD)/obj/tests/%.d) \
    $(SIMT_CLI_OBJ:.o=.d) $(SIMT_GPU_CHECK_BENCH:%=$(SIMT_BUILD)/obj/bench/%.d)
