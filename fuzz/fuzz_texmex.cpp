// libFuzzer harness for the texmex parser; the first byte picks fvecs, ivecs or bvecs.
#include <cstddef>
#include <cstdint>

#include "tessera/io/texmex.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char kinds[3] = {'f', 'i', 'b'};
  try {
    tessera::parse_texmex(data + 1, size - 1, kinds[data[0] % 3]);
  } catch (const tessera::Error&) {
  }
  return 0;
}
