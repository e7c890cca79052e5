// The IVF index over additive quantizers against exhaustive search over its own reconstructions (centroid +
// decoded residual), for each way of getting the norm term; the stored norms; files; bad input; threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "test_helpers.h"
#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/index/index_io.h"
#include "tessera/index/index_ivf_additive_quantizer.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/residual_quantizer.h"

using namespace tessera;

namespace {

struct Result {
  std::vector<float> D;
  std::vector<int64_t> I;
};

Result run_search(const IndexIVFAdditiveQuantizer& index, const FloatMatrix& q, size_t k, size_t nprobe) {
  Result r{std::vector<float>(q.rows() * k), std::vector<int64_t>(q.rows() * k)};
  index.search(q.view(), k, nprobe, r.D.data(), r.I.data());
  return r;
}

std::shared_ptr<ResidualQuantizer> untrained_rq(size_t d, size_t M, size_t nbits, SearchType st) {
  ResidualQuantizerParams p;
  p.n_init = 1;
  p.max_iter = 10;
  return std::make_shared<ResidualQuantizer>(d, M, nbits, st, p);
}

// Every stored vector's reconstruction, by label.
FloatMatrix reconstructions(const IndexIVFAdditiveQuantizer& index) {
  FloatMatrix r(index.ntotal(), index.dim());
  for (size_t i = 0; i < index.ntotal(); ++i) index.reconstruct(int64_t(i), r.row(i));
  return r;
}

// The exact top k over the reconstructions, in double (L2 ascending / IP descending, ties to the lower label).
std::vector<int64_t> exact_top(const FloatMatrix& rec, const float* q, size_t k, bool ip, std::vector<double>* dist) {
  std::vector<std::pair<double, int64_t>> all(rec.rows());
  for (size_t j = 0; j < rec.rows(); ++j) {
    double s = 0;
    for (size_t t = 0; t < rec.cols(); ++t) s += ip ? double(q[t]) * rec(j, t) : std::pow(double(q[t]) - rec(j, t), 2);
    all[j] = {ip ? -s : s, int64_t(j)};
  }
  std::partial_sort(all.begin(), all.begin() + k, all.end());
  std::vector<int64_t> out;
  dist->clear();
  for (size_t t = 0; t < k; ++t) {
    out.push_back(all[t].second);
    dist->push_back(ip ? -all[t].first : all[t].first);
  }
  return out;
}

class IvfAdditive : public ::testing::Test {
 protected:
  FloatMatrix x = tessera::testing::gaussian_mixture(2000, 16, 12, 7);
  FloatMatrix q = tessera::testing::gaussian_mixture(25, 16, 12, 8);
};

TEST_F(IvfAdditive, ScanningAllListsIsExhaustiveSearchOverTheReconstructions) {
  for (SearchType st : {SearchType::ST_norm_float, SearchType::ST_decompress, SearchType::ST_norm_from_LUT}) {
    for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
      SCOPED_TRACE(search_type_name(st) + " " + metric_name(metric));
      IndexIVFAdditiveQuantizer index(untrained_rq(16, 3, 4, st), 8, metric);
      index.train(x.view());
      index.add(x.view());
      ASSERT_EQ(index.ntotal(), x.rows());
      const FloatMatrix rec = reconstructions(index);
      const size_t k = 10;
      const Result r = run_search(index, q, k, 8);
      const bool ip = metric == MetricType::inner_product;
      for (size_t i = 0; i < q.rows(); ++i) {
        std::vector<double> want_d;
        const auto want = exact_top(rec, q.row(i), k, ip, &want_d);
        for (size_t t = 0; t < k; ++t) {
          const double tol = 1e-4 * std::max(1.0, std::abs(want_d[t]));
          EXPECT_NEAR(r.D[i * k + t], want_d[t], tol) << i << "," << t;
          // Labels agree unless two distances are within rounding of each other.
          if (r.I[i * k + t] != want[t]) EXPECT_NEAR(want_d[t], want_d[std::min(t + 1, k - 1)], 2 * tol);
        }
      }
    }
  }
}

TEST_F(IvfAdditive, StoredNormsAreThoseOfCentroidPlusReconstruction) {
  for (SearchType st : {SearchType::ST_norm_float, SearchType::ST_norm_qint8, SearchType::ST_norm_cqint8}) {
    SCOPED_TRACE(search_type_name(st));
    auto rq = untrained_rq(16, 2, 5, st);
    IndexIVFAdditiveQuantizer index(rq, 6);
    index.train(x.view());
    index.add(x.view());
    const FloatMatrix rec = reconstructions(index);
    double max_norm = 0;
    for (size_t i = 0; i < rec.rows(); ++i) {
      double s = 0;
      for (size_t t = 0; t < rec.cols(); ++t) s += double(rec(i, t)) * rec(i, t);
      max_norm = std::max(max_norm, s);
    }
    for (size_t l = 0; l < index.nlist(); ++l)
      for (size_t i = 0; i < index.list_size(l); ++i) {
        const int64_t id = index.list_ids(l)[i];
        double s = 0;
        for (size_t t = 0; t < rec.cols(); ++t) s += double(rec(size_t(id), t)) * rec(size_t(id), t);
        const float stored = rq->decode_norm_from_packed(index.list_codes(l).data() + i * index.code_size());
        // float: exact up to rounding; 8-bit codes: within a few steps of the range (trained on these norms).
        const double tol = st == SearchType::ST_norm_float ? 1e-4 * s : 0.02 * max_norm;
        EXPECT_NEAR(stored, s, tol) << id;
      }
  }
}

