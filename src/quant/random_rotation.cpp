#include "tessera/quant/random_rotation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/blas.h"
#include "core/simd.h"
#include "tessera/core/error.h"
#include "tessera/core/rng.h"
#include "tessera/core/threading.h"

extern "C" {
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork,
             int* info);
void dorgqr_(const int* m, const int* n, const int* k, double* a, const int* lda, const double* tau, double* work,
             const int* lwork, int* info);
}

namespace tessera {

namespace {

constexpr int kHadamardRounds = 3;
// Rows per parallel task when rotating many vectors.
constexpr size_t kRowsPerTask = 64;

size_t leading_power_of_two(size_t d) {
  size_t l = 1;
  while (l * 2 <= d) l *= 2;
  return l;
}

// Q of a Gaussian matrix's QR decomposition, columns multiplied by sign(R_jj): Haar-distributed.
std::vector<float> haar_orthogonal(size_t d, Rng& rng) {
  std::vector<double> a(d * d), tau(d);
  fill_standard_normal(a.data(), a.size(), rng);  // column-major for LAPACK; a Gaussian matrix's transpose is one too
  const int n = (int)d;
  int info = 0, lwork = -1;
  double query = 0;
  dgeqrf_(&n, &n, a.data(), &n, tau.data(), &query, &lwork, &info);
  lwork = std::max(1, (int)query);
  std::vector<double> work(lwork);
  dgeqrf_(&n, &n, a.data(), &n, tau.data(), work.data(), &lwork, &info);
  TESSERA_CHECK_ARG(info == 0, "QR decomposition of the random matrix failed (LAPACK dgeqrf info " << info << ")");
  std::vector<double> sign(d);
  for (size_t j = 0; j < d; ++j) sign[j] = a[j * d + j] < 0 ? -1.0 : 1.0;
  lwork = -1;
  dorgqr_(&n, &n, &n, a.data(), &n, tau.data(), &query, &lwork, &info);
  lwork = std::max(1, (int)query);
  work.resize(lwork);
  dorgqr_(&n, &n, &n, a.data(), &n, tau.data(), work.data(), &lwork, &info);
  TESSERA_CHECK_ARG(info == 0, "forming Q of the random matrix failed (LAPACK dorgqr info " << info << ")");
  // a is Q column-major: Q(i, j) = a[j·d + i]; P = Q row-major.
  std::vector<float> p(d * d);
  for (size_t i = 0; i < d; ++i)
    for (size_t j = 0; j < d; ++j) p[i * d + j] = float(a[j * d + i] * sign[j]);
  return p;
}

// In-place normalised Walsh–Hadamard transform of v[0, len), len a power of two. Additions and
// subtractions only (then one scale), so every vector unit gives the same bits. Stages h = 1, 2, 4 run per
// block of 8 (each touches its block only), the wider ones 8 lanes at a time; every butterfly adds and subtracts
// the same two values as the plain stage-by-stage loop, so the result is that loop's to the bit.
typedef float Float8 __attribute__((vector_size(32)));

TESSERA_CLONE_PER_ISA void walsh_hadamard(float* v, size_t len) {
  if (len < 8) {
    for (size_t h = 1; h < len; h *= 2)
      for (size_t i = 0; i < len; i += 2 * h)
        for (size_t j = i; j < i + h; ++j) {
          const float a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
  } else {
    for (size_t i = 0; i < len; i += 8) {
      // Stages 1, 2, 4 inside one register: lane j takes a + b or a − b of the same pair as the plain loop.
      Float8 w, a, b, sum, difference;
      std::memcpy(&w, v + i, sizeof w);
      a = __builtin_shufflevector(w, w, 0, 0, 2, 2, 4, 4, 6, 6);
      b = __builtin_shufflevector(w, w, 1, 1, 3, 3, 5, 5, 7, 7);
      sum = a + b, difference = a - b;
      w = __builtin_shufflevector(sum, difference, 0, 9, 2, 11, 4, 13, 6, 15);
      a = __builtin_shufflevector(w, w, 0, 1, 0, 1, 4, 5, 4, 5);
      b = __builtin_shufflevector(w, w, 2, 3, 2, 3, 6, 7, 6, 7);
      sum = a + b, difference = a - b;
      w = __builtin_shufflevector(sum, difference, 0, 1, 10, 11, 4, 5, 14, 15);
      a = __builtin_shufflevector(w, w, 0, 1, 2, 3, 0, 1, 2, 3);
      b = __builtin_shufflevector(w, w, 4, 5, 6, 7, 4, 5, 6, 7);
      sum = a + b, difference = a - b;
      w = __builtin_shufflevector(sum, difference, 0, 1, 2, 3, 12, 13, 14, 15);
      std::memcpy(v + i, &w, sizeof w);
    }
    for (size_t h = 8; h < len; h *= 2)
      for (size_t i = 0; i < len; i += 2 * h)
        for (size_t j = i; j < i + h; j += 8) {
          Float8 a, b;
          std::memcpy(&a, v + j, sizeof a);
          std::memcpy(&b, v + j + h, sizeof b);
          const Float8 sum = a + b, difference = a - b;
          std::memcpy(v + j, &sum, sizeof sum);
          std::memcpy(v + j + h, &difference, sizeof difference);
        }
  }
  const float scale = float(1.0 / std::sqrt(double(len)));
  for (size_t j = 0; j < len; ++j) v[j] *= scale;
}

// The block round r transforms: the leading one in even rounds, the trailing one in odd rounds.
size_t block_start(size_t d, size_t len, int round) { return round % 2 ? d - len : 0; }

}  // namespace

RotationKind parse_rotation_kind(const std::string& name) {
  if (name == "dense") return RotationKind::dense;
  if (name == "hadamard") return RotationKind::hadamard;
  TESSERA_THROW_ARG("rotation must be 'dense' or 'hadamard', got '" << name << "'");
}

const char* rotation_kind_name(RotationKind kind) { return kind == RotationKind::dense ? "dense" : "hadamard"; }

RandomRotation::RandomRotation(size_t d, RotationKind kind, uint64_t seed) : d_(d), kind_(kind) {
  TESSERA_CHECK_ARG(d >= 1, "a rotation needs dimension d ≥ 1, got " << d);
  Rng rng(derive_seed(seed, 0x707a7e));
  if (kind == RotationKind::dense) {
    TESSERA_CHECK_ARG(d <= 16384, "a dense rotation of d = " << d << " would hold " << d * d * 4 / (1 << 20)
                                                              << " MiB: use the hadamard rotation");
    params_ = haar_orthogonal(d, rng);
  } else {
    params_.resize(kHadamardRounds * d);
    for (size_t i = 0; i < params_.size(); i += 64) {
      const uint64_t bits = rng();
      for (size_t b = 0; b < 64 && i + b < params_.size(); ++b) params_[i + b] = (bits >> b) & 1 ? -1.0f : 1.0f;
    }
  }
}

RandomRotation RandomRotation::from_parameters(size_t d, RotationKind kind, std::vector<float> parameters) {
  TESSERA_CHECK_ARG(d >= 1, "a rotation needs dimension d ≥ 1, got " << d);
  RandomRotation r;
  r.d_ = d;
  r.kind_ = kind;
  if (kind == RotationKind::dense) {
    TESSERA_CHECK_ARG(parameters.size() == d * d, "a dense rotation of d = " << d << " has " << d * d
                                                                             << " entries, got " << parameters.size());
    for (size_t i = 0; i < d; ++i) {
      double norm = 0;
      for (size_t j = 0; j < d; ++j) {
        const float v = parameters[i * d + j];
        TESSERA_CHECK_ARG(std::isfinite(v), "rotation matrix entry (" << i << ", " << j << ") is not finite");
        norm += double(v) * v;
      }
      TESSERA_CHECK_ARG(std::abs(norm - 1.0) < 1e-3, "rotation matrix row " << i << " has squared norm " << norm
                                                                             << ", not 1: not an orthogonal matrix");
    }
  } else {
    TESSERA_CHECK_ARG(parameters.size() == kHadamardRounds * d,
                      "a hadamard rotation of d = " << d << " has " << kHadamardRounds * d << " signs, got "
                                                    << parameters.size());
    for (size_t i = 0; i < parameters.size(); ++i)
      TESSERA_CHECK_ARG(parameters[i] == 1.0f || parameters[i] == -1.0f,
                        "hadamard rotation sign " << i << " is " << parameters[i] << ", not ±1");
  }
  r.params_ = std::move(parameters);
  return r;
}

void RandomRotation::apply(size_t n, const float* x, float* y) const {
  TESSERA_CHECK_ARG(d_ > 0, "the rotation is empty (default-constructed)");
  if (n == 0) return;
  const size_t d = d_;
  if (kind_ == RotationKind::dense) {
    std::vector<float> copy;
    if (x == y) copy.assign(x, x + n * d), x = copy.data();
    detail::gemm_abt(n, d, d, 1.0f, x, d, params_.data(), d, 0.0f, y, d);
    return;
  }
  const size_t len = leading_power_of_two(d);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads()) if (n > kRowsPerTask)
  for (ptrdiff_t i = 0; i < (ptrdiff_t)n; ++i) {
    float* v = y + size_t(i) * d;
    if (v != x + size_t(i) * d) std::memcpy(v, x + size_t(i) * d, d * sizeof(float));
    for (int r = 0; r < kHadamardRounds; ++r) {
      const float* s = params_.data() + size_t(r) * d;
      for (size_t j = 0; j < d; ++j) v[j] *= s[j];
      walsh_hadamard(v + block_start(d, len, r), len);
    }
  }
}

void RandomRotation::apply_transpose(size_t n, const float* y, float* x) const {
  TESSERA_CHECK_ARG(d_ > 0, "the rotation is empty (default-constructed)");
  if (n == 0) return;
  const size_t d = d_;
  if (kind_ == RotationKind::dense) {
    std::vector<float> copy;
    if (x == y) copy.assign(y, y + n * d), y = copy.data();
    // x_i = Pᵀ y_i, i.e. X = Y P: Pᵀ's rows are P's columns.
    std::vector<float> pt(d * d);
    for (size_t i = 0; i < d; ++i)
      for (size_t j = 0; j < d; ++j) pt[j * d + i] = params_[i * d + j];
    detail::gemm_abt(n, d, d, 1.0f, y, d, pt.data(), d, 0.0f, x, d);
    return;
  }
  // The rounds undone in reverse order: each normalised Hadamard block is its own inverse, as are the signs.
  const size_t len = leading_power_of_two(d);
#pragma omp parallel for schedule(static) num_threads(::tessera::num_threads()) if (n > kRowsPerTask)
  for (ptrdiff_t i = 0; i < (ptrdiff_t)n; ++i) {
    float* v = x + size_t(i) * d;
    if (v != y + size_t(i) * d) std::memcpy(v, y + size_t(i) * d, d * sizeof(float));
    for (int r = kHadamardRounds - 1; r >= 0; --r) {
      walsh_hadamard(v + block_start(d, len, r), len);
      const float* s = params_.data() + size_t(r) * d;
      for (size_t j = 0; j < d; ++j) v[j] *= s[j];
    }
  }
}

std::vector<float> RandomRotation::matrix() const {
  // Column j of P is P e_j: rotate the identity's rows, then transpose.
  std::vector<float> e(d_ * d_, 0.0f), cols(d_ * d_), p(d_ * d_);
  for (size_t j = 0; j < d_; ++j) e[j * d_ + j] = 1.0f;
  apply(d_, e.data(), cols.data());
  for (size_t j = 0; j < d_; ++j)
    for (size_t i = 0; i < d_; ++i) p[i * d_ + j] = cols[j * d_ + i];
  return p;
}

}  // namespace tessera
