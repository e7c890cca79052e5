#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <vector>

#include "index/rabitq_scan_kernel.h"
#include "io/checked_container.h"
#include "quant/rabitq_sums.h"
#include "test_helpers.h"
#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/index/index_ivf_rabitq.h"
#include "tessera/io/texmex.h"
#include "tessera/quant/random_rotation.h"

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

Result run(const IndexIVFRaBitQ& index, const FloatMatrix& q, size_t k, size_t nprobe, bool single_stage = false,
           size_t rerank = 0) {
  Result r{std::vector<float>(q.rows() * k), std::vector<int64_t>(q.rows() * k)};
  index.search(q.view(), k, nprobe, r.D.data(), r.I.data(), single_stage, rerank);
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
      if (bits == 1) {  // one bit: stage 1 prunes by the tables' rounding alone, so nothing can differ
        EXPECT_EQ(one.I, two.I) << metric_name(metric);
        EXPECT_EQ(one.D, two.D) << metric_name(metric);
      }
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
  // Fewer vectors in the probed lists than k: the rest are −1 / +inf. k above the index's size, or an empty
  // index, is an error.
  IndexIVFRaBitQ small(d, 2, p);
  small.train(x.view());
  EXPECT_THROW(run(small, q, 1, 1), InvalidArgument);  // nothing added yet
  std::vector<int32_t> lists(4);
  small.assign(MatrixView<const float>(q.data(), 4, d), lists.data());
  lists[3] = 1 - lists[0];  // rows 0..2 in query 0's list (at least), row 3 in the other
  lists[1] = lists[2] = lists[0];
  small.add(MatrixView<const float>(q.data(), 4, d), lists.data());
  FloatMatrix q0(1, d);
  std::copy(q.row(0), q.row(0) + d, q0.row(0));
  const Result few = run(small, q0, 4, 1);
  EXPECT_NE(few.I[2], -1);
  EXPECT_EQ(few.I[3], -1);
  EXPECT_TRUE(std::isinf(few.D[3]));
  EXPECT_THROW(run(small, q0, 5, 2), InvalidArgument);
}

