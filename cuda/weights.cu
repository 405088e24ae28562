// vd_load_weight on the device: the file range is read in chunks into the pinned staging buffer
// (two halves in turn, so reading one chunk overlaps the copy of the last), copied to the device,
// and converted there when the file's element type differs from the buffer's.
#include <unistd.h> // close

#include "common.cuh"
#include "launch.cuh"
#include "../common/weight_file.h"

using namespace vd;

namespace {

const char *const kFn = "vd_load_weight";

__global__ void convert_kernel(void *dst, const void *src, int64_t n, int32_t dst_dtype, int32_t src_dtype) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(dst, i, dst_dtype, load_f32(src, i, src_dtype));
}


struct Load {
  Context *c;
  int fd;
  const char *path;
  uint64_t file_offset;
  int32_t file_dtype, dst_dtype;
  uint8_t *dst;
  uint64_t count;   // elements
  void *scratch;    // device room for one chunk of file bytes, when converting
};

// Copies one chunk of `n` elements, now in pinned memory at `host`, to element `start` of dst.
int32_t queue_chunk(const Load &l, const uint8_t *host, uint64_t start, uint64_t n) {
  const uint64_t fb = uint64_t(dtype_bytes(l.file_dtype)), db = uint64_t(dtype_bytes(l.dst_dtype));
  uint8_t *to = l.dst + start * db;
  if (l.file_dtype == l.dst_dtype)
    return check_cuda(cudaMemcpyAsync(to, host, n * fb, cudaMemcpyHostToDevice, l.c->stream), kFn, "cudaMemcpyAsync");
  // The next chunk's copy into scratch is queued after this conversion on the same stream.
  int32_t st = check_cuda(cudaMemcpyAsync(l.scratch, host, n * fb, cudaMemcpyHostToDevice, l.c->stream), kFn,
                          "cudaMemcpyAsync");
  if (st != VD_OK) return st;
  convert_kernel<<<flat_blocks(int64_t(n)), kThreads, 0, l.c->stream>>>(to, l.scratch, int64_t(n), l.dst_dtype,
                                                                         l.file_dtype);
  return check_launch(kFn);
}

// Every chunk of the tensor through the staging halves. Returns with the last copies still queued:
// the halves' events guard the staging memory and stream order guards dst.
int32_t upload_chunks(const Load &l) {
  const uint64_t fb = uint64_t(dtype_bytes(l.file_dtype));
  for (uint64_t start = 0; start < l.count;) {
    uint8_t *half = nullptr;
    uint64_t half_bytes = 0;
    int32_t st = next_staging_half(l.c, kFn, &half, &half_bytes);
    if (st != VD_OK) return st;
    const uint64_t n = half_bytes / fb < l.count - start ? half_bytes / fb : l.count - start;
    st = read_exact(l.fd, l.path, l.file_offset + start * fb, half, n * fb);
    if (st == VD_OK) st = queue_chunk(l, half, start, n);
    int32_t queued = staging_half_queued(l.c, kFn);
    if (st != VD_OK) return st;
    if (queued != VD_OK) return queued;
    start += n;
  }
  return VD_OK;
}

} // namespace

// With tp = 1 (n_shards 1) every shard_dim gives rank 0 the whole tensor.
VD_API int32_t vd_load_weight(uint64_t ctx, uint64_t dst, int32_t dst_dtype, const char *path, uint64_t file_offset,
                              int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim, int32_t n_shards) {
  clear_error();
  int32_t st = check_load_weight_args(dst_dtype, file_dtype, rows, cols, shard_dim, n_shards, 1, path);
  if (st != VD_OK) return st;
  const uint64_t count = uint64_t(rows) * uint64_t(cols);
  Context *c = context(ctx, kFn);
  Span d;
  if (!c || check_not_capturing(c, kFn) != VD_OK) return VD_ERR_INVALID_ARGUMENT;
  if (!lookup_array(ctx, dst, "vd_load_weight(dst)", int64_t(count), dst_dtype, &d)) return VD_ERR_INVALID_ARGUMENT;
  int fd = -1;
  if ((st = open_weight_file(path, &fd)) != VD_OK) return st;
  std::lock_guard<std::mutex> lock(c->staging_mu);
  Load l{c, fd, path, file_offset, file_dtype, dst_dtype, d.data, count, nullptr};
  const uint64_t chunk_bytes = c->staging_bytes / 2, file_bytes = count * uint64_t(dtype_bytes(file_dtype));
  if (file_dtype != dst_dtype && count > 0)
    st = check_cuda(cudaMallocAsync(&l.scratch, file_bytes < chunk_bytes ? file_bytes : chunk_bytes, c->stream), kFn,
                    "cudaMallocAsync");
  if (st == VD_OK) st = upload_chunks(l);
  if (l.scratch) {
    int32_t freed = check_cuda(cudaFreeAsync(l.scratch, c->stream), kFn, "cudaFreeAsync");
    if (st == VD_OK) st = freed;
  }
  close(fd);
  return st;
}
