// Buffers and copies of the CUDA backend: device allocations, views, host <-> device copies through
// the context's pinned staging buffer, device copies. All copies are queued on the context stream.
#include <algorithm>
#include <cstring>

#include "common.cuh"
#include "registry.cuh"

namespace vd {

int32_t next_staging_half(Context *c, const char *fn, uint8_t **half, uint64_t *half_bytes) {
  const int h = c->staging_turn;
  int32_t st = check_cuda(cudaEventSynchronize(c->staging_free[h]), fn, "waiting for the staging buffer");
  if (st != VD_OK) return st;
  *half_bytes = c->staging_bytes / 2;
  *half = static_cast<uint8_t *>(c->staging) + uint64_t(h) * *half_bytes;
  return VD_OK;
}

int32_t staging_half_queued(Context *c, const char *fn) {
  int32_t st = check_cuda(cudaEventRecord(c->staging_free[c->staging_turn], c->stream), fn, "cudaEventRecord");
  c->staging_turn ^= 1;
  return st;
}

} // namespace vd

using namespace vd;

namespace {

// Adds a buffer to context ctx's table (the context may have gone since the caller checked it).
int32_t register_buffer(uint64_t ctx, const Buffer &b, bool is_root, uint64_t *out_buf, const char *fn) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, fn);
  if (!e) return VD_ERR_INVALID_ARGUMENT;
  const uint64_t h = r.next_handle++;
  Buffer nb = b;
  if (is_root) nb.root = h;
  e->buffers[h] = nb;
  *out_buf = h;
  return VD_OK;
}

// Overlapping device ranges: cudaMemcpy's result is undefined there, so go through a copy.
int32_t copy_overlapping(Context *c, uint8_t *dst, const uint8_t *src, uint64_t bytes) {
  const char *fn = "vd_copy";
  void *tmp = nullptr;
  int32_t st = check_cuda(cudaMallocAsync(&tmp, bytes, c->stream), fn, "cudaMallocAsync");
  if (st != VD_OK) return st;
  st = check_cuda(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, c->stream), fn, "cudaMemcpyAsync");
  if (st == VD_OK)
    st = check_cuda(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, c->stream), fn, "cudaMemcpyAsync");
  int32_t freed = check_cuda(cudaFreeAsync(tmp, c->stream), fn, "cudaFreeAsync");
  return st != VD_OK ? st : freed;
}

} // namespace

VD_API int32_t vd_buffer_alloc(uint64_t ctx, uint64_t bytes, uint64_t *out_buf) {
  clear_error();
  const char *fn = "vd_buffer_alloc";
  if (!out_buf) return fail(VD_ERR_INVALID_ARGUMENT, "%s: out_buf is null", fn);
  const Context *c = context(ctx, fn);
  if (!c || check_not_capturing(c, fn) != VD_OK) return VD_ERR_INVALID_ARGUMENT;
  if (bytes > (uint64_t(1) << 52))
    return fail(VD_ERR_OUT_OF_MEMORY, "%s: %llu bytes is more than any device holds", fn, (unsigned long long)bytes);
  const uint64_t rounded = std::max<uint64_t>(256, (bytes + 255) / 256 * 256); // cudaMalloc aligns to 256 bytes
  void *p = nullptr;
  cudaError_t e = cudaMalloc(&p, rounded);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    return fail(VD_ERR_OUT_OF_MEMORY, "%s: cannot allocate %llu bytes (%llu of %llu free)", fn, (unsigned long long)bytes,
                (unsigned long long)free_bytes, (unsigned long long)total);
  }
  int32_t st = check_cuda(e, fn, "cudaMalloc");
  if (st != VD_OK) return st;
  st = register_buffer(ctx, Buffer{static_cast<uint8_t *>(p), 0, bytes, 0}, true, out_buf, fn);
  if (st != VD_OK) cudaFree(p);
  return st;
}

VD_API int32_t vd_buffer_view(uint64_t ctx, uint64_t buf, uint64_t offset, uint64_t bytes, uint64_t *out_buf) {
  clear_error();
  const char *fn = "vd_buffer_view";
  if (!out_buf) return fail(VD_ERR_INVALID_ARGUMENT, "%s: out_buf is null", fn);
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, fn);
  if (!e) return VD_ERR_INVALID_ARGUMENT;
  auto it = e->buffers.find(buf);
  if (it == e->buffers.end())
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: bad buffer handle %llu", fn, (unsigned long long)buf);
  const Buffer parent = it->second;
  if (offset > parent.bytes || bytes > parent.bytes - offset)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: range [%llu, %llu) outside buffer %llu of %llu bytes", fn,
                (unsigned long long)offset, (unsigned long long)(offset + bytes), (unsigned long long)buf,
                (unsigned long long)parent.bytes);
  const uint64_t h = r.next_handle++;
  e->buffers[h] = Buffer{parent.base, parent.offset + offset, bytes, parent.root};
  *out_buf = h;
  return VD_OK;
}

