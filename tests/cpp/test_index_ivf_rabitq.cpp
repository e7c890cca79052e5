#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <vector>

#include "test_helpers.h"
#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/index/index_ivf_rabitq.h"
#include "tessera/io/texmex.h"

using namespace tessera;

namespace {

FloatMatrix gaussian(size_t n, size_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  FloatMatrix x(n, d);
  for (size_t i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
  return x;
}

struct Result {
  std::vector<float> D;
  std::vector<int64_t> I;
};

Result run(const IndexIVFRaBitQ& index, const FloatMatrix& q, size_t k, size_t nprobe, bool single_stage = false) {
  Result r{std::vector<float>(q.rows() * k), std::vector<int64_t>(q.rows() * k)};
  index.search(q.view(), k, nprobe, r.D.data(), r.I.data(), single_stage);
  return r;
}

// Fraction of each query's true k nearest (exact L2) among the k returned.
double recall(const FloatMatrix& x, const FloatMatrix& q, const Result& r, size_t k) {
  size_t hit = 0;
  for (size_t a = 0; a < q.rows(); ++a) {
    std::vector<std::pair<double, size_t>> all(x.rows());
    for (size_t i = 0; i < x.rows(); ++i) {
      double s = 0;
      for (size_t j = 0; j < x.cols(); ++j) s += double(x(i, j) - q(a, j)) * (x(i, j) - q(a, j));
      all[i] = {s, i};
    }
    std::partial_sort(all.begin(), all.begin() + k, all.end());
    std::set<int64_t> got(r.I.begin() + a * k, r.I.begin() + (a + 1) * k);
    for (size_t t = 0; t < k; ++t) hit += got.count(int64_t(all[t].second));
  }
  return double(hit) / double(q.rows() * k);
}

}  // namespace

// Flat (nlist = 1): the index ranks by the codec's own estimates (best first, labels distinct).
TEST(IndexIVFRaBitQ, FlatRanksByTheCodecsEstimates) {
  const size_t d = 40, n = 500;
  const FloatMatrix x = gaussian(n, d, 1), q = gaussian(7, d, 2);
  for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
    RabitqParams p;
    p.bits = 3;
    p.metric = metric;
    IndexIVFRaBitQ index(d, 1, p);
    index.train(x.view());
    index.add(x.view());
    ASSERT_EQ(index.ntotal(), n);
    const size_t k = 10;
    const Result r = run(index, q, k, 1);
    const RaBitQuantizer& codec = index.quantizer();
    std::vector<uint8_t> codes(n * codec.code_size());
    codec.encode_with_centroid(x.view(), index.centroids().row(0), codes.data());
    for (size_t a = 0; a < q.rows(); ++a) {
      auto query = codec.prepare_query(q.row(a));
      codec.set_centroid(query, q.row(a), index.centroids().row(0));
      std::vector<std::pair<float, int64_t>> all(n);
      for (size_t i = 0; i < n; ++i) {
        const float v = codec.estimate(query, codes.data() + i * codec.code_size()).value;
        all[i] = {metric == MetricType::L2 ? v : -v, int64_t(i)};
      }
      std::sort(all.begin(), all.end());
      for (size_t t = 0; t < k; ++t) {
        const float want = metric == MetricType::L2 ? all[t].first : -all[t].first;
        EXPECT_NEAR(r.D[a * k + t], want, 1e-4 * (1 + std::abs(want))) << metric_name(metric) << " query " << a;
        if (t + 1 < k && std::abs(all[t].first - all[t + 1].first) > 1e-3f)
          EXPECT_EQ(r.I[a * k + t], all[t].second) << metric_name(metric) << " query " << a << " rank " << t;
      }
    }
  }
}

