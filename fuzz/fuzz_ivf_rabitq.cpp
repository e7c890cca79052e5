// libFuzzer harness: the IVF RaBitQ index-file loader must reject any bad input with a tessera::Error.
#include <cstddef>
#include <cstdint>

#include "tessera/core/error.h"
#include "tessera/index/index_ivf_rabitq.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto index = tessera::IndexIVFRaBitQ::parse(data, size);
  } catch (const tessera::Error&) {
  }
  return 0;
}
