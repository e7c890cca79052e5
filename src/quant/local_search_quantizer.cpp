#include "tessera/quant/local_search_quantizer.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include <cblas.h>

#include "core/blas.h"
#include "quant/codebook_cg.h"
#include "quant/icm_encoder.h"
#include "tessera/core/distances.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/rng.h"
#include "tessera/core/threading.h"
#include "tessera/quant/residual_quantizer.h"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
}

namespace tessera {

namespace {

// The cross-product table (M²K² floats) and the least-squares system ((MK)² doubles) grow as (MK)²: beyond
// these sizes LSQ is the wrong tool (use fewer bits per codebook, or a residual quantizer).
constexpr double kMaxTableBytes = 2.0 * (1ull << 30);
constexpr double kMaxSystemBytes = 4.0 * (1ull << 30);
// Conjugate-gradient iterations before a codebook update falls back to the exact solve (warm-started
// updates take 13–16 at a relative residual of 1e-5 on siftsmall 8 × 8; from the residual init about 30).
constexpr size_t kMaxCgIters = 200;

std::string gib(double bytes) {
  std::ostringstream s;
  s.precision(3);
  s << bytes / double(1ull << 30) << " GiB";
  return s.str();
}

// Per-dimension population standard deviation of x.
std::vector<float> column_stddev(MatrixView<const float> x) {
  const size_t n = x.rows, d = x.cols;
  std::vector<double> mean(d, 0.0), sq(d, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) mean[j] += x(i, j);
  for (size_t j = 0; j < d; ++j) mean[j] /= double(n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) {
      const double t = x(i, j) - mean[j];
      sq[j] += t * t;
    }
  std::vector<float> s(d);
  for (size_t j = 0; j < d; ++j) s[j] = float(std::sqrt(sq[j] / double(n)));
  return s;
}

void potrf_tile(int n, double* a, int lda, int* info) { dpotrf_("L", &n, a, &lda, info); }
void potrf_tile(int n, float* a, int lda, int* info) { spotrf_("L", &n, a, &lda, info); }
void trsm_tile(CBLAS_SIDE side, CBLAS_TRANSPOSE tr, int m, int n, const double* a, int lda, double* b, int ldb) {
  cblas_dtrsm(CblasColMajor, side, CblasLower, tr, CblasNonUnit, m, n, 1.0, a, lda, b, ldb);
}
void trsm_tile(CBLAS_SIDE side, CBLAS_TRANSPOSE tr, int m, int n, const float* a, int lda, float* b, int ldb) {
  cblas_strsm(CblasColMajor, side, CblasLower, tr, CblasNonUnit, m, n, 1.0f, a, lda, b, ldb);
}
void syrk_tile(int n, int k, const double* a, int lda, double* c, int ldc) {
  cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, n, k, -1.0, a, lda, 1.0, c, ldc);
}
void syrk_tile(int n, int k, const float* a, int lda, float* c, int ldc) {
  cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, n, k, -1.0f, a, lda, 1.0f, c, ldc);
}
void gemm_tile(int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c, int ldc) {
  cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, m, n, k, -1.0, a, lda, b, ldb, 1.0, c, ldc);
}
void gemm_tile(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, m, n, k, -1.0f, a, lda, b, ldb, 1.0f, c, ldc);
}

