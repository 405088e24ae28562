// Row-wise and element-wise model ops of the CUDA backend: embedding, RMSNorm with the fused
// residual, SiLU-and-mul, gather, the decode-token scatter, cast, all-reduce (RoPE + KV write:
// cuda/rope.cu).
// Each output row depends only on its own input row, computed in f32 in a fixed order whatever
// the batch (batch invariance). Indices read from device memory are checked on the device: a bad
// one gives a NaN row (or a skipped token) and a fault that the next vd_sync / vd_event_sync /
// vd_copy_to_host reports.
#include "common.cuh"
#include "nccl_api.h"
#include "launch.cuh"
#include "ops_vec.cuh"

using namespace vd;

namespace {

__global__ void embedding_kernel(void *out, const void *table, const int32_t *ids, int64_t n_tokens, int64_t hidden,
                                 int64_t vocab, int32_t act, int32_t wd, int32_t *fault) {
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    const bool ok = id >= 0 && id < vocab;
    if (!ok && threadIdx.x == 0) record_fault(fault, kFaultTokenId);
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
      store_f32(out, t * hidden + i, act, ok ? load_f32(table, int64_t(id) * hidden + i, wd) : nan_f32());
  }
}

// One block per row: pass 1 adds the residual (storing it rounded to act, as the next layer will
// read it) and sums squares of what was stored; pass 2 scales. out may alias x: pass 2 reads only
// the element it writes, after every pass-1 read of the block (block_sum is a barrier).
__global__ void rmsnorm_kernel(void *out, void *residual, const void *x, const void *weight, int64_t n_tokens,
                               int64_t hidden, float eps, int32_t act, int32_t wd) {
  __shared__ float scratch[33];
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    const int64_t base = t * hidden;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
      float v = load_f32(x, base + i, act);
      if (residual) {
        store_f32(residual, base + i, act, load_f32(residual, base + i, act) + v);
        v = load_f32(residual, base + i, act);
      }
      ss += v * v;
    }
    const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / float(hidden) + eps);
    const void *src = residual ? residual : x;
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
      store_f32(out, base + i, act, (load_f32(src, base + i, act) * inv) * load_f32(weight, i, wd));
  }
}

// Flat over all T * I outputs: one row is too little work for one block at decode batch sizes.
__global__ void silu_mul_kernel(void *out, const void *gate_up, int64_t n_tokens, int64_t inter, int32_t act) {
  const int64_t total = n_tokens * inter;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / inter, i = e - t * inter, g0 = t * 2 * inter;
    const float g = load_f32(gate_up, g0 + i, act), u = load_f32(gate_up, g0 + inter + i, act);
    store_f32(out, e, act, g / (1.0f + expf(-g)) * u);
  }
}

// E: an unsigned integer of the element size; rows are copied bit for bit.
template <typename E>
__global__ void gather_kernel(E *out, const E *x, const int32_t *rows, int64_t n_rows, int64_t cols, int64_t x_rows,
                              E nan_bits, int32_t *fault) {
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    const int32_t src = rows[r];
    const bool ok = src >= 0 && src < x_rows;
    if (!ok && threadIdx.x == 0) record_fault(fault, kFaultRowIndex);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[r * cols + c] = ok ? x[int64_t(src) * cols + c] : nan_bits;
  }
}

// One thread per moved token. A row outside its buffer is skipped and reported as a fault; a
// negative token (a row vd_sample could not sample) is written as 0.
__global__ void scatter_tokens_kernel(int32_t *ids, const int32_t *dst_rows, const int32_t *src, const int32_t *src_rows,
                                      int64_t n, int64_t n_ids, int64_t n_src, int32_t *fault) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    const int32_t to = dst_rows[j], from = src_rows[j];
    if (to < 0 || to >= n_ids || from < 0 || from >= n_src) record_fault(fault, kFaultScatterRow);
    else ids[to] = max(src[from], 0);
  }
}

__global__ void cast_kernel(void *out, const void *x, int64_t n, int32_t out_dtype, int32_t in_dtype) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(out, i, out_dtype, load_f32(x, i, in_dtype));
}

