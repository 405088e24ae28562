// vd_gemm on the device: out[M, N] = x[M, K] . w[N, K]^T (+ bias[N]).
// Same dtype for activations and weights (the model path): cuBLAS, f32 accumulation, no TF32;
// f16/bf16 with at most 8 rows of x (decode): the weight-streaming kernel of gemv.cuh.
// Mixed dtypes (f32 activations with f16/bf16 weights, the tests' path): a plain shared-memory
// tiled kernel on the CUDA cores, f32 accumulation in k order.
#include <climits>
#include <mutex>

#include "common.cuh"
#include "cublas_api.h"
#include "gemv.cuh"
#include "launch.cuh"

using namespace vd;

namespace {

const char *const kFn = "vd_gemm";
constexpr uint64_t kCublasWorkspaceBytes = uint64_t(32) << 20; // what cuBLAS suggests for Hopper

// Tiled kernel: a 64x64 output tile per block of 16x16 threads, each thread 4x4 outputs strided
// by 16 (so a warp's shared-memory reads are conflict-free), k in steps of 16.
constexpr int kTile = 64, kStepK = 16, kSide = 16, kPer = kTile / kSide;

template <int AD, int WD>
__global__ void __launch_bounds__(kSide *kSide) gemm_tiled_kernel(void *out, const void *x, const void *w,
                                                                 const void *bias, int64_t m, int64_t n, int64_t k) {
  __shared__ float xs[kStepK][kTile + 1];
  __shared__ float ws[kStepK][kTile + 1];
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  const int64_t row0 = int64_t(blockIdx.y) * kTile, col0 = int64_t(blockIdx.x) * kTile;
  float acc[kPer][kPer] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kStepK) {
    for (int l = threadIdx.x; l < kTile * kStepK; l += blockDim.x) { // consecutive threads: consecutive k
      const int r = l / kStepK, kk = l % kStepK;
      const int64_t gk = k0 + kk, gr = row0 + r, gc = col0 + r;
      xs[kk][r] = gr < m && gk < k ? load_f32(x, gr * k + gk, AD) : 0.0f;
      ws[kk][r] = gc < n && gk < k ? load_f32(w, gc * k + gk, WD) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kStepK; kk++) {
      float a[kPer], b[kPer];
#pragma unroll
      for (int i = 0; i < kPer; i++) a[i] = xs[kk][ty + kSide * i];
#pragma unroll
      for (int j = 0; j < kPer; j++) b[j] = ws[kk][tx + kSide * j];
#pragma unroll
      for (int i = 0; i < kPer; i++)
#pragma unroll
        for (int j = 0; j < kPer; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < kPer; i++)
#pragma unroll
    for (int j = 0; j < kPer; j++) {
      const int64_t r = row0 + ty + kSide * i, c = col0 + tx + kSide * j;
      if (r < m && c < n) store_f32(out, r * n + c, AD, acc[i][j] + (bias ? load_f32(bias, c, WD) : 0.0f));
    }
}

using TiledFn = void (*)(void *, const void *, const void *, const void *, int64_t, int64_t, int64_t);

template <int AD>
TiledFn tiled_for_weights(int32_t wd) {
  return wd == VD_F32 ? gemm_tiled_kernel<AD, VD_F32> : wd == VD_F16 ? gemm_tiled_kernel<AD, VD_F16>
                                                                     : gemm_tiled_kernel<AD, VD_BF16>;
}

TiledFn tiled_kernel(int32_t ad, int32_t wd) {
  return ad == VD_F32 ? tiled_for_weights<VD_F32>(wd) : ad == VD_F16 ? tiled_for_weights<VD_F16>(wd)
                                                                     : tiled_for_weights<VD_BF16>(wd);
}

// out[i, j] = bias[j], or 0 without a bias: the starting C of a beta = 1 GEMM, or the result when k = 0.
__global__ void fill_bias_kernel(void *out, const void *bias, int64_t m, int64_t n, int32_t ad, int32_t wd) {
  const int64_t total = m * n;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(out, i, ad, bias ? load_f32(bias, i % n, wd) : 0.0f);
}

// The context's cuBLAS handle, created on first use on the context's stream.
int32_t cublas_handle(Context *c, cublasHandle_t *out) {
  static std::mutex mu; // two threads' first GEMMs on one context must not both create one
  std::lock_guard<std::mutex> lock(mu);
  if (!c->cublas) {
    if (c->capturing) // creating a handle allocates: a warm-up GEMM must come before any capture
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: the first GEMM of a context may not be captured into a graph", kFn);
    const char *why = nullptr;
    const Cublas *api = cublas(&why);
    if (!api) return fail(VD_ERR_UNSUPPORTED, "%s: cuBLAS could not be loaded (%s)", kFn, why);
    cublasHandle_t h = nullptr;
    cublasStatus_t s = api->create(&h);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(VD_ERR_DEVICE, "%s: cublasCreate failed (status %d)", kFn, int(s));
    s = api->set_stream(h, c->stream);
    // Our own workspace: with it cuBLAS allocates nothing per call, which graph capture requires.
    if (s == CUBLAS_STATUS_SUCCESS && cudaMalloc(&c->cublas_workspace, kCublasWorkspaceBytes) != cudaSuccess) {
      cudaGetLastError();
      api->destroy(h);
      return fail(VD_ERR_OUT_OF_MEMORY, "%s: no room for cuBLAS's %llu-byte workspace", kFn,
                  (unsigned long long)kCublasWorkspaceBytes);
    }
    if (s == CUBLAS_STATUS_SUCCESS) s = api->set_workspace(h, c->cublas_workspace, kCublasWorkspaceBytes);
    if (s != CUBLAS_STATUS_SUCCESS) {
      api->destroy(h);
      return fail(VD_ERR_DEVICE, "%s: cublasSetStream/SetWorkspace failed (status %d)", kFn, int(s));
    }
    c->cublas = h;
  }
  *out = static_cast<cublasHandle_t>(c->cublas);
  return VD_OK;
}

struct GemmArgs {
  Context *c;
  void *out;
  const void *x, *w, *bias;
  int64_t m, n, k;
  int32_t ad, wd;
};

// Row-major out[M,N] = x[M,K] . w[N,K]^T is column-major out^T[N,M] = w^T' . x^T' where the
// column-major views of the row-major arrays are w' = [K,N] (ld K) and x' = [K,M] (ld K):
// C (N x M, ldc N) = op(A) = w'^T (N x K) times op(B) = x' (K x M). A bias enters as C with beta = 1,
// so the sum is rounded to the output type once.
int32_t gemm_cublas(const GemmArgs &g) {
  cublasHandle_t h = nullptr;
  int32_t st = cublas_handle(g.c, &h);
  if (st != VD_OK) return st;
  if (g.bias) {
    fill_bias_kernel<<<flat_blocks(g.m * g.n), kThreads, 0, g.c->stream>>>(g.out, g.bias, g.m, g.n, g.ad, g.wd);
    st = check_launch(kFn);
    if (st != VD_OK) return st;
  }
  const float alpha = 1.0f, beta = g.bias ? 1.0f : 0.0f;
  const int m = int(g.m), n = int(g.n), k = int(g.k);
  const cudaDataType_t t = cuda_data_type(g.ad);
  cublasStatus_t s = cublas(nullptr)->gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, g.w, t, k, g.x, t, k, &beta, g.out, t, n,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    return fail(VD_ERR_DEVICE, "%s: cublasGemmEx [%d x %d x %d] failed (status %d)", kFn, m, n, k, int(s));
  return VD_OK;
}

// A few rows of x in f16/bf16 with 16-byte aligned rows: the weight-streaming kernel of gemv.cuh.
// From 3 rows on cuBLAS is faster (H200, the 8B's decode step: 5.9 ms at batch 3 and 10.5 ms at
// 8 through the GEMV; 5.0 ms at 4 and 5.2 ms at 8 through cuBLAS).
constexpr int64_t kDenseGemvRows = 2;
bool gemv_fits(const GemmArgs &g) {
  const uintptr_t bases = uintptr_t(g.x) | uintptr_t(g.w) | uintptr_t(g.bias);
  return g.ad == g.wd && g.ad != VD_F32 && g.m <= kDenseGemvRows && g.k % 8 == 0 && bases % 16 == 0;
}

int32_t gemm_gemv(const GemmArgs &g) {
  cudaError_t err = cudaSuccess;
  with_half_type(g.ad, [&](auto t) {
    using T = decltype(t);
    const gemv::DenseRows<T> fmt{static_cast<const T *>(g.w), static_cast<const T *>(g.bias)};
    err = gemv::launch<T>(static_cast<T *>(g.out), static_cast<const T *>(g.x), fmt, int(g.m), int(g.n), int(g.k), g.c->stream,
                          g.c->pdl);
  });
  return check_cuda(err, kFn, "launching the GEMV kernel");
}

int32_t gemm_tiled(const GemmArgs &g) {
  const int64_t grid_x = (g.n + kTile - 1) / kTile, grid_y = (g.m + kTile - 1) / kTile;
  if (grid_x > INT_MAX || grid_y > 65535)
    return fail(VD_ERR_UNSUPPORTED, "%s: [%lld x %lld] is too large for the mixed-dtype kernel", kFn, (long long)g.m,
                (long long)g.n);
  tiled_kernel(g.ad, g.wd)<<<dim3(unsigned(grid_x), unsigned(grid_y)), kSide * kSide, 0, g.c->stream>>>(
      g.out, g.x, g.w, g.bias, g.m, g.n, g.k);
  return check_launch(kFn);
}

} // namespace

int32_t vd::gemm_dense(Context *c, void *out, const void *x, const void *w, int64_t m, int64_t n, int64_t k, int32_t dt) {
  const GemmArgs g{c, out, x, w, nullptr, m, n, k, dt, dt};
  if (m == 0 || n == 0) return VD_OK;
  if (k == 0) {
    fill_bias_kernel<<<flat_blocks(m * n), kThreads, 0, c->stream>>>(out, nullptr, m, n, dt, dt);
    return check_launch(kFn);
  }
  return gemv_fits(g) ? gemm_gemv(g) : gemm_cublas(g);
}

VD_API int32_t vd_gemm(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t bias, int64_t m, int64_t n,
                       int64_t k, int32_t act_dtype, int32_t w_dtype) {
  clear_error();
  int32_t st = check_float_dtype(kFn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_float_dtype(kFn, "w_dtype", w_dtype);
  if (st == VD_OK) st = check_nonneg(kFn, "m", m);
  if (st == VD_OK) st = check_nonneg(kFn, "n", n);
  if (st == VD_OK) st = check_nonneg(kFn, "k", k);
  if (st != VD_OK) return st;
  Context *c = context(ctx, kFn);
  Span so, sx, sw, sb{nullptr, 0};
  if (!c || !lookup_array(ctx, out, "vd_gemm(out)", mul_sat(m, n), act_dtype, &so) ||
      !lookup_array(ctx, x, "vd_gemm(x)", mul_sat(m, k), act_dtype, &sx) ||
      !lookup_array(ctx, w, "vd_gemm(w)", mul_sat(n, k), w_dtype, &sw) ||
      (bias != 0 && !lookup_array(ctx, bias, "vd_gemm(bias)", n, w_dtype, &sb)))
    return VD_ERR_INVALID_ARGUMENT;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return fail(VD_ERR_UNSUPPORTED, "%s: m, n and k must each be below 2^31 (got %lld, %lld, %lld)", kFn, (long long)m,
                (long long)n, (long long)k);
  if (m == 0 || n == 0) return VD_OK;
  const GemmArgs g{c, so.data, sx.data, sw.data, sb.data, m, n, k, act_dtype, w_dtype};
  if (k == 0) { // no products: the bias alone (cuBLAS also rejects lda = 0)
    fill_bias_kernel<<<flat_blocks(m * n), kThreads, 0, c->stream>>>(g.out, g.bias, m, n, act_dtype, w_dtype);
    return check_launch(kFn);
  }
  if (gemv_fits(g)) return gemm_gemv(g);
  return act_dtype == w_dtype ? gemm_cublas(g) : gemm_tiled(g);
}
