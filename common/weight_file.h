// Reading a tensor's bytes from a weight file (safetensors shards), shared by vd_load_weight on
// every backend so that a missing or short file reads the same whichever library reports it.
#pragma once

#include <cstdint>

namespace vd {

// Opens `path` read-only into *fd; VD_ERR_IO naming the path and the reason if it cannot.
int32_t open_weight_file(const char *path, int *fd);
// Reads exactly `bytes` at `offset`; on a short file or a read error records VD_ERR_IO.
int32_t read_exact(int fd, const char *path, uint64_t offset, uint8_t *dst, uint64_t bytes);

} // namespace vd