// assign() is add()'s coarse assignment (the exact nearest centroid); add(x, lists) with those lists builds
// the same index, and with other lists puts the rows exactly there (codes against those lists' centroids).
TEST(IndexIVFRaBitQ, AddWithGivenLists) {
  const size_t d = 24, n = 600, nlist = 6;
  const FloatMatrix x = gaussian(n, d, 31), q = gaussian(7, d, 32);
  for (MetricType metric : {MetricType::L2, MetricType::cosine}) {
    RabitqParams p;
    p.bits = 3;
    p.metric = metric;
    IndexIVFRaBitQ a(d, nlist, p), b(d, nlist, p), c(d, nlist, p);
    a.train(x.view());
    b.set_centroids(a.centroids().view());
    c.set_centroids(a.centroids().view());
    std::vector<int32_t> lists(n);
    a.assign(x.view(), lists.data());
    // The exact nearest centroid in double (cosine: of the unit rows).
    for (size_t i = 0; i < n; ++i) {
      double norm = 0;
      for (size_t j = 0; j < d; ++j) norm += double(x(i, j)) * x(i, j);
      const double s = metric == MetricType::cosine ? 1 / std::sqrt(norm) : 1.0;
      double best = INFINITY;
      int32_t arg = -1;
      for (size_t l = 0; l < nlist; ++l) {
        double e = 0;
        for (size_t j = 0; j < d; ++j) e += (x(i, j) * s - a.centroids()(l, j)) * (x(i, j) * s - a.centroids()(l, j));
        if (e < best) best = e, arg = int32_t(l);
      }
      EXPECT_EQ(lists[i], arg) << "row " << i;
    }
    a.add(x.view());
    b.add(x.view(), lists.data());
    const Result ra = run(a, q, 15, 3), rb = run(b, q, 15, 3);
    EXPECT_EQ(ra.I, rb.I);
    EXPECT_EQ(ra.D, rb.D);
    // Rows placed by hand: list (i mod nlist).
    std::vector<int32_t> mine(n);
    for (size_t i = 0; i < n; ++i) mine[i] = int32_t(i % nlist);
    c.add(x.view(), mine.data());
    for (size_t l = 0; l < nlist; ++l) EXPECT_EQ(c.list_size(l), n / nlist);
    // Every vector is found when all lists are probed and everything is re-ranked.
    FloatMatrix first(5, d);
    std::copy(x.data(), x.data() + 5 * d, first.data());
    const Result all = run(c, first, 1, nlist, false, n);
    for (size_t a_ = 0; a_ < 5; ++a_) EXPECT_EQ(all.I[a_], int64_t(a_));
    // Bad ids are refused and nothing is added.
    IndexIVFRaBitQ e(d, nlist, p);
    e.set_centroids(a.centroids().view());
    mine[17] = int32_t(nlist);
    EXPECT_THROW(e.add(x.view(), mine.data()), InvalidArgument);
    mine[17] = -1;
    EXPECT_THROW(e.add(x.view(), mine.data()), InvalidArgument);
    EXPECT_EQ(e.ntotal(), 0u);
    IndexIVFRaBitQ untrained(d, nlist, p);
    EXPECT_THROW(untrained.assign(x.view(), lists.data()), InvalidArgument);
  }
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

// The scan's kernels: every SIMD path returns the scalar reference's bits.
TEST(IndexIVFRaBitQ, KernelsEqualTheirScalarReferences) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uni(-3.0f, 3.0f);
  for (size_t d : {size_t(1), size_t(7), size_t(32), size_t(100), size_t(128), size_t(784)}) {
    const size_t dpad = detail::rabitq_padded_dim(d);
    std::vector<float> q(dpad, 0.0f), b(d);
    for (size_t j = 0; j < d; ++j) q[j] = uni(rng), b[j] = uni(rng);
    for (int width : {2, 4, 8, 16}) {
      std::vector<uint16_t> u(d);
      for (auto& v : u) v = uint16_t(rng() & ((1u << width) - 1));
      std::vector<uint8_t> packed(detail::rabitq_packed_bytes(d, width));
      detail::rabitq_pack_code(u.data(), d, width, packed.data());
      for (size_t j = 0; j < d; ++j) ASSERT_EQ(detail::rabitq_unpack_value(packed.data(), j, width), u[j]);
      for (size_t j = d; j < dpad; ++j) ASSERT_EQ(detail::rabitq_unpack_value(packed.data(), j, width), 0);
      const float ref = detail::rabitq_code_dot_scalar(packed.data(), width, q.data(), dpad);
      EXPECT_EQ(detail::rabitq_code_dot(packed.data(), width, q.data(), dpad), ref) << "d " << d << " width " << width;
      EXPECT_EQ(detail::rabitq_code_dot_kernel(width)(packed.data(), q.data(), dpad), ref);
      double exact = 0;
      for (size_t j = 0; j < d; ++j) exact += double(u[j]) * q[j];
      EXPECT_NEAR(ref, exact, 1e-4 * (1 + std::abs(exact)));
    }
    EXPECT_EQ(detail::rabitq_dot(q.data(), b.data(), d), detail::rabitq_dot_scalar(q.data(), b.data(), d));
    EXPECT_EQ(detail::rabitq_l2sqr(q.data(), b.data(), d), detail::rabitq_l2sqr_scalar(q.data(), b.data(), d));
    // The top-bit tables.
    const size_t nsq = (d + 3) / 4;
    std::vector<float> lo(nsq);
    for (size_t t = 0; t < nsq; ++t) {
      lo[t] = 0;
      for (size_t c = 4 * t; c < std::min(d, 4 * t + 4); ++c) lo[t] += std::min(q[c], 0.0f);
    }
    std::vector<uint8_t> lut(nsq * 16), lut_ref(nsq * 16);
    detail::rabitq_top_bit_lut(q.data(), d, 20.0f, lo.data(), lut.data());
    detail::rabitq_top_bit_lut(q.data(), d, 20.0f, lo.data(), lut_ref.data(), false);
    EXPECT_EQ(lut, lut_ref) << "d " << d;
  }
  // The coarse ranking over centroid panels: every query-group size (1..4 rows of a batch), panel tails (nlist
  // not a multiple of 16), both key forms; the same bits as the scalar reference, and near the double product.
  for (size_t d : {size_t(1), size_t(7), size_t(128), size_t(300)})
    for (size_t nlist : {size_t(1), size_t(16), size_t(37), size_t(300)})
      for (size_t m : {size_t(1), size_t(3), size_t(6), size_t(32)}) {
        std::vector<float> c(nlist * d), qs(m * (d + 3)), norms((nlist + 15) / 16 * 16, 0.0f);
        for (auto& v : c) v = uni(rng);
        for (auto& v : qs) v = uni(rng);
        for (size_t l = 0; l < nlist; ++l) norms[l] = uni(rng) * uni(rng);
        std::vector<float> panels(norms.size() * d);
        detail::rabitq_pack_centroid_panels(c.data(), nlist, d, panels.data());
        for (bool l2 : {true, false}) {
          std::vector<float> keys(m * (nlist + 2), -7.0f), keys_ref(keys);
          detail::rabitq_rank_centroids(qs.data(), d + 3, m, panels.data(), nlist, d, norms.data(), l2, keys.data(),
                                        nlist + 2);
          detail::rabitq_rank_centroids_scalar(qs.data(), d + 3, m, panels.data(), nlist, d, norms.data(), l2,
                                               keys_ref.data(), nlist + 2);
          ASSERT_EQ(keys, keys_ref) << "d " << d << " nlist " << nlist << " m " << m << " l2 " << l2;
          for (size_t i = 0; i < m; ++i) {
            EXPECT_EQ(keys[i * (nlist + 2) + nlist], -7.0f) << "nothing written past nlist";
            for (size_t l = 0; l < nlist; ++l) {
              double dot = 0;
              for (size_t j = 0; j < d; ++j) dot += double(qs[i * (d + 3) + j]) * c[l * d + j];
              const double want = l2 ? norms[l] - 2 * dot : -dot;
              ASSERT_NEAR(keys[i * (nlist + 2) + l], want, 1e-4 * (1 + std::abs(want) + std::sqrt(double(d))));
            }
          }
        }
      }
  // The nprobe selection's skip: the first key below the threshold (NaN never), at every offset within the
  // sixteen-key steps and in the tail.
  {
    std::vector<float> k(53);
    for (auto& v : k) v = 10.0f + uni(rng);
    k[20] = NAN;
    EXPECT_EQ(detail::rabitq_next_below(k.data(), k.size(), 5.0f), k.size());
    for (size_t at = 0; at < k.size(); ++at) {
      if (at == 20) continue;
      const float keep = k[at];
      k[at] = 4.0f;
      EXPECT_EQ(detail::rabitq_next_below(k.data(), k.size(), 5.0f), at);
      EXPECT_EQ(detail::rabitq_next_below(k.data(), at, 5.0f), at) << "not past n";
      k[at] = keep;
    }
  }
  // Stage-1 keys of a block.
  std::vector<uint16_t> sums(32);
  std::vector<float> f(96), key(32), key_ref(32);
  for (auto& v : sums) v = uint16_t(rng() % 9000);
  for (auto& v : f) v = uni(rng);
  for (bool l2 : {true, false})
    for (size_t n : {size_t(32), size_t(5)}) {
      const uint32_t m = detail::rabitq_block_keys(sums.data(), f.data(), 0.01f, -40.0f, 3.0f, 2.0f, 0.5f, l2, 1.0f, n,
                                                   key.data());
      const uint32_t r = detail::rabitq_block_keys_scalar(sums.data(), f.data(), 0.01f, -40.0f, 3.0f, 2.0f, 0.5f, l2,
                                                          1.0f, n, key_ref.data());
      EXPECT_EQ(m, r);
      EXPECT_EQ(key, key_ref);
    }
  // The codec's per-vector sums (encode): four double partial sums, coordinate j into sum j mod 4, then
  // (s0 + s1) + (s2 + s3), spelled out here one coordinate at a time.
  for (size_t d : {size_t(1), size_t(7), size_t(128), size_t(133)})
    for (int bits : {1, 4, 9}) {
      std::vector<float> r(d), pc(d);
      std::vector<uint16_t> u(d);
      for (size_t j = 0; j < d; ++j) r[j] = uni(rng), pc[j] = 3 * uni(rng), u[j] = uint16_t(rng() % (1u << bits));
      const double cb = -((1 << bits) - 1) / 2.0;
      double ref[7][4] = {};
      for (size_t j = 0; j < d; ++j) {
        const double x1 = (u[j] >> (bits - 1)) ? 0.5 : -0.5, xb = u[j] + cb;
        const double terms[7] = {double(r[j]) * r[j], double(r[j]) * pc[j], x1 * r[j], x1 * pc[j], xb * r[j],
                                 xb * pc[j], xb * xb};
        for (int t = 0; t < 7; ++t) ref[t][j % 4] += terms[t];
      }
      double got[7];
      detail::rabitq_residual_sums(r.data(), pc.data(), d, got);
      detail::rabitq_level_sums(r.data(), pc.data(), u.data(), d, bits, cb, got + 2);
      for (int t = 0; t < 7; ++t)
        EXPECT_EQ(got[t], (ref[t][0] + ref[t][1]) + (ref[t][2] + ref[t][3])) << "d " << d << " bits " << bits << " sum " << t;
    }
}

