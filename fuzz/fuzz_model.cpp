// libFuzzer harness: the model-file (.tsq) loader must reject any bad input with a tessera::Error.
#include <cstddef>
#include <cstdint>

#include "tessera/quant/serialization.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    std::string meta;
    auto q = tessera::parse_quantizer(data, size, &meta);
  } catch (const tessera::Error&) {
  }
  return 0;
}
