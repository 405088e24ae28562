// See status.h. Compiled into libvllmd_cpu.so and libvllmd_cuda.so alike.
#include "status.h"

#include <cstdarg>
#include <cstdio>
#include <string>

namespace vd {

namespace {
thread_local std::string last_error;
}

int32_t fail(int32_t status, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  last_error = buf;
  return status;
}

void clear_error() { last_error.clear(); }

const char *last_error_text() { return last_error.c_str(); }

int32_t check_float_dtype(const char *fn, const char *arg, int32_t dtype) {
  if (dtype == VD_F32 || dtype == VD_F16 || dtype == VD_BF16) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s %d, expected f32 (0), f16 (1) or bf16 (2)", fn, arg, dtype);
}

int32_t check_nonneg(const char *fn, const char *arg, int64_t v) {
  if (v >= 0) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s is %lld, must be >= 0", fn, arg, (long long)v);
}

uint64_t bytes_of(int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0) return UINT64_MAX;
  unsigned __int128 p = (unsigned __int128)uint64_t(a) * uint64_t(b);
  if (p > UINT64_MAX) return UINT64_MAX;
  p *= uint64_t(c);
  return p > UINT64_MAX ? UINT64_MAX : uint64_t(p);
}

} // namespace vd
