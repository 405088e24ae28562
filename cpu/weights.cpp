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

bool is_float_dtype(int32_t d) { return d == VD_F32 || d == VD_F16 || d == VD_BF16; }

void store_from_f32(void *p, int64_t i, int32_t dtype, float v) {
  switch (dtype) {
  case VD_F32: static_cast<float *>(p)[i] = v; break;
  case VD_BF16: static_cast<uint16_t *>(p)[i] = f32_to_bf16(v); break;
  default: static_cast<uint16_t *>(p)[i] = f32_to_f16(v); break;
  }
}

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

int32_t check_load_args(int32_t dst_dtype, int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim,
                        const char *path) {
  if (!path) return fail(VD_ERR_INVALID_ARGUMENT, "vd_load_weight: path is null");
  if (rows < 0 || cols < 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_load_weight: negative shape [%lld, %lld]", (long long)rows,
                (long long)cols);
  if (shard_dim < -1 || shard_dim > 1)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_load_weight: shard_dim %d, expected -1, 0 or 1", shard_dim);
  bool both_int = dst_dtype == VD_I32 && file_dtype == VD_I32;
  if (!both_int && !(is_float_dtype(dst_dtype) && is_float_dtype(file_dtype)))
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_load_weight: cannot convert file_dtype %d to dst_dtype %d", file_dtype,
                dst_dtype);
  return VD_OK;
}

} // namespace

// With tp = 1 (the only cpu configuration) every shard_dim gives rank 0 the whole tensor.
VD_API int32_t vd_load_weight(uint64_t ctx, uint64_t dst, int32_t dst_dtype, const char *path, uint64_t file_offset,
                              int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim) {
  clear_error();
  int32_t st = check_load_args(dst_dtype, file_dtype, rows, cols, shard_dim, path);
  if (st != VD_OK) return st;
  if (rows > 0 && cols > (int64_t(1) << 46) / rows)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_load_weight: shape [%lld, %lld] is too large", (long long)rows,
                (long long)cols);
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
