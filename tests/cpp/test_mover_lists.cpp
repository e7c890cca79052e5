// The mover table both balanced-assignment engines share (src/cluster/mover_lists.h), against a brute-force
// minimum over the members: random joins and leaves, with the engines' refill rule (an entry whose list ran
// dry is rebuilt from the members), keep every entry equal to the cheapest (value, item) key.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "cluster/mover_lists.h"

using tessera::detail::before;
using tessera::detail::Mover;
using tessera::detail::MoverLists;

namespace {

struct Model {
  size_t k;
  std::vector<std::vector<float>> cost;  // item × cluster
  std::vector<int32_t> cluster;          // item → its cluster
  Mover key(int32_t i, size_t b) const {
    return Mover{cost[size_t(i)][b] - cost[size_t(i)][size_t(cluster[size_t(i)])], i};
  }
  Mover cheapest(size_t a, size_t b) const {
    Mover best{MoverLists::kNone, -1};
    for (size_t i = 0; i < cluster.size(); ++i)
      if (size_t(cluster[i]) == a && before(key(int32_t(i), b), best)) best = key(int32_t(i), b);
    return best;
  }
};

void refill(MoverLists& t, const Model& m, size_t a) {
  t.clear_row(a);
  for (size_t i = 0; i < m.cluster.size(); ++i)
    if (size_t(m.cluster[i]) == a)
      for (size_t b = 0; b < m.k; ++b)
        if (b != a) t.offer(a * m.k + b, m.key(int32_t(i), b));
}

void expect_cheapest(const MoverLists& t, const Model& m) {
  for (size_t a = 0; a < m.k; ++a)
    for (size_t b = 0; b < m.k; ++b) {
      if (a == b) continue;
      const Mover want = m.cheapest(a, b);
      ASSERT_EQ(t.who()[a * m.k + b], want.item) << a << "→" << b;
      if (want.item >= 0) ASSERT_EQ(t.move()[a * m.k + b], want.value) << a << "→" << b;
    }
}

}  // namespace

TEST(MoverLists, EntriesStayTheCheapestThroughJoinsAndLeaves) {
  for (const size_t depth : {1, 3, 16}) {
    std::mt19937_64 rng(depth);
    // Values on a coarse grid: many ties, which the (value, item) order must break the same way every time.
    std::uniform_int_distribution<int> grid(0, 6);
    Model m{5, {}, {}};
    const size_t n = 60;
    m.cost.assign(n, std::vector<float>(m.k));
    for (auto& row : m.cost)
      for (float& v : row) v = 0.5f * float(grid(rng));
    std::uniform_int_distribution<int32_t> pick_cluster(0, int32_t(m.k) - 1);
    m.cluster.resize(n);
    for (auto& c : m.cluster) c = pick_cluster(rng);
    MoverLists t;
    t.reset(m.k, depth);
    // Offered in a shuffled order: the table must not depend on it.
    std::vector<int32_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = int32_t(i);
    std::shuffle(order.begin(), order.end(), rng);
    for (const int32_t i : order)
      for (size_t b = 0; b < m.k; ++b)
        if (b != size_t(m.cluster[size_t(i)])) t.offer(size_t(m.cluster[size_t(i)]) * m.k + b, m.key(i, b));
    expect_cheapest(t, m);
    std::uniform_int_distribution<size_t> pick_item(0, n - 1);
    for (int step = 0; step < 400; ++step) {
      // The engines move the cheapest mover of some entry most of the time: do that half the time.
      int32_t i = int32_t(pick_item(rng));
      if (step % 2 == 0) {
        const size_t e = size_t(pick_cluster(rng)) * m.k + size_t(pick_cluster(rng));
        if (t.who()[e] >= 0) i = t.who()[e];
      }
      const size_t a = size_t(m.cluster[size_t(i)]);
      size_t b = size_t(pick_cluster(rng));
      if (b == a) b = (b + 1) % m.k;
      bool dry = false;
      for (size_t x = 0; x < m.k; ++x)
        if (x != a) dry |= t.remove(a * m.k + x, m.key(i, x));
      m.cluster[size_t(i)] = int32_t(b);
      if (dry) refill(t, m, a);
      for (size_t x = 0; x < m.k; ++x)
        if (x != b) t.offer(b * m.k + x, m.key(i, x));
      expect_cheapest(t, m);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(MoverLists, DepthGrowsWithClusterSizeWithinTheBudget) {
  EXPECT_EQ(MoverLists::depth_for(1000, 256), 1u);  // small clusters: a rescan is cheap
  EXPECT_EQ(MoverLists::depth_for(10'000'000, 256), 64u);  // the deepest list
  EXPECT_EQ(MoverLists::depth_for(10'000'000, 1024), 8u);  // the budget: 2²³ movers over k² entries
  EXPECT_EQ(MoverLists::depth_for(100'000'000, 8192), 1u);  // k² entries already fill the budget
}