// Solve the SPD system A·X = B in place (A: n × n symmetric, lower triangle read; B: n × nrhs, column-major)
// by a tiled right-looking Cholesky: at step k the diagonal tile is factored, the tiles below it solved, and
// the trailing tiles updated, the tiles of a step in parallel (OpenBLAS itself runs single-threaded). Each
// tile goes through the same single-threaded BLAS calls in the same order whatever the thread count, so the
// result never depends on it. Then the two triangular solves, in fixed chunks of right-hand sides.
template <class T>
void cholesky_solve(std::vector<T, detail::HugePageAllocator<T>>& a, std::vector<T>& b, size_t n, size_t nrhs,
                    double lambd) {
  detail::prepare_blas();
  constexpr size_t kTile = 512, kRhsChunk = 32;
  const size_t nt = (n + kTile - 1) / kTile;
  const int ld = (int)n;
  T* A = a.data();
  auto tile = [&](size_t i, size_t j) { return A + j * kTile * n + i * kTile; };  // rows of i, columns of j
  auto len = [&](size_t i) { return (int)std::min(kTile, n - i * kTile); };
  std::vector<std::pair<size_t, size_t>> trailing;
  int info = 0;
  for (size_t k = 0; k < nt && info == 0; ++k) {
    potrf_tile(len(k), tile(k, k), ld, &info);
    if (info != 0) {
      info += int(k * kTile);
      break;
    }
    trailing.clear();
    for (size_t j = k + 1; j < nt; ++j)
      for (size_t i = j; i < nt; ++i) trailing.emplace_back(i, j);
#pragma omp parallel num_threads(::tessera::num_threads())
    {
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t i = ptrdiff_t(k + 1); i < (ptrdiff_t)nt; ++i)
        trsm_tile(CblasRight, CblasTrans, len(size_t(i)), len(k), tile(k, k), ld, tile(size_t(i), k), ld);
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t t = 0; t < (ptrdiff_t)trailing.size(); ++t) {
        const auto [i, j] = trailing[size_t(t)];
        if (i == j) syrk_tile(len(i), len(k), tile(i, k), ld, tile(i, i), ld);
        else gemm_tile(len(i), len(j), len(k), tile(i, k), ld, tile(j, k), ld, tile(i, j), ld);
      }
    }
  }
  TESSERA_CHECK_ARG(info == 0, "the codebook update's least-squares system is singular (LAPACK potrf info "
                                   << info << ", lambd = " << lambd << "): use lambd > 0");
  const size_t chunks = (nrhs + kRhsChunk - 1) / kRhsChunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(::tessera::num_threads())
  for (ptrdiff_t c = 0; c < (ptrdiff_t)chunks; ++c) {
    const size_t r0 = size_t(c) * kRhsChunk;
    const int cols = (int)std::min(kRhsChunk, nrhs - r0);
    T* rhs = b.data() + r0 * n;
    trsm_tile(CblasLeft, CblasNoTrans, (int)n, cols, A, ld, rhs, ld);  // L·Y = B
    trsm_tile(CblasLeft, CblasTrans, (int)n, cols, A, ld, rhs, ld);    // Lᵀ·X = Y
  }
}

template <class T>
FloatMatrix ridge_codebooks(MatrixView<const float> x, const int32_t* codes, size_t M, size_t K, double lambd) {
  const size_t n = x.rows, d = x.cols, MK = M * K;
  // BᵀB (B: n × MK one-hot per codebook) by counting, plus λ on the diagonal. Only its lower triangle in
  // column-major order (entry (r2, r), r2 > r, at r·MK + r2) is filled: all the Cholesky reads. Counted one
  // pair of codebooks at a time, so that the K × K block being counted stays in cache (the whole matrix is
  // 33.5 MB at M = 8, K = 256), on huge pages for the same reason.
  std::vector<T, detail::HugePageAllocator<T>> a(MK * MK, T(0));
  for (size_t i = 0; i < n; ++i)
    for (size_t m = 0; m < M; ++m) {
      const size_t r = m * K + (size_t)codes[i * M + m];
      a[r * MK + r] += T(1);
    }
  for (size_t m = 0; m < M; ++m)
    for (size_t m2 = m + 1; m2 < M; ++m2)
      for (size_t i = 0; i < n; ++i) {
        const size_t r = m * K + (size_t)codes[i * M + m], r2 = m2 * K + (size_t)codes[i * M + m2];
        a[r * MK + r2] += T(1);
      }
  for (size_t r = 0; r < MK; ++r) a[r * MK + r] += T(lambd);
  // BᵀX, column-major.
  const std::vector<double> sums = detail::codeword_sums(x, codes, M, K);
  std::vector<T> b(MK * d);
  for (size_t r = 0; r < MK; ++r)
    for (size_t j = 0; j < d; ++j) b[j * MK + r] = T(sums[r * d + j]);
  cholesky_solve(a, b, MK, d, lambd);
  FloatMatrix books(MK, d);
  for (size_t r = 0; r < MK; ++r)
    for (size_t j = 0; j < d; ++j) books(r, j) = float(b[j * MK + r]);
  return books;
}

