// Library entry points, contexts, the handle table, buffers and copies of the cpu backend
// (host memory and events: cpu/async.cpp).
// A "device" here is host memory: every op runs synchronously on the calling thread (plus OpenMP).
#include <cstdio>
#include <cstdlib>

#include "rank.h"
#include "registry.h"

namespace vd {

Registry &registry() {
  static Registry r;
  return r;
}

Context *find_context(Registry &r, uint64_t ctx, const char *fn) {
  auto it = r.contexts.find(ctx);
  if (it == r.contexts.end()) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: bad context handle %llu", fn, (unsigned long long)ctx);
    return nullptr;
  }
  return &it->second;
}

bool valid_context(uint64_t ctx) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return find_context(r, ctx, "context") != nullptr;
}

int &rank_detail::rank_slot() {
  thread_local int rank = 0;
  return rank;
}

bool &rank_detail::looping() {
  thread_local bool looping = false;
  return looping;
}

int current_rank() { return rank_detail::rank_slot(); }

int context_tp(uint64_t ctx) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.contexts.find(ctx);
  return it == r.contexts.end() ? 0 : it->second.tp;
}

bool lookup(uint64_t ctx, uint64_t buf, const char *what, Span *out) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  Context *c = find_context(r, ctx, what);
  if (!c) return false;
  auto it = c->buffers.find(buf);
  if (it == c->buffers.end()) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: bad buffer handle %llu", what, (unsigned long long)buf);
    return false;
  }
  out->data = it->second.storage->ranks[size_t(current_rank())] + it->second.offset;
  out->bytes = it->second.bytes;
  return true;
}

int32_t copy_to_host(const char *fn, const char *what, uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst,
                     uint64_t bytes) {
  Span s;
  if (!lookup_range(ctx, src, src_offset, bytes, what, &s)) return VD_ERR_INVALID_ARGUMENT;
  if (bytes == 0) return VD_OK;
  if (!dst) return fail(VD_ERR_INVALID_ARGUMENT, "%s: dst is null", fn);
  std::memmove(dst, s.data + src_offset, bytes);
  return VD_OK;
}

} // namespace vd

using namespace vd;

VD_API int32_t vd_abi_version(void) { return VD_ABI_VERSION; }
VD_API const char *vd_last_error(void) { return last_error_text(); }
VD_API const char *vd_backend_name(void) { return "cpu"; }

VD_API int32_t vd_context_create(int32_t first_device, int32_t tp, uint64_t *out_ctx) {
  clear_error();
  if (!out_ctx) return fail(VD_ERR_INVALID_ARGUMENT, "vd_context_create: out_ctx is null");
  if (first_device != 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_context_create: first_device %d, the cpu backend has one device: 0",
                first_device);
  if (tp < 1 || tp > kMaxRanks)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_context_create: tp %d, the cpu backend runs 1 to %d ranks", tp, kMaxRanks);
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  uint64_t h = r.next_handle++;
  r.contexts[h].tp = tp;
  *out_ctx = h;
  return VD_OK;
}

VD_API int32_t vd_context_destroy(uint64_t ctx) {
  clear_error();
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (!find_context(r, ctx, "vd_context_destroy")) return VD_ERR_INVALID_ARGUMENT;
  r.contexts.erase(ctx);
  return VD_OK;
}

// Reads a "Name:   123 kB" line of /proc/meminfo; returns false if absent.
static bool meminfo_kb(const char *name, uint64_t *kb) {
  FILE *f = std::fopen("/proc/meminfo", "r");
  if (!f) return false;
  char line[256];
  bool found = false;
  size_t len = std::strlen(name);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, name, len) == 0 && line[len] == ':') {
      found = std::sscanf(line + len + 1, "%llu", (unsigned long long *)kb) == 1;
      break;
    }
  }
  std::fclose(f);
  return found;
}

