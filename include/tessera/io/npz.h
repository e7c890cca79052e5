// NumPy .npz archives (zip of .npy members, stored or deflated, so savez and savez_compressed both load).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

/// Every member as (name without ".npy", n × d float32), in archive order. Members must be 2-D float arrays.
std::vector<std::pair<std::string, FloatMatrix>> read_npz_f32(const std::string& path);
/// The same from an in-memory archive of `size` bytes (not copied; must stay valid during the call).
std::vector<std::pair<std::string, FloatMatrix>> read_npz_f32_from_memory(const void* data, size_t size);

/// Write members (name → 2-D float32 array) atomically; deflated when `compress`.
void write_npz(const std::string& path, const std::vector<std::pair<std::string, MatrixView<const float>>>& arrays,
               bool compress = true);

}  // namespace tessera
