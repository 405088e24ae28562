// Shared internals of the CUDA backend: contexts, handle lookup, error reporting, element access.
// Declarations here; definitions in cuda/context.cu. Every entry point calls clear_error() first.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>
#include <mutex>

#include "vllmd.h"
#include "../common/status.h"

#define VD_API extern "C" __attribute__((visibility("default")))

namespace vd {

struct LtState; // cuBLASLt's handle and plans for W8A8 (cuda/w8a8.cu)

// One context: one device (tp = 1 for now), one stream all ops are queued on, a cuBLAS handle,
// and a pinned host staging buffer for uploads.
struct Context {
  int device = 0;
  int tp = 1;
  cudaStream_t stream = nullptr;
  void *cublas = nullptr;       // cublasHandle_t, created lazily by gemm.cu (see cublas_handle)
  void *staging = nullptr;      // pinned host memory
  uint64_t staging_bytes = 0;
  int sm_count = 0;
  int cc = 0;                   // compute capability, major * 10 + minor
  bool pdl = false;             // programmatic dependent launch for the decode kernels (see launch.cuh)
  // Added with cuda/context.cu:
  std::mutex staging_mu;              // held by whoever fills `staging` (uploads, weight loads)
  cudaEvent_t staging_free[2] = {};   // recorded after the copy out of each half of `staging`
  int staging_turn = 0;               // the half the next upload fills
  int32_t *fault = nullptr;           // device address of a pinned host word: see record_fault
  bool capturing = false;             // between vd_graph_begin and vd_graph_end (cuda/graph.cu)
  void *cublas_workspace = nullptr;   // cuBLAS's workspace, ours so that graph capture allocates nothing
  void *attn_workspace = nullptr;     // split-KV partials of vd_attention (grown on demand, never in capture)
  uint64_t attn_workspace_bytes = 0;
  void *dequant_workspace = nullptr;  // vd_gemm_fp8's dequantized weights for large batches (likewise)
  uint64_t dequant_workspace_bytes = 0;
  LtState *lt = nullptr;              // made on the first W8A8 product (cuda/w8a8.cu)
  void *nccl_comm = nullptr;          // ncclComm_t of the context's ranks, made on the first all-reduce (ops.cu)
  void *w8a8_workspace = nullptr;     // W8A8's quantized activations (grown on demand, never in capture)
  uint64_t w8a8_workspace_bytes = 0;
};

// Grows one of the context's workspaces (*ptr of *bytes) to at least `need` bytes. Never while
// capturing a graph (an allocation cannot be captured): an eager run of the same shape must come
// first, which the runner does for every decode bucket. `what` names the workspace in errors.
int32_t grow_workspace(Context &c, void **ptr, uint64_t *bytes, uint64_t need, const char *fn, const char *what);

// VD_OK, or VD_ERR_INVALID_ARGUMENT naming fn when the context is capturing a graph (host copies,
// syncs and allocations cannot be captured).
int32_t check_not_capturing(const Context *c, const char *fn);

// The context behind a handle (records an error and returns nullptr if there is none).
// Also makes its device current on the calling thread.
Context *context(uint64_t ctx, const char *fn);


// VD_OK, or VD_ERR_DEVICE naming fn and the CUDA error (cudaGetLastError after a launch).
int32_t check_launch(const char *fn);
int32_t check_cuda(cudaError_t e, const char *fn, const char *what);

// Argument checks shared by the ops (record an error naming fn and arg).

// lookup_sized for `count` elements of `dtype`, and also checks the address is a multiple of the
// element size (a view at an odd offset would otherwise fault on the device).
bool lookup_array(uint64_t ctx, uint64_t buf, const char *what, int64_t count, int32_t dtype, Span *out);

// The pinned staging buffer is used in two halves in turn, so filling one on the host overlaps the
// copy out of the other. Call with staging_mu held: next_staging_half waits until the next half's
// previous copy has finished and returns it; staging_half_queued marks the copy out of it, just
// queued on the stream, as that half's last use.
int32_t next_staging_half(Context *c, const char *fn, uint8_t **half, uint64_t *half_bytes);
int32_t staging_half_queued(Context *c, const char *fn);

// Kernels cannot return a status. A kernel that meets a bad value only the device can see (an
// index read from a device buffer) skips the access, records a code in Context::fault and carries
// on; vd_sync, vd_event_sync and vd_copy_to_host report it as VD_ERR_INVALID_ARGUMENT and clear it.
enum FaultCode : int32_t {
  kFaultNone = 0,
  kFaultTokenId = 1,   // vd_embedding: a token id outside [0, vocab)
  kFaultPosition = 2,  // vd_rope_write_kv: a position outside the cos_sin table
  kFaultSlot = 3,      // vd_rope_write_kv: a slot outside the KV cache
  kFaultRowIndex = 4,  // vd_gather_rows: a row index outside x
  kFaultOther = 5,     // any other kernel (see its file)
  kFaultScatterRow = 6, // vd_scatter_tokens: a dst or src row outside its buffer
};
__device__ __forceinline__ void record_fault(int32_t *fault, int32_t code) {
  *reinterpret_cast<volatile int32_t *>(fault) = code; // a plain store: any one code will do
}

inline int64_t dtype_bytes(int32_t dtype) {
  return dtype == VD_F32 || dtype == VD_I32 ? 4 : dtype == VD_F16 || dtype == VD_BF16 ? 2 : dtype == VD_FP8_E4M3 ? 1 : 0;
}

// out[M, N] = x[M, K] · w[N, K]ᵀ, all of dtype dt (f32, f16 or bf16), no bias: vd_gemm's kernels
// (cuda/gemm.cu) for other ops that need a dense product.
int32_t gemm_dense(Context *c, void *out, const void *x, const void *w, int64_t m, int64_t n, int64_t k, int32_t dt);

// Element access by run-time dtype (f32, f16, bf16), converting through f32.
__device__ __forceinline__ float load_f32(const void *p, int64_t i, int32_t dtype);
__device__ __forceinline__ void store_f32(void *p, int64_t i, int32_t dtype, float v);

} // namespace vd

#include "dtype.cuh" // definitions of load_f32 / store_f32
