// CUDA graphs behind vd_graph_*: stream capture on the context's stream, instantiation, replay.
// A decode step is ~400 small launches; replaying them as one graph takes the CPU's launch cost
// (and the GPU's idle gaps between kernels) out of every step.
#include "common.cuh"
#include "registry.cuh"

namespace vd {

int32_t check_not_capturing(const Context *c, const char *fn) {
  if (c != nullptr && c->capturing)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: not allowed while the context is capturing a graph (vd_graph_begin)", fn);
  return VD_OK;
}

} // namespace vd

using namespace vd;

namespace {

// The instantiated graph behind a handle, or null (an error naming fn is recorded).
cudaGraphExec_t find_graph(uint64_t ctx, uint64_t graph, const char *fn) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, fn);
  if (!e) return nullptr;
  auto it = e->graphs.find(graph);
  if (it == e->graphs.end()) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: bad graph handle %llu", fn, (unsigned long long)graph);
    return nullptr;
  }
  return it->second;
}

int32_t register_graph(uint64_t ctx, cudaGraphExec_t exec, uint64_t *out) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  ContextEntry *e = find_entry(r, ctx, "vd_graph_end");
  if (!e) return VD_ERR_INVALID_ARGUMENT;
  const uint64_t h = r.next_handle++;
  e->graphs[h] = exec;
  *out = h;
  return VD_OK;
}

} // namespace

VD_API int32_t vd_graph_begin(uint64_t ctx) {
  clear_error();
  const char *fn = "vd_graph_begin";
  Context *c = context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  int32_t st = check_not_capturing(c, fn);
  // Thread-local mode: only this thread's unsafe calls (allocations, syncs) break the capture.
  if (st == VD_OK)
    st = check_cuda(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), fn, "cudaStreamBeginCapture");
  if (st == VD_OK) c->capturing = true;
  return st;
}

VD_API int32_t vd_graph_end(uint64_t ctx, uint64_t *out_graph) {
  clear_error();
  const char *fn = "vd_graph_end";
  Context *c = context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  if (!out_graph) return fail(VD_ERR_INVALID_ARGUMENT, "%s: out_graph is null", fn);
  if (!c->capturing) return fail(VD_ERR_INVALID_ARGUMENT, "%s: the context is not capturing (call vd_graph_begin)", fn);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(c->stream, &graph);
  c->capturing = false;
  int32_t st = check_cuda(ended, fn, "cudaStreamEndCapture (an op queued during capture failed?)");
  cudaGraphExec_t exec = nullptr;
  if (st == VD_OK) st = check_cuda(cudaGraphInstantiate(&exec, graph, 0), fn, "cudaGraphInstantiate");
  if (graph) cudaGraphDestroy(graph); // the executable graph keeps what it needs
  if (st == VD_OK) st = register_graph(ctx, exec, out_graph);
  if (st != VD_OK && exec) cudaGraphExecDestroy(exec);
  return st;
}

VD_API int32_t vd_graph_launch(uint64_t ctx, uint64_t graph) {
  clear_error();
  const char *fn = "vd_graph_launch";
  Context *c = context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  int32_t st = check_not_capturing(c, fn);
  if (st != VD_OK) return st;
  cudaGraphExec_t exec = find_graph(ctx, graph, fn);
  if (!exec) return VD_ERR_INVALID_ARGUMENT;
  return check_cuda(cudaGraphLaunch(exec, c->stream), fn, "cudaGraphLaunch");
}

VD_API int32_t vd_graph_destroy(uint64_t ctx, uint64_t graph) {
  clear_error();
  const char *fn = "vd_graph_destroy";
  Context *c = context(ctx, fn);
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  if (check_not_capturing(c, fn) != VD_OK) return VD_ERR_INVALID_ARGUMENT;
  cudaGraphExec_t exec = find_graph(ctx, graph, fn);
  if (!exec) return VD_ERR_INVALID_ARGUMENT;
  {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    ContextEntry *e = find_entry(r, ctx, fn);
    if (e) e->graphs.erase(graph);
  }
  // The stream may still be running it: cudaGraphExecDestroy waits for no one, so drain first.
  int32_t st = check_cuda(cudaStreamSynchronize(c->stream), fn, "cudaStreamSynchronize");
  const int32_t st2 = check_cuda(cudaGraphExecDestroy(exec), fn, "cudaGraphExecDestroy");
  return st != VD_OK ? st : st2;
}
