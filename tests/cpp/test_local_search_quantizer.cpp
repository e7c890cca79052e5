// LocalSearchQuantizer against references: the normal equations solved directly, brute-force unary and
// binary terms, the exhaustive optimum of tiny problems, and the properties ICM and ILS guarantee.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "quant/codebook_cg.h"
#include "quant/icm_encoder.h"
#include "test_helpers.h"
#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/residual_quantizer.h"
#include "tessera/quant/serialization.h"

using namespace tessera;
using tessera::testing::gaussian_mixture;

namespace {

LocalSearchQuantizerParams quick() {
  LocalSearchQuantizerParams p;
  p.train_iters = 6;
  p.train_ils_iters = 4;
  p.encode_ils_iters = 8;
  return p;
}

// ‖x_i − Σ_m C_m[c_m]‖² in double.
double exact_error(const LocalSearchQuantizer& q, MatrixView<const float> x, size_t i, const int32_t* c) {
  double e = 0;
  for (size_t j = 0; j < q.dim(); ++j) {
    double r = x(i, j);
    for (size_t m = 0; m < q.num_codebooks(); ++m) r -= q.codebook(m)(c[m], j);
    e += r * r;
  }
  return e;
}

std::vector<int32_t> random_codes(size_t n, size_t M, size_t K, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> u(0, int32_t(K) - 1);
  std::vector<int32_t> c(n * M);
  for (auto& v : c) v = u(rng);
  return c;
}

// A trained small quantizer and its training data.
struct Trained {
  FloatMatrix x;
  LocalSearchQuantizer q;
  Trained(size_t n, size_t d, size_t M, size_t nbits, LocalSearchQuantizerParams p = quick())
      : x(gaussian_mixture(n, d, 30, 7)), q(d, M, nbits, p) {
    q.train(x.view());
  }
};

}  // namespace

TEST(LocalSearchQuantizer, UpdateCodebooksSolvesTheRidgeNormalEquations) {
  const size_t n = 400, d = 5, M = 3, K = 4;
  const auto x = gaussian_mixture(n, d, 6, 3);
  const auto codes = random_codes(n, M, K, 11);
  for (bool dbl : {true, false}) {
    LocalSearchQuantizerParams p;
    p.update_codebooks_with_double = dbl;
    p.lambd = 0.5f;
    LocalSearchQuantizer q(d, M, 2, p);
    q.update_codebooks(x.view(), codes.data());
    // Reference: (BᵀB + λI) C = BᵀX by Gaussian elimination in double.
    const size_t MK = M * K;
    std::vector<double> A(MK * MK, 0.0), B(MK * d, 0.0);
    for (size_t i = 0; i < n; ++i)
      for (size_t m = 0; m < M; ++m) {
        const size_t r = m * K + codes[i * M + m];
        for (size_t m2 = 0; m2 < M; ++m2) A[r * MK + m2 * K + codes[i * M + m2]] += 1;
        for (size_t j = 0; j < d; ++j) B[r * d + j] += x(i, j);
      }
    for (size_t r = 0; r < MK; ++r) A[r * MK + r] += 0.5;
    for (size_t c = 0; c < MK; ++c) {
      size_t piv = c;
      for (size_t r = c + 1; r < MK; ++r)
        if (std::fabs(A[r * MK + c]) > std::fabs(A[piv * MK + c])) piv = r;
      for (size_t k = 0; k < MK; ++k) std::swap(A[c * MK + k], A[piv * MK + k]);
      for (size_t k = 0; k < d; ++k) std::swap(B[c * d + k], B[piv * d + k]);
      for (size_t r = 0; r < MK; ++r) {
        if (r == c) continue;
        const double f = A[r * MK + c] / A[c * MK + c];
        for (size_t k = 0; k < MK; ++k) A[r * MK + k] -= f * A[c * MK + k];
        for (size_t k = 0; k < d; ++k) B[r * d + k] -= f * B[c * d + k];
      }
    }
    for (size_t m = 0; m < M; ++m)
      for (size_t k = 0; k < K; ++k)
        for (size_t j = 0; j < d; ++j) {
          const size_t r = m * K + k;
          EXPECT_NEAR(q.codebook(m)(k, j), B[r * d + j] / A[r * MK + r], dbl ? 1e-4 : 1e-3) << m << "," << k;
        }
  }
}