// Whether the warm-started CG update should cost less than the exact one. Cholesky: (MK)³/3 + 2(MK)²d
// flops at about 30 GFLOP/s (double, one core); CG: about 16 iterations of 2·n·M row operations per group of
// 16 columns at about 2 ns each (both measured on a Zen 3 core). CG wins at 8 × 8 and 16 × 8 on 10k vectors
// (0.04 against 0.13 s, 0.08 against 0.9 s); Cholesky at 16 × 4 (MK = 256: under a millisecond) and with
// many training vectors for small MK (8 × 8 on 100k vectors: 0.13 against 0.4 s).
bool cg_is_cheaper(size_t n, size_t M, size_t K, size_t d) {
  const double MK = double(M * K);
  const double cholesky = (MK * MK * MK / 3 + 2 * MK * MK * double(d)) / 3e10;
  const double cg = 16 * 2 * double(n) * double(M) * double((d + 15) / 16) * 2e-9;
  return cg < cholesky;
}

// ILS from `codes` (in place) with q's current codebooks (the int16 tables only); errors: optional, n.
void ils_with(const LocalSearchQuantizer& q, MatrixView<const float> x, int32_t* codes, const detail::IlsParams& p,
              float* errors = nullptr) {
  const detail::IcmTables t = detail::make_icm_tables(q.codebooks_flat(), q.num_codebooks(), q.K(), false);
  detail::ils_encode(t, x, codes, p, errors);
}

void check_codes(const int32_t* codes, size_t n, size_t M, size_t K) {
  for (size_t i = 0; i < n * M; ++i)
    TESSERA_CHECK_ARG(codes[i] >= 0 && (size_t)codes[i] < K,
                      "code " << codes[i] << " of row " << i / M << ", codebook " << i % M << " is outside [0, " << K
                              << ")");
}

}  // namespace

LocalSearchQuantizer::LocalSearchQuantizer(size_t d, size_t M, size_t nbits, SearchType search_type)
    : LocalSearchQuantizer(d, M, nbits, LocalSearchQuantizerParams{}, search_type) {}

LocalSearchQuantizer::LocalSearchQuantizer(size_t d, size_t M, size_t nbits, LocalSearchQuantizerParams params,
                                           SearchType search_type)
    : AdditiveQuantizer(d, equal_codebook_sizes(M, nbits), search_type),
      K_(size_t(1) << nbits),
      params_(std::move(params)) {
  const double MK = double(M) * double(K_);
  const double table = MK * MK * 4.0, system = MK * MK * 8.0;
  TESSERA_CHECK_ARG(table <= kMaxTableBytes && system <= kMaxSystemBytes,
                    "LSQ with M = " << M << " codebooks of 2^" << nbits << " = " << K_ << " codewords needs a "
                                    << gib(table) << " cross-product table and a " << gib(system)
                                    << " least-squares system (limits " << gib(kMaxTableBytes) << " and "
                                    << gib(kMaxSystemBytes) << "): use fewer bits per codebook or fewer codebooks");
}

void LocalSearchQuantizer::update_codebooks(MatrixView<const float> x, const int32_t* codes) {
  check_input(x, "training vectors");
  TESSERA_CHECK_ARG(x.rows > 0, "update_codebooks needs at least one vector");
  check_codes(codes, x.rows, num_codebooks(), K_);
  const FloatMatrix books = params_.update_codebooks_with_double
                                ? ridge_codebooks<double>(x, codes, num_codebooks(), K_, params_.lambd)
                                : ridge_codebooks<float>(x, codes, num_codebooks(), K_, params_.lambd);
  set_codebooks(books.view());
}

void LocalSearchQuantizer::update_codebooks_from(MatrixView<const float> x, const int32_t* codes, FloatMatrix& start) {
  const double tol = params_.codebook_cg_tol;
  // Without the ridge term the system is singular: the exact solve says so clearly.
  const bool cg = tol > 0 && params_.lambd > 0 && cg_is_cheaper(x.rows, num_codebooks(), K_, dim());
  if (cg && detail::ridge_codebooks_cg(x, codes, num_codebooks(), K_, params_.lambd, tol, kMaxCgIters, start.view())) {
    set_codebooks(start.view());
  } else {
    update_codebooks(x, codes);
    std::copy_n(codebooks_flat().data, start.rows() * start.cols(), start.data());
  }
}

