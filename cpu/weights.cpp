// vd_load_weight: reads a tensor from a file range into a buffer, converting its element type.
#include <unistd.h> // close

#include <algorithm>
#include <vector>

#include "internal.h"
#include "rank.h"
#include "../common/weight_file.h"

using namespace vd;

namespace {


// Copies `count` elements of file_dtype at `offset` into dst (as dst_dtype), through a bounded
// staging buffer so a large tensor needs no second full-size copy in memory.
int32_t read_converted(int fd, const char *path, uint64_t offset, int32_t file_dtype, uint8_t *dst,
                       int32_t dst_dtype, uint64_t count) {
  const uint64_t fb = uint64_t(dtype_bytes(file_dtype));
  if (file_dtype == dst_dtype) return read_exact(fd, path, offset, dst, count * fb);
  const uint64_t chunk = 1 << 20; // elements per staging round
  std::vector<uint8_t> staging(std::min(count, chunk) * fb);
  for (uint64_t start = 0; start < count; start += chunk) {
    uint64_t n = std::min(chunk, count - start);
    int32_t st = read_exact(fd, path, offset + start * fb, staging.data(), n * fb);
    if (st != VD_OK) return st;
    for (uint64_t i = 0; i < n; i++)
      store_from_f32(dst, int64_t(start + i), dst_dtype, load_as_f32(staging.data(), int64_t(i), file_dtype));
  }
  return VD_OK;
}

} // namespace

// This rank's share: shard_dim 0 cuts the rows into n_shards pieces (contiguous in the file),
// shard_dim 1 the columns (a run per row); rank r reads piece r * n_shards / tp; -1 everything.
VD_API int32_t vd_load_weight(uint64_t ctx, uint64_t dst, int32_t dst_dtype, const char *path, uint64_t file_offset,
                              int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim, int32_t n_shards) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_load_weight(ctx, dst, dst_dtype, path, file_offset, file_dtype, rows, cols, shard_dim, n_shards));
  const int tp = std::max(context_tp(ctx), 1);
  int32_t st = check_load_weight_args(dst_dtype, file_dtype, rows, cols, shard_dim, n_shards, tp, path);
  if (st != VD_OK) return st;
  const int64_t piece = shard_dim < 0 ? 0 : int64_t(current_rank()) * n_shards / tp;
  const int64_t my_rows = shard_dim == 0 ? rows / n_shards : rows, my_cols = shard_dim == 1 ? cols / n_shards : cols;
  const uint64_t count = uint64_t(my_rows) * uint64_t(my_cols), fb = uint64_t(dtype_bytes(file_dtype));
  Span d;
  if (!lookup_sized(ctx, dst, "vd_load_weight(dst)", count * uint64_t(dtype_bytes(dst_dtype)), &d))
    return VD_ERR_INVALID_ARGUMENT;
  int fd = -1;
  if ((st = open_weight_file(path, &fd)) != VD_OK) return st;
  if (shard_dim != 1) {
    const uint64_t first = uint64_t(piece) * uint64_t(my_rows) * uint64_t(cols);
    st = read_converted(fd, path, file_offset + first * fb, file_dtype, d.data, dst_dtype, count);
  } else {
    const uint64_t eb = uint64_t(dtype_bytes(dst_dtype));
    for (int64_t r = 0; r < rows && st == VD_OK; r++) {
      const uint64_t at = (uint64_t(r) * uint64_t(cols) + uint64_t(piece) * uint64_t(my_cols)) * fb;
      st = read_converted(fd, path, file_offset + at, file_dtype, d.data + uint64_t(r) * uint64_t(my_cols) * eb, dst_dtype,
                          uint64_t(my_cols));
    }
  }
  close(fd);
  return st;
}