// The CG update reaches the exact (Cholesky) solution from any start, the same bit for bit at any thread
// count, and reports (leaving the start alone) when it cannot converge in the iterations allowed.
TEST(LocalSearchQuantizer, ConjugateGradientUpdateMatchesTheExactSolve) {
  const size_t n = 3000, d = 13, M = 4, K = 16;  // d: a partial last group of columns
  const auto x = gaussian_mixture(n, d, 20, 5);
  const auto codes = random_codes(n, M, K, 3);
  LocalSearchQuantizer exact(d, M, 4);
  exact.update_codebooks(x.view(), codes.data());
  const auto ref = exact.codebooks_flat();
  const double mse_exact = exact.evaluate(codes.data(), x.view());
  FloatMatrix start(M * K, d);  // zeros
  FloatMatrix solved = start.clone();
  ASSERT_TRUE(detail::ridge_codebooks_cg(x.view(), codes.data(), M, K, 1e-2, 1e-7, 500, solved.view()));
  double diff = 0, norm = 0;
  for (size_t r = 0; r < M * K; ++r)
    for (size_t j = 0; j < d; ++j) {
      diff += std::pow(double(solved(r, j)) - ref(r, j), 2);
      norm += std::pow(double(ref(r, j)), 2);
    }
  // Along a shift of one codebook against another (no reconstruction changes) the system is singular but
  // for λ: the float rounding of CG's products leaves a little there, which the residual cannot see. The
  // codebooks agree closely, the reconstructions exactly.
  EXPECT_LT(std::sqrt(diff / norm), 1e-2);
  LocalSearchQuantizer viacg(d, M, 4);
  viacg.set_codebooks(solved.view());
  EXPECT_NEAR(viacg.evaluate(codes.data(), x.view()), mse_exact, 1e-6 * mse_exact);
  // Thread count.
  FloatMatrix one = start.clone(), two = start.clone();
  {
    ScopedThreads t1(1);
    ASSERT_TRUE(detail::ridge_codebooks_cg(x.view(), codes.data(), M, K, 1e-2, 1e-6, 500, one.view()));
  }
  {
    ScopedThreads t2(2);
    ASSERT_TRUE(detail::ridge_codebooks_cg(x.view(), codes.data(), M, K, 1e-2, 1e-6, 500, two.view()));
  }
  for (size_t e = 0; e < M * K * d; ++e) ASSERT_EQ(one.data()[e], two.data()[e]) << e;
  // Not converged: false, the start untouched.
  FloatMatrix few = start.clone();
  EXPECT_FALSE(detail::ridge_codebooks_cg(x.view(), codes.data(), M, K, 1e-2, 1e-12, 2, few.view()));
  for (size_t e = 0; e < M * K * d; ++e) ASSERT_EQ(few.data()[e], 0.0f);
}

// Training with CG updates (the default; chosen here: M·K = 768 against 1,200 vectors) ends no worse than
// with exact ones, and codebook_cg_tol = 0 is the exact path.
TEST(LocalSearchQuantizer, TrainingWithCgUpdatesMatchesExactUpdatesInError) {
  const auto x = gaussian_mixture(1200, 8, 40, 9);
  LocalSearchQuantizerParams p = quick();
  LocalSearchQuantizer cg(8, 3, 8, p);
  p.codebook_cg_tol = 0;
  LocalSearchQuantizer chol(8, 3, 8, p);
  cg.train(x.view());
  chol.train(x.view());
  const double a = cg.training_errors().back(), b = chol.training_errors().back();
  EXPECT_LT(a, 1.02 * b) << a << " vs " << b;  // (trajectories differ: either may end lower)
  p.codebook_cg_tol = -1;
  LocalSearchQuantizer bad(8, 3, 8, p);
  EXPECT_THROW(bad.train(x.view()), InvalidArgument);
}

