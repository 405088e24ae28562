// The GEMM tile kernels, written once against a vector policy P and included twice by gemm.cpp:
// once for portable code and once inside an avx2/fma target region. No include guard on purpose.
//
// Every output element is computed the same way whatever tile it falls in, so results do not
// depend on m, on the tiling or on the thread split (batch invariance):
//   acc (8 lanes) = 0; for each 8-wide chunk of k in increasing order: acc = P::fma(x, w, acc);
//   the last partial chunk is zero-padded; out = P::hsum(acc) (+ bias).
//
// Policy P provides: type V; zero(); load_x(const float *) (8 floats);
// load_w<WD>(const void *w, int64_t index) (8 weights of dtype WD as f32); fma(a, b, acc); hsum(V).

template <class P, int WD, int MR, int NR>
inline void gemm_tile(const float *x, int64_t ldx, const void *w, int64_t k, int64_t j0, float *out, int64_t ldo,
                      const void *bias) {
  typename P::V acc[MR][NR];
  for (int r = 0; r < MR; r++)
    for (int c = 0; c < NR; c++) acc[r][c] = P::zero();
  const int64_t k8 = k & ~int64_t(7);
  for (int64_t kk = 0; kk < k8; kk += 8) {
    typename P::V wv[NR];
    for (int c = 0; c < NR; c++) wv[c] = P::template load_w<WD>(w, (j0 + c) * k + kk);
    for (int r = 0; r < MR; r++) {
      typename P::V xv = P::load_x(x + r * ldx + kk);
      for (int c = 0; c < NR; c++) acc[r][c] = P::fma(xv, wv[c], acc[r][c]);
    }
  }
  if (k8 < k) { // zero-padded last chunk
    alignas(32) float xt[8], wt[8];
    for (int c = 0; c < NR; c++) {
      for (int l = 0; l < 8; l++) wt[l] = k8 + l < k ? load_as_f32(w, (j0 + c) * k + k8 + l, WD) : 0.0f;
      typename P::V wv = P::load_x(wt);
      for (int r = 0; r < MR; r++) {
        for (int l = 0; l < 8; l++) xt[l] = k8 + l < k ? x[r * ldx + k8 + l] : 0.0f;
        acc[r][c] = P::fma(P::load_x(xt), wv, acc[r][c]);
      }
    }
  }
  for (int r = 0; r < MR; r++)
    for (int c = 0; c < NR; c++) {
      float s = P::hsum(acc[r][c]);
      if (bias) s += load_as_f32(bias, j0 + c, WD);
      out[r * ldo + j0 + c] = s;
    }
}

// Columns per tile for MR rows: as many accumulators as the 16 vector registers allow.
constexpr int gemm_cols_for_rows(int mr) { return mr == 1 ? 8 : mr == 2 ? 4 : 3; }

// The last columns of a row strip, fewer than a full tile: picks the tile width at compile time.
template <class P, int WD, int MR, int NR>
inline void gemm_tail_cols(int64_t rem, const float *x, int64_t ldx, const void *w, int64_t k, int64_t j0,
                           float *out, int64_t ldo, const void *bias) {
  if constexpr (NR >= 1) {
    if (rem == NR) gemm_tile<P, WD, MR, NR>(x, ldx, w, k, j0, out, ldo, bias);
    else gemm_tail_cols<P, WD, MR, NR - 1>(rem, x, ldx, w, k, j0, out, ldo, bias);
  }
}

// MR rows starting at x (and out) over output columns [j0, j1).
template <class P, int WD, int MR>
inline void gemm_strip(const float *x, int64_t ldx, const void *w, int64_t k, int64_t j0, int64_t j1, float *out,
                       int64_t ldo, const void *bias) {
  constexpr int NR = gemm_cols_for_rows(MR);
  int64_t j = j0;
  for (; j + NR <= j1; j += NR) gemm_tile<P, WD, MR, NR>(x, ldx, w, k, j, out, ldo, bias);
  if (j < j1) gemm_tail_cols<P, WD, MR, NR - 1>(j1 - j, x, ldx, w, k, j, out, ldo, bias);
}

// Output rows [i0, i1) x columns [j0, j1) of out[m, n] = x[m, k] . w[n, k]^T (+ bias).
template <class P, int WD>
inline void gemm_block_typed(const float *x, const void *w, const void *bias, float *out, int64_t n, int64_t k,
                             int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) gemm_strip<P, WD, 4>(x + i * k, k, w, k, j0, j1, out + i * n, n, bias);
  switch (i1 - i) {
  case 3: gemm_strip<P, WD, 3>(x + i * k, k, w, k, j0, j1, out + i * n, n, bias); break;
  case 2: gemm_strip<P, WD, 2>(x + i * k, k, w, k, j0, j1, out + i * n, n, bias); break;
  case 1: gemm_strip<P, WD, 1>(x + i * k, k, w, k, j0, j1, out + i * n, n, bias); break;
  default: break;
  }
}

template <class P>
inline void gemm_block(const float *x, const void *w, int32_t w_dtype, const void *bias, float *out, int64_t n,
                       int64_t k, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  switch (w_dtype) {
  case VD_F32: gemm_block_typed<P, VD_F32>(x, w, bias, out, n, k, i0, i1, j0, j1); break;
  case VD_BF16: gemm_block_typed<P, VD_BF16>(x, w, bias, out, n, k, i0, i1, j0, j1); break;
  case VD_FP8_E4M3: gemm_block_typed<P, VD_FP8_E4M3>(x, w, bias, out, n, k, i0, i1, j0, j1); break;
  default: gemm_block_typed<P, VD_F16>(x, w, bias, out, n, k, i0, i1, j0, j1); break;
  }
}
