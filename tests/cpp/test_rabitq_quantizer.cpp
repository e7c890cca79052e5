#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/quant/rabitq_quantizer.h"

using namespace tessera;

namespace {

FloatMatrix gaussian(size_t n, size_t d, uint32_t seed, float shift = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  FloatMatrix x(n, d);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) x(i, j) = g(rng) * (1.0f + 0.02f * float(j % 17)) + shift;
  return x;
}

double exact(MetricType m, const float* a, const float* b, size_t d) {
  double s = 0;
  for (size_t j = 0; j < d; ++j) s += m == MetricType::L2 ? double(a[j] - b[j]) * (a[j] - b[j]) : double(a[j]) * b[j];
  return s;
}

struct Errors {
  double mean, sd, coverage;
  double near_mean;  // over the pairs (query a, vector a): queries are noisy copies of the first vectors
};

// Estimation errors over every (query, vector) pair, scaled by ‖o − c‖·‖q − c‖ (the bound's own scale).
Errors errors(const RaBitQuantizer& rq, const FloatMatrix& x, const FloatMatrix& q, bool msb_only) {
  const size_t d = x.cols();
  std::vector<uint8_t> codes(x.rows() * rq.code_size());
  rq.encode_packed(x.view(), codes.data());
  double sum = 0, sum2 = 0, near = 0;
  size_t covered = 0, count = 0;
  for (size_t a = 0; a < q.rows(); ++a) {
    const auto query = rq.prepare_query(q.row(a));
    for (size_t i = 0; i < x.rows(); ++i) {
      const RabitqEstimate e = rq.estimate(query, codes.data() + i * rq.code_size(), msb_only);
      const double truth = exact(rq.params().metric, x.row(i), q.row(a), d);
      double rn = 0;
      for (size_t j = 0; j < d; ++j) rn += double(x(i, j) - rq.centroid()[j]) * (x(i, j) - rq.centroid()[j]);
      const double scale = std::sqrt(rn) * query.distance_to_centroid;
      const double err = (e.value - truth) / scale;
      sum += err, sum2 += err * err, ++count;
      if (i == a) near += err;
      covered += std::abs(e.value - truth) <= e.bound;
    }
  }
  const double mean = sum / double(count);
  return {mean, std::sqrt(sum2 / double(count) - mean * mean), double(covered) / double(count),
          near / double(q.rows())};
}

}  // namespace

// Unbiased L2 and inner-product estimates, an error that about halves per bit, and the error bound holding
// for about 94% of pairs (ε₀ = 1.9), for the full code and for its top bit alone.
TEST(RaBitQuantizer, EstimatorsAreUnbiasedAndBoundsCoverAsTheory) {
  const size_t d = 128;
  const FloatMatrix x = gaussian(600, d, 1, 0.3f), noise = gaussian(60, d, 2);
  FloatMatrix q(60, d);  // near the first 60 vectors: where a biased estimator (⟨x̄, q⟩ alone) errs most
  for (size_t a = 0; a < 60; ++a)
    for (size_t j = 0; j < d; ++j) q(a, j) = x(a, j) + 0.5f * noise(a, j);
  for (MetricType metric : {MetricType::L2, MetricType::inner_product}) {
    double previous_sd = INFINITY;
    for (int bits : {1, 2, 3, 4, 6}) {
      RabitqParams p;
      p.bits = bits;
      p.metric = metric;
      RaBitQuantizer rq(d, p);
      rq.train(x.view());
      const Errors e = errors(rq, x, q, false);
      if (std::getenv("RABITQ_PRINT")) printf("%s B=%d mean %.5f near %.5f sd %.5f cover %.4f\n", metric_name(metric).c_str(), bits, e.mean, e.near_mean, e.sd, e.coverage);
      const double k = metric == MetricType::L2 ? 2.0 : 1.0;  // the L2 error is twice the inner product's
      EXPECT_LT(std::abs(e.mean), 0.1 * e.sd + 2e-3) << metric_name(metric) << " bits " << bits;
      EXPECT_LT(std::abs(e.near_mean), 4 * e.sd / std::sqrt(60.0)) << metric_name(metric) << " bits " << bits;
      EXPECT_LT(e.sd, previous_sd * 0.62) << "error about halves per extra bit: " << metric_name(metric) << " bits "
                                          << bits;
      EXPECT_GT(e.coverage, 0.88) << metric_name(metric) << " bits " << bits;
      EXPECT_LT(e.coverage, 0.995) << "the bound is not loose: " << metric_name(metric) << " bits " << bits;
      EXPECT_LT(e.sd, k * 1.2 / std::sqrt(double(d)) / (1 << (bits - 1))) << metric_name(metric) << " " << bits;
      previous_sd = e.sd;
      if (bits > 1) {
        const Errors top = errors(rq, x, q, true);
        EXPECT_LT(std::abs(top.mean), 0.1 * top.sd + 2e-3);
        EXPECT_LT(std::abs(top.near_mean), 4 * top.sd / std::sqrt(60.0));
        EXPECT_GT(top.sd, e.sd);
        EXPECT_GT(top.coverage, 0.88);
      }
    }
  }
}

