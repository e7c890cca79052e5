// The distance a search ranks by: shared by codecs that estimate distances and by the indexes.
#pragma once
#include <string>

namespace tessera {

/// faiss's MetricType values, so integers mean the same thing in both libraries.
enum class MetricType : int { inner_product = 0, L2 = 1 };

/// "l2" / "ip" (also "L2", "inner_product", "METRIC_L2", "METRIC_INNER_PRODUCT"); else InvalidArgument.
MetricType parse_metric(const std::string& name);
/// faiss's integer: 1 (L2) or 0 (inner product); else InvalidArgument.
MetricType metric_from_int(long value);
/// "l2" or "ip".
std::string metric_name(MetricType m);

}  // namespace tessera
