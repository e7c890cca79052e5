#include "tessera/core/metric.h"

#include "tessera/core/error.h"

namespace tessera {

MetricType parse_metric(const std::string& name, bool allow_cosine) {
  if (name == "l2" || name == "L2" || name == "METRIC_L2") return MetricType::L2;
  if (name == "ip" || name == "IP" || name == "inner_product" || name == "METRIC_INNER_PRODUCT")
    return MetricType::inner_product;
  if (name == "cosine" || name == "cos") {
    TESSERA_CHECK_ARG(allow_cosine, "metric 'cosine' is not supported here: expected 'l2' or 'ip' (inner product; "
                                    "normalise the vectors for cosine)");
    return MetricType::cosine;
  }
  TESSERA_THROW_ARG("unknown metric '" << name << "': expected 'l2' or 'ip' (inner product)"
                                       << (allow_cosine ? " or 'cosine'" : ""));
}

MetricType metric_from_int(long value) {
  TESSERA_CHECK_ARG(value == 0 || value == 1, "metric " << value << " is not supported: expected faiss's METRIC_L2 = 1 "
                                                                    "or METRIC_INNER_PRODUCT = 0");
  return value == 1 ? MetricType::L2 : MetricType::inner_product;
}

std::string metric_name(MetricType m) {
  switch (m) {
    case MetricType::L2: return "l2";
    case MetricType::inner_product: return "ip";
    case MetricType::cosine: return "cosine";
  }
  TESSERA_THROW_ARG("unknown metric value " << int(m));
}

}  // namespace tessera
