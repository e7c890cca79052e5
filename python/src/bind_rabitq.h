// What the RaBitQ bindings (the IVF index and the codec alone) share.
#pragma once
#include <cstdint>
#include <string>

#include "tessera/quant/rabitq_quantizer.h"

namespace tessera_py {

/// RabitqParams from the Python keywords; metric "cosine" only when allow_cosine (the codec has it, the IVF
/// index not yet).
tessera::RabitqParams rabitq_params(int bits, const std::string& metric, const std::string& rotation,
                                    bool fast_quantization, double epsilon0, uint64_t seed, bool allow_cosine);

}  // namespace tessera_py