// Freeing an allocation frees its views too; queued work that reads it finishes first.
VD_API int32_t vd_buffer_free(uint64_t ctx, uint64_t buf) {
  clear_error();
  const char *fn = "vd_buffer_free";
  Context *c = context(ctx, fn);
  if (!c || check_not_capturing(c, fn) != VD_OK) return VD_ERR_INVALID_ARGUMENT;
  uint8_t *to_free = nullptr;
  {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    ContextEntry *e = find_entry(r, ctx, fn);
    if (!e) return VD_ERR_INVALID_ARGUMENT;
    auto it = e->buffers.find(buf);
    if (it == e->buffers.end())
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: bad buffer handle %llu", fn, (unsigned long long)buf);
    if (it->second.root != buf) { // a view: only its handle goes
      e->buffers.erase(it);
      return VD_OK;
    }
    to_free = it->second.base;
    for (auto v = e->buffers.begin(); v != e->buffers.end();)
      v = v->second.root == buf ? e->buffers.erase(v) : std::next(v);
  }
  int32_t st = check_cuda(cudaStreamSynchronize(c->stream), fn, "cudaStreamSynchronize");
  int32_t freed = check_cuda(cudaFree(to_free), fn, "cudaFree");
  return st != VD_OK ? st : freed;
}

// Chunks go through the pinned staging buffer, so `src` is free for reuse when this returns while
// the copies still run on the stream; only a chunk that needs a busy half waits (for that half).
VD_API int32_t vd_copy_from_host(uint64_t ctx, uint64_t dst, uint64_t dst_offset, const void *src, uint64_t bytes) {
  clear_error();
  const char *fn = "vd_copy_from_host";
  Span d;
  if (!lookup_range(ctx, dst, dst_offset, bytes, "vd_copy_from_host(dst)", &d)) return VD_ERR_INVALID_ARGUMENT;
  if (bytes == 0) return VD_OK;
  if (!src) return fail(VD_ERR_INVALID_ARGUMENT, "%s: src is null", fn);
  Context *c = context(ctx, fn);
  if (!c || check_not_capturing(c, fn) != VD_OK) return VD_ERR_INVALID_ARGUMENT;
  std::lock_guard<std::mutex> lock(c->staging_mu);
  const uint8_t *from = static_cast<const uint8_t *>(src);
  for (uint64_t done = 0; done < bytes;) {
    uint8_t *half = nullptr;
    uint64_t half_bytes = 0;
    int32_t st = next_staging_half(c, fn, &half, &half_bytes);
    if (st != VD_OK) return st;
    const uint64_t n = std::min(half_bytes, bytes - done);
    std::memcpy(half, from + done, n);
    st = check_cuda(cudaMemcpyAsync(d.data + dst_offset + done, half, n, cudaMemcpyHostToDevice, c->stream), fn,
                    "cudaMemcpyAsync");
    int32_t queued = staging_half_queued(c, fn);
    if (st != VD_OK) return st;
    if (queued != VD_OK) return queued;
    done += n;
  }
  return VD_OK;
}

VD_API int32_t vd_copy_to_host(uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst, uint64_t bytes) {
  clear_error();
  const char *fn = "vd_copy_to_host";
  Span s;
  if (!lookup_range(ctx, src, src_offset, bytes, "vd_copy_to_host(src)", &s)) return VD_ERR_INVALID_ARGUMENT;
  if (bytes == 0) return VD_OK;
  if (!dst) return fail(VD_ERR_INVALID_ARGUMENT, "%s: dst is null", fn);
  Context *c = context(ctx, fn);
  if (!c || check_not_capturing(c, fn) != VD_OK) return VD_ERR_INVALID_ARGUMENT;
  int32_t st = check_cuda(cudaMemcpyAsync(dst, s.data + src_offset, bytes, cudaMemcpyDeviceToHost, c->stream), fn,
                          "cudaMemcpyAsync");
  int32_t synced = check_cuda(cudaStreamSynchronize(c->stream), fn, "cudaStreamSynchronize");
  if (st != VD_OK) return st;
  if (synced != VD_OK) return synced;
  return take_fault(ctx, fn);
}

VD_API int32_t vd_copy(uint64_t ctx, uint64_t dst, uint64_t dst_offset, uint64_t src, uint64_t src_offset,
                       uint64_t bytes) {
  clear_error();
  const char *fn = "vd_copy";
  Span d, s;
  if (!lookup_range(ctx, dst, dst_offset, bytes, "vd_copy(dst)", &d)) return VD_ERR_INVALID_ARGUMENT;
  if (!lookup_range(ctx, src, src_offset, bytes, "vd_copy(src)", &s)) return VD_ERR_INVALID_ARGUMENT;
  Context *c = context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  uint8_t *to = d.data + dst_offset;
  const uint8_t *from = s.data + src_offset;
  if (bytes == 0 || to == from) return VD_OK;
  if (to < from + bytes && from < to + bytes) return copy_overlapping(c, to, from, bytes);
  return check_cuda(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, c->stream), fn, "cudaMemcpyAsync");
}
