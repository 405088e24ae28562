#include "weight_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "status.h"

namespace vd {

int32_t open_weight_file(const char *path, int *fd) {
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return fail(VD_ERR_IO, "vd_load_weight: cannot open %s: %s", path, std::strerror(errno));
  return VD_OK;
}

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

} // namespace vd
