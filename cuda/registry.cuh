// The handle table of the CUDA backend, shared by cuda/context.cu (contexts), cuda/copy.cu
// (buffers and copies), cuda/graph.cu and cuda/async.cu (host memory, events); the ops see only
// what cuda/common.cuh declares.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "common.cuh"

namespace vd {

// One vd_buffer_alloc (root == its own handle) or a view of one (root == the allocation's handle).
struct Buffer {
  uint8_t *base = nullptr; // the allocation's device address
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint64_t root = 0;
};

struct ContextEntry {
  Context ctx;
  int32_t *fault_host = nullptr; // host address of ctx.fault
  std::map<uint64_t, Buffer> buffers;
  std::map<uint64_t, cudaGraphExec_t> graphs; // vd_graph_end's instantiated graphs
  std::set<void *> host_blocks;               // vd_host_alloc's pinned memory (cuda/async.cu)
  std::map<uint64_t, cudaEvent_t> events;     // vd_event_create's events (cuda/async.cu)
};

// One process-wide table is what a C ABI with opaque integer handles implies; the mutex makes it
// safe from the engine worker and the main thread at once. Every kind of handle shares one
// counter, so a handle is never reused within a process and stays far below 2^53.
struct Registry {
  std::mutex mu;
  uint64_t next_handle = 1;
  std::map<uint64_t, std::unique_ptr<ContextEntry>> contexts;
};

Registry &registry();

// Caller holds registry().mu. Records an error naming fn and returns null for a bad handle.
ContextEntry *find_entry(Registry &r, uint64_t ctx, const char *fn);

// After the stream has drained: VD_OK, or VD_ERR_INVALID_ARGUMENT describing the fault a kernel
// recorded since the last check (and clears it).
int32_t take_fault(uint64_t ctx, const char *fn);

const char *last_error_text();

} // namespace vd