VD_API int32_t vd_mem_info(uint64_t ctx, uint64_t *out) {
  clear_error();
  if (!valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  if (!out) return fail(VD_ERR_INVALID_ARGUMENT, "vd_mem_info: out is null");
  uint64_t avail_kb = 0, total_kb = 0;
  if (!meminfo_kb("MemAvailable", &avail_kb) || !meminfo_kb("MemTotal", &total_kb))
    return fail(VD_ERR_IO, "vd_mem_info: cannot read MemAvailable/MemTotal from /proc/meminfo");
  out[0] = avail_kb * 1024;
  out[1] = total_kb * 1024;
  return VD_OK;
}

VD_API int32_t vd_capabilities(uint64_t ctx, uint64_t *out_caps) {
  clear_error();
  if (!valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  if (!out_caps) return fail(VD_ERR_INVALID_ARGUMENT, "vd_capabilities: out_caps is null");
  *out_caps = 0; // the reference: correct everywhere, fast nowhere; synchronous, in host memory, f32
  return VD_OK;
}

VD_API int32_t vd_sync(uint64_t ctx) {
  clear_error();
  return valid_context(ctx) ? VD_OK : VD_ERR_INVALID_ARGUMENT;
}

// The cpu runs each op as it is called; there is no launch cost for a graph to save.
VD_API int32_t vd_graph_begin(uint64_t ctx) {
  clear_error();
  if (!valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  return fail(VD_ERR_UNSUPPORTED, "vd_graph_begin: the cpu backend has no graphs");
}

VD_API int32_t vd_graph_end(uint64_t ctx, uint64_t *out_graph) {
  clear_error();
  if (!valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  if (!out_graph) return fail(VD_ERR_INVALID_ARGUMENT, "vd_graph_end: out_graph is null");
  return fail(VD_ERR_INVALID_ARGUMENT, "vd_graph_end: the context is not capturing (the cpu backend has no graphs)");
}

VD_API int32_t vd_graph_launch(uint64_t ctx, uint64_t graph) {
  clear_error();
  if (!valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  return fail(VD_ERR_INVALID_ARGUMENT, "vd_graph_launch: bad graph handle %llu (the cpu backend has no graphs)",
              (unsigned long long)graph);
}

VD_API int32_t vd_graph_destroy(uint64_t ctx, uint64_t graph) {
  clear_error();
  if (!valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  return fail(VD_ERR_INVALID_ARGUMENT, "vd_graph_destroy: bad graph handle %llu (the cpu backend has no graphs)",
              (unsigned long long)graph);
}

VD_API int32_t vd_buffer_alloc(uint64_t ctx, uint64_t bytes, uint64_t *out_buf) {
  clear_error();
  if (!out_buf) return fail(VD_ERR_INVALID_ARGUMENT, "vd_buffer_alloc: out_buf is null");
  // Linux overcommits: refuse what can never fit now rather than be killed when it is touched.
  uint64_t total_kb = 0;
  if (meminfo_kb("MemTotal", &total_kb) && bytes > total_kb * 1024)
    return fail(VD_ERR_OUT_OF_MEMORY, "vd_buffer_alloc: %llu bytes is more than the machine's %llu bytes of memory",
                (unsigned long long)bytes, (unsigned long long)total_kb * 1024);
  const int tp = context_tp(ctx);
  auto storage = std::make_shared<Storage>();
  // 64-byte alignment keeps vector loads on cache lines; round up as aligned_alloc requires.
  uint64_t rounded = (bytes + 63) / 64 * 64;
  for (int rank = 0; rank < tp; rank++) {
    storage->ranks.push_back(static_cast<uint8_t *>(std::aligned_alloc(64, rounded ? rounded : 64)));
    if (!storage->ranks.back())
      return fail(VD_ERR_OUT_OF_MEMORY, "vd_buffer_alloc: cannot allocate %llu bytes on rank %d", (unsigned long long)bytes, rank);
  }
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  Context *c = find_context(r, ctx, "vd_buffer_alloc");
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  uint64_t h = r.next_handle++;
  c->buffers[h] = Buffer{std::move(storage), 0, bytes, h};
  *out_buf = h;
  return VD_OK;
}

VD_API int32_t vd_buffer_view(uint64_t ctx, uint64_t buf, uint64_t offset, uint64_t bytes, uint64_t *out_buf) {
  clear_error();
  if (!out_buf) return fail(VD_ERR_INVALID_ARGUMENT, "vd_buffer_view: out_buf is null");
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  Context *c = find_context(r, ctx, "vd_buffer_view");
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  auto it = c->buffers.find(buf);
  if (it == c->buffers.end())
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_buffer_view: bad buffer handle %llu", (unsigned long long)buf);
  const Buffer &parent = it->second;
  if (offset > parent.bytes || bytes > parent.bytes - offset)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_buffer_view: range [%llu, %llu) outside buffer %llu of %llu bytes",
                (unsigned long long)offset, (unsigned long long)(offset + bytes), (unsigned long long)buf,
                (unsigned long long)parent.bytes);
  uint64_t h = r.next_handle++;
  c->buffers[h] = Buffer{parent.storage, parent.offset + offset, bytes, parent.root};
  *out_buf = h;
  return VD_OK;
}

VD_API int32_t vd_buffer_free(uint64_t ctx, uint64_t buf) {
  clear_error();
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  Context *c = find_context(r, ctx, "vd_buffer_free");
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  auto it = c->buffers.find(buf);
  if (it == c->buffers.end())
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_buffer_free: bad buffer handle %llu", (unsigned long long)buf);
  if (it->second.root != buf) { // a view: only its handle goes
    c->buffers.erase(it);
    return VD_OK;
  }
  for (auto v = c->buffers.begin(); v != c->buffers.end();) // the allocation and every view of it
    v = v->second.root == buf ? c->buffers.erase(v) : std::next(v);
  return VD_OK;
}

VD_API int32_t vd_copy_from_host(uint64_t ctx, uint64_t dst, uint64_t dst_offset, const void *src, uint64_t bytes) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_copy_from_host(ctx, dst, dst_offset, src, bytes)); // the same bytes to each
  Span d;
  if (!lookup_range(ctx, dst, dst_offset, bytes, "vd_copy_from_host(dst)", &d)) return VD_ERR_INVALID_ARGUMENT;
  if (bytes == 0) return VD_OK;
  if (!src) return fail(VD_ERR_INVALID_ARGUMENT, "vd_copy_from_host: src is null");
  std::memmove(d.data + dst_offset, src, bytes);
  return VD_OK;
}

VD_API int32_t vd_copy_to_host(uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst, uint64_t bytes) {
  clear_error();
  return copy_to_host("vd_copy_to_host", "vd_copy_to_host(src)", ctx, src, src_offset, dst, bytes);
}

VD_API int32_t vd_copy(uint64_t ctx, uint64_t dst, uint64_t dst_offset, uint64_t src, uint64_t src_offset,
                       uint64_t bytes) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_copy(ctx, dst, dst_offset, src, src_offset, bytes));
  Span d, s;
  if (!lookup_range(ctx, dst, dst_offset, bytes, "vd_copy(dst)", &d)) return VD_ERR_INVALID_ARGUMENT;
  if (!lookup_range(ctx, src, src_offset, bytes, "vd_copy(src)", &s)) return VD_ERR_INVALID_ARGUMENT;
  std::memmove(d.data + dst_offset, s.data + src_offset, bytes);
  return VD_OK;
}
