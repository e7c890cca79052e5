#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "test_helpers.h"
#include "tessera/core/threading.h"
#include "tessera/quant/residual_quantizer.h"
#include "tessera/quant/serialization.h"

using namespace tessera;
using tessera::testing::gaussian_mixture;

namespace {

ResidualQuantizerParams quick(bool balance) {
  ResidualQuantizerParams p;
  p.balance = balance;
  p.n_init = 1;
  p.max_iter = 15;
  return p;
}

// Σ_l C_l[codes_l], computed directly.
FloatMatrix reference_decode(const ResidualQuantizer& q, const std::vector<int32_t>& codes, size_t n) {
  const size_t M = q.num_codebooks(), d = q.dim();
  FloatMatrix out(n, d);
  for (size_t i = 0; i < n; ++i)
    for (size_t m = 0; m < M; ++m)
      for (size_t j = 0; j < d; ++j) out(i, j) += q.codebook(m)(codes[i * M + m], j);
  return out;
}

}  // namespace

TEST(ResidualQuantizer, FitCodesReconstructWithReportedError) {
  const auto x = gaussian_mixture(3000, 12, 40, 1);
  ResidualQuantizer q(12, {16, 8, 4}, quick(false));
  std::vector<int32_t> codes(3000 * 3);
  const auto rep = q.fit(x.view(), codes.data());
  ASSERT_EQ(rep.size(), 3u);
  const auto rec = reference_decode(q, codes, 3000);
  FloatMatrix dec(3000, 12);
  q.decode(codes.data(), 3000, dec.data());
  EXPECT_LT(mean_squared_error(rec.view(), dec.view()), 1e-10);
  EXPECT_NEAR(mean_squared_error(x.view(), rec.view()), rep.back().mse_after, 1e-6);
  for (size_t m = 0; m < 3; ++m) {
    EXPECT_LE(rep[m].mse_after, rep[m].mse_before);  // each level can only help on its training rows
    if (m) EXPECT_DOUBLE_EQ(rep[m].mse_before, rep[m - 1].mse_after);
  }
}

TEST(ResidualQuantizer, GreedyEncodeTakesNearestCodewordPerLevel) {
  const auto x = gaussian_mixture(500, 6, 10, 2);
  ResidualQuantizer q(6, {8, 8}, quick(false));
  q.train(x.view());
  std::vector<int32_t> codes(500 * 2);
  q.encode_greedy(x.view(), codes.data());
  for (size_t i = 0; i < 500; ++i) {
    std::vector<float> r(x.row(i), x.row(i) + 6);
    for (size_t m = 0; m < 2; ++m) {
      double best = 1e30;
      int bi = -1;
      for (size_t k = 0; k < 8; ++k) {
        double s = 0;
        for (size_t j = 0; j < 6; ++j) s += double(r[j] - q.codebook(m)(k, j)) * (r[j] - q.codebook(m)(k, j));
        if (s < best - 1e-9) best = s, bi = (int)k;
      }
      ASSERT_EQ(codes[i * 2 + m], bi);
      for (size_t j = 0; j < 6; ++j) r[j] -= q.codebook(m)(bi, j);
    }
  }
}

TEST(ResidualQuantizer, BalancedLevelsRespectBoundsAlsoWithATrainingSample) {
  const auto x = gaussian_mixture(4000, 8, 6, 3);
  for (size_t sample : {size_t(0), size_t(1000)}) {
    auto p = quick(true);
    p.train_sample = sample;
    ResidualQuantizer q(8, {16, 16}, p);
    std::vector<int32_t> codes(4000 * 2);
    q.fit(x.view(), codes.data());
    for (size_t m = 0; m < 2; ++m) {
      std::vector<size_t> sizes(16);
      for (size_t i = 0; i < 4000; ++i) ++sizes[codes[i * 2 + m]];
      for (size_t s : sizes) {
        EXPECT_GE(s, 249u) << "sample " << sample << " level " << m;
        EXPECT_LE(s, 251u) << "sample " << sample << " level " << m;
      }
    }
  }
}