// The checks every row op starts with: the activation dtype and non-negative sizes.
int32_t check_row_op(const char *fn, int32_t act_dtype, const char *rows_name, int64_t rows, const char *cols_name,
                     int64_t cols) {
  int32_t st = check_float_dtype(fn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_nonneg(fn, rows_name, rows);
  if (st == VD_OK) st = check_nonneg(fn, cols_name, cols);
  return st;
}

} // namespace

VD_API int32_t vd_embedding(uint64_t ctx, uint64_t out, uint64_t table, uint64_t token_ids, int64_t n_tokens,
                            int64_t hidden, int64_t vocab, int32_t act_dtype, int32_t w_dtype) {
  clear_error();
  const char *fn = "vd_embedding";
  int32_t st = check_row_op(fn, act_dtype, "n_tokens", n_tokens, "hidden", hidden);
  if (st == VD_OK) st = check_float_dtype(fn, "w_dtype", w_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "vocab", vocab);
  if (st != VD_OK) return st;
  Context *c = context(ctx, fn);
  Span so, stab, sid;
  if (!c || !lookup_array(ctx, out, "vd_embedding(out)", mul_sat(n_tokens, hidden), act_dtype, &so) ||
      !lookup_array(ctx, table, "vd_embedding(table)", mul_sat(vocab, hidden), w_dtype, &stab) ||
      !lookup_array(ctx, token_ids, "vd_embedding(token_ids)", n_tokens, VD_I32, &sid))
    return VD_ERR_INVALID_ARGUMENT;
  if (n_tokens == 0 || hidden == 0) return VD_OK;
  embedding_kernel<<<row_blocks(n_tokens), kThreads, 0, c->stream>>>(
      so.data, stab.data, reinterpret_cast<const int32_t *>(sid.data), n_tokens, hidden, vocab, act_dtype, w_dtype, c->fault);
  return check_launch(fn);
}

VD_API int32_t vd_rmsnorm(uint64_t ctx, uint64_t out, uint64_t residual, uint64_t x, uint64_t weight, int64_t n_tokens,
                          int64_t hidden, float eps, int32_t act_dtype, int32_t w_dtype) {
  clear_error();
  const char *fn = "vd_rmsnorm";
  int32_t st = check_row_op(fn, act_dtype, "n_tokens", n_tokens, "hidden", hidden);
  if (st == VD_OK) st = check_float_dtype(fn, "w_dtype", w_dtype);
  if (st != VD_OK) return st;
  if (!(eps >= 0.0f)) return fail(VD_ERR_INVALID_ARGUMENT, "%s: eps %g must be >= 0", fn, double(eps));
  Context *c = context(ctx, fn);
  const int64_t n = mul_sat(n_tokens, hidden);
  Span so, sr{nullptr, 0}, sx, sw;
  if (!c || !lookup_array(ctx, out, "vd_rmsnorm(out)", n, act_dtype, &so) ||
      (residual != 0 && !lookup_array(ctx, residual, "vd_rmsnorm(residual)", n, act_dtype, &sr)) ||
      !lookup_array(ctx, x, "vd_rmsnorm(x)", n, act_dtype, &sx) ||
      !lookup_array(ctx, weight, "vd_rmsnorm(weight)", hidden, w_dtype, &sw))
    return VD_ERR_INVALID_ARGUMENT;
  if (n == 0) return VD_OK;
  const dim3 grid(row_blocks(n_tokens)), block(row_threads(n_tokens));
  cudaError_t err = cudaSuccess;
  if (vec::fits(act_dtype, w_dtype, hidden, so.data, sr.data, sx.data, sw.data)) {
    with_half_type(act_dtype, [&](auto t) {
      using T = decltype(t);
      err = launch_kernel(c->pdl, vec::rmsnorm_kernel<T>, grid, block, 0, c->stream, reinterpret_cast<T *>(so.data),
                          reinterpret_cast<T *>(sr.data), reinterpret_cast<const T *>(sx.data),
                          reinterpret_cast<const T *>(sw.data), n_tokens, hidden, eps);
    });
  } else {
    rmsnorm_kernel<<<grid, block, 0, c->stream>>>(so.data, sr.data, sx.data, sw.data, n_tokens, hidden, eps, act_dtype,
                                                 w_dtype);
  }
  st = check_cuda(err, fn, "launching the kernel");
  return st == VD_OK ? check_launch(fn) : st;
}

