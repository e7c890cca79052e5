// Checks shared by the balanced-assignment tests (dense and bounded-memory solvers).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "tessera/cluster/balanced_assignment.h"
#include "tessera/core/matrix.h"

namespace tessera::testing {

/// Every id of `a` is a cluster in [0, k) and every cluster's size is within the bounds.
inline void expect_sizes_within(const std::vector<int32_t>& a, size_t k, SizeBounds b) {
  std::vector<size_t> sz(k, 0);
  for (int32_t j : a) {
    ASSERT_GE(j, 0);
    ASSERT_LT((size_t)j, k);
    ++sz[j];
  }
  for (size_t j = 0; j < k; ++j) {
    EXPECT_GE(sz[j], b.lo) << "cluster " << j;
    EXPECT_LE(sz[j], b.hi) << "cluster " << j;
  }
}

/// Σ_i d(i, a_i).
inline double cost_of(const FloatMatrix& d, const std::vector<int32_t>& a) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += d(i, a[i]);
  return s;
}

}  // namespace tessera::testing
