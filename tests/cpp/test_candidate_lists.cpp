// Candidate lists and the pass over them (tessera/cluster/candidate_lists.h), the chunk kernels of
// tessera.distributed, against brute force over the full distance matrix: the lists are the c cheapest priced
// clusters in order with ties to the lower cluster, theta bounds every unlisted cluster, and a scan's counts,
// smallest gaps, smallest joining costs and boundary rows are what the full lists give.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "tessera/cluster/candidate_lists.h"
#include "tessera/core/distances.h"

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Data {
  size_t n, d, k;
  std::vector<float> x, c;
  std::vector<double> p;
};

// Points on a small integer grid (many equal distances, so ties are exercised), prices on a grid too.
Data make(size_t n, size_t d, size_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> g(-2, 2), pg(-3, 3);
  Data s{n, d, k, std::vector<float>(n * d), std::vector<float>(k * d), std::vector<double>(k)};
  for (float& v : s.x) v = float(g(rng));
  for (float& v : s.c) v = float(g(rng));
  for (double& v : s.p) v = 0.5 * pg(rng);
  return s;
}

std::vector<float> distances(const Data& s) {
  std::vector<float> out(s.n * s.k);
  tessera::l2_sqr_distances(tessera::MatrixView<const float>(s.x.data(), s.n, s.d),
                            tessera::MatrixView<const float>(s.c.data(), s.k, s.d), nullptr, out.data());
  return out;
}

}  // namespace

TEST(CandidateLists, CheapestPricedInOrderAndThetaBoundsTheRest) {
  for (const size_t width : {1, 3, 7, 12}) {
    const Data s = make(300, 4, 12, width);
    const std::vector<float> D = distances(s);
    const tessera::CandidateLists l = tessera::make_candidate_lists(
        tessera::MatrixView<const float>(s.x.data(), s.n, s.d), tessera::MatrixView<const float>(s.c.data(), s.k, s.d),
        s.p, width, {}, /*block_rows=*/64);
    ASSERT_EQ(l.width, std::min(width, s.k));
    for (size_t i = 0; i < s.n; ++i) {
      ASSERT_EQ(l.offsets[i + 1] - l.offsets[i], int64_t(l.width));
      std::vector<std::pair<float, int32_t>> all;
      for (size_t j = 0; j < s.k; ++j) all.push_back({D[i * s.k + j] + float(s.p[j]), int32_t(j)});
      std::sort(all.begin(), all.end());  // by priced cost, then by cluster: the lists' order
      for (size_t t = 0; t < l.width; ++t) {
        ASSERT_EQ(l.cluster[size_t(l.offsets[i]) + t], all[t].second) << "row " << i << " slot " << t;
        ASSERT_EQ(l.cost[size_t(l.offsets[i]) + t], D[i * s.k + size_t(all[t].second)]);
      }
      if (l.width < s.k) {
        ASSERT_EQ(l.theta[i], all[l.width].first);
      } else {
        ASSERT_TRUE(std::isinf(l.theta[i]));
      }
    }
  }
}

TEST(CandidateLists, ScanMatchesBruteForceOnTheLists) {
  const size_t width = 4, top = 5;
  const Data s = make(400, 3, 9, 17);
  std::vector<float> join_limit(s.k, 0.5f);
  join_limit[4] = 3.0f;
  const tessera::CandidateLists l = tessera::make_candidate_lists(
      tessera::MatrixView<const float>(s.x.data(), s.n, s.d), tessera::MatrixView<const float>(s.c.data(), s.k, s.d),
      s.p, width, join_limit);
  // The joiners: every cluster beyond the width cheapest whose priced cost is within its limit of the cheapest.
  const std::vector<float> D = distances(s);
  size_t joiner_arcs = 0;
  for (size_t i = 0; i < s.n; ++i) {
    std::vector<std::pair<float, int32_t>> all;
    for (size_t j = 0; j < s.k; ++j) all.push_back({D[i * s.k + j] + float(s.p[j]), int32_t(j)});
    std::sort(all.begin(), all.end());
    std::vector<int32_t> want;
    for (size_t t = width; t < s.k; ++t) {
      const auto j = size_t(all[t].second);
      if (D[i * s.k + j] < (join_limit[j] - float(s.p[j])) + all[0].first) want.push_back(int32_t(j));
    }
    std::sort(want.begin(), want.end());
    const std::vector<int32_t> got(l.cluster.begin() + l.offsets[i] + ptrdiff_t(width),
                                   l.cluster.begin() + l.offsets[i + 1]);
    ASSERT_EQ(got, want) << "row " << i;
    joiner_arcs += got.size();
  }
  ASSERT_GT(joiner_arcs, 0u);
  // Scan under other prices than the lists were made with.
  std::vector<double> q = s.p;
  for (size_t j = 0; j < s.k; ++j) q[j] += 0.25 * double(j % 3) - 0.25;
  std::vector<double> own(s.k, -kInf), join(s.k, -kInf);
  own[2] = 0.5, join[5] = 1.0;
  tessera::ListScanParams prm;
  prm.top = top, prm.margin = 0.25, prm.own_margin = own.data(), prm.join_margin = join.data();
  const tessera::CandidateListsView v{l.rows, s.k, l.offsets.data(), l.cluster.data(), l.cost.data()};
  const tessera::ListScan scan = tessera::scan_candidate_lists(v, q, prm);

  std::vector<int64_t> counts(s.k, 0), fixed(s.k, 0), boundary;
  std::vector<std::vector<double>> gaps(s.k);
  std::vector<std::vector<std::pair<double, int64_t>>> joins(s.k);
  for (size_t i = 0; i < s.n; ++i) {
    std::vector<std::pair<double, int32_t>> row;
    for (auto t = size_t(l.offsets[i]); t < size_t(l.offsets[i + 1]); ++t) {
      const int32_t j = l.cluster[t];
      row.push_back({double(l.cost[t]) + q[size_t(j)], j});
    }
    std::sort(row.begin(), row.end());
    const size_t a = size_t(row[0].second);
    ++counts[a];
    gaps[a].push_back(row[1].first - row[0].first);
    bool b = row[1].first - row[0].first <= std::max(0.25, own[a]);
    for (size_t t = 1; t < row.size(); ++t) {
      joins[size_t(row[t].second)].push_back({row[t].first - row[0].first, int64_t(i)});
      b |= row[t].first - row[0].first <= join[size_t(row[t].second)];
    }
    if (b) boundary.push_back(int64_t(i));
    else ++fixed[a];
  }
  EXPECT_EQ(scan.counts, counts);
  EXPECT_EQ(scan.fixed, fixed);
  EXPECT_EQ(scan.boundary, boundary);
  ASSERT_FALSE(boundary.empty());
  ASSERT_LT(boundary.size(), s.n);
  for (size_t j = 0; j < s.k; ++j) {
    std::sort(gaps[j].begin(), gaps[j].end());
    std::sort(joins[j].begin(), joins[j].end());
    for (size_t t = 0; t < top; ++t) {
      const double g = t < gaps[j].size() ? gaps[j][t] : kInf;
      EXPECT_EQ(scan.gaps[j * top + t], g) << j << " " << t;
      if (t < joins[j].size()) {
        EXPECT_EQ(scan.joins[j * top + t], joins[j][t].first) << j << " " << t;
        EXPECT_EQ(scan.join_row[j * top + t], joins[j][t].second) << j << " " << t;
      } else {
        EXPECT_EQ(scan.join_row[j * top + t], -1);
        EXPECT_TRUE(std::isinf(scan.joins[j * top + t]));
      }
    }
  }
}