TEST(LocalSearchQuantizer, UnaryAndBinaryTermsMatchBruteForce) {
  Trained t(500, 6, 3, 3);
  const size_t n = 20, M = 3, K = 8, d = 6;
  std::vector<float> U(M * n * K), Bt(M * M * K * K);
  t.q.compute_unary_terms(t.x.view().rows_slice(0, n), U.data());
  t.q.compute_binary_terms(Bt.data());
  for (size_t m = 0; m < M; ++m)
    for (size_t k = 0; k < K; ++k) {
      double nn = 0;
      for (size_t j = 0; j < d; ++j) nn += double(t.q.codebook(m)(k, j)) * t.q.codebook(m)(k, j);
      for (size_t i = 0; i < n; ++i) {
        double ip = 0;
        for (size_t j = 0; j < d; ++j) ip += double(t.x(i, j)) * t.q.codebook(m)(k, j);
        EXPECT_NEAR(U[(m * n + i) * K + k], nn - 2 * ip, 1e-3 * (1 + std::fabs(nn)));
      }
      for (size_t m2 = 0; m2 < M; ++m2)
        for (size_t k2 = 0; k2 < K; ++k2) {
          double ip = 0;
          for (size_t j = 0; j < d; ++j) ip += double(t.q.codebook(m)(k, j)) * t.q.codebook(m2)(k2, j);
          EXPECT_NEAR(Bt[((m * M + m2) * K + k) * K + k2], 2 * ip, 1e-3 * (1 + std::fabs(ip)));
        }
    }
}

TEST(LocalSearchQuantizer, IcmStepNeverRaisesTheEnergyAndReachesALocalMinimum) {
  Trained t(800, 8, 4, 4);
  const size_t n = 300, M = 4, K = 16;
  auto xs = t.x.view().rows_slice(0, n);
  std::vector<float> U(M * n * K), Bt(M * M * K * K);
  t.q.compute_unary_terms(xs, U.data());
  t.q.compute_binary_terms(Bt.data());
  auto codes = random_codes(n, M, K, 5);
  std::vector<double> before(n);
  for (size_t i = 0; i < n; ++i) before[i] = exact_error(t.q, xs, i, &codes[i * M]);
  for (int step = 0; step < 6; ++step) {
    t.q.icm_encode_step(codes.data(), U.data(), Bt.data(), n, 1);
    for (size_t i = 0; i < n; ++i) {
      const double e = exact_error(t.q, xs, i, &codes[i * M]);
      EXPECT_LE(e, before[i] * (1 + 1e-5) + 1e-4) << "row " << i << " sweep " << step;
      before[i] = e;
    }
  }
  // After convergence no single code change lowers the error (ICM's fixed point, up to rounding).
  t.q.icm_encode_step(codes.data(), U.data(), Bt.data(), n, 20);
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> c(codes.begin() + i * M, codes.begin() + (i + 1) * M);
    const double e0 = exact_error(t.q, xs, i, c.data());
    for (size_t m = 0; m < M; ++m)
      for (int32_t k = 0; k < (int32_t)K; ++k) {
        auto c2 = c;
        c2[m] = k;
        EXPECT_GE(exact_error(t.q, xs, i, c2.data()), e0 * (1 - 1e-4) - 1e-3) << i << " " << m << " " << k;
      }
  }
}

