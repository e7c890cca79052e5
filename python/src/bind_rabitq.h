// What the RaBitQ bindings (the IVF index and the codec alone) share.
#pragma once
#include <cstdint>
#include <string>

#include "tessera/quant/rabitq_quantizer.h"

namespace tessera_py {

/// RabitqParams from the Python keywords (metric "l2", "ip" or "cosine": the codec and the IVF index both
/// have cosine).
tessera::RabitqParams rabitq_params(int bits, const std::string& metric, const std::string& rotation,
                                    bool fast_quantization, double epsilon0, uint64_t seed);

}  // namespace tessera_py
