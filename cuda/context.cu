// Library entry points, errors, the handle table, contexts and buffers of the CUDA backend
// (copies: cuda/copy.cu). Everything a context owns lives in its registry entry and is released
// by vd_context_destroy.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "common.cuh"
#include "cublas_api.h"
#include "fp8_gemm.cuh"
#include "nccl_api.h"
#include "registry.cuh"

namespace vd {
// Compiled like every kernel here, so its PTX version tells which architecture the kernels of
// this build run as on this device.
__global__ void pdl_probe_kernel() {}

namespace {

// Pinned host memory for uploads, used in two 8 MiB halves: a chunk's copy (~0.4 ms) costs far
// more than the per-chunk bookkeeping, and the tests' 12-24 MiB transfers take several chunks.
constexpr uint64_t kStagingBytes = uint64_t(16) << 20;

} // namespace


Registry &registry() {
  static Registry r;
  return r;
}

ContextEntry *find_entry(Registry &r, uint64_t ctx, const char *fn) {
  auto it = r.contexts.find(ctx);
  if (it == r.contexts.end()) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: bad context handle %llu", fn, (unsigned long long)ctx);
    return nullptr;
  }
  return it->second.get();
}

Context *context(uint64_t ctx, const char *fn) {
  Context *c = nullptr;
  {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    ContextEntry *e = find_entry(r, ctx, fn);
    if (!e) return nullptr;
    c = &e->ctx;
  }
  if (check_cuda(cudaSetDevice(c->device), fn, "cudaSetDevice") != VD_OK) return nullptr;
  return c;
}

bool lookup(uint64_t ctx, uint64_t buf, const char *what, Span *out) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, what);
  if (!e) return false;
  auto it = e->buffers.find(buf);
  if (it == e->buffers.end()) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: bad buffer handle %llu", what, (unsigned long long)buf);
    return false;
  }
  out->data = it->second.base + it->second.offset;
  out->bytes = it->second.bytes;
  return true;
}

bool lookup_array(uint64_t ctx, uint64_t buf, const char *what, int64_t count, int32_t dtype, Span *out) {
  const int64_t eb = dtype_bytes(dtype);
  if (!lookup_sized(ctx, buf, what, bytes_of(count, eb, 1), out)) return false;
  if (eb > 0 && reinterpret_cast<uintptr_t>(out->data) % uint64_t(eb) != 0) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: buffer %llu starts at a byte offset that is not a multiple of its %lld-byte elements",
         what, (unsigned long long)buf, (long long)eb);
    return false;
  }
  return true;
}

int32_t check_launch(const char *fn) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return VD_OK;
  return fail(VD_ERR_DEVICE, "%s: kernel launch failed: %s", fn, cudaGetErrorString(e));
}

int32_t check_cuda(cudaError_t e, const char *fn, const char *what) {
  if (e == cudaSuccess) return VD_OK;
  cudaGetLastError(); // a failed call also leaves its error behind; a later check_launch must not see it
  return fail(VD_ERR_DEVICE, "%s: %s: %s", fn, what, cudaGetErrorString(e));
}

int32_t grow_workspace(Context &c, void **ptr, uint64_t *bytes, uint64_t need, const char *fn, const char *what) {
  if (*bytes >= need) return VD_OK;
  if (c.capturing)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: a graph capture needs a larger %s than an eager run of the same shape made; "
                "run the step once before capturing it", fn, what);
  if (*ptr) cudaFree(*ptr); // the stream is ordered: earlier users are queued before
  *ptr = nullptr;
  *bytes = 0;
  const int32_t st = check_cuda(cudaMalloc(ptr, need), fn, what);
  if (st == VD_OK) *bytes = need;
  return st;
}

// After the stream has drained: the fault a kernel recorded since the last check, if any.
int32_t take_fault(uint64_t ctx, const char *fn) {
  int32_t code = 0;
  {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    ContextEntry *e = find_entry(r, ctx, fn);
    if (!e) return VD_ERR_INVALID_ARGUMENT;
    code = *reinterpret_cast<volatile int32_t *>(e->fault_host);
    *reinterpret_cast<volatile int32_t *>(e->fault_host) = kFaultNone;
  }
  switch (code) {
  case kFaultNone: return VD_OK;
  case kFaultTokenId: return fail(VD_ERR_INVALID_ARGUMENT, "%s: an earlier vd_embedding met a token id outside [0, vocab)", fn);
  case kFaultPosition: return fail(VD_ERR_INVALID_ARGUMENT, "%s: an earlier vd_rope_write_kv met a position outside the cos_sin table", fn);
  case kFaultSlot: return fail(VD_ERR_INVALID_ARGUMENT, "%s: an earlier vd_rope_write_kv met a slot outside the KV cache", fn);
  case kFaultRowIndex: return fail(VD_ERR_INVALID_ARGUMENT, "%s: an earlier vd_gather_rows met a row index outside x", fn);
  case kFaultScatterRow: return fail(VD_ERR_INVALID_ARGUMENT, "%s: an earlier vd_scatter_tokens met a row outside token_ids or src", fn);
  default: return fail(VD_ERR_INVALID_ARGUMENT, "%s: an earlier op met an out-of-range index in device data (fault %d)", fn, code);
  }
}

} // namespace vd

