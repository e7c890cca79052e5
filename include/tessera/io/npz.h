// NumPy .npz archives (zip of .npy members, stored or deflated, so savez and savez_compressed both load).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

/// Every member as (name without ".npy", n × d float32), in archive order. Members must be 2-D float arrays.
std::vector<std::pair<std::string, FloatMatrix>> read_npz_f32(const std::string& path);

/// Write members (name → 2-D float32 array) atomically; deflated when `compress`.
void write_npz(const std::string& path, const std::vector<std::pair<std::string, MatrixView<const float>>>& arrays,
               bool compress = true);

}  // namespace tessera
