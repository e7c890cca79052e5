// libFuzzer harness for the .npz reader (libzip + the .npy parser) on in-memory archives.
#include <cstddef>
#include <cstdint>

#include "tessera/io/npz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tessera::read_npz_f32_from_memory(data, size);
  } catch (const tessera::Error&) {
  }
  return 0;
}
