// The decode GEMVs' launch shapes against each other on an 8B model's matrices (METHOD.md: the
// floor is the weight bytes at copy bandwidth): cuda/gemv.cuh's kernel for bf16 and e4m3 weights
// over rows per block and chunks in flight, cuda/gemv_int.cuh's for 4-bit group-128 weights over
// warps per block, rounds per stage and blocks per SM. One row of x (batch 1), bf16 activations.
// Each variant's output is checked against the first variant's (the same sums in another launch
// shape: bit-equal for gemv.cuh, within f32 rounding for gemv_int.cuh, whose warps split k).
// Weights are cycled through enough copies to defeat the 50 MB L2, as a decode step's would be.
// Environment: GEMV_TUNE_INT_ONLY=1 (the 4-bit sweep only), GEMV_TUNE_SHAPE=gate_up (one shape),
// GEMV_TUNE_HOT=1 (weights left in L2 between calls). Build and run on the GPU machine:
//   nvcc -O3 -std=c++17 -Iinclude -Icuda -gencode=arch=compute_90a,code=sm_90a bench/gemv-tune.cu -o /tmp/gemv-tune
//   /tmp/gemv-tune
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "gemv.cuh"
#include "gemv_int.cuh"

using namespace vd;
using bf16 = __nv_bfloat16;

#define CK(x)                                                                                      \
  do {                                                                                             \
    cudaError_t e_ = (x);                                                                          \
    if (e_ != cudaSuccess) {                                                                       \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));           \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

struct Shape {
  const char *name;
  int n, k;
};
const Shape kShapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096}, {"down", 4096, 14336}, {"lm_head", 128256, 4096}};

__global__ void fill_kernel(uint32_t *p, size_t n, uint32_t seed, uint32_t mask) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = h & mask;
  }
}

void fill(void *p, size_t bytes, uint32_t seed, uint32_t mask) {
  fill_kernel<<<1024, 256>>>(static_cast<uint32_t *>(p), bytes / 4, seed, mask);
  CK(cudaGetLastError());
}

// `copies` buffers of `bytes` each, filled; the variants cycle through them.
std::vector<void *> alloc_copies(size_t bytes, uint32_t mask, int *copies) {
  // GEMV_TUNE_HOT=1: one copy, so matrices under the L2's size are read from it (an upper bound on
  // what prefetching the weights into L2 could give).
  *copies = getenv("GEMV_TUNE_HOT") ? 1 : int(std::max<size_t>(2, (400u << 20) / bytes + 1));
  std::vector<void *> v(*copies);
  for (int i = 0; i < *copies; i++) {
    CK(cudaMalloc(&v[i], bytes));
    fill(v[i], bytes, 7u + i, mask);
  }
  return v;
}

// Mean microseconds per call of launch(i) (i: the copy to use) over `iters` calls after a warm-up.
float time_us(const std::function<void(int)> &launch, int copies, int iters = 60) {
  for (int i = 0; i < copies; i++) launch(i);
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  CK(cudaEventRecord(a));
  for (int i = 0; i < iters; i++) launch(i % copies);
  CK(cudaEventRecord(b));
  CK(cudaEventSynchronize(b));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, a, b));
  CK(cudaGetLastError());
  return 1000.0f * ms / iters;
}

