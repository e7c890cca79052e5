// The MNIST idx format (as Fashion-MNIST ships, usually gzip-compressed): a big-endian header
// (magic 0x0000 08 NN, dims) then row-major uint8. Images come back as n × (rows·cols) float32.
#pragma once
#include <string>

#include "tessera/core/matrix.h"

namespace tessera {

/// Read an idx file of uint8 data, gzipped or not; n × (product of the other dims) as float32.
FloatMatrix read_idx(const std::string& path);
/// The same from an in-memory, uncompressed image.
FloatMatrix parse_idx(const void* data, size_t size);

}  // namespace tessera
