// The handle table of the cpu backend, shared by cpu/context.cpp (contexts, buffers, copies) and
// cpu/async.cpp (pinned host memory and events); the ops see only lookup() (common/status.h).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "internal.h"

namespace vd {

// Memory of one vd_buffer_alloc, one block per rank; views share it and keep their parent's
// handle as `root`.
struct Storage {
  std::vector<uint8_t *> ranks;
  ~Storage() {
    for (uint8_t *p : ranks) std::free(p);
  }
};

struct Buffer {
  std::shared_ptr<Storage> storage;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint64_t root = 0; // the handle of the allocation this buffer or view belongs to
};

struct FreeDeleter {
  void operator()(void *p) const { std::free(p); }
};

constexpr int kMaxRanks = 64;

struct Context {
  int tp = 1; // ranks: every buffer has a block per rank, every op runs once per rank (rank.h)
  std::map<uint64_t, Buffer> buffers;
  // vd_host_alloc's blocks by address; erasing one (or the context) frees it.
  std::map<void *, std::unique_ptr<void, FreeDeleter>> host_blocks;
  std::set<uint64_t> events; // the cpu finishes work inside each call: an event is only a handle
};

// One process-wide table is what a C ABI with opaque integer handles implies; the mutex makes it
// safe to use from the engine worker and the main thread at once. Every kind of handle comes
// from one counter, so none is ever reused within a process.
struct Registry {
  std::mutex mu;
  uint64_t next_handle = 1;
  std::map<uint64_t, Context> contexts;
};

Registry &registry();

// Caller holds the registry lock. Records an error and returns null for a bad context handle.
Context *find_context(Registry &r, uint64_t ctx, const char *fn);

} // namespace vd