TEST_F(IvfAdditive, FewerProbesScanOnlyTheNearestLists) {
  IndexIVFAdditiveQuantizer index(untrained_rq(16, 2, 6, SearchType::ST_norm_float), 10);
  index.train(x.view());
  index.add(x.view());
  std::vector<int32_t> list_of(x.rows());
  for (size_t l = 0; l < index.nlist(); ++l)
    for (int64_t id : index.list_ids(l)) list_of[size_t(id)] = int32_t(l);
  const Result r = run_search(index, q, 5, 1);
  for (size_t i = 0; i < q.rows(); ++i) {
    // The query's nearest centroid.
    size_t best = 0;
    double bd = 1e300;
    for (size_t l = 0; l < index.nlist(); ++l) {
      double s = 0;
      for (size_t t = 0; t < 16; ++t) s += std::pow(double(q(i, t)) - index.centroids()(l, t), 2);
      if (s < bd) bd = s, best = l;
    }
    for (size_t t = 0; t < 5; ++t)
      if (r.I[i * 5 + t] >= 0) EXPECT_EQ(list_of[size_t(r.I[i * 5 + t])], int32_t(best));
  }
  // More probes never make the best distance worse.
  const Result all = run_search(index, q, 5, 10);
  for (size_t i = 0; i < q.rows(); ++i) EXPECT_LE(all.D[i * 5], r.D[i * 5]);
}

TEST_F(IvfAdditive, LsqInsideIvfAndThreadCountIndependence) {
  LocalSearchQuantizerParams p;
  p.train_iters = 4;
  auto lsq = std::make_shared<LocalSearchQuantizer>(16, 2, 4, p, SearchType::ST_norm_qint8);
  IndexIVFAdditiveQuantizer index(lsq, 4);
  index.train(x.view());
  index.add(x.view());
  set_num_threads(1);
  const Result one = run_search(index, q, 7, 2);
  set_num_threads(2);
  const Result two = run_search(index, q, 7, 2);
  set_num_threads(0);
  EXPECT_EQ(one.I, two.I);
  EXPECT_EQ(one.D, two.D);
}

TEST_F(IvfAdditive, FilesRoundTripAndRefuseDamage) {
  IndexIVFAdditiveQuantizer index(untrained_rq(16, 2, 4, SearchType::ST_norm_qint4), 5, MetricType::inner_product);
  index.train(x.view());
  index.add(x.view());
  const std::string bytes = index_bytes(index, "{\"note\": 1}");
  std::string meta;
  const IndexIVFAdditiveQuantizer back = parse_index_ivf(bytes.data(), bytes.size(), &meta);
  EXPECT_EQ(meta, "{\"note\":1}");
  EXPECT_EQ(back.ntotal(), index.ntotal());
  EXPECT_EQ(back.metric_type(), MetricType::inner_product);
  const Result a = run_search(index, q, 6, 3), b = run_search(back, q, 6, 3);
  EXPECT_EQ(a.I, b.I);
  EXPECT_EQ(a.D, b.D);
  for (size_t cut : {size_t(10), bytes.size() / 2, bytes.size() - 1})
    EXPECT_THROW(parse_index_ivf(bytes.data(), cut), FormatError) << cut;
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x20;
  EXPECT_THROW(parse_index_ivf(flipped.data(), flipped.size()), FormatError);
  EXPECT_THROW(parse_index(bytes.data(), bytes.size()), FormatError);  // the flat reader names the IVF type
}

TEST_F(IvfAdditive, BadInputIsAClearError) {
  auto rq = untrained_rq(16, 2, 4, SearchType::ST_norm_float);
  EXPECT_THROW(IndexIVFAdditiveQuantizer(nullptr, 4), InvalidArgument);
  EXPECT_THROW(IndexIVFAdditiveQuantizer(rq, 0), InvalidArgument);
  IndexIVFAdditiveQuantizer index(rq, 4);
  std::vector<float> D(10);
  std::vector<int64_t> I(10);
  EXPECT_THROW(index.search(q.view(), 10, 1, D.data(), I.data()), InvalidArgument);  // before training
  EXPECT_THROW(index.add(x.view()), InvalidArgument);
  const FloatMatrix narrow = tessera::testing::gaussian_mixture(50, 8, 2, 1);
  EXPECT_THROW(index.train(narrow.view()), InvalidArgument);
  FloatMatrix nan = tessera::testing::gaussian_mixture(2000, 16, 12, 7);
  nan(5, 3) = std::nanf("");
  EXPECT_THROW(index.train(nan.view()), InvalidArgument);
  index.train(x.view());
  index.add(x.view());
  EXPECT_THROW(index.train(x.view()), InvalidArgument);  // lists are fixed once filled
  EXPECT_THROW(index.search(narrow.view(), 1, 1, D.data(), I.data()), InvalidArgument);
  EXPECT_THROW(index.search(q.view(), 1, 0, D.data(), I.data()), InvalidArgument);
  const int32_t bad_list = 9;
  std::vector<uint8_t> code(index.code_size());
  EXPECT_THROW(index.add_preassigned(1, code.data(), &bad_list), InvalidArgument);
  // k beyond ntotal: −1 labels and +inf past the end.
  IndexIVFAdditiveQuantizer small(rq, 4);
  small.set_centroids(index.centroids().view());
  small.add(MatrixView<const float>(x.data(), 3, 16, 16));
  std::vector<float> D5(5);
  std::vector<int64_t> I5(5);
  small.search(MatrixView<const float>(q.data(), 1, 16, 16), 5, 4, D5.data(), I5.data());
  EXPECT_EQ(I5[3], -1);
  EXPECT_TRUE(std::isinf(D5[4]));
}

}  // namespace
