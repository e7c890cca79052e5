// libFuzzer harness: the index-file readers (flat, fast-scan and IVF additive-quantizer indexes) must reject
// any bad input with a tessera::Error, and a file one of them accepts must be searchable.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/index/index_io.h"

namespace {

template <class Index, class Search>
void try_search(const Index& index, Search search) {
  std::vector<float> q(index.dim(), 0.5f), D(3);
  std::vector<int64_t> I(3);
  search(index, tessera::MatrixView<const float>(q.data(), 1, index.dim(), index.dim()), D.data(), I.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto index = tessera::parse_index(data, size);
    try_search(index, [](const auto& ix, auto q, float* D, int64_t* I) { ix.search(q, 3, D, I); });
  } catch (const tessera::Error&) {
  }
  try {
    const auto index = tessera::parse_index_fast_scan(data, size);
    try_search(index, [](const auto& ix, auto q, float* D, int64_t* I) { ix.search(q, 3, D, I); });
  } catch (const tessera::Error&) {
  }
  try {
    const auto index = tessera::parse_index_ivf(data, size);
    try_search(index, [](const auto& ix, auto q, float* D, int64_t* I) { ix.search(q, 3, 2, D, I); });
  } catch (const tessera::Error&) {
  }
  return 0;
}