VD_API int32_t vd_silu_mul(uint64_t ctx, uint64_t out, uint64_t gate_up, int64_t n_tokens, int64_t inter,
                           int32_t act_dtype) {
  clear_error();
  const char *fn = "vd_silu_mul";
  int32_t st = check_row_op(fn, act_dtype, "n_tokens", n_tokens, "inter", inter);
  if (st != VD_OK) return st;
  Context *c = context(ctx, fn);
  Span so, sg;
  if (!c || !lookup_array(ctx, out, "vd_silu_mul(out)", mul_sat(n_tokens, inter), act_dtype, &so) ||
      !lookup_array(ctx, gate_up, "vd_silu_mul(gate_up)", mul_sat(n_tokens, mul_sat(2, inter)), act_dtype, &sg))
    return VD_ERR_INVALID_ARGUMENT;
  if (n_tokens == 0 || inter == 0) return VD_OK;
  cudaError_t err = cudaSuccess;
  if (vec::fits(act_dtype, act_dtype, inter, so.data, sg.data, nullptr, nullptr)) {
    with_half_type(act_dtype, [&](auto t) {
      using T = decltype(t);
      err = launch_kernel(c->pdl, vec::silu_mul_kernel<T>, dim3(flat_blocks(n_tokens * inter / 8)), dim3(kThreads), 0,
                          c->stream, reinterpret_cast<T *>(so.data), reinterpret_cast<const T *>(sg.data), n_tokens, inter);
    });
  } else {
    silu_mul_kernel<<<flat_blocks(n_tokens * inter), kThreads, 0, c->stream>>>(so.data, sg.data, n_tokens, inter,
                                                                              act_dtype);
  }
  st = check_cuda(err, fn, "launching the kernel");
  return st == VD_OK ? check_launch(fn) : st;
}

VD_API int32_t vd_gather_rows(uint64_t ctx, uint64_t out, uint64_t x, uint64_t rows, int64_t n_rows, int64_t cols,
                              int32_t act_dtype) {
  clear_error();
  const char *fn = "vd_gather_rows";
  int32_t st = check_row_op(fn, act_dtype, "n_rows", n_rows, "cols", cols);
  if (st != VD_OK) return st;
  Context *c = context(ctx, fn);
  Span so, sx, sr;
  if (!c || !lookup_array(ctx, out, "vd_gather_rows(out)", mul_sat(n_rows, cols), act_dtype, &so) ||
      !lookup_array(ctx, x, "vd_gather_rows(x)", 0, act_dtype, &sx) ||
      !lookup_array(ctx, rows, "vd_gather_rows(rows)", n_rows, VD_I32, &sr))
    return VD_ERR_INVALID_ARGUMENT;
  if (n_rows == 0 || cols == 0) return VD_OK;
  const int64_t eb = dtype_bytes(act_dtype);
  const int64_t x_rows = int64_t(sx.bytes / uint64_t(cols * eb));
  const int32_t *idx = reinterpret_cast<const int32_t *>(sr.data);
  if (eb == 4)
    gather_kernel<uint32_t><<<row_blocks(n_rows), kThreads, 0, c->stream>>>(
        reinterpret_cast<uint32_t *>(so.data), reinterpret_cast<const uint32_t *>(sx.data), idx, n_rows, cols, x_rows,
        0x7fc00000u, c->fault);
  else
    gather_kernel<uint16_t><<<row_blocks(n_rows), kThreads, 0, c->stream>>>(
        reinterpret_cast<uint16_t *>(so.data), reinterpret_cast<const uint16_t *>(sx.data), idx, n_rows, cols, x_rows,
        uint16_t(act_dtype == VD_BF16 ? 0x7fc0 : 0x7e00), c->fault);
  return check_launch(fn);
}