TEST(LocalSearchQuantizer, IlsNeverRaisesAVectorsErrorAndOftenFindsTheExhaustiveOptimum) {
  Trained t(600, 5, 3, 3);  // 8³ = 512 code combinations: exhaustive search is the reference
  const size_t n = 200, M = 3, K = 8;
  auto xs = t.x.view().rows_slice(0, n);
  auto codes = random_codes(n, M, K, 9);
  std::vector<double> start(n);
  for (size_t i = 0; i < n; ++i) start[i] = exact_error(t.q, xs, i, &codes[i * M]);
  t.q.icm_encode(codes.data(), xs, 16, 77);
  size_t optimal = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = exact_error(t.q, xs, i, &codes[i * M]);
    EXPECT_LE(e, start[i] * (1 + 1e-6) + 1e-6);
    double best = INFINITY;
    int32_t c[3];
    for (c[0] = 0; c[0] < 8; ++c[0])
      for (c[1] = 0; c[1] < 8; ++c[1])
        for (c[2] = 0; c[2] < 8; ++c[2]) best = std::min(best, exact_error(t.q, xs, i, c));
    EXPECT_GE(e, best * (1 - 1e-5) - 1e-6);
    if (e <= best * (1 + 1e-5) + 1e-6) ++optimal;
  }
  EXPECT_GE(optimal, n * 9 / 10) << optimal << " of " << n << " at the exhaustive optimum";
}

TEST(LocalSearchQuantizer, IncrementalAndPlainIcmChooseTheSameCodes) {
  // The encoder keeps each position's costs up to date as codes move (int16 table rows); the plain
  // formulation sums them afresh. Up to rounding they are the same search.
  Trained t(1500, 16, 4, 6);
  const size_t M = 4, n = t.x.rows();
  std::vector<FloatMatrix> books;
  FloatMatrix flat(M * 64, 16);
  for (size_t m = 0; m < M; ++m)
    for (size_t k = 0; k < 64; ++k)
      for (size_t j = 0; j < 16; ++j) flat(m * 64 + k, j) = t.q.codebook(m)(k, j);
  const auto tables = detail::make_icm_tables(flat.view(), M, 64);
  std::vector<std::vector<int32_t>> codes(2, random_codes(n, M, 64, 3));
  std::vector<std::vector<float>> errs(2, std::vector<float>(n));
  for (int exact = 0; exact < 2; ++exact)
    detail::ils_encode(tables, t.x.view(), codes[exact].data(), detail::IlsParams{8, 4, 4, 99, exact == 1},
                       errs[exact].data());
  size_t same = 0;
  double e0 = 0, e1 = 0;
  for (size_t i = 0; i < n; ++i) {
    same += std::equal(codes[0].begin() + i * M, codes[0].begin() + (i + 1) * M, codes[1].begin() + i * M);
    e0 += errs[0][i], e1 += errs[1][i];
    EXPECT_NEAR(errs[0][i], exact_error(t.q, t.x.view(), i, &codes[0][i * M]), 1e-3 * (1 + errs[0][i]));
  }
  EXPECT_GE(same, n * 9 / 10);
  EXPECT_NEAR(e0 / e1, 1.0, 0.01);
}

TEST(LocalSearchQuantizer, EagerSmallCodebookAndPlainIcmChooseTheSameCodes) {
  // With 16 codewords the encoder updates every position's costs at every move from the dense float table
  // and screens candidates by their energy; the plain formulation sums the costs afresh.
  Trained t(1500, 16, 5, 4);
  const size_t M = 5, K = 16, n = t.x.rows();
  FloatMatrix flat(M * K, 16);
  for (size_t m = 0; m < M; ++m)
    for (size_t k = 0; k < K; ++k)
      for (size_t j = 0; j < 16; ++j) flat(m * K + k, j) = t.q.codebook(m)(k, j);
  const auto tables = detail::make_icm_tables(flat.view(), M, K);
  ASSERT_EQ(tables.dense.size(), M * K * M * K);
  std::vector<std::vector<int32_t>> codes(2, random_codes(n, M, K, 3));
  std::vector<std::vector<float>> errs(2, std::vector<float>(n));
  for (int exact = 0; exact < 2; ++exact)
    detail::ils_encode(tables, t.x.view(), codes[exact].data(), detail::IlsParams{8, 4, 4, 99, exact == 1},
                       errs[exact].data());
  size_t same = 0;
  double e0 = 0, e1 = 0;
  for (size_t i = 0; i < n; ++i) {
    same += std::equal(codes[0].begin() + i * M, codes[0].begin() + (i + 1) * M, codes[1].begin() + i * M);
    e0 += errs[0][i], e1 += errs[1][i];
    EXPECT_NEAR(errs[0][i], exact_error(t.q, t.x.view(), i, &codes[0][i * M]), 1e-3 * (1 + errs[0][i]));
  }
  EXPECT_GE(same, n * 9 / 10);
  EXPECT_NEAR(e0 / e1, 1.0, 0.01);
}

