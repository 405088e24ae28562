// Pinned host memory, asynchronous read-back and events of the CUDA backend (vllmd.h, ABI 3):
// what lets the engine queue step N+1 before it reads step N's sampled tokens. The copy goes
// into page-locked memory (cudaMemcpyAsync into pageable memory would wait for the stream), and
// the host waits on an event recorded after it only when it needs the values.
#include "common.cuh"
#include "registry.cuh"

using namespace vd;

namespace {

// The CUDA event behind a handle, or null (an error naming fn is recorded).
cudaEvent_t find_event(uint64_t ctx, uint64_t event, const char *fn) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, fn);
  if (!e) return nullptr;
  auto it = e->events.find(event);
  if (it == e->events.end()) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: bad event handle %llu", fn, (unsigned long long)event);
    return nullptr;
  }
  return it->second;
}

// The context, made current, if it exists and is not capturing a graph (else null, error recorded).
Context *idle_context(uint64_t ctx, const char *fn) {
  Context *c = context(ctx, fn);
  if (!c || check_not_capturing(c, fn) != VD_OK) return nullptr;
  return c;
}

} // namespace

VD_API int32_t vd_host_alloc(uint64_t ctx, uint64_t bytes, void **out_ptr) {
  clear_error();
  const char *fn = "vd_host_alloc";
  int32_t st = check_host_alloc_args(out_ptr, bytes);
  if (st != VD_OK) return st;
  if (!idle_context(ctx, fn)) return VD_ERR_INVALID_ARGUMENT;
  void *p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return fail(VD_ERR_OUT_OF_MEMORY, "%s: cannot pin %llu bytes of host memory", fn, (unsigned long long)bytes);
  }
  st = check_cuda(err, fn, "cudaHostAlloc");
  if (st != VD_OK) return st;
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, fn);
  if (!e) {
    cudaFreeHost(p); // the context went away meanwhile
    return VD_ERR_INVALID_ARGUMENT;
  }
  e->host_blocks.insert(p);
  *out_ptr = p;
  return VD_OK;
}

// Waits for the stream first: a copy still queued may write into the block.
VD_API int32_t vd_host_free(uint64_t ctx, void *ptr) {
  clear_error();
  const char *fn = "vd_host_free";
  Context *c = idle_context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    ContextEntry *e = find_entry(r, ctx, fn);
    if (!e) return VD_ERR_INVALID_ARGUMENT;
    if (e->host_blocks.erase(ptr) == 0)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: %p is not memory from vd_host_alloc on this context (or was freed)", fn,
                  ptr);
  }
  int32_t st = check_cuda(cudaStreamSynchronize(c->stream), fn, "cudaStreamSynchronize");
  int32_t freed = check_cuda(cudaFreeHost(ptr), fn, "cudaFreeHost");
  return st != VD_OK ? st : freed;
}

VD_API int32_t vd_copy_to_host_async(uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst, uint64_t bytes) {
  clear_error();
  const char *fn = "vd_copy_to_host_async";
  Span s;
  if (!lookup_range(ctx, src, src_offset, bytes, "vd_copy_to_host_async(src)", &s)) return VD_ERR_INVALID_ARGUMENT;
  if (bytes == 0) return VD_OK;
  if (!dst) return fail(VD_ERR_INVALID_ARGUMENT, "%s: dst is null", fn);
  Context *c = idle_context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  return check_cuda(cudaMemcpyAsync(dst, s.data + src_offset, bytes, cudaMemcpyDeviceToHost, c->stream), fn,
                    "cudaMemcpyAsync");
}

VD_API int32_t vd_event_create(uint64_t ctx, uint64_t *out_event) {
  clear_error();
  const char *fn = "vd_event_create";
  if (!out_event) return fail(VD_ERR_INVALID_ARGUMENT, "%s: out_event is null", fn);
  if (!context(ctx, fn)) return VD_ERR_INVALID_ARGUMENT;
  cudaEvent_t ev = nullptr;
  int32_t st = check_cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), fn, "cudaEventCreate");
  if (st != VD_OK) return st;
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, fn);
  if (!e) {
    cudaEventDestroy(ev);
    return VD_ERR_INVALID_ARGUMENT;
  }
  const uint64_t h = r.next_handle++;
  e->events[h] = ev;
  *out_event = h;
  return VD_OK;
}

VD_API int32_t vd_event_record(uint64_t ctx, uint64_t event) {
  clear_error();
  const char *fn = "vd_event_record";
  Context *c = idle_context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  cudaEvent_t ev = find_event(ctx, event, fn);
  if (!ev) return VD_ERR_INVALID_ARGUMENT;
  return check_cuda(cudaEventRecord(ev, c->stream), fn, "cudaEventRecord");
}

// Reports a kernel's fault as vd_sync does: with async scheduling this is the engine's only wait.
VD_API int32_t vd_event_sync(uint64_t ctx, uint64_t event) {
  clear_error();
  const char *fn = "vd_event_sync";
  if (!idle_context(ctx, fn)) return VD_ERR_INVALID_ARGUMENT;
  cudaEvent_t ev = find_event(ctx, event, fn);
  if (!ev) return VD_ERR_INVALID_ARGUMENT;
  int32_t st = check_cuda(cudaEventSynchronize(ev), fn, "cudaEventSynchronize");
  return st != VD_OK ? st : take_fault(ctx, fn);
}

// cudaEventDestroy does not wait: CUDA releases the event once the work before its record is done.
VD_API int32_t vd_event_destroy(uint64_t ctx, uint64_t event) {
  clear_error();
  const char *fn = "vd_event_destroy";
  if (!context(ctx, fn)) return VD_ERR_INVALID_ARGUMENT;
  cudaEvent_t ev = nullptr;
  {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    ContextEntry *e = find_entry(r, ctx, fn);
    if (!e) return VD_ERR_INVALID_ARGUMENT;
    auto it = e->events.find(event);
    if (it == e->events.end())
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: bad event handle %llu", fn, (unsigned long long)event);
    ev = it->second;
    e->events.erase(it);
  }
  return check_cuda(cudaEventDestroy(ev), fn, "cudaEventDestroy");
}
