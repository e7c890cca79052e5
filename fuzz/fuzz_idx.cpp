// libFuzzer harness for the MNIST idx parser (uncompressed images).
#include <cstddef>
#include <cstdint>

#include "tessera/io/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tessera::parse_idx(data, size);
  } catch (const tessera::Error&) {
  }
  return 0;
}
