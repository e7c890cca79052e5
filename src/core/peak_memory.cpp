#include "tessera/core/peak_memory.h"

#include <sys/resource.h>

namespace tessera {

size_t peak_rss_bytes() {
  struct rusage u {};
  if (::getrusage(RUSAGE_SELF, &u) != 0 || u.ru_maxrss < 0) return 0;
#ifdef __APPLE__
  return size_t(u.ru_maxrss);  // bytes on macOS
#else
  return size_t(u.ru_maxrss) * 1024;  // kilobytes on Linux
#endif
}

}  // namespace tessera