TEST(LocalSearchQuantizer, EncodingIsTheSameForAnyThreadCount) {
  Trained t(3000, 12, 4, 5);
  std::vector<int32_t> a(t.x.rows() * 4), b(a.size());
  {
    ScopedThreads one(1);
    t.q.encode(t.x.view(), a.data());
  }
  {
    ScopedThreads two(2);
    t.q.encode(t.x.view(), b.data());
  }
  EXPECT_EQ(a, b);
}

TEST(LocalSearchQuantizer, TrainingIsDeterministicAndLowersTheError) {
  const auto x = gaussian_mixture(4000, 16, 50, 21, 0.5f);
  auto p = quick();
  p.train_iters = 12;
  LocalSearchQuantizer a(16, 4, 4, p), b(16, 4, 4, p);
  a.train(x.view());
  b.train(x.view());
  for (size_t m = 0; m < 4; ++m)
    for (size_t k = 0; k < 16; ++k)
      for (size_t j = 0; j < 16; ++j) ASSERT_EQ(a.codebook(m)(k, j), b.codebook(m)(k, j));
  const auto& errs = a.training_errors();
  ASSERT_EQ(errs.size(), 12u);
  EXPECT_LT(errs.back(), 0.8 * errs.front());
}

TEST(LocalSearchQuantizer, JointEncodingBeatsGreedyResidualEncodingWithTheSameCodebooks) {
  const auto x = gaussian_mixture(4000, 16, 50, 21, 0.5f);
  ResidualQuantizerParams rp;
  rp.n_init = 1;
  ResidualQuantizer rq(16, {16, 16, 16, 16}, rp);
  std::vector<int32_t> greedy(4000 * 4);
  rq.fit(x.view(), greedy.data());
  rq.encode_greedy(x.view(), greedy.data());
  LocalSearchQuantizer q(16, 4, 4);
  std::vector<FloatMatrix> books;
  for (size_t m = 0; m < 4; ++m) books.push_back(FloatMatrix::copy_of(rq.codebook(m)));
  q.set_codebooks(std::move(books));
  const double g = q.evaluate(greedy.data(), x.view());
  auto joint = greedy;
  q.icm_encode(joint.data(), x.view(), 8, 3);
  std::vector<float> eg(4000), ej(4000);
  q.evaluate(greedy.data(), x.view(), eg.data());
  const double j = q.evaluate(joint.data(), x.view(), ej.data());
  for (size_t i = 0; i < 4000; ++i) ASSERT_LE(ej[i], eg[i]) << "row " << i;
  EXPECT_LT(j, 0.97 * g) << "joint " << j << " vs greedy " << g;
}

TEST(LocalSearchQuantizer, OptionsBeyondFaissTrainToComparableError) {
  const auto x = gaussian_mixture(3000, 16, 40, 5, 0.5f);
  double base = 0;
  for (int variant = 0; variant < 4; ++variant) {
    auto p = quick();
    if (variant == 0) p.init = LsqInit::random, p.encode_greedy_init = false;  // faiss's behaviour
    if (variant == 2) p.annealing = LsqAnnealing::data;
    if (variant == 3) p.final_refit = true;
    LocalSearchQuantizer q(16, 4, 4, p);
    q.train(x.view());
    std::vector<int32_t> codes(3000 * 4);
    q.encode(x.view(), codes.data());
    const double e = q.evaluate(codes.data(), x.view());
    if (variant == 0) base = e;
    EXPECT_LT(e, base * 1.15) << "variant " << variant;
    EXPECT_GT(e, 0);
  }
}