// The top bit of a B-bit code with its factors is exactly the 1-bit code: same estimate to the bit.
TEST(RaBitQuantizer, TopBitEstimateEqualsTheOneBitCodec) {
  const size_t d = 100;
  const FloatMatrix x = gaussian(50, d, 3), q = gaussian(5, d, 4);
  RabitqParams p1, p5;
  p1.bits = 1, p5.bits = 5;
  RaBitQuantizer one(d, p1), five(d, p5);
  one.train(x.view()), five.train(x.view());
  std::vector<uint8_t> c1(50 * one.code_size()), c5(50 * five.code_size());
  one.encode_packed(x.view(), c1.data());
  five.encode_packed(x.view(), c5.data());
  for (size_t a = 0; a < 5; ++a) {
    const auto q1 = one.prepare_query(q.row(a)), q5 = five.prepare_query(q.row(a));
    for (size_t i = 0; i < 50; ++i) {
      const auto e1 = one.estimate(q1, c1.data() + i * one.code_size());
      const auto e5 = five.estimate(q5, c5.data() + i * five.code_size(), true);
      EXPECT_EQ(e1.value, e5.value);
      EXPECT_EQ(e1.bound, e5.bound);
    }
  }
}

// Decoding: the error is ‖r‖²(1 − cos²) per vector, shrinking with every bit; a vector at the centroid is exact.
TEST(RaBitQuantizer, DecodeAndZeroResiduals) {
  const size_t d = 64;
  FloatMatrix x = gaussian(200, d, 5, 1.0f);
  double previous = INFINITY;
  for (int bits = 1; bits <= 8; ++bits) {
    RabitqParams p;
    p.bits = bits;
    RaBitQuantizer rq(d, p);
    rq.train(x.view());
    std::vector<uint8_t> codes(x.rows() * rq.code_size());
    rq.encode_packed(x.view(), codes.data());
    FloatMatrix y(x.rows(), d);
    rq.decode_packed(codes.data(), x.rows(), y.data());
    double err = 0, total = 0;
    for (size_t i = 0; i < x.rows(); ++i)
      for (size_t j = 0; j < d; ++j) {
        err += double(x(i, j) - y(i, j)) * (x(i, j) - y(i, j));
        total += double(x(i, j) - rq.centroid()[j]) * (x(i, j) - rq.centroid()[j]);
      }
    EXPECT_LT(err, previous * 0.6) << "bits " << bits;
    previous = err;
    if (bits == 4) EXPECT_LT(err / total, 0.012);
    // A vector at the centroid: every factor 0, the estimate is ‖q − c‖² exactly.
    FloatMatrix c(1, d);
    std::copy(rq.centroid().begin(), rq.centroid().end(), c.data());
    std::vector<uint8_t> code(rq.code_size());
    rq.encode_packed(c.view(), code.data());
    const auto query = rq.prepare_query(x.row(0));
    const auto e = rq.estimate(query, code.data());
    EXPECT_FLOAT_EQ(e.value, query.centroid_term);
    EXPECT_EQ(e.bound, 0.0f);
  }
}

// Codes against another centroid (an IVF list's) estimate as well; codes do not depend on the thread count.
TEST(RaBitQuantizer, OtherCentroidsAndThreadCounts) {
  const size_t d = 96;
  const FloatMatrix x = gaussian(300, d, 6), q = gaussian(20, d, 7);
  RabitqParams p;
  p.bits = 3;
  RaBitQuantizer rq(d, p);
  rq.train(x.view());
  std::vector<float> c(d, 0.5f);
  std::vector<uint8_t> codes(300 * rq.code_size()), again(codes.size());
  const int threads = num_threads();
  set_num_threads(1);
  rq.encode_with_centroid(x.view(), c.data(), codes.data());
  set_num_threads(2);
  rq.encode_with_centroid(x.view(), c.data(), again.data());
  set_num_threads(threads);
  EXPECT_EQ(codes, again);
  double sum = 0, sum2 = 0;
  for (size_t a = 0; a < 20; ++a) {
    auto query = rq.prepare_query(q.row(a));
    rq.set_centroid(query, q.row(a), c.data());
    for (size_t i = 0; i < 300; ++i) {
      const double err = rq.estimate(query, codes.data() + i * rq.code_size()).value - exact(MetricType::L2, x.row(i), q.row(a), d);
      sum += err, sum2 += err * err;
    }
  }
  const double mean = sum / 6000, sd = std::sqrt(sum2 / 6000 - mean * mean);
  EXPECT_LT(std::abs(mean), 0.1 * sd);
}

TEST(RaBitQuantizer, BadInputIsRefused) {
  RabitqParams p;
  p.bits = 0;
  EXPECT_THROW(RaBitQuantizer(8, p), InvalidArgument);
  p.bits = 10;
  EXPECT_THROW(RaBitQuantizer(8, p), InvalidArgument);
  p.bits = 4;
  p.epsilon0 = NAN;
  EXPECT_THROW(RaBitQuantizer(8, p), InvalidArgument);
  RaBitQuantizer rq(8);
  FloatMatrix x = gaussian(10, 8, 8);
  std::vector<uint8_t> codes(10 * rq.code_size());
  EXPECT_THROW(rq.encode_packed(x.view(), codes.data()), InvalidArgument);  // not trained
  EXPECT_THROW(rq.prepare_query(x.row(0)), InvalidArgument);
  FloatMatrix wrong = gaussian(10, 9, 8);
  EXPECT_THROW(rq.train(wrong.view()), InvalidArgument);
  x(3, 2) = NAN;
  EXPECT_THROW(rq.train(x.view()), InvalidArgument);
}
