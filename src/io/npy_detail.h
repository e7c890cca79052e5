// What the .npy reader shares with the shard reader and the streaming writer (private to src/io).
#pragma once
#include <cstddef>
#include <string>

namespace tessera::io_detail {

/// A 2-D C-order .npy of a float-readable dtype (float16/32/64, uint8/int8), checked against the file size.
struct NpyFloatLayout {
  size_t rows = 0, cols = 0;
  size_t data_offset = 0;  ///< bytes before the array data
  char kind = 'f';         ///< 'f', 'i' or 'u'
  size_t elem_size = 4;    ///< bytes per element
  std::string dtype;       ///< "float32", "uint8", ...
};
NpyFloatLayout npy_float_layout(const unsigned char* data, size_t size, const std::string& src);

/// count elements of that dtype at src → float32 at dst.
void npy_to_float(const unsigned char* src, size_t count, char kind, size_t elem_size, float* dst);

/// numpy's np.save header (format 1.0) for a 2-D C-order array of `descr` ("<i4", "<f4", ...).
std::string npy_header_bytes(const char* descr, size_t rows, size_t cols);

}  // namespace tessera::io_detail
