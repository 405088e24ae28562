// vd_gemm_fp8 with VD_ACT_QUANT_FP8_ROW (W8A8): x quantized per row to e4m3 by vd_quantize_fp8's
// kernel (the cpu's bits), then
//   fast:     cuBLASLt's e4m3 x e4m3 product on FP8 tensor cores (compute capability 8.9+), the
//             two row scales applied by the library (OUTER_VEC_32F: w_scale per row of w, s per row
//             of x), out written in the act dtype;
//   anywhere: the codes' values times their row's scale written back in the act dtype and run
//             through the weight-only path: the same arithmetic up to one rounding of x, for
//             devices and shapes cuBLASLt's FP8 kernels do not take.
// A shape's layouts and algorithm are looked up once and kept in the context: the heuristic query
// costs tens of microseconds and a step makes a hundred such calls.
#include <map>
#include <tuple>

#include "../common/fp8.h"
#include "cublaslt_api.h"
#include "fp8_gemm.cuh"
#include "launch.cuh"

namespace vd {

// One problem shape's cuBLASLt objects; the scale pointers are set on desc before each call.
struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false; // false: cuBLASLt has no kernel for this shape (the emulation runs it)
};

struct LtState {
  const CublasLt *api = nullptr;
  cublasLtHandle_t handle = nullptr;
  void *workspace = nullptr;
  std::map<std::tuple<int64_t, int64_t, int64_t, int32_t>, LtPlan> plans;
};

} // namespace vd

using namespace vd;

namespace {

const char *const kFn = "vd_gemm_fp8";
constexpr uint64_t kLtWorkspaceBytes = uint64_t(32) << 20;

// Row-major out[m, n] = xq[m, k] · w[n, k]ᵀ is column-major D[n, m] = Aᵀ B with A = w viewed as
// [k, n] (ld k) and B = xq as [k, m] (ld k): the "TN" form cuBLASLt's FP8 kernels require. The
// heuristic finds no kernel for outer-vector scales until their pointers are set, so the plan is
// made with the first call's (each call sets its own).
LtPlan make_plan(const LtState &s, int64_t m, int64_t n, int64_t k, int32_t dt, const void *a_scale, const void *b_scale) {
  const CublasLt &lt = *s.api;
  LtPlan p;
  const int32_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N, outer = kLtScaleOuterVec32F;
  const uint64_t ws = kLtWorkspaceBytes;
  auto ok = [](cublasStatus_t st) { return st == CUBLAS_STATUS_SUCCESS; };
  bool good = ok(lt.desc_create(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)) &&
              ok(lt.desc_set(p.desc, kLtDescTransA, &trans_a, sizeof trans_a)) &&
              ok(lt.desc_set(p.desc, kLtDescTransB, &trans_b, sizeof trans_b)) &&
              ok(lt.desc_set(p.desc, kLtDescAScaleMode, &outer, sizeof outer)) &&
              ok(lt.desc_set(p.desc, kLtDescBScaleMode, &outer, sizeof outer)) &&
              ok(lt.desc_set(p.desc, kLtDescAScalePointer, &a_scale, sizeof a_scale)) &&
              ok(lt.desc_set(p.desc, kLtDescBScalePointer, &b_scale, sizeof b_scale)) &&
              ok(lt.layout_create(&p.a, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(n), k)) &&
              ok(lt.layout_create(&p.b, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(m), k)) &&
              ok(lt.layout_create(&p.d, cuda_data_type(dt), uint64_t(n), uint64_t(m), n));
  cublasLtMatmulPreference_t pref = nullptr;
  good = good && ok(lt.pref_create(&pref)) && ok(lt.pref_set(pref, kLtPrefMaxWorkspaceBytes, &ws, sizeof ws));
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  good = good && ok(lt.heuristic(s.handle, p.desc, p.a, p.b, p.d, p.d, pref, 1, &r, &found)) && found > 0;
  if (pref) lt.pref_destroy(pref);
  p.algo = r.algo;
  p.ok = good;
  return p;
}

// The context's cuBLASLt state, made on first use (never during capture: it allocates).
LtState *lt_state(Context *c) {
  if (c->lt) return c->lt;
  if (c->capturing) return nullptr;
  const CublasLt *api = cublaslt(nullptr);
  if (!api) return nullptr;
  auto *s = new LtState;
  s->api = api;
  if (api->create(&s->handle) != CUBLAS_STATUS_SUCCESS || cudaMalloc(&s->workspace, kLtWorkspaceBytes) != cudaSuccess) {
    cudaGetLastError();
    if (s->handle) api->destroy(s->handle);
    delete s;
    return nullptr;
  }
  c->lt = s;
  return s;
}

// cuBLASLt's FP8 kernels read 16-byte-aligned operands with k a multiple of 16 and write rows of
// whole 16-byte vectors (the workspace holding x's codes is 256-byte aligned).
bool lt_shape_ok(const Fp8Gemm &g) {
  const uintptr_t bases = uintptr_t(g.w) | uintptr_t(g.out);
  return g.k > 0 && g.k % 16 == 0 && (g.n * dtype_bytes(g.act)) % 16 == 0 && bases % 16 == 0;
}

// dst[r, c] = decode(codes[r, c]) * row_scale[r], in the act dtype: x as W8A8 sees it, at x's
// magnitude (the codes' raw values, up to 448, would overflow f16 sums).
__global__ void dequantize_rows_kernel(void *dst, const uint8_t *codes, const float *row_scale, int64_t rows, int64_t cols,
                                       int32_t dt) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * cols; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(dst, i, dt, fp8_e4m3_to_f32(codes[i]) * row_scale[i / cols]);
}