TEST(LocalSearchQuantizer, PerturbationsTouchAtMostNpertsPositionsAndNoiseHasTheScheduledSpread) {
  LocalSearchQuantizerParams p;
  p.nperts = 2;
  LocalSearchQuantizer q(4, 6, 8, p);
  auto c = random_codes(1000, 6, 256, 1);
  auto before = c;
  q.perturb_codes(c.data(), 1000, 42);
  size_t changed_any = 0;
  for (size_t i = 0; i < 1000; ++i) {
    size_t diff = 0;
    for (size_t m = 0; m < 6; ++m) diff += c[i * 6 + m] != before[i * 6 + m];
    EXPECT_LE(diff, 2u);
    changed_any += diff > 0;
  }
  EXPECT_GT(changed_any, 900u);

  LocalSearchQuantizer z(3, 2, 8);
  z.set_codebooks({FloatMatrix(256, 3), FloatMatrix(256, 3)});
  z.perturb_codebooks(0.5f, {2.0f, 4.0f, 0.0f}, 7);
  for (size_t j = 0; j < 3; ++j) {
    double s = 0;
    for (size_t m = 0; m < 2; ++m)
      for (size_t k = 0; k < 256; ++k) s += double(z.codebook(m)(k, j)) * z.codebook(m)(k, j);
    const double sd = std::sqrt(s / 512), want = 0.5 * (j == 0 ? 2.0 : j == 1 ? 4.0 : 0.0) / 2;
    EXPECT_NEAR(sd, want, 0.1 * want + 1e-9) << "dimension " << j;
  }
}

TEST(LocalSearchQuantizer, BadInputIsAClearError) {
  EXPECT_THROW(LocalSearchQuantizer(8, 4, 0), InvalidArgument);
  EXPECT_THROW(LocalSearchQuantizer(8, 4, 17), InvalidArgument);
  try {
    LocalSearchQuantizer(8, 16, 12);
    FAIL() << "a 64K-codeword LSQ was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("GiB"), std::string::npos) << e.what();
  }
  LocalSearchQuantizer q(4, 2, 3);
  FloatMatrix x(10, 4);
  std::vector<int32_t> codes(20);
  EXPECT_THROW(q.encode(x.view(), codes.data()), InvalidArgument);  // not trained
  FloatMatrix wrong(10, 5);
  EXPECT_THROW(q.train(wrong.view()), InvalidArgument);
  x(3, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(q.train(x.view()), InvalidArgument);
  LocalSearchQuantizerParams p;
  p.train_iters = 0;
  LocalSearchQuantizer none(4, 2, 3, p);
  EXPECT_THROW(none.train(FloatMatrix(10, 4).view()), InvalidArgument);
  codes.assign(20, 9);  // outside [0, 8)
  EXPECT_THROW(q.update_codebooks(FloatMatrix(10, 4).view(), codes.data()), InvalidArgument);
}

TEST(LocalSearchQuantizer, ModelFilesKeepCodebooksParametersAndNorms) {
  const auto x = gaussian_mixture(1500, 8, 20, 4);
  auto p = quick();
  p.encode_ils_iters = 5;
  p.random_seed = 99;
  LocalSearchQuantizer q(8, 3, 4, p, SearchType::ST_norm_qint8);
  q.train(x.view());
  const std::string bytes = quantizer_bytes(q);
  auto loaded = parse_quantizer(bytes.data(), bytes.size());
  auto* l = dynamic_cast<LocalSearchQuantizer*>(loaded.get());
  ASSERT_NE(l, nullptr) << loaded->type_name();
  EXPECT_EQ(l->params().encode_ils_iters, 5u);
  EXPECT_EQ(l->params().random_seed, 99u);
  EXPECT_EQ(l->search_type(), SearchType::ST_norm_qint8);
  std::vector<uint8_t> a(1500 * q.code_size()), b(a.size());
  q.encode_packed(x.view(), a.data());
  l->encode_packed(x.view(), b.data());
  EXPECT_EQ(a, b);
  EXPECT_EQ(q.code_size(), 3u);  // 3 × 4 code bits + 8 norm bits = 20 bits
}