// Stage 3: re-ranking every vector with the raw vectors is brute force; re-ranking a few raises recall; an index
// without vectors refuses it; the vectors survive a file round trip.
TEST(IndexIVFRaBitQ, RerankWithRawVectors) {
  const size_t d = 48, n = 1500, k = 10;
  const FloatMatrix x = gaussian(n, d, 21), q = gaussian(12, d, 22);
  for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
    RabitqParams p;
    p.bits = 2;
    p.metric = metric;
    IndexIVFRaBitQ index(d, 8, p);
    ASSERT_TRUE(index.keeps_vectors());
    index.train(x.view());
    index.add(MatrixView<const float>(x.data(), 700, d));  // two adds: labels continue
    index.add(MatrixView<const float>(x.row(700), n - 700, d));
    const Result all = run(index, q, k, 8, false, n);
    for (size_t a = 0; a < q.rows(); ++a) {
      std::vector<std::pair<double, int64_t>> exact(n);
      for (size_t i = 0; i < n; ++i) {
        double s = 0;
        for (size_t j = 0; j < d; ++j)
          s += metric == MetricType::L2 ? double(x(i, j) - q(a, j)) * (x(i, j) - q(a, j)) : double(x(i, j)) * q(a, j);
        exact[i] = {metric == MetricType::L2 ? s : -s, int64_t(i)};
      }
      std::sort(exact.begin(), exact.end());
      for (size_t t = 0; t < k; ++t) {
        const double want = metric == MetricType::L2 ? exact[t].first : -exact[t].first;
        EXPECT_NEAR(all.D[a * k + t], want, 1e-4 * (1 + std::abs(want)));
        if (exact[t + 1].first - exact[t].first > 1e-3 && (t == 0 || exact[t].first - exact[t - 1].first > 1e-3))
          EXPECT_EQ(all.I[a * k + t], exact[t].second) << metric_name(metric) << " query " << a << " rank " << t;
      }
    }
    // Threads do not change it; R < k means k.
    const int threads = num_threads();
    set_num_threads(2);
    const Result two = run(index, q, k, 8, false, n);
    set_num_threads(threads);
    EXPECT_EQ(all.I, two.I);
    EXPECT_EQ(all.D, two.D);
    EXPECT_EQ(run(index, q, k, 3, false, 1).I, run(index, q, k, 3, false, k).I);
    if (metric == MetricType::L2) {
      const double plain = recall(x, q, run(index, q, k, 8), k), reranked = recall(x, q, run(index, q, k, 8, false, 50), k);
      EXPECT_GT(reranked, plain + 0.1) << plain << " → " << reranked;
      EXPECT_GE(reranked, 0.95);
    }
    // Files keep the vectors (and the flag).
    const std::string bytes = index.bytes();
    const IndexIVFRaBitQ back = IndexIVFRaBitQ::parse(bytes.data(), bytes.size());
    EXPECT_TRUE(back.keeps_vectors());
    const Result b = run(back, q, k, 4, false, 30), a = run(index, q, k, 4, false, 30);
    EXPECT_EQ(a.I, b.I);
    EXPECT_EQ(a.D, b.D);
  }
  IndexIVFRaBitQ bare(d, 4, RabitqParams{}, false);
  bare.train(x.view());
  bare.add(x.view());
  EXPECT_FALSE(bare.keeps_vectors());
  EXPECT_THROW(run(bare, q, k, 2, false, 20), InvalidArgument);
  const std::string bytes = bare.bytes();
  const IndexIVFRaBitQ back = IndexIVFRaBitQ::parse(bytes.data(), bytes.size());
  EXPECT_FALSE(back.keeps_vectors());
  EXPECT_EQ(run(back, q, k, 2).I, run(bare, q, k, 2).I);
  IndexIVFRaBitQ kept(d, 4);
  kept.set_centroids(bare.centroids().view());
  kept.add(x.view());
  EXPECT_NEAR(double(kept.bytes().size()) - double(bytes.size()), double(n * d * 4), 8.0);
  EXPECT_EQ(run(kept, q, k, 2).I, run(bare, q, k, 2).I);
}