int32_t w8a8_emulated(Context *c, const Fp8Gemm &g, const uint8_t *xq, const float *s, void *xdq) {
  dequantize_rows_kernel<<<flat_blocks(g.m * g.k), kThreads, 0, c->stream>>>(xdq, xq, s, g.m, g.k, g.act);
  const int32_t st = check_launch(kFn);
  Fp8Gemm wo = g;
  wo.x = xdq;
  return st == VD_OK ? gemm_fp8_weight_only(c, wo) : st;
}

// The shape's plan (made on first use), or null when cuBLASLt has no kernel for it.
const LtPlan *plan_for(LtState &lt, const Fp8Gemm &g, const float *s) {
  const auto key = std::make_tuple(g.m, g.n, g.k, g.act);
  auto it = lt.plans.find(key);
  if (it == lt.plans.end()) it = lt.plans.emplace(key, make_plan(lt, g.m, g.n, g.k, g.act, g.scale, s)).first;
  return it->second.ok ? &it->second : nullptr;
}

// The product on FP8 tensor cores, its scale pointers set for this call, then the bias.
int32_t w8a8_lt(Context *c, const LtState &lt, const LtPlan &p, const Fp8Gemm &g, const uint8_t *xq, const float *s) {
  const CublasLt &api = *lt.api;
  const void *a_scale = g.scale, *b_scale = s;
  const float one = 1.0f, zero = 0.0f;
  cublasStatus_t r = api.desc_set(p.desc, kLtDescAScalePointer, &a_scale, sizeof a_scale);
  if (r == CUBLAS_STATUS_SUCCESS) r = api.desc_set(p.desc, kLtDescBScalePointer, &b_scale, sizeof b_scale);
  if (r == CUBLAS_STATUS_SUCCESS)
    r = api.matmul(lt.handle, p.desc, &one, g.w, p.a, xq, p.b, &zero, g.out, p.d, g.out, p.d, &p.algo, lt.workspace,
                   kLtWorkspaceBytes, c->stream);
  if (r != CUBLAS_STATUS_SUCCESS) return fail(VD_ERR_DEVICE, "%s: cublasLtMatmul failed (status %d)", kFn, int(r));
  return g.bias ? launch_add_bias(c, g.out, g.bias, g.m, g.n, g.act, kFn) : VD_OK;
}

uint64_t align256(uint64_t b) { return (b + 255) / 256 * 256; }

} // namespace

bool vd::fast_w8a8(Context *c) { return c->cc >= 89 && lt_state(c) != nullptr; }

int32_t vd::gemm_fp8_w8a8(Context *c, const Fp8Gemm &g) {
  if (g.k == 0) return gemm_fp8_weight_only(c, g); // no x to quantize: out = bias
  // Workspace: the codes [m, k] and their row scales [m]; the emulation also needs the codes'
  // values [m, k] in the act dtype. Sized before anything is written (growing reallocates).
  const uint64_t codes = align256(uint64_t(g.m) * g.k), scales = align256(uint64_t(g.m) * 4);
  const uint64_t values = uint64_t(g.m) * g.k * dtype_bytes(g.act);
  const LtPlan *plan = nullptr;
  if (fast_w8a8(c) && lt_shape_ok(g)) {
    int32_t st = grow_workspace(*c, &c->w8a8_workspace, &c->w8a8_workspace_bytes, codes + scales, kFn, "W8A8 activation workspace");
    if (st != VD_OK) return st;
    plan = plan_for(*c->lt, g, reinterpret_cast<const float *>(static_cast<uint8_t *>(c->w8a8_workspace) + codes));
  }
  int32_t st = grow_workspace(*c, &c->w8a8_workspace, &c->w8a8_workspace_bytes, codes + scales + (plan ? 0 : values), kFn,
                              "W8A8 activation workspace");
  if (st != VD_OK) return st;
  uint8_t *xq = static_cast<uint8_t *>(c->w8a8_workspace);
  float *s = reinterpret_cast<float *>(xq + codes);
  st = launch_quantize_rows(c, xq, s, g.x, g.m, g.k, g.act, kFn);
  if (st != VD_OK) return st;
  return plan ? w8a8_lt(c, *c->lt, *plan, g, xq, s) : w8a8_emulated(c, g, xq, s, xq + codes + scales);
}

void vd::destroy_w8a8(Context &c) {
  if (!c.lt) return;
  for (auto &kv : c.lt->plans) {
    LtPlan &p = kv.second;
    if (p.desc) c.lt->api->desc_destroy(p.desc);
    for (cublasLtMatrixLayout_t l : {p.a, p.b, p.d})
      if (l) c.lt->api->layout_destroy(l);
  }
  c.lt->api->destroy(c.lt->handle);
  cudaFree(c.lt->workspace);
  delete c.lt;
  c.lt = nullptr;
}