// assign_balanced_from keeps the given codes of the levels before and balances the rest on what they leave;
// from level 0 it is assign_balanced.
TEST(ResidualQuantizer, BalancedAssignmentFromALevelKeepsTheEarlierCodes) {
  const auto x = gaussian_mixture(2000, 8, 6, 7);
  ResidualQuantizer q(8, {16, 16}, quick(false));
  q.train(x.view());
  std::vector<int32_t> greedy(2000 * 2), last = greedy, all = greedy, from0 = greedy;
  q.encode_greedy(x.view(), greedy.data());
  last = greedy;
  q.assign_balanced_from(1, x.view(), last.data());
  std::vector<size_t> sizes(16);
  for (size_t i = 0; i < 2000; ++i) {
    EXPECT_EQ(last[i * 2], greedy[i * 2]) << "row " << i;
    ++sizes[last[i * 2 + 1]];
  }
  for (size_t s : sizes) EXPECT_TRUE(s >= 124 && s <= 126) << s;  // default bounds [n/K - 1, n/K + 1]
  q.assign_balanced(x.view(), all.data());
  q.assign_balanced_from(0, x.view(), from0.data());
  EXPECT_EQ(all, from0);
  std::vector<int32_t> bad = greedy;
  bad[6] = 16;
  EXPECT_THROW(q.assign_balanced_from(1, x.view(), bad.data()), InvalidArgument);
  EXPECT_THROW(q.assign_balanced_from(3, x.view(), bad.data()), InvalidArgument);
}

// Balanced assignment of all rows takes the bounded assigner where n × K floats exceed
// balanced_dense_max_bytes: the same optimum level by level, whether every level is dense, every level bounded,
// or the choice flips between levels (K = 32 above the budget, K = 16 below); and the in-place form on a
// residual matrix is assign_balanced on a copy.
TEST(ResidualQuantizer, BalancedAssignmentIsTheSameOptimumOnTheDenseAndTheBoundedAssigner) {
  const size_t n = 6000, d = 8, M = 2;
  const auto x = gaussian_mixture(n, d, 12, 9);
  ResidualQuantizer q(d, {32, 16}, quick(false));
  q.train(x.view());
  const size_t flip = n * 24 * sizeof(float);  // between n × 16 and n × 32 floats
  std::vector<std::vector<int32_t>> codes;
  std::vector<std::vector<LevelReport>> reps;
  for (const size_t budget : {SIZE_MAX, size_t(0), flip}) {
    q.params().balanced_dense_max_bytes = budget;
    codes.emplace_back(n * M);
    reps.emplace_back();
    q.assign_balanced(x.view(), codes.back().data(), {}, &reps.back());
    const std::vector<size_t> K = {32, 16};
    for (size_t m = 0; m < M; ++m) {
      std::vector<size_t> sizes(K[m]);
      for (size_t i = 0; i < n; ++i) ++sizes[codes.back()[i * M + m]];
      const SizeBounds b = default_size_bounds(n, K[m]);
      for (size_t sz : sizes) EXPECT_TRUE(sz >= b.lo && sz <= b.hi) << "budget " << budget << " level " << m;
    }
  }
  for (size_t t = 1; t < codes.size(); ++t) {
    for (size_t m = 0; m < M; ++m) {
      EXPECT_NEAR(reps[t][m].mse_after, reps[0][m].mse_after, 1e-6 * reps[0][m].mse_after) << t << " " << m;
      EXPECT_NEAR(reps[t][m].mse_before, reps[0][m].mse_before, 1e-6 * reps[0][m].mse_before) << t << " " << m;
    }
    EXPECT_EQ(codes[t], codes[0]) << "budget " << t;  // no ties in continuous data: the optimum is unique
  }
  FloatMatrix r = FloatMatrix::copy_of(x.view());  // (a FloatMatrix copy shares its data)
  std::vector<int32_t> in_place(n * M);
  q.assign_balanced_residuals(0, r.view(), in_place.data());
  EXPECT_EQ(in_place, codes.back());
  const FloatMatrix rec = reference_decode(q, in_place, n);
  for (size_t i = 0; i < n; i += 37)
    for (size_t j = 0; j < d; ++j) EXPECT_NEAR(r(i, j), x(i, j) - rec(i, j), 1e-4f);
}