void LocalSearchQuantizer::icm_encode(int32_t* codes, MatrixView<const float> x, size_t ils_iters,
                                      uint64_t seed) const {
  check_trained("icm_encode");
  check_input(x, "vectors to encode");
  check_codes(codes, x.rows, num_codebooks(), K_);
  ils_with(*this, x, codes, detail::IlsParams{ils_iters, params_.icm_iters, params_.nperts, seed});
}

void LocalSearchQuantizer::icm_encode_step(int32_t* codes, const float* unaries, const float* binaries, size_t n,
                                           size_t n_iters) const {
  check_codes(codes, n, num_codebooks(), K_);
  detail::icm_sweeps(binaries, num_codebooks(), K_, detail::UnaryLayout{unaries, K_, n * K_}, codes, n, n_iters);
}

void LocalSearchQuantizer::perturb_codes(int32_t* codes, size_t n, uint64_t seed) const {
  detail::perturb_codes(codes, n, num_codebooks(), K_, params_.nperts, seed, 0);
}

void LocalSearchQuantizer::perturb_codebooks(float T, const std::vector<float>& stddev, uint64_t seed) {
  check_trained("perturb_codebooks");
  const size_t M = num_codebooks(), d = dim();
  TESSERA_CHECK_ARG(stddev.size() == d, "stddev has " << stddev.size() << " entries, expected d = " << d);
  MatrixView<float> books = mutable_codebooks();
  Rng rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t r = 0; r < M * K_; ++r)
    for (size_t j = 0; j < d; ++j) books(r, j) += normal(rng) * (T * stddev[j] / float(M));
}

void LocalSearchQuantizer::compute_binary_terms(float* binaries) const {
  check_trained("compute_binary_terms");
  const detail::IcmTables t = detail::make_icm_tables(codebooks_flat(), num_codebooks(), K_);
  std::copy(t.binaries.begin(), t.binaries.end(), binaries);
}

void LocalSearchQuantizer::compute_unary_terms(MatrixView<const float> x, float* unaries) const {
  check_trained("compute_unary_terms");
  check_input(x, "vectors");
  const size_t n = x.rows, M = num_codebooks(), d = dim();
  const MatrixView<const float> flat = codebooks_flat();
  for (size_t m = 0; m < M; ++m) {
    float* u = unaries + m * n * K_;
    detail::gemm_abt(n, K_, d, -2.0f, x.data, x.stride, flat.row(m * K_), d, 0.0f, u, K_);
    for (size_t k = 0; k < K_; ++k) {
      float s = 0;
      for (size_t j = 0; j < d; ++j) s += flat(m * K_ + k, j) * flat(m * K_ + k, j);
      for (size_t i = 0; i < n; ++i) u[i * K_ + k] += s;
    }
  }
}

double LocalSearchQuantizer::evaluate(const int32_t* codes, MatrixView<const float> x, float* objs) const {
  check_trained("evaluate");
  check_input(x, "vectors");
  check_codes(codes, x.rows, num_codebooks(), K_);
  if (x.rows == 0) return 0.0;
  detail::IcmTables t;
  t.M = num_codebooks(), t.K = K_, t.d = dim(), t.books = FloatMatrix::copy_of(codebooks_flat());
  std::vector<float> err(x.rows);
  detail::reconstruction_errors(t, x, codes, err.data());
  if (objs) std::copy(err.begin(), err.end(), objs);
  double s = 0;
  for (float e : err) s += e;
  return s / double(x.rows);
}

void LocalSearchQuantizer::encode(MatrixView<const float> x, int32_t* codes) const {
  check_trained("encode");
  check_input(x, "vectors to encode");
  const size_t M = num_codebooks();
  detail::IlsParams p{params_.encode_ils_iters, params_.icm_iters, params_.nperts, params_.random_seed};
  // Greedy residual codes are found by the encoder itself, from the tables it builds anyway.
  p.greedy_start = params_.encode_greedy_init;
  if (!p.greedy_start) detail::random_codes(codes, x.rows, M, K_, derive_seed(params_.random_seed, 0xc0de5), 0);
  ils_with(*this, x, codes, p);
}

