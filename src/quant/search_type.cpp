#include "tessera/quant/search_type.h"

#include "tessera/core/error.h"

namespace tessera {

namespace {

const char* const kNames[kNumSearchTypes] = {"ST_decompress",  "ST_LUT_nonorm",  "ST_norm_from_LUT", "ST_norm_float",
                                             "ST_norm_qint8",  "ST_norm_qint4",  "ST_norm_cqint8",   "ST_norm_cqint4",
                                             "ST_norm_lsq2x4", "ST_norm_rq2x4"};

std::string valid_names() {
  std::string s;
  for (int i = 0; i < kNumSearchTypes; ++i) s += (i ? ", " : "") + std::string(kNames[i]);
  return s;
}

}  // namespace

std::string search_type_name(SearchType st) {
  const int v = static_cast<int>(st);
  TESSERA_CHECK_ARG(v >= 0 && v < kNumSearchTypes, "search type " << v << " is not one of 0.." << kNumSearchTypes - 1);
  return kNames[v];
}

SearchType parse_search_type(const std::string& name) {
  for (int i = 0; i < kNumSearchTypes; ++i)
    if (name == kNames[i] || name == kNames[i] + 3) return static_cast<SearchType>(i);
  TESSERA_THROW_ARG("unknown search type '" << name << "'; expected one of " << valid_names());
}

SearchType search_type_from_int(long value) {
  TESSERA_CHECK_ARG(value >= 0 && value < kNumSearchTypes, "unknown search type " << value << "; expected 0.."
                                                               << kNumSearchTypes - 1 << " (" << valid_names() << ")");
  return static_cast<SearchType>(value);
}

size_t search_type_norm_bits(SearchType st) {
  switch (st) {
    case SearchType::ST_norm_float: return 32;
    case SearchType::ST_norm_qint8:
    case SearchType::ST_norm_cqint8:
    case SearchType::ST_norm_lsq2x4:
    case SearchType::ST_norm_rq2x4: return 8;
    case SearchType::ST_norm_qint4:
    case SearchType::ST_norm_cqint4: return 4;
    default: return 0;
  }
}

bool search_type_trains_norm(SearchType st) {
  return search_type_stores_norm(st) && st != SearchType::ST_norm_float;
}

}  // namespace tessera
