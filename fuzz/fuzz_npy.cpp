// libFuzzer harness for the .npy parser: any input must give a matrix or a tessera::Error.
#include <cstddef>
#include <cstdint>

#include "tessera/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tessera::parse_npy_header(data, size);
  } catch (const tessera::Error&) {
  }
  try {
    tessera::parse_npy_f32(data, size);
  } catch (const tessera::Error&) {
  }
  try {
    tessera::parse_npy_i32(data, size);
  } catch (const tessera::Error&) {
  }
  return 0;
}
