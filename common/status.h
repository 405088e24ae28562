// Host-side status plumbing shared by every backend: the thread's last error message and the
// argument checks whose messages must read the same whichever library reports them.
#pragma once

#include <cstdint>

#include "vllmd.h"

namespace vd {

// Records the message of a failure for vd_last_error() (printf-style) and returns `status`.
int32_t fail(int32_t status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Marks the calling thread's last error as empty; every entry point calls it first.
void clear_error();
// The calling thread's last message ("" if none); valid until its next call into the library.
const char *last_error_text();

int32_t check_float_dtype(const char *fn, const char *arg, int32_t dtype); // f32, f16 or bf16
int32_t check_nonneg(const char *fn, const char *arg, int64_t v);
uint64_t bytes_of(int64_t a, int64_t b, int64_t c); // a*b*c, saturating on overflow

} // namespace vd