VD_API int32_t vd_scatter_tokens(uint64_t ctx, uint64_t token_ids, uint64_t dst_rows, uint64_t src, uint64_t src_rows,
                                 int64_t n) {
  clear_error();
  const char *fn = "vd_scatter_tokens";
  int32_t st = check_nonneg(fn, "n", n);
  if (st != VD_OK) return st;
  Context *c = context(ctx, fn);
  Span sd, sdr, ss, ssr;
  if (!c || !lookup_array(ctx, token_ids, "vd_scatter_tokens(token_ids)", 0, VD_I32, &sd) ||
      !lookup_array(ctx, dst_rows, "vd_scatter_tokens(dst_rows)", n, VD_I32, &sdr) ||
      !lookup_array(ctx, src, "vd_scatter_tokens(src)", 0, VD_I32, &ss) ||
      !lookup_array(ctx, src_rows, "vd_scatter_tokens(src_rows)", n, VD_I32, &ssr))
    return VD_ERR_INVALID_ARGUMENT;
  if (n == 0) return VD_OK;
  scatter_tokens_kernel<<<flat_blocks(n), kThreads, 0, c->stream>>>(
      reinterpret_cast<int32_t *>(sd.data), reinterpret_cast<const int32_t *>(sdr.data),
      reinterpret_cast<const int32_t *>(ss.data), reinterpret_cast<const int32_t *>(ssr.data), n,
      int64_t(sd.bytes / 4), int64_t(ss.bytes / 4), c->fault);
  return check_launch(fn);
}

VD_API int32_t vd_cast(uint64_t ctx, uint64_t out, uint64_t x, int64_t n, int32_t out_dtype, int32_t in_dtype) {
  clear_error();
  const char *fn = "vd_cast";
  int32_t st = check_float_dtype(fn, "out_dtype", out_dtype);
  if (st == VD_OK) st = check_float_dtype(fn, "in_dtype", in_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n", n);
  if (st != VD_OK) return st;
  Context *c = context(ctx, fn);
  Span so, sx;
  if (!c || !lookup_array(ctx, out, "vd_cast(out)", n, out_dtype, &so) ||
      !lookup_array(ctx, x, "vd_cast(x)", n, in_dtype, &sx))
    return VD_ERR_INVALID_ARGUMENT;
  if (n == 0) return VD_OK;
  cast_kernel<<<flat_blocks(n), kThreads, 0, c->stream>>>(so.data, sx.data, n, out_dtype, in_dtype);
  return check_launch(fn);
}

// The context's communicator, made on the first all-reduce (outside capture: it allocates), with
// NVLink multicast off unless the environment says otherwise (the shared GPU machines need it off).
static int32_t nccl_comm(Context *c, const Nccl &api, ncclComm_t *out, const char *fn) {
  if (!c->nccl_comm) {
    if (c->capturing) return fail(VD_ERR_INVALID_ARGUMENT, "%s: the first all-reduce of a context may not be captured into a graph", fn);
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    ncclComm_t comm = nullptr;
    const int device = c->device;
    const ncclResult_t r = api.comm_init_all(&comm, 1, &device);
    if (r != ncclSuccess) return fail(VD_ERR_DEVICE, "%s: ncclCommInitAll failed: %s", fn, api.error_string(r));
    c->nccl_comm = comm;
  }
  *out = static_cast<ncclComm_t>(c->nccl_comm);
  return VD_OK;
}

// With one rank the sum is the buffer itself; where NCCL loads, it still goes through a
// communicator of one, so the path tensor parallelism takes is the one a one-GPU machine tests.
VD_API int32_t vd_all_reduce(uint64_t ctx, uint64_t buf, int64_t n, int32_t act_dtype) {
  clear_error();
  const char *fn = "vd_all_reduce";
  int32_t st = check_float_dtype(fn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n", n);
  if (st != VD_OK) return st;
  Span sb;
  Context *c = context(ctx, fn);
  if (!c || !lookup_array(ctx, buf, "vd_all_reduce(buf)", n, act_dtype, &sb)) return VD_ERR_INVALID_ARGUMENT;
  const Nccl *api = nccl(nullptr);
  if (n == 0 || !api) return VD_OK;
  ncclComm_t comm = nullptr;
  if ((st = nccl_comm(c, *api, &comm, fn)) != VD_OK) return st;
  const ncclDataType_t type = act_dtype == VD_F32 ? ncclFloat32 : act_dtype == VD_F16 ? ncclFloat16 : ncclBfloat16;
  const ncclResult_t r = api->all_reduce(sb.data, sb.data, size_t(n), type, ncclSum, comm, c->stream);
  return r == ncclSuccess ? VD_OK : fail(VD_ERR_DEVICE, "%s: ncclAllReduce failed: %s", fn, api->error_string(r));
}
