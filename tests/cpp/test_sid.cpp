#include <gtest/gtest.h>

#include <set>

#include "test_helpers.h"
#include "tessera/core/distances.h"
#include "tessera/sid/collisions.h"
#include "tessera/sid/index_json.h"
#include "tessera/sid/metrics.h"

using namespace tessera;

namespace {

CodeMatrix codes_of(std::vector<std::vector<int32_t>> rows) {
  CodeMatrix c(rows.size(), rows[0].size());
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t j = 0; j < rows[i].size(); ++j) c(i, j) = rows[i][j];
  return c;
}

std::vector<std::vector<int32_t>> tuples(const CodeMatrix& ids) {
  std::vector<std::vector<int32_t>> t;
  for (size_t i = 0; i < ids.rows(); ++i) {
    std::vector<int32_t> r;
    for (size_t j = 0; j < ids.cols(); ++j)
      if (ids(i, j) >= 0) r.push_back(ids(i, j));
    t.push_back(r);
  }
  return t;
}

// No ID equals another, and none is a proper prefix of another.
void expect_unique_and_prefix_free(const CodeMatrix& ids) {
  const auto t = tuples(ids);
  std::set<std::vector<int32_t>> all(t.begin(), t.end());
  EXPECT_EQ(all.size(), t.size());
  for (const auto& a : t)
    for (size_t len = 1; len < a.size(); ++len)
      EXPECT_EQ(all.count(std::vector<int32_t>(a.begin(), a.begin() + len)), 0u);
}

}  // namespace

TEST(Sid, AppendGivesRanksOnlyToCollidingItems) {
  const auto codes = codes_of({{1, 2}, {3, 4}, {1, 2}, {1, 2}, {3, 5}});
  const auto ids = append_suffix(codes.view(), false);
  EXPECT_EQ(ids(0, 2), 1);
  EXPECT_EQ(ids(2, 2), 2);
  EXPECT_EQ(ids(3, 2), 3);
  EXPECT_EQ(ids(1, 2), -1);
  EXPECT_EQ(ids(4, 2), -1);
  expect_unique_and_prefix_free(ids);
  const auto all = append_suffix(codes.view(), true);
  EXPECT_EQ(all(0, 2), 0);
  EXPECT_EQ(all(2, 2), 1);
  EXPECT_EQ(all(1, 2), 0);
  expect_unique_and_prefix_free(all);
}

TEST(Sid, CollisionStats) {
  const auto codes = codes_of({{1, 2}, {3, 4}, {1, 2}, {1, 2}, {3, 5}});
  const auto s = collision_stats(codes.view());
  EXPECT_EQ(s.unique_ids, 3u);
  EXPECT_EQ(s.largest_group, 3u);
  EXPECT_EQ(s.colliding_items, 3u);
  EXPECT_DOUBLE_EQ(s.collision_rate, 1 - 3.0 / 5);
}

TEST(Sid, ReassignMovesToNearestFreeCodeAndKeepsTheNearestItem) {
  // One prefix group of three items all on code 0; codewords on a line at 0, 1, 2, 3.
  FloatMatrix book(4, 1);
  for (int k = 0; k < 4; ++k) book(k, 0) = float(k);
  FloatMatrix r(3, 1);
  r(0, 0) = 0.4f;   // second nearest to code 0
  r(1, 0) = 0.1f;   // nearest: keeps code 0
  r(2, 0) = 2.9f;   // moves to 3
  auto codes = codes_of({{7, 0}, {7, 0}, {7, 0}});
  const auto rep = reassign_last_level(codes.view(), r.view(), book.view());
  EXPECT_EQ(rep.moved, 2u);
  EXPECT_EQ(rep.unresolved, 0u);
  EXPECT_EQ(codes(1, 1), 0);
  EXPECT_EQ(codes(0, 1), 1);  // nearest free code to 0.4 (0 is taken)
  EXPECT_EQ(codes(2, 1), 3);
}

TEST(Sid, ReassignOnRandomCodesLeavesNoCollisionWhenGroupsFit) {
  const size_t n = 3000, K = 16, d = 5;
  const auto x = tessera::testing::gaussian_mixture(n, d, 10, 3);
  FloatMatrix book(K, d);
  for (size_t k = 0; k < K; ++k)
    for (size_t j = 0; j < d; ++j) book(k, j) = x(k * 7, j);
  CodeMatrix codes(n, 2);
  std::vector<int32_t> nearest(n);
  nearest_centroids(x.view(), book.view(), nearest.data(), nullptr);
  for (size_t i = 0; i < n; ++i) codes(i, 0) = int32_t(i % 200), codes(i, 1) = nearest[i];  // 15 per prefix < K
  ASSERT_GT(collision_stats(codes.view()).colliding_items, 0u);
  const auto rep = reassign_last_level(codes.view(), x.view(), book.view());
  EXPECT_EQ(rep.unresolved, 0u);
  EXPECT_EQ(collision_stats(codes.view()).colliding_items, 0u);
}

TEST(Sid, IndexJsonHasMiniOneRecLayout) {
  const auto ids = codes_of({{13, 200, 7, -1}, {0, 1, 2, 1}});
  const std::string expect =
      "{\n  \"0\": [\n    \"<a_14>\",\n    \"<b_201>\",\n    \"<c_8>\"\n  ],\n"
      "  \"1\": [\n    \"<a_1>\",\n    \"<b_2>\",\n    \"<c_3>\",\n    \"<d_1>\"\n  ]\n}";
  EXPECT_EQ(index_json(ids.view(), 3, TokenFormat{}), expect);
  const std::vector<std::string> keys = {"nginx", "caf\xc3\xa9\"x"};
  const std::string z = index_json(ids.view(), 3, TokenFormat{true}, &keys);
  EXPECT_NE(z.find("\"nginx\": [\n    \"<a_13>\""), std::string::npos);
  EXPECT_NE(z.find("\"caf\\u00e9\\\"x\""), std::string::npos);
  EXPECT_NE(z.find("\"<d_1>\""), std::string::npos);  // suffixes are not shifted
}

TEST(Sid, PurityAgainstHandComputedValues) {
  const auto codes = codes_of({{0, 0}, {0, 1}, {0, 1}, {1, 0}, {1, 0}, {1, 1}});
  const std::vector<int32_t> labels = {0, 0, 1, 2, 2, 2};
  EXPECT_DOUBLE_EQ(prefix_purity(codes.view(), 1, labels), (2 + 3) / 6.0);
  EXPECT_DOUBLE_EQ(prefix_purity(codes.view(), 2, labels), (1 + 1 + 2 + 1) / 6.0);
  const auto usage = code_usage(codes.view(), {2, 4});
  EXPECT_EQ(usage[1].unique_codes, 2u);
  EXPECT_EQ(usage[1].min_cluster_size, 0u);
  EXPECT_EQ(usage[1].max_cluster_size, 3u);
  EXPECT_DOUBLE_EQ(usage[0].entropy_bits, 1.0);
}