void LocalSearchQuantizer::train(MatrixView<const float> x) {
  check_input(x, "training vectors");
  const size_t n = x.rows, M = num_codebooks(), d = dim();
  TESSERA_CHECK_ARG(n >= 1, "training needs at least one vector");
  TESSERA_CHECK_ARG(params_.train_iters >= 1, "train_iters must be at least 1");
  TESSERA_CHECK_ARG(params_.codebook_cg_tol >= 0 && std::isfinite(params_.codebook_cg_tol),
                    "codebook_cg_tol must be a finite number ≥ 0, got " << params_.codebook_cg_tol);
  const uint64_t seed = params_.random_seed;
  const std::vector<float> stddev = column_stddev(x);
  std::vector<int32_t> codes(n * M);
  // The last codebook update's solution (before the perturbation): where the next one's CG starts.
  FloatMatrix solved(M * K_, d);
  // Measured (bench/bench_aq.py): a residual quantizer's codes are the better start with 8-bit codebooks
  // (MSE −7% / −10% on siftsmall / bigann10k at 8 × 8), random codes with 4-bit ones (bigann10k 16 × 4:
  // 22,837 from residual codes, 22,492 from random ones, faiss 22,553).
  const bool residual_init =
      params_.init == LsqInit::residual || (params_.init == LsqInit::automatic && K_ > 16);
  if (residual_init) {
    ResidualQuantizerParams rp;
    rp.n_init = 1;
    rp.max_iter = 10;
    rp.seed = derive_seed(seed, 0x12e5);
    ResidualQuantizer rq(d, std::vector<size_t>(M, K_), rp);
    rq.fit(x, codes.data());
    solved = FloatMatrix::copy_of(rq.codebooks_flat());
  } else {
    detail::random_codes(codes.data(), n, M, K_, derive_seed(seed, 0x1417), 0);
  }
  train_errors_.clear();
  std::vector<float> errors(n);
  FloatMatrix noisy;
  const auto iters = params_.train_iters;
  for (size_t i = 0; i < iters; ++i) {
    check_interrupt();
    const float T = std::pow(1.0f - float(i + 1) / float(iters), params_.p);
    const uint64_t seed_i = derive_seed(seed, 1000 + i);
    if (params_.annealing == LsqAnnealing::data && T > 0) {
      // SR-C: the update sees the data with decaying noise; the encoding sees the data itself.
      if (noisy.rows() == 0) noisy = FloatMatrix(n, d);
      Rng rng(seed_i);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (size_t r = 0; r < n; ++r)
        for (size_t j = 0; j < d; ++j) noisy(r, j) = x(r, j) + normal(rng) * T * stddev[j];
      update_codebooks_from(noisy.view(), codes.data(), solved);
    } else {
      update_codebooks_from(x, codes.data(), solved);
    }
    if (params_.annealing == LsqAnnealing::codebooks && T > 0) perturb_codebooks(T, stddev, derive_seed(seed_i, 1));
    // icm_encode, keeping the ILS's exact errors of the final codes: the iteration's error without decoding
    // the training set again (what evaluate would compute, in the same order).
    ils_with(*this, x, codes.data(),
             detail::IlsParams{params_.train_ils_iters, params_.icm_iters, params_.nperts, derive_seed(seed_i, 2)},
             errors.data());
    double total = 0;
    for (float e : errors) total += e;
    train_errors_.push_back(total / double(n));
    report(params_.progress, "LSQ training", i + 1, iters, train_errors_.back());
  }
  if (params_.final_refit) update_codebooks(x, codes.data());
  finish_training_from_codes(n, codes.data());
}

LsqInit parse_lsq_init(const std::string& name) {
  if (name == "random") return LsqInit::random;
  if (name == "residual" || name == "rq") return LsqInit::residual;
  if (name == "auto" || name == "automatic") return LsqInit::automatic;
  TESSERA_THROW_ARG("unknown LSQ init '" << name << "': expected random, residual or auto");
}

std::string lsq_init_name(LsqInit init) {
  return init == LsqInit::random ? "random" : init == LsqInit::residual ? "residual" : "auto";
}

LsqAnnealing parse_lsq_annealing(const std::string& name) {
  if (name == "codebooks" || name == "SR-D") return LsqAnnealing::codebooks;
  if (name == "data" || name == "SR-C") return LsqAnnealing::data;
  TESSERA_THROW_ARG("unknown LSQ annealing '" << name << "': expected codebooks (SR-D) or data (SR-C)");
}

std::string lsq_annealing_name(LsqAnnealing a) { return a == LsqAnnealing::codebooks ? "codebooks" : "data"; }

}  // namespace tessera
