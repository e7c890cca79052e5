#include "tessera/core/error.h"

#include <cstring>

namespace tessera::detail {

void throw_error(int kind, const std::string& msg, const char* file, int line) {
  // Built with -fmacro-prefix-map, `file` is already relative to the checkout; otherwise keep only the
  // path below the project root, so that locations are the same on every machine.
  const char* short_file = file;
  for (const char* dir : {"/src/", "/include/", "/tools/", "/python/"})
    if (const char* p = file[0] == '/' ? std::strstr(file, dir) : nullptr) {
      short_file = p + 1;
      break;
    }
  std::string where = std::string(short_file) + ":" + std::to_string(line);
  switch (kind) {
    case 1: throw FormatError(msg, std::move(where));
    case 2: throw IOError(msg, std::move(where));
    default: throw InvalidArgument(msg, std::move(where));
  }
}

}  // namespace tessera::detail