// add_with_ids: search returns the given labels where it returned row numbers, with every re-ranking mode;
// rows added without ids keep their row numbers; the ids survive the file (format 3; without ids the index is
// still written as format 2); a negative id is refused.
TEST(IndexIVFRaBitQ, AddWithIds) {
  const size_t d = 40, n = 900, k = 7, nlist = 6;
  const FloatMatrix x = gaussian(n, d, 61), q = gaussian(10, d, 62);
  RabitqParams p;
  p.bits = 3;
  IndexIVFRaBitQ plain(d, nlist, p), with_ids(d, nlist, p);
  plain.train(x.view());
  with_ids.set_centroids(plain.centroids().view());
  plain.add(x.view());
  auto header = [](const std::string& file) {  // the JSON header: after magic, version and its length
    uint64_t len = 0;
    std::memcpy(&len, file.data() + sizeof detail::kFileMagic + 4, 8);
    return file.substr(sizeof detail::kFileMagic + 12, len);
  };
  EXPECT_NE(header(plain.bytes()).find("\"index_version\":2"), std::string::npos);
  // Rows 0..299 with ids 10⁹ + 7·i (in reverse order of magnitude: labels need not grow), 300..599 without,
  // 600..899 with ids given through lists.
  std::vector<int64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = i < 300 ? int64_t(1000000000 + 7 * (300 - i)) : i < 600 ? int64_t(i) : int64_t(5 * i);
  std::vector<int32_t> lists(n);
  plain.assign(x.view(), lists.data());
  with_ids.add_with_ids(MatrixView<const float>(x.data(), 300, d), ids.data());
  with_ids.add(MatrixView<const float>(x.row(300), 300, d));
  with_ids.add_with_ids(MatrixView<const float>(x.row(600), 300, d), ids.data() + 600, lists.data() + 600);
  EXPECT_TRUE(with_ids.has_ids());
  EXPECT_FALSE(plain.has_ids());
  for (size_t rerank : {size_t(0), size_t(20), IndexIVFRaBitQ::kRerankByBound}) {
    const Result a = run(plain, q, k, 3, false, rerank), b = run(with_ids, q, k, 3, false, rerank);
    EXPECT_EQ(a.D, b.D) << rerank;
    for (size_t t = 0; t < a.I.size(); ++t) EXPECT_EQ(b.I[t], ids[size_t(a.I[t])]) << rerank;
  }
  const std::string bytes = with_ids.bytes();
  const IndexIVFRaBitQ back = IndexIVFRaBitQ::parse(bytes.data(), bytes.size());
  EXPECT_TRUE(back.has_ids());
  EXPECT_NE(header(bytes).find("\"index_version\":3"), std::string::npos);
  EXPECT_EQ(back.bytes(), bytes);
  EXPECT_EQ(run(back, q, k, 3).I, run(with_ids, q, k, 3).I);
  // A damaged id is a format error, not a wrong answer.
  std::string bad = bytes;
  const size_t last_id = bad.size() - 4 - 8;
  const int64_t minus = -5;
  std::memcpy(&bad[last_id], &minus, 8);
  const uint32_t crc = detail::crc32_of(bad.data(), bad.size() - 4);
  std::memcpy(&bad[bad.size() - 4], &crc, 4);
  EXPECT_THROW(IndexIVFRaBitQ::parse(bad.data(), bad.size()), FormatError);
  const int64_t negative[1] = {-1};
  EXPECT_THROW(with_ids.add_with_ids(MatrixView<const float>(x.data(), 1, d), negative), InvalidArgument);
  EXPECT_EQ(with_ids.ntotal(), n);
}

