// Pinned host memory, asynchronous read-back and events of the cpu backend (vllmd.h, ABI 3).
// Every op here finishes inside its call, so the "async" copy copies at once and an event is only
// a handle to validate: the engine's async path runs unchanged on cpu, just without overlap.
#include <cstdlib>

#include "registry.h"

using namespace vd;

namespace {

// The context's event set (caller holds the lock); records an error naming fn if ctx is bad.
std::set<uint64_t> *events_of(Registry &r, uint64_t ctx, const char *fn) {
  Context *c = find_context(r, ctx, fn);
  return c ? &c->events : nullptr;
}

// VD_OK if `event` is a live event of ctx, else VD_ERR_INVALID_ARGUMENT naming fn.
int32_t check_event(uint64_t ctx, uint64_t event, const char *fn) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::set<uint64_t> *events = events_of(r, ctx, fn);
  if (!events) return VD_ERR_INVALID_ARGUMENT;
  if (events->count(event) == 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: bad event handle %llu", fn, (unsigned long long)event);
  return VD_OK;
}

} // namespace

VD_API int32_t vd_host_alloc(uint64_t ctx, uint64_t bytes, void **out_ptr) {
  clear_error();
  const char *fn = "vd_host_alloc";
  const int32_t st = check_host_alloc_args(out_ptr, bytes);
  if (st != VD_OK) return st;
  if (!valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  const uint64_t rounded = (bytes + 63) / 64 * 64; // aligned_alloc wants a multiple of the alignment
  std::unique_ptr<void, FreeDeleter> block(std::aligned_alloc(64, rounded));
  if (!block) return fail(VD_ERR_OUT_OF_MEMORY, "%s: cannot allocate %llu bytes", fn, (unsigned long long)bytes);
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  Context *c = find_context(r, ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  void *p = block.get();
  c->host_blocks[p] = std::move(block);
  *out_ptr = p;
  return VD_OK;
}

VD_API int32_t vd_host_free(uint64_t ctx, void *ptr) {
  clear_error();
  const char *fn = "vd_host_free";
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  Context *c = find_context(r, ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  if (c->host_blocks.erase(ptr) == 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: %p is not memory from vd_host_alloc on this context (or was freed)", fn,
                ptr);
  return VD_OK;
}

VD_API int32_t vd_copy_to_host_async(uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst, uint64_t bytes) {
  clear_error();
  return copy_to_host("vd_copy_to_host_async", "vd_copy_to_host_async(src)", ctx, src, src_offset, dst, bytes);
}

VD_API int32_t vd_event_create(uint64_t ctx, uint64_t *out_event) {
  clear_error();
  const char *fn = "vd_event_create";
  if (!out_event) return fail(VD_ERR_INVALID_ARGUMENT, "%s: out_event is null", fn);
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::set<uint64_t> *events = events_of(r, ctx, fn);
  if (!events) return VD_ERR_INVALID_ARGUMENT;
  const uint64_t h = r.next_handle++;
  events->insert(h);
  *out_event = h;
  return VD_OK;
}

VD_API int32_t vd_event_record(uint64_t ctx, uint64_t event) {
  clear_error();
  return check_event(ctx, event, "vd_event_record");
}

VD_API int32_t vd_event_sync(uint64_t ctx, uint64_t event) {
  clear_error();
  return check_event(ctx, event, "vd_event_sync");
}

VD_API int32_t vd_event_destroy(uint64_t ctx, uint64_t event) {
  clear_error();
  const char *fn = "vd_event_destroy";
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::set<uint64_t> *events = events_of(r, ctx, fn);
  if (!events) return VD_ERR_INVALID_ARGUMENT;
  if (events->erase(event) == 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: bad event handle %llu", fn, (unsigned long long)event);
  return VD_OK;
}
