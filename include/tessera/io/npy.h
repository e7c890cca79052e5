// NumPy .npy files (format versions 1.0, 2.0, 3.0). Reads 2-D C-order arrays of float16/32/64 as float32
// and int32/int64 as int32; a little-endian float32 file is memory-mapped, not copied. Writes float32, uint8,
// int32 and int64 atomically. Fortran order, object dtypes, ndim != 2 and truncated data are FormatErrors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

struct NpyHeader {
  std::string descr;          ///< numpy dtype string, e.g. "<f4"
  bool fortran_order = false;
  std::vector<size_t> shape;
  size_t data_offset = 0;     ///< bytes before the array data
};

/// Parse and validate the header of an in-memory .npy image of `size` bytes.
NpyHeader parse_npy_header(const void* data, size_t size);

/// x: n × d float32 from a 2-D .npy (float16/32/64, or uint8/int8). 1-D arrays are rejected.
/// Little-endian float32 data is memory-mapped, not copied (MAP_PRIVATE: writes to the matrix stay
/// private to the process and never reach the file); other dtypes are read and converted.
FloatMatrix read_npy_f32(const std::string& path);
/// codes: n × m int32 from a 2-D .npy (int32, or int64/uint32/uint64 within int32 range, or 8/16-bit ints).
CodeMatrix read_npy_i32(const std::string& path);
/// The same from an in-memory .npy image (npz members, fuzzing); data is copied.
FloatMatrix parse_npy_f32(const void* data, size_t size);
CodeMatrix parse_npy_i32(const void* data, size_t size);
/// The same, naming the image `source` in error messages (e.g. "codebooks.npz[codebook_0]").
FloatMatrix parse_npy_f32(const void* data, size_t size, const std::string& source);
CodeMatrix parse_npy_i32(const void* data, size_t size, const std::string& source);

/// The bytes of a .npy image of a 2-D array.
std::string npy_bytes(MatrixView<const float> x);
std::string npy_bytes(MatrixView<const int32_t> x);
std::string npy_bytes(MatrixView<const int64_t> x);
std::string npy_bytes(MatrixView<const uint8_t> x);  ///< packed codes ('|u1')

/// Atomic writes.
void write_npy(const std::string& path, MatrixView<const float> x);
void write_npy(const std::string& path, MatrixView<const int32_t> x);
void write_npy(const std::string& path, MatrixView<const int64_t> x);
void write_npy(const std::string& path, MatrixView<const uint8_t> x);

}  // namespace tessera
