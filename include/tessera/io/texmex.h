// texmex vector files (.fvecs float32, .ivecs int32, .bvecs uint8): each row is a little-endian int32
// dimension followed by that many values. All rows must share one dimension.
#pragma once
#include <cstdint>
#include <string>

#include "tessera/core/matrix.h"

namespace tessera {

FloatMatrix read_fvecs(const std::string& path);
FloatMatrix read_bvecs(const std::string& path);  ///< uint8 values as float32
CodeMatrix read_ivecs(const std::string& path);
/// The same from an in-memory image (fuzzing); `kind` is 'f', 'b' or 'i' (ivecs returned as float).
FloatMatrix parse_texmex(const void* data, size_t size, char kind);

void write_fvecs(const std::string& path, MatrixView<const float> x);
void write_ivecs(const std::string& path, MatrixView<const int32_t> x);
void write_bvecs(const std::string& path, MatrixView<const uint8_t> x);

}  // namespace tessera