// Re-ranking by the error bound: every value returned is the exact one of its label; with ε₀ so wide that no
// bound fails it is the exact search over the probed lists (the labels of rerank = n); with the default ε₀ it
// misses almost nothing (at 1 bit less than rerank = 50); thread counts do not change it.
TEST(IndexIVFRaBitQ, RerankByErrorBound) {
  const size_t d = 48, n = 2000, k = 10, nlist = 8;
  const FloatMatrix x = gaussian(n, d, 31), q = gaussian(30, d, 32);
  constexpr size_t kAuto = IndexIVFRaBitQ::kRerankByBound;
  for (MetricType metric : {MetricType::L2, MetricType::inner_product})
    for (int bits : {1, 4}) {
      const std::string what = std::string(metric_name(metric)) + " bits " + std::to_string(bits);
      RabitqParams p;
      p.bits = bits;
      p.metric = metric;
      IndexIVFRaBitQ index(d, nlist, p);
      index.train(x.view());
      index.add(x.view());
      p.epsilon0 = 50;  // intervals wider than any error: nothing can be dropped wrongly
      IndexIVFRaBitQ wide(d, nlist, p);
      wide.set_centroids(index.centroids().view());
      wide.add(x.view());
      for (size_t nprobe : {size_t(3), nlist}) {
        const Result exact = run(index, q, k, nprobe, false, n), got = run(index, q, k, nprobe, false, kAuto);
        const Result sure = run(wide, q, k, nprobe, false, kAuto);
        EXPECT_EQ(sure.I, exact.I) << what << " nprobe " << nprobe;
        EXPECT_EQ(sure.D, exact.D) << what << " nprobe " << nprobe;
        auto recall_of = [&](const Result& r) {
          size_t hit = 0;
          for (size_t a = 0; a < q.rows(); ++a) {
            const std::set<int64_t> truth(exact.I.begin() + a * k, exact.I.begin() + (a + 1) * k);
            for (size_t t = 0; t < k; ++t) hit += truth.count(r.I[a * k + t]);
          }
          return double(hit) / double(q.rows() * k);
        };
        for (size_t a = 0; a < q.rows(); ++a)
          for (size_t t = 0; t < k; ++t) {  // the label's exact value (the same float sums as rerank = n)
            const float* v = x.row(size_t(got.I[a * k + t]));
            double s = 0;
            for (size_t j = 0; j < d; ++j)
              s += metric == MetricType::L2 ? double(v[j] - q(a, j)) * (v[j] - q(a, j)) : double(v[j]) * q(a, j);
            EXPECT_NEAR(got.D[a * k + t], s, 1e-4 * (1 + std::abs(s))) << what;
          }
        const double rec = recall_of(got);
        EXPECT_GE(rec, 0.98) << what << " nprobe " << nprobe;
        if (bits == 1) EXPECT_GE(rec, recall_of(run(index, q, k, nprobe, false, 50))) << what << " nprobe " << nprobe;
        // Without the 1-bit stage the full codes' bounds alone decide (a few vectors more may pass).
        EXPECT_GE(recall_of(run(index, q, k, nprobe, true, kAuto)), 0.98) << what;
        const int threads = num_threads();
        set_num_threads(2);
        EXPECT_EQ(run(index, q, k, nprobe, false, kAuto).I, got.I) << what;
        set_num_threads(threads);
      }
    }
  IndexIVFRaBitQ bare(d, 4, RabitqParams{}, false);
  bare.train(x.view());
  bare.add(x.view());
  EXPECT_THROW(run(bare, q, k, 2, false, kAuto), InvalidArgument);
}

