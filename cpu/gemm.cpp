// vd_gemm: out[M, N] = x[M, K] . w[N, K]^T (+ bias), f32 activations, f32/f16/bf16 weights.
// Tiles come from gemm_tile.h, built twice: portable, and avx2+fma+f16c for machines that have
// them (chosen once per process, so one machine always computes the same bits).
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>

#include "internal.h"
#include "rank.h"

using namespace vd;

namespace {

// Portable lanes: no fused multiply-add (the default x86-64 target has none to contract into).
struct PortableVec {
  struct V {
    float l[8];
  };
  static V zero() { return V{}; }
  static V load_x(const float *p) {
    V v;
    for (int i = 0; i < 8; i++) v.l[i] = p[i];
    return v;
  }
  template <int WD> static V load_w(const void *w, int64_t idx) {
    V v;
    for (int i = 0; i < 8; i++) v.l[i] = load_as_f32(w, idx + i, WD);
    return v;
  }
  static V fma(V a, V b, V acc) {
    for (int i = 0; i < 8; i++) acc.l[i] += a.l[i] * b.l[i];
    return acc;
  }
  static float hsum(V v) { // the same pairing tree as the avx2 path
    float a0 = v.l[0] + v.l[4], a1 = v.l[1] + v.l[5], a2 = v.l[2] + v.l[6], a3 = v.l[3] + v.l[7];
    return (a0 + a2) + (a1 + a3);
  }
};

namespace portable {
#include "gemm_tile.h"
} // namespace portable

void gemm_block_portable(const float *x, const void *w, int32_t wd, const void *bias, float *out, int64_t n, int64_t k,
                         int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  portable::gemm_block<PortableVec>(x, w, wd, bias, out, n, k, i0, i1, j0, j1);
}

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

struct Avx2Vec {
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  static V load_x(const float *p) { return _mm256_loadu_ps(p); }
  template <int WD> static V load_w(const void *w, int64_t idx) {
    if constexpr (WD == VD_F32) return _mm256_loadu_ps(static_cast<const float *>(w) + idx);
    if constexpr (WD == VD_FP8_E4M3) {
      __m128i codes = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(static_cast<const uint8_t *>(w) + idx));
      return _mm256_i32gather_ps(kFp8E4m3Table, _mm256_cvtepu8_epi32(codes), 4);
    }
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(static_cast<const uint16_t *>(w) + idx));
    if constexpr (WD == VD_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); // bf16: the high half of f32
  }
  static V fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};

namespace avx2 {
#include "gemm_tile.h"
} // namespace avx2

void gemm_block_avx2(const float *x, const void *w, int32_t wd, const void *bias, float *out, int64_t n, int64_t k,
                     int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  avx2::gemm_block<Avx2Vec>(x, w, wd, bias, out, n, k, i0, i1, j0, j1);
}

#pragma GCC pop_options

using BlockFn = void (*)(const float *, const void *, int32_t, const void *, float *, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t);

// VLLMD_CPU_NO_AVX2=1 forces the portable kernels, so tests can cover them on any machine.
BlockFn pick_block_fn() {
  const char *no_avx2 = std::getenv("VLLMD_CPU_NO_AVX2");
  if (no_avx2 && *no_avx2 && std::strcmp(no_avx2, "0") != 0) return gemm_block_portable;
  __builtin_cpu_init();
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return avx2 ? gemm_block_avx2 : gemm_block_portable;
}

// Below this many multiply-adds a second thread costs more than it saves.
constexpr int64_t kParallelWork = int64_t(1) << 18;

} // namespace

void vd::run_gemm(const float *x, const void *w, int32_t wd, const void *bias, float *out, int64_t m, int64_t n,
                  int64_t k) {
  static const BlockFn block = pick_block_fn();
  // Column chunks of ~96 KiB of weights stay in L2 while row strips stream past; a multiple of
  // 24 columns is a whole number of tiles for every strip height.
  int64_t nb = (96 * 1024) / std::max<int64_t>(1, k * dtype_bytes(wd));
  nb = std::max<int64_t>(24, nb / 24 * 24);
  const int64_t mb = 64;
  const int64_t tn = (n + nb - 1) / nb, tm = (m + mb - 1) / mb;
  const bool parallel = m * n * k >= kParallelWork && tn * tm > 1;
#pragma omp parallel for collapse(2) schedule(dynamic) if (parallel)
  for (int64_t tj = 0; tj < tn; tj++)
    for (int64_t ti = 0; ti < tm; ti++)
      block(x, w, wd, bias, out, n, k, ti * mb, std::min(m, (ti + 1) * mb), tj * nb, std::min(n, (tj + 1) * nb));
}

VD_API int32_t vd_gemm(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t bias, int64_t m, int64_t n,
                       int64_t k, int32_t act_dtype, int32_t w_dtype) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_gemm(ctx, out, x, w, bias, m, n, k, act_dtype, w_dtype));
  const char *fn = "vd_gemm";
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_weight_dtype(fn, "w_dtype", w_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "m", m);
  if (st == VD_OK) st = check_nonneg(fn, "n", n);
  if (st == VD_OK) st = check_nonneg(fn, "k", k);
  if (st != VD_OK) return st;
  const int64_t wb = dtype_bytes(w_dtype);
  Span so, sx, sw, sb{nullptr, 0};
  if (!lookup_sized(ctx, out, "vd_gemm(out)", bytes_of(m, n, 4), &so) ||
      !lookup_sized(ctx, x, "vd_gemm(x)", bytes_of(m, k, 4), &sx) ||
      !lookup_sized(ctx, w, "vd_gemm(w)", bytes_of(n, k, wb), &sw) ||
      (bias != 0 && !lookup_sized(ctx, bias, "vd_gemm(bias)", bytes_of(1, n, wb), &sb)))
    return VD_ERR_INVALID_ARGUMENT;
  run_gemm(reinterpret_cast<const float *>(sx.data), sw.data, w_dtype, sb.data, reinterpret_cast<float *>(so.data),
           m, n, k);
  return VD_OK;
}
