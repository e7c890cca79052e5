#include "tessera/core/error.h"

namespace tessera::detail {

void throw_error(int kind, const std::string& msg, const char* file, int line) {
  // `file` is relative to the checkout (the build maps the source root away with -fmacro-prefix-map), so
  // locations are the same on every machine.
  std::string where = std::string(file) + ":" + std::to_string(line);
  switch (kind) {
    case 1: throw FormatError(msg, std::move(where));
    case 2: throw IOError(msg, std::move(where));
    default: throw InvalidArgument(msg, std::move(where));
  }
}

}  // namespace tessera::detail