std::vector<float> download(const bf16 *p, int n) {
  std::vector<bf16> h(n);
  CK(cudaMemcpy(h.data(), p, n * sizeof(bf16), cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (int i = 0; i < n; i++) f[i] = __bfloat162float(h[i]);
  return f;
}

float max_rel_diff(const std::vector<float> &a, const std::vector<float> &b) {
  float d = 0, m = 1e-6f;
  for (size_t i = 0; i < a.size(); i++) d = std::max(d, std::fabs(a[i] - b[i])), m = std::max(m, std::fabs(b[i]));
  return d / m;
}

struct Report {
  std::vector<float> ref;
  void row(const char *fmt, const Shape &s, const std::string &variant, float us, double bytes, const bf16 *out) {
    const std::vector<float> got = download(out, s.n);
    if (ref.empty()) ref = got;
    printf("%-5s %-8s %-28s %8.2f us %6.2f TB/s  diff %.2e\n", fmt, s.name, variant.c_str(), us, bytes / (us * 1e-6) / 1e12,
           max_rel_diff(got, ref));
    fflush(stdout);
  }
};

template <typename W, int R, int U>
void dense_variant(Report &rep, const char *fmt, const Shape &s, std::vector<void *> &w, int copies, const bf16 *x, bf16 *out,
                   double bytes, const std::function<W(int)> &make) {
  const dim3 grid((s.n + R - 1) / R), block(32 * gemv::kWarps);
  const float us = time_us([&](int i) {
    CK(launch_kernel(true, gemv::gemv_kernel<bf16, W, 1, R, U>, grid, block, 0, nullptr, out, x, make(i), s.n, s.k));
  }, copies);
  rep.row(fmt, s, "rows " + std::to_string(R) + " unroll " + std::to_string(U), us, bytes, out);
}

template <typename W> void dense_sweep(const char *fmt, const Shape &s, int elem_bytes_x2, const std::function<W(int, std::vector<void *> &, float *)> &mk) {
  const size_t bytes = size_t(s.n) * s.k * elem_bytes_x2 / 2;
  int copies = 0;
  std::vector<void *> w = alloc_copies(bytes, elem_bytes_x2 == 4 ? 0x3f7f3f7fu : 0x37373737u, &copies);
  float *scale = nullptr;
  CK(cudaMalloc(&scale, s.n * 4));
  std::vector<float> ones(s.n, 0.01f);
  CK(cudaMemcpy(scale, ones.data(), s.n * 4, cudaMemcpyHostToDevice));
  bf16 *x, *out;
  CK(cudaMalloc(&x, s.k * 2));
  CK(cudaMalloc(&out, s.n * 2));
  fill(x, s.k * 2, 99, 0x3f7f3f7fu);
  Report rep;
  const std::function<W(int)> make = [&](int i) { return mk(i, w, scale); };
  const double b = double(bytes);
  dense_variant<W, 2, 4>(rep, fmt, s, w, copies, x, out, b, make);
  dense_variant<W, 1, 8>(rep, fmt, s, w, copies, x, out, b, make);
  dense_variant<W, 2, 8>(rep, fmt, s, w, copies, x, out, b, make);
  dense_variant<W, 4, 2>(rep, fmt, s, w, copies, x, out, b, make);
  dense_variant<W, 4, 4>(rep, fmt, s, w, copies, x, out, b, make);
  dense_variant<W, 8, 1>(rep, fmt, s, w, copies, x, out, b, make);
  dense_variant<W, 8, 2>(rep, fmt, s, w, copies, x, out, b, make);
  dense_variant<W, 16, 1>(rep, fmt, s, w, copies, x, out, b, make);
  for (void *p : w) CK(cudaFree(p));
  CK(cudaFree(scale));
  CK(cudaFree(x));
  CK(cudaFree(out));
}

template <int WARPS, int U, int MinBlocks, bool kPerm = true>
void int_variant(Report &rep, const Shape &s, const std::vector<void *> &w, const std::vector<void *> &sc, int copies,
                 const float *zeros, const bf16 *x, bf16 *out, double bytes) {
  const dim3 grid((s.n + gemv_int::kTileRows - 1) / gemv_int::kTileRows), block(32 * WARPS);
  const int groups = s.k / 128;
  const float us = time_us([&](int i) {
    const gemv_int::Args a{static_cast<const uint32_t *>(w[i]), static_cast<const float *>(sc[i]), zeros, nullptr, nullptr, 1, s.n, s.k, groups, 128, 7};
    CK(launch_kernel(true, gemv_int::gemv_int_kernel<bf16, 4, 1, true, MinBlocks, WARPS, U, kPerm>, grid, block, 0, nullptr, out, x, a));
  }, copies);
  rep.row("int4", s, "warps " + std::to_string(WARPS) + " unroll " + std::to_string(U) + " minblocks " + std::to_string(MinBlocks) +
          (kPerm ? "" : " no-perm"), us, bytes, out);
}

void int_sweep(const Shape &s) {
  const int groups = s.k / 128;
  const size_t wbytes = size_t(s.n) * s.k / 2, sbytes = size_t(s.n) * groups * 4;
  int copies = 0;
  std::vector<void *> w = alloc_copies(wbytes + sbytes, 0xffffffffu, &copies), sc(copies);
  for (int i = 0; i < copies; i++) { // the scales after the codes in each copy, small positive floats
    sc[i] = static_cast<char *>(w[i]) + wbytes;
    fill(sc[i], sbytes, 3u + i, 0x3c7f0000u);
  }
  float *zeros;
  CK(cudaMalloc(&zeros, sbytes));
  std::vector<float> z(size_t(s.n) * groups, 8.0f);
  CK(cudaMemcpy(zeros, z.data(), sbytes, cudaMemcpyHostToDevice));
  bf16 *x, *out;
  CK(cudaMalloc(&x, s.k * 2));
  CK(cudaMalloc(&out, s.n * 2));
  fill(x, s.k * 2, 99, 0x3f7f3f7fu);
  Report rep;
  const double b = double(wbytes + 2 * sbytes); // codes, scales and zeros
  int_variant<8, 2, 3>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<8, 2, 1>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<8, 1, 3, false>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<8, 2, 1, false>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<8, 2, 2, false>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<8, 1, 3>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<8, 4, 1>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<8, 4, 2>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<4, 2, 4>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<4, 4, 2>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<4, 1, 6>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<16, 1, 1>(rep, s, w, sc, copies, zeros, x, out, b);
  int_variant<16, 2, 1>(rep, s, w, sc, copies, zeros, x, out, b);
  for (void *p : w) CK(cudaFree(p));
  CK(cudaFree(zeros));
  CK(cudaFree(x));
  CK(cudaFree(out));
}

int main() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("%s, %d SMs\n", prop.name, prop.multiProcessorCount);
  { // copy bandwidth: 1 GiB device to device, read + write over time
    void *a, *b;
    const size_t n = size_t(1) << 30;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    const float us = time_us([&](int) { CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice)); }, 1, 10);
    printf("copy 1 GiB: %.1f us, %.2f TB/s (read + write)\n", us, 2.0 * n / (us * 1e-6) / 1e12);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }
  const bool dense = !getenv("GEMV_TUNE_INT_ONLY");
  const char *only = getenv("GEMV_TUNE_SHAPE"); // one shape by name, e.g. for ncu
  for (const Shape &s : kShapes) {
    if (only && std::string(only) != s.name) continue;
    if (dense) dense_sweep<gemv::DenseRows<bf16>>("bf16", s, 4, [](int i, std::vector<void *> &w, float *) {
      return gemv::DenseRows<bf16>{static_cast<const bf16 *>(w[i]), nullptr};
    });
    if (std::string(s.name) == "lm_head") continue;
    if (dense) dense_sweep<gemv::Fp8Rows<bf16>>("fp8", s, 2, [](int i, std::vector<void *> &w, float *scale) {
      return gemv::Fp8Rows<bf16>{static_cast<const uint8_t *>(w[i]), scale, nullptr};
    });
    int_sweep(s);
  }
  return 0;
}
