// libFuzzer harness for gzipped MNIST idx files: read_idx inflates from a file, so each input is
// written to a private scratch file first. Any bad input must end in a tessera::Error, and a stream
// that inflates past its header's size must not cost more memory than a well-formed one.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "tessera/io/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/tessera-fuzz-idx-gz-" + std::to_string(::getpid()) + ".gz";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  const bool written = std::fwrite(data, 1, size, f) == size;
  std::fclose(f);
  if (!written) return 0;
  try {
    tessera::read_idx(path);
  } catch (const tessera::Error&) {
  }
  return 0;
}