using namespace vd;

namespace {

// Releases what a (possibly half-built) context holds; returns the first failure, keeps going.
int32_t release_context(ContextEntry &e) {
  const char *fn = "vd_context_destroy";
  Context &c = e.ctx;
  int32_t st = check_cuda(cudaSetDevice(c.device), fn, "cudaSetDevice");
  auto keep = [&st](int32_t s) { if (st == VD_OK) st = s; };
  if (c.stream) keep(check_cuda(cudaStreamSynchronize(c.stream), fn, "cudaStreamSynchronize"));
  for (auto &kv : e.buffers)
    if (kv.second.root == kv.first) keep(check_cuda(cudaFree(kv.second.base), fn, "cudaFree"));
  e.buffers.clear();
  for (auto &kv : e.graphs) keep(check_cuda(cudaGraphExecDestroy(kv.second), fn, "cudaGraphExecDestroy"));
  e.graphs.clear();
  for (auto &kv : e.events) keep(check_cuda(cudaEventDestroy(kv.second), fn, "cudaEventDestroy"));
  e.events.clear();
  for (void *p : e.host_blocks) keep(check_cuda(cudaFreeHost(p), fn, "cudaFreeHost"));
  e.host_blocks.clear();
  if (c.attn_workspace) keep(check_cuda(cudaFree(c.attn_workspace), fn, "cudaFree(attention workspace)"));
  if (c.dequant_workspace) keep(check_cuda(cudaFree(c.dequant_workspace), fn, "cudaFree(dequantization workspace)"));
  if (c.w8a8_workspace) keep(check_cuda(cudaFree(c.w8a8_workspace), fn, "cudaFree(W8A8 workspace)"));
  destroy_w8a8(c);
  // A communicator exists only if NCCL was loaded, so nccl() is not null here.
  if (c.nccl_comm && nccl(nullptr)->comm_destroy(static_cast<ncclComm_t>(c.nccl_comm)) != ncclSuccess && st == VD_OK)
    st = fail(VD_ERR_DEVICE, "%s: ncclCommDestroy failed", fn);
  if (c.cublas_workspace) keep(check_cuda(cudaFree(c.cublas_workspace), fn, "cudaFree(cublas workspace)"));
  // A handle exists only if cuBLAS was loaded, so cublas() is not null here.
  if (c.cublas && cublas(nullptr)->destroy(static_cast<cublasHandle_t>(c.cublas)) != CUBLAS_STATUS_SUCCESS && st == VD_OK)
    st = fail(VD_ERR_DEVICE, "%s: cublasDestroy failed", fn);
  for (cudaEvent_t ev : c.staging_free)
    if (ev) keep(check_cuda(cudaEventDestroy(ev), fn, "cudaEventDestroy"));
  if (c.staging) keep(check_cuda(cudaFreeHost(c.staging), fn, "cudaFreeHost(staging)"));
  if (e.fault_host) keep(check_cuda(cudaFreeHost(e.fault_host), fn, "cudaFreeHost(fault)"));
  if (c.stream) keep(check_cuda(cudaStreamDestroy(c.stream), fn, "cudaStreamDestroy"));
  return st;
}

// Device, stream, staging buffer, its events, the fault word and the SM count of a new context.
int32_t init_context(ContextEntry &e, int device) {
  const char *fn = "vd_context_create";
  Context &c = e.ctx;
  c.device = device;
  int32_t st = check_cuda(cudaSetDevice(device), fn, "cudaSetDevice");
  if (st == VD_OK) st = check_cuda(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking), fn, "cudaStreamCreate");
  if (st == VD_OK) st = check_cuda(cudaHostAlloc(&c.staging, kStagingBytes, cudaHostAllocDefault), fn, "cudaHostAlloc(staging)");
  if (st != VD_OK) return st;
  c.staging_bytes = kStagingBytes;
  for (cudaEvent_t &ev : c.staging_free)
    if (st == VD_OK) st = check_cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), fn, "cudaEventCreate");
  void *word = nullptr;
  if (st == VD_OK) st = check_cuda(cudaHostAlloc(&word, sizeof(int32_t), cudaHostAllocMapped), fn, "cudaHostAlloc(fault)");
  if (st != VD_OK) return st;
  e.fault_host = static_cast<int32_t *>(word);
  *e.fault_host = kFaultNone;
  void *dev_word = nullptr;
  st = check_cuda(cudaHostGetDevicePointer(&dev_word, word, 0), fn, "cudaHostGetDevicePointer(fault)");
  c.fault = static_cast<int32_t *>(dev_word);
  if (st == VD_OK)
    st = check_cuda(cudaDeviceGetAttribute(&c.sm_count, cudaDevAttrMultiProcessorCount, device), fn, "SM count");
  int major = 0, minor = 0;
  if (st == VD_OK) st = check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), fn, "compute capability");
  if (st == VD_OK) st = check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), fn, "compute capability");
  c.cc = major * 10 + minor;
  // The kernels' griddepcontrol instructions exist only in code compiled for sm_90+: a build that
  // runs here from older PTX must not launch them early.
  cudaFuncAttributes probe{};
  if (st == VD_OK)
    st = check_cuda(cudaFuncGetAttributes(&probe, reinterpret_cast<const void *>(&pdl_probe_kernel)), fn, "probe kernel");
  const char *pdl_env = std::getenv("VLLMD_CUDA_PDL");
  c.pdl = probe.ptxVersion >= 90 && !(pdl_env && std::strcmp(pdl_env, "0") == 0);
  return st;
}

} // namespace

