#include "tessera/core/error.h"

#include <cstring>

namespace tessera::detail {

void throw_error(int kind, const std::string& msg, const char* file, int line) {
  // Keep only the path below the project root so messages are stable across machines.
  const char* short_file = file;
  if (const char* p = std::strstr(file, "/src/")) short_file = p + 1;
  const std::string full = msg + " [" + short_file + ":" + std::to_string(line) + "]";
  switch (kind) {
    case 1: throw FormatError(full);
    case 2: throw IOError(full);
    default: throw InvalidArgument(full);
  }
}

}  // namespace tessera::detail
