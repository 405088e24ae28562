// vd_load_weight: reads a tensor from a file range into a buffer, converting its element type.
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "internal.h"

using namespace vd;

namespace {

// Reads exactly `bytes` at `offset`; on a short file or a read error records VD_ERR_IO.
int32_t read_exact(int fd, const char *path, uint64_t offset, uint8_t *dst, uint64_t bytes) {
  uint64_t done = 0;
  while (done < bytes) {
    ssize_t got = pread(fd, dst + done, bytes - done, off_t(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      return fail(VD_ERR_IO, "vd_load_weight: reading %s at byte %llu: %s", path,
                  (unsigned long long)(offset + done), std::strerror(errno));
    if (got == 0)
      return fail(VD_ERR_IO, "vd_load_weight: %s ends at byte %llu, the tensor needs bytes [%llu, %llu)", path,
                  (unsigned long long)(offset + done), (unsigned long long)offset,
                  (unsigned long long)(offset + bytes));
    done += uint64_t(got);
  }
  return VD_OK;
}

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

// With tp = 1 (the only cpu configuration) every shard_dim gives rank 0 the whole tensor.
VD_API int32_t vd_load_weight(uint64_t ctx, uint64_t dst, int32_t dst_dtype, const char *path, uint64_t file_offset,
                              int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim) {
  clear_error();
  int32_t st = check_load_weight_args(dst_dtype, file_dtype, rows, cols, shard_dim, path);
  if (st != VD_OK) return st;
  const uint64_t count = uint64_t(rows) * uint64_t(cols);
  Span d;
  if (!lookup_sized(ctx, dst, "vd_load_weight(dst)", count * uint64_t(dtype_bytes(dst_dtype)), &d))
    return VD_ERR_INVALID_ARGUMENT;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(VD_ERR_IO, "vd_load_weight: cannot open %s: %s", path, std::strerror(errno));
  st = read_converted(fd, path, file_offset, file_dtype, d.data, dst_dtype, count);
  close(fd);
  return st;
}