VD_API int32_t vd_abi_version(void) { return VD_ABI_VERSION; }
VD_API const char *vd_last_error(void) { return last_error_text(); }
VD_API const char *vd_backend_name(void) { return "cuda"; }

VD_API int32_t vd_context_create(int32_t first_device, int32_t tp, uint64_t *out_ctx) {
  clear_error();
  const char *fn = "vd_context_create";
  if (!out_ctx) return fail(VD_ERR_INVALID_ARGUMENT, "%s: out_ctx is null", fn);
  if (first_device < 0) return fail(VD_ERR_INVALID_ARGUMENT, "%s: first_device %d must be >= 0", fn, first_device);
  if (tp != 1) return fail(VD_ERR_UNSUPPORTED, "%s: tp %d, the cuda backend supports tp = 1 only for now", fn, tp);
  int count = 0;
  int32_t st = check_cuda(cudaGetDeviceCount(&count), fn, "cudaGetDeviceCount");
  if (st != VD_OK) return st;
  if (first_device >= count)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: first_device %d, this machine has devices [0, %d)", fn, first_device, count);
  auto entry = std::make_unique<ContextEntry>();
  st = init_context(*entry, first_device);
  if (st != VD_OK) {
    std::string why = last_error_text();
    release_context(*entry);
    return fail(st, "%s", why.c_str()); // the first failure, not one from the clean-up
  }
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  uint64_t h = r.next_handle++;
  r.contexts[h] = std::move(entry);
  *out_ctx = h;
  return VD_OK;
}

VD_API int32_t vd_context_destroy(uint64_t ctx) {
  clear_error();
  std::unique_ptr<ContextEntry> entry;
  {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (!find_entry(r, ctx, "vd_context_destroy")) return VD_ERR_INVALID_ARGUMENT;
    entry = std::move(r.contexts[ctx]);
    r.contexts.erase(ctx);
  }
  return release_context(*entry);
}

VD_API int32_t vd_mem_info(uint64_t ctx, uint64_t *out) {
  clear_error();
  if (!context(ctx, "vd_mem_info")) return VD_ERR_INVALID_ARGUMENT;
  if (!out) return fail(VD_ERR_INVALID_ARGUMENT, "vd_mem_info: out is null");
  size_t free_bytes = 0, total_bytes = 0;
  int32_t st = check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "vd_mem_info", "cudaMemGetInfo");
  if (st != VD_OK) return st;
  out[0] = free_bytes;
  out[1] = total_bytes;
  return VD_OK;
}

VD_API int32_t vd_capabilities(uint64_t ctx, uint64_t *out_caps) {
  clear_error();
  Context *c = context(ctx, "vd_capabilities");
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  if (!out_caps) return fail(VD_ERR_INVALID_ARGUMENT, "vd_capabilities: out_caps is null");
  *out_caps = VD_CAP_GRAPHS | VD_CAP_ASYNC | VD_CAP_DEVICE_MEMORY | VD_CAP_HALF_ACTIVATIONS | (fast_w8a8(c) ? VD_CAP_FAST_W8A8 : 0);
  return VD_OK;
}

VD_API int32_t vd_sync(uint64_t ctx) {
  clear_error();
  Context *c = context(ctx, "vd_sync");
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  if (check_not_capturing(c, "vd_sync") != VD_OK) return VD_ERR_INVALID_ARGUMENT;
  int32_t st = check_cuda(cudaStreamSynchronize(c->stream), "vd_sync", "cudaStreamSynchronize");
  return st != VD_OK ? st : take_fault(ctx, "vd_sync");
}
