# `make` builds what a CPU machine can build: the cpu backend and ./vllmd.
# `make test` runs every test on the cpu backend, then a one-minute soak of the daemon, and builds
# libvllmd_cuda.so where nvcc is. `make cuda` builds libvllmd_cuda.so (needs nvcc, not cuBLAS).
BUN      := node_modules/.bin/bun
CXX      ?= g++
CXXFLAGS ?= -O3 -std=c++17 -fPIC -fopenmp -Wall -Wextra -fvisibility=hidden
BUILD    := build
CPU_SRCS := $(wildcard cpu/*.cpp common/*.cpp)
CPU_HDRS := $(wildcard cpu/*.h common/*.h) include/vllmd.h
TS_SRCS  := $(shell find src -name '*.ts' 2>/dev/null)
# The soak `make test` ends with (bench/soak.ts): hostile and careless clients against ./vllmd.
SOAK_SECONDS ?= 60

.PHONY: all test deps cpu cuda cuda-if-nvcc compile clean
all: vllmd

deps: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

cpu: $(BUILD)/libvllmd_cpu.so
$(BUILD)/libvllmd_cpu.so: $(CPU_SRCS) $(CPU_HDRS)
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -Iinclude -shared -o $@ $(CPU_SRCS)
	cp $@ libvllmd_cpu.so

# The CUDA backend (on a machine with nvcc; cuBLAS is loaded at run time): Hopper (sm_90a) and
# Ampere (sm_80). One object per source, so `make -jN cuda` compiles them side by side (no device
# code crosses files: no -rdc). The check after the link keeps it free of link-time cuBLAS.
NVCC       ?= nvcc
CUDA_ARCH  ?= -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80
NVCCFLAGS  ?= -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Iinclude $(CUDA_ARCH) -lineinfo --threads 0
CUDA_SRCS  := $(wildcard cuda/*.cu) $(wildcard common/*.cpp)
CUDA_HDRS  := $(wildcard cuda/*.cuh cuda/*.h common/*.h) include/vllmd.h
CUDA_OBJS  := $(patsubst %,$(BUILD)/cuda-obj/%.o,$(CUDA_SRCS))
cuda: $(BUILD)/libvllmd_cuda.so
$(BUILD)/cuda-obj/%.o: % $(CUDA_HDRS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<
$(BUILD)/libvllmd_cuda.so: $(CUDA_OBJS)
	$(NVCC) $(NVCCFLAGS) -shared -o $@ $(CUDA_OBJS) -ldl
	@if nm -D --undefined-only $@ | grep -q cublas; then echo "$@ links cuBLAS; it must dlopen it (cuda/cublas_api.h)"; exit 1; fi
	cp $@ libvllmd_cuda.so

# `make test` builds the CUDA backend too where nvcc is (it needs neither a GPU nor cuBLAS), so a
# compile error shows in CI rather than on the GPU machine.
cuda-if-nvcc:
	@if command -v $(NVCC) > /dev/null 2>&1; then $(MAKE) -j$$(nproc) cuda; else echo "nvcc not found: the CUDA backend is not built"; fi

# Every Worker's entry is its own entrypoint of the compiled binary (see src/worker-url.ts).
ENTRYPOINTS := src/cli.ts src/engine/worker.ts src/serving/input-worker.ts
vllmd: deps cpu $(TS_SRCS)
	$(MAKE) compile

# The binary alone, without `npm ci` (the GPU machine has node_modules unpacked and no network).
compile:
	$(BUN) build --compile $(ENTRYPOINTS) --outfile vllmd

test: deps cpu vllmd cuda-if-nvcc
	node_modules/.bin/tsc -p .
	$(BUN) test --timeout 120000
	$(BUN) bench/soak.ts --duration $(SOAK_SECONDS) --vllmd ./vllmd

clean:
	rm -rf $(BUILD) vllmd libvllmd_*.so