// The two-stage search (1-bit fast scan, full codes only where the 1-bit bound can win) returns what the
// single-stage scan returns for almost every query, at the same recall; with an unbounded error bound it
// prunes nothing and returns exactly the same.
TEST(IndexIVFRaBitQ, TwoStageAgreesWithSingleStage) {
  const std::string base = tessera::testing::shared_data("siftsmall/siftsmall_base.fvecs"),
                    query = tessera::testing::shared_data("siftsmall/siftsmall_query.fvecs");
  if (const std::string why = tessera::testing::missing_shared_data({base, query}); !why.empty()) GTEST_SKIP() << why;
  const FloatMatrix x = read_fvecs(base), q = read_fvecs(query);
  const size_t k = 10;
  for (int bits : {1, 3, 5}) {
    for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
      RabitqParams p;
      p.bits = bits;
      p.metric = metric;
      IndexIVFRaBitQ index(x.cols(), 16, p);
      index.train(x.view());
      index.add(x.view());
      const Result one = run(index, q, k, 8, true), two = run(index, q, k, 8, false);
      size_t same = 0;
      for (size_t i = 0; i < one.I.size(); ++i) same += one.I[i] == two.I[i];
      EXPECT_GE(double(same) / double(one.I.size()), 0.97) << "bits " << bits << " " << metric_name(metric);
      if (metric == MetricType::L2)
        EXPECT_GE(recall(x, q, two, k), recall(x, q, one, k) - 0.01) << "bits " << bits;
      p.epsilon0 = 1e9;
      IndexIVFRaBitQ wide(x.cols(), 16, p);
      wide.set_centroids(index.centroids().view());
      wide.add(x.view());
      const Result a = run(wide, q, k, 8, true), b = run(wide, q, k, 8, false);
      EXPECT_EQ(a.I, b.I) << "bits " << bits << " " << metric_name(metric);
      EXPECT_EQ(a.D, b.D);
    }
  }
}

// Real data: 4 bits find ≥ 90% of the true 10 nearest without re-ranking, flat and with lists.
TEST(IndexIVFRaBitQ, RecallOnSiftsmall) {
  const std::string base = tessera::testing::shared_data("siftsmall/siftsmall_base.fvecs"),
                    query = tessera::testing::shared_data("siftsmall/siftsmall_query.fvecs");
  if (const std::string why = tessera::testing::missing_shared_data({base, query}); !why.empty()) GTEST_SKIP() << why;
  const FloatMatrix x = read_fvecs(base), q = read_fvecs(query);
  const size_t k = 10;
  for (size_t nlist : {size_t(1), size_t(32)}) {
    RabitqParams p;
    p.bits = 4;
    IndexIVFRaBitQ index(x.cols(), nlist, p);
    index.train(x.view());
    index.add(x.view());
    const double r = recall(x, q, run(index, q, k, nlist == 1 ? 1 : 16), k);
    EXPECT_GE(r, 0.90) << "nlist " << nlist;
    std::printf("[ siftsmall ] 4 bits, nlist %zu: recall@10 %.3f\n", nlist, r);
  }
}

// Lists: every vector lands in its nearest list, probing every list equals the flat scan of the same codes,
// and results do not depend on the thread count.
TEST(IndexIVFRaBitQ, ListsProbesAndThreads) {
  const size_t d = 32, n = 800;
  const FloatMatrix x = gaussian(n, d, 3), q = gaussian(9, d, 4);
  RabitqParams p;
  p.bits = 2;
  IndexIVFRaBitQ index(d, 8, p);
  index.train(x.view());
  index.add(x.view());
  size_t total = 0;
  for (size_t l = 0; l < 8; ++l) total += index.list_size(l);
  EXPECT_EQ(total, n);
  const int threads = num_threads();
  set_num_threads(1);
  const Result one = run(index, q, 20, 3);
  const Result all = run(index, q, 20, 100);  // clamped to nlist
  set_num_threads(2);
  const Result two = run(index, q, 20, 3);
  set_num_threads(threads);
  EXPECT_EQ(one.I, two.I);
  EXPECT_EQ(one.D, two.D);
  for (size_t a = 0; a < q.rows(); ++a)
    for (size_t t = 0; t + 1 < 20; ++t) EXPECT_LE(all.D[a * 20 + t], all.D[a * 20 + t + 1]);
  // More results than vectors: the rest are −1 / +inf.
  IndexIVFRaBitQ small(d, 1, p);
  small.train(x.view());
  small.add(MatrixView<const float>(x.data(), 3, d));
  const Result few = run(small, q, 5, 1);
  EXPECT_EQ(few.I[3], -1);
  EXPECT_TRUE(std::isinf(few.D[4]));
}