TEST(ResidualQuantizer, PerLevelSizesAndPacking) {
  const auto x = gaussian_mixture(2000, 4, 8, 4);
  ResidualQuantizer q(4, {1024, 256, 64}, quick(false));
  q.train(x.view());
  EXPECT_EQ(q.code_size(), 3u);  // 10 + 8 + 6 bits
  std::vector<int32_t> codes(2000 * 3), back(2000 * 3);
  q.encode(x.view(), codes.data());
  std::vector<uint8_t> packed(2000 * q.code_size());
  q.pack_codes(2000, codes.data(), packed.data());
  q.unpack_codes(packed.data(), 2000, back.data());
  EXPECT_EQ(codes, back);
}

TEST(ResidualQuantizer, SameCodesForOneAndTwoThreads) {
  const auto x = gaussian_mixture(3000, 10, 20, 5);
  std::vector<int32_t> a(3000 * 2), b(3000 * 2);
  set_num_threads(1);
  ResidualQuantizer(10, {32, 32}, quick(true)).fit(x.view(), a.data());
  set_num_threads(2);
  ResidualQuantizer(10, {32, 32}, quick(true)).fit(x.view(), b.data());
  set_num_threads(0);
  EXPECT_EQ(a, b);
}

TEST(ResidualQuantizer, RejectsBadInput) {
  const auto x = gaussian_mixture(100, 4, 3, 6);
  ResidualQuantizer q(4, {200}, quick(false));
  EXPECT_THROW(q.fit(x.view(), nullptr), InvalidArgument);  // N < K
  ResidualQuantizer q2(5, {4}, quick(false));
  EXPECT_THROW(q2.fit(x.view(), nullptr), InvalidArgument);  // dimension mismatch
  ResidualQuantizer q3(4, {4}, quick(false));
  std::vector<int32_t> c(100);
  EXPECT_THROW(q3.encode(x.view(), c.data()), InvalidArgument);  // untrained
}

TEST(ModelFile, RoundTripAndMetadata) {
  const auto x = gaussian_mixture(500, 6, 5, 7);
  ResidualQuantizer q(6, {8, 4}, quick(false));
  q.train(x.view());
  const std::string path = ::testing::TempDir() + "/rq.tsq";
  save_quantizer(q, path, R"({"sid": {"dedup": "reassign"}})");
  std::string meta;
  auto loaded = load_quantizer(path, &meta);
  auto* rq = dynamic_cast<ResidualQuantizer*>(loaded.get());
  ASSERT_NE(rq, nullptr);
  EXPECT_NE(meta.find("reassign"), std::string::npos);
  ASSERT_EQ(rq->codebook_sizes(), q.codebook_sizes());
  for (size_t m = 0; m < 2; ++m)
    EXPECT_EQ(0, std::memcmp(rq->codebook(m).data, q.codebook(m).data, 8 / (m + 1) * 6 * sizeof(float)));
}

TEST(ModelFile, CorruptTruncatedAndForeignFilesAreFormatErrors) {
  const auto x = gaussian_mixture(300, 3, 4, 8);
  ResidualQuantizer q(3, {4}, quick(false));
  q.train(x.view());
  const std::string bytes = quantizer_bytes(q);
  for (size_t cut : {size_t(0), size_t(5), size_t(20), bytes.size() / 2, bytes.size() - 1})
    EXPECT_THROW(parse_quantizer(bytes.data(), cut), FormatError) << "cut at " << cut;
  for (size_t pos = 0; pos < bytes.size(); pos += 7) {
    std::string bad = bytes;
    bad[pos] ^= 0x40;
    EXPECT_THROW(parse_quantizer(bad.data(), bad.size()), FormatError) << "flip at " << pos;
  }
  const std::string npy = "\x93NUMPY\x01\x00";
  EXPECT_THROW(parse_quantizer(npy.data(), npy.size()), FormatError);
  EXPECT_THROW(load_quantizer("/nonexistent/model.tsq"), IOError);
}
