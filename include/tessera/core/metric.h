// The distance a search ranks by: shared by codecs that estimate distances and by the indexes.
#pragma once
#include <string>

namespace tessera {

/// faiss's MetricType values, so integers mean the same thing in both libraries. `cosine` has no faiss value
/// (faiss normalises and uses the inner product): 100, outside faiss's range; only what says so accepts it (the
/// RaBitQuantizer codec, which estimates it, and IVFRaBitQ, which normalises vectors and queries); the other
/// indexes refuse it.
enum class MetricType : int { inner_product = 0, L2 = 1, cosine = 100 };

/// "l2" / "ip" (also "L2", "inner_product", "METRIC_L2", "METRIC_INNER_PRODUCT"); "cosine" (also "cos") only
/// with allow_cosine (for the codecs that estimate it); else InvalidArgument.
MetricType parse_metric(const std::string& name, bool allow_cosine = false);
/// faiss's integer: 1 (L2) or 0 (inner product); else InvalidArgument (cosine is not a faiss metric).
MetricType metric_from_int(long value);
/// "l2", "ip" or "cosine".
std::string metric_name(MetricType m);

}  // namespace tessera