// Files: a round trip searches the same; truncated, corrupted or foreign bytes are FormatErrors.
TEST(IndexIVFRaBitQ, FilesRoundTripAndRefuseDamage) {
  const size_t d = 24, n = 300;
  const FloatMatrix x = gaussian(n, d, 5), q = gaussian(4, d, 6);
  for (RotationKind rotation : {RotationKind::hadamard, RotationKind::dense}) {
    RabitqParams p;
    p.bits = 5;
    p.rotation = rotation;
    p.metric = MetricType::inner_product;
    IndexIVFRaBitQ index(d, 4, p);
    index.train(x.view());
    index.add(x.view());
    const std::string path = ::testing::TempDir() + "/ivf_rabitq_" + rotation_kind_name(rotation) + ".tsi";
    index.save(path);
    const IndexIVFRaBitQ back = IndexIVFRaBitQ::load(path);
    std::filesystem::remove(path);
    EXPECT_EQ(back.ntotal(), n);
    const Result a = run(index, q, 7, 2), b = run(back, q, 7, 2);
    EXPECT_EQ(a.I, b.I);
    EXPECT_EQ(a.D, b.D);
    const std::string bytes = index.bytes();
    EXPECT_THROW(IndexIVFRaBitQ::parse(bytes.data(), bytes.size() - 9), FormatError);
    std::string flipped = bytes;
    flipped[bytes.size() / 2] ^= 0x10;
    EXPECT_THROW(IndexIVFRaBitQ::parse(flipped.data(), flipped.size()), FormatError);
    EXPECT_THROW(IndexIVFRaBitQ::parse("not an index", 12), FormatError);
  }
}

TEST(IndexIVFRaBitQ, BadInputIsRefused) {
  const size_t d = 16;
  const FloatMatrix x = gaussian(50, d, 7);
  EXPECT_THROW(IndexIVFRaBitQ(d, 0), InvalidArgument);
  IndexIVFRaBitQ index(d, 4);
  std::vector<float> D(10);
  std::vector<int64_t> I(10);
  EXPECT_THROW(index.add(x.view()), InvalidArgument);                          // not trained
  EXPECT_THROW(index.search(x.view(), 1, 1, D.data(), I.data()), InvalidArgument);
  EXPECT_THROW(index.train(MatrixView<const float>(x.data(), 3, d)), InvalidArgument);  // fewer rows than lists
  const FloatMatrix wrong = gaussian(50, d + 1, 8);
  EXPECT_THROW(index.train(wrong.view()), InvalidArgument);
  EXPECT_THROW(index.set_centroids(MatrixView<const float>(x.data(), 3, d)), InvalidArgument);
  index.train(x.view());
  index.add(x.view());
  EXPECT_THROW(index.train(x.view()), InvalidArgument);  // lists are fixed once vectors are in
  EXPECT_THROW(index.search(MatrixView<const float>(x.data(), 1, d), 0, 1, D.data(), I.data()), InvalidArgument);
  EXPECT_THROW(index.search(MatrixView<const float>(x.data(), 1, d), 1, 0, D.data(), I.data()), InvalidArgument);
  FloatMatrix bad = gaussian(1, d, 9);
  bad(0, 3) = INFINITY;
  EXPECT_THROW(index.search(bad.view(), 1, 1, D.data(), I.data()), InvalidArgument);
}