// Index files of format 1 (before the raw vectors) still load: no vectors, the same search.
TEST(IndexIVFRaBitQ, ReadsFormatOneFiles) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/fuzz/corpus/fuzz_ivf_rabitq/valid.tsi";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is missing";
  const IndexIVFRaBitQ index = IndexIVFRaBitQ::load(path);
  EXPECT_FALSE(index.keeps_vectors());
  ASSERT_GT(index.ntotal(), 0u);
  const FloatMatrix q = gaussian(3, index.dim(), 23);
  const Result r = run(index, q, 2, index.nlist());
  EXPECT_GE(r.I[0], 0);
  EXPECT_THROW(run(index, q, 2, 1, false, 5), InvalidArgument);
  // Written again, it is a format-2 file that reads back the same.
  const std::string bytes = index.bytes();
  const IndexIVFRaBitQ back = IndexIVFRaBitQ::parse(bytes.data(), bytes.size());
  EXPECT_EQ(run(back, q, 2, index.nlist()).D, r.D);
}

namespace {

// Rows scaled to unit norm as the index does it (1/‖x‖ in double, then float); zero rows stay zero.
FloatMatrix unit_rows(const FloatMatrix& x) {
  FloatMatrix out(x.rows(), x.cols());
  for (size_t i = 0; i < x.rows(); ++i) {
    double n2 = 0;
    for (size_t j = 0; j < x.cols(); ++j) n2 += double(x(i, j)) * x(i, j);
    const double s = n2 > 0 ? 1.0 / std::sqrt(n2) : 0.0;
    for (size_t j = 0; j < x.cols(); ++j) out(i, j) = float(x(i, j) * s);
  }
  return out;
}

// Gaussian rows with norms spread over two decades (cosine must not care).
FloatMatrix scaled_gaussian(size_t n, size_t d, uint32_t seed) {
  FloatMatrix x = gaussian(n, d, seed);
  std::mt19937 rng(seed + 1000);
  std::uniform_real_distribution<float> scale(0.1f, 10.0f);
  for (size_t i = 0; i < n; ++i) {
    const float s = scale(rng);
    for (size_t j = 0; j < d; ++j) x(i, j) *= s;
  }
  return x;
}

// Exact cosine similarities of query a (zero vectors: 0), best first (ties: lower label).
std::vector<std::pair<double, int64_t>> exact_cosine(const FloatMatrix& x, const FloatMatrix& q, size_t a) {
  std::vector<std::pair<double, int64_t>> all(x.rows());
  double qq = 0;
  for (size_t j = 0; j < x.cols(); ++j) qq += double(q(a, j)) * q(a, j);
  for (size_t i = 0; i < x.rows(); ++i) {
    double xq = 0, xx = 0;
    for (size_t j = 0; j < x.cols(); ++j) xq += double(x(i, j)) * q(a, j), xx += double(x(i, j)) * x(i, j);
    all[i] = {xx > 0 && qq > 0 ? -xq / std::sqrt(xx * qq) : 0.0, int64_t(i)};
  }
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace

// Cosine is "ip" on unit vectors: an index of metric cosine over x returns exactly what an "ip" index over the
// unit vectors returns for the unit queries (labels and values, every search mode, flat and with lists), and
// it survives its file.
TEST(IndexIVFRaBitQ, CosineIsInnerProductOfUnitVectors) {
  const size_t d = 40, n = 1200, k = 10;
  const FloatMatrix x = scaled_gaussian(n, d, 31), q = scaled_gaussian(9, d, 32);
  const FloatMatrix xu = unit_rows(x), qu = unit_rows(q);
  for (size_t nlist : {size_t(1), size_t(8)}) {
    for (int bits : {1, 4}) {
      RabitqParams p;
      p.bits = bits;
      p.metric = MetricType::cosine;
      IndexIVFRaBitQ cosine(d, nlist, p);
      cosine.train(x.view());
      cosine.add(x.view());
      EXPECT_EQ(cosine.metric_type(), MetricType::cosine);
      p.metric = MetricType::inner_product;
      IndexIVFRaBitQ ip(d, nlist, p);
      ip.train(xu.view());
      ip.add(xu.view());
      for (size_t l = 0; l < nlist; ++l) {
        EXPECT_EQ(cosine.list_size(l), ip.list_size(l));
        for (size_t j = 0; j < d; ++j) ASSERT_EQ(cosine.centroids()(l, j), ip.centroids()(l, j));
      }
      for (bool single : {false, true}) {
        for (size_t rerank : {size_t(0), size_t(40), IndexIVFRaBitQ::kRerankByBound}) {
          const Result a = run(cosine, q, k, 3, single, rerank), b = run(ip, qu, k, 3, single, rerank);
          EXPECT_EQ(a.I, b.I) << "nlist " << nlist << " bits " << bits << " single " << single << " rerank " << rerank;
          for (size_t i = 0; i < a.D.size(); ++i) {
            EXPECT_EQ(a.D[i], std::clamp(b.D[i], -1.0f, 1.0f));
            EXPECT_LE(std::abs(a.D[i]), 1.0f);
            if (i % k) EXPECT_LE(a.D[i], a.D[i - 1]);  // larger is better
          }
        }
      }
      const std::string bytes = cosine.bytes();
      const IndexIVFRaBitQ back = IndexIVFRaBitQ::parse(bytes.data(), bytes.size());
      EXPECT_EQ(back.metric_type(), MetricType::cosine);
      EXPECT_EQ(back.bytes(), bytes);
      const Result a = run(cosine, q, k, 3, false, 20), b = run(back, q, k, 3, false, 20);
      EXPECT_EQ(a.I, b.I);
      EXPECT_EQ(a.D, b.D);
    }
  }
}

// Recall against exact cosine search: the scale of vectors and queries does not matter, re-ranking with the
// stored unit vectors returns the exact cosines, and probing every list with R = n is exact search.
TEST(IndexIVFRaBitQ, CosineRecallAgainstExactSearch) {
  const size_t d = 64, n = 3000, k = 10;
  // Directions in 20 clusters (so that the lists mean something), norms spread over two decades.
  const FloatMatrix centres = gaussian(20, d, 43);
  auto clustered = [&](size_t rows, uint32_t seed) {
    FloatMatrix v = gaussian(rows, d, seed);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> scale(0.1f, 10.0f);
    for (size_t i = 0; i < rows; ++i) {
      const float s = scale(rng);
      for (size_t j = 0; j < d; ++j) v(i, j) = s * (centres(i % 20, j) + 0.8f * v(i, j));
    }
    return v;
  };
  const FloatMatrix x = clustered(n, 41), q = clustered(40, 42);
  RabitqParams p;
  p.bits = 4;
  p.metric = MetricType::cosine;
  IndexIVFRaBitQ index(d, 16, p);
  index.train(x.view());
  index.add(x.view());
  auto recall_of = [&](const Result& r) {
    size_t hit = 0;
    for (size_t a = 0; a < q.rows(); ++a) {
      const auto exact = exact_cosine(x, q, a);
      std::set<int64_t> got(r.I.begin() + a * k, r.I.begin() + (a + 1) * k);
      for (size_t t = 0; t < k; ++t) hit += got.count(exact[t].second);
    }
    return double(hit) / double(q.rows() * k);
  };
  const double plain = recall_of(run(index, q, k, 4)), reranked = recall_of(run(index, q, k, 4, false, 50));
  EXPECT_GE(plain, 0.8);
  EXPECT_GE(reranked, 0.97);
  if (std::getenv("RABITQ_PRINT"))
    std::printf("cosine recall@10, 4 of 16 lists: %.3f, rerank 50: %.3f\n", plain, reranked);
  const Result all = run(index, q, k, 16, false, n);
  for (size_t a = 0; a < q.rows(); ++a) {
    const auto exact = exact_cosine(x, q, a);
    for (size_t t = 0; t < k; ++t) {
      EXPECT_NEAR(all.D[a * k + t], -exact[t].first, 1e-5);
      if (exact[t + 1].first - exact[t].first > 1e-5 && (t == 0 || exact[t].first - exact[t - 1].first > 1e-5))
        EXPECT_EQ(all.I[a * k + t], exact[t].second) << "query " << a << " rank " << t;
    }
  }
  // The scale of the vectors and queries is irrelevant.
  FloatMatrix x3 = x, q3 = q;
  for (size_t i = 0; i < x3.size(); ++i) x3.data()[i] *= 1000.0f;
  for (size_t i = 0; i < q3.size(); ++i) q3.data()[i] *= 0.001f;
  IndexIVFRaBitQ scaled(d, 16, p);
  scaled.train(x3.view());
  scaled.add(x3.view());
  EXPECT_NEAR(recall_of(run(scaled, q3, k, 4, false, 50)), reranked, 0.02);
}

// Zero vectors have cosine 0 with every query, and a zero query with every vector: exactly 0, never NaN, and
// stage 1 never prunes a zero vector that belongs in the answer.
TEST(IndexIVFRaBitQ, CosineZeroVectorsAndQueries) {
  const size_t d = 32, n = 600, zeros = 5;
  // Every nonzero vector points away from the query direction e₀: only the zero vectors reach cosine 0.
  FloatMatrix x = gaussian(n, d, 51);
  for (size_t i = 0; i < n; ++i) x(i, 0) = -20.0f - std::abs(x(i, 0));
  const size_t zero_rows[zeros] = {3, 100, 101, 377, 599};
  for (size_t z : zero_rows)
    for (size_t j = 0; j < d; ++j) x(z, j) = 0.0f;
  FloatMatrix q(2, d);
  q(0, 0) = 2.5f;  // q₁ = 0: a zero query
  for (int bits : {1, 3}) {
    for (size_t nlist : {size_t(1), size_t(6)}) {
      RabitqParams p;
      p.bits = bits;
      p.metric = MetricType::cosine;
      IndexIVFRaBitQ index(d, nlist, p);
      index.train(x.view());  // the zero rows are left out of the k-means
      index.add(x.view());
      for (size_t rerank : {size_t(0), size_t(30), IndexIVFRaBitQ::kRerankByBound}) {
        for (bool single : {false, true}) {
          const Result r = run(index, q, zeros + 1, nlist, single, rerank);
          for (size_t t = 0; t < zeros; ++t) {
            EXPECT_EQ(r.I[t], int64_t(zero_rows[t])) << "bits " << bits << " nlist " << nlist << " rank " << t;
            EXPECT_EQ(r.D[t], 0.0f);
          }
          EXPECT_LT(r.D[zeros], -0.5f);
          // The zero query: every vector ties at 0, the lowest labels win.
          for (size_t t = 0; t <= zeros; ++t) {
            EXPECT_EQ(r.D[zeros + 1 + t], 0.0f);
            EXPECT_EQ(r.I[zeros + 1 + t], int64_t(t));
          }
        }
      }
      // Files keep the zero marks.
      const std::string bytes = index.bytes();
      const IndexIVFRaBitQ back = IndexIVFRaBitQ::parse(bytes.data(), bytes.size());
      EXPECT_EQ(back.bytes(), bytes);
      EXPECT_EQ(run(back, q, zeros + 1, nlist).I, run(index, q, zeros + 1, nlist).I);
    }
  }
  // Training needs nlist nonzero vectors; non-finite values are refused, not taken for zero vectors.
  RabitqParams p;
  p.metric = MetricType::cosine;
  IndexIVFRaBitQ index(d, 4, p);
  FloatMatrix few(6, d);
  for (size_t j = 0; j < d; ++j) few(0, j) = 1.0f, few(1, j) = float(j), few(2, j) = -1.0f;
  EXPECT_THROW(index.train(few.view()), InvalidArgument);
  few(3, 5) = NAN;
  EXPECT_THROW(index.train(few.view()), InvalidArgument);
  index.train(x.view());
  EXPECT_THROW(index.add(few.view()), InvalidArgument);
  index.add(x.view());
  FloatMatrix bad(1, d);
  bad(0, 2) = INFINITY;
  std::vector<float> D(1);
  std::vector<int64_t> I(1);
  EXPECT_THROW(index.search(bad.view(), 1, 1, D.data(), I.data()), InvalidArgument);
  bad(0, 2) = NAN;
  EXPECT_THROW(index.search(bad.view(), 1, 1, D.data(), I.data()), InvalidArgument);
}
