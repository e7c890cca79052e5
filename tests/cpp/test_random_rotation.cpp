#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/quant/random_rotation.h"

using namespace tessera;

namespace {

std::vector<float> gaussian(size_t n, size_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(n * d);
  for (float& v : x) v = g(rng);
  return x;
}

struct Case {
  RotationKind kind;
  size_t d;
};
// gtest would otherwise print the bytes, padding included (uninitialised under valgrind).
void PrintTo(const Case& c, std::ostream* os) { *os << rotation_kind_name(c.kind) << " d=" << c.d; }

class Rotations : public ::testing::TestWithParam<Case> {};

}  // namespace

// P Pᵀ = I, and apply() is multiplication by matrix().
TEST_P(Rotations, OrthogonalAndApplyIsTheMatrix) {
  const auto [kind, d] = GetParam();
  const RandomRotation r(d, kind, 11);
  ASSERT_EQ(r.dim(), d);
  const std::vector<float> p = r.matrix();
  for (size_t i = 0; i < d; ++i)
    for (size_t j = 0; j < d; ++j) {
      double s = 0;
      for (size_t t = 0; t < d; ++t) s += double(p[i * d + t]) * p[j * d + t];
      ASSERT_NEAR(s, i == j ? 1.0 : 0.0, 2e-5) << "rows " << i << ", " << j;
    }
  const size_t n = 9;
  const auto x = gaussian(n, d, 5);
  std::vector<float> y(n * d);
  r.apply(n, x.data(), y.data());
  for (size_t i = 0; i < n; ++i)
    for (size_t a = 0; a < d; ++a) {
      double s = 0;
      for (size_t t = 0; t < d; ++t) s += double(p[a * d + t]) * x[i * d + t];
      ASSERT_NEAR(y[i * d + a], s, 1e-4 * (1 + std::abs(s))) << "row " << i << ", coordinate " << a;
    }
}

// apply_transpose undoes apply (also in place), norms are kept.
TEST_P(Rotations, TransposeInvertsAndNormsAreKept) {
  const auto [kind, d] = GetParam();
  const RandomRotation r(d, kind, 12);
  const size_t n = 70;  // past one parallel task
  const auto x = gaussian(n, d, 6);
  std::vector<float> y(n * d), back(n * d);
  r.apply(n, x.data(), y.data());
  r.apply_transpose(n, y.data(), back.data());
  for (size_t i = 0; i < n; ++i) {
    double nx = 0, ny = 0;
    for (size_t t = 0; t < d; ++t) {
      ASSERT_NEAR(back[i * d + t], x[i * d + t], 1e-5 * (1 + std::abs(x[i * d + t])));
      nx += double(x[i * d + t]) * x[i * d + t];
      ny += double(y[i * d + t]) * y[i * d + t];
    }
    EXPECT_NEAR(ny, nx, 1e-5 * nx);
  }
  std::vector<float> inplace = x;
  r.apply(n, inplace.data(), inplace.data());
  EXPECT_EQ(inplace, y);
  r.apply_transpose(n, inplace.data(), inplace.data());
  EXPECT_EQ(inplace, back);
}

// A basis vector's mass is spread over the coordinates (the point of rotating): none keeps more than a few
// times 1/√d of it, as for a uniformly random unit vector. (Sign-and-Hadamard rounds map a basis vector onto
// a lattice, where sums of ±1 cancel exactly: some coordinates are 0, about 10–15% at d = 64 to 100.)
TEST_P(Rotations, SpreadsBasisVectors) {
  const auto [kind, d] = GetParam();
  if (d < 64) GTEST_SKIP() << "spread is a large-d property";
  const RandomRotation r(d, kind, 13);
  std::vector<float> e(d), y(d);
  for (size_t j : {size_t(0), d / 2, d - 1}) {
    std::fill(e.begin(), e.end(), 0.0f);
    e[j] = 1.0f;
    r.apply(1, e.data(), y.data());
    float peak = 0;
    size_t small = 0;
    for (float v : y) peak = std::max(peak, std::abs(v)), small += std::abs(v) < 1e-6f;
    EXPECT_LT(peak, 5.0 / std::sqrt(double(d))) << "basis vector " << j;
    EXPECT_LT(small, d / 4) << "basis vector " << j << " left " << small << " coordinates empty";
  }
}

INSTANTIATE_TEST_SUITE_P(KindsAndDims, Rotations,
                         ::testing::Values(Case{RotationKind::hadamard, 1}, Case{RotationKind::hadamard, 2},
                                           Case{RotationKind::hadamard, 7}, Case{RotationKind::hadamard, 64},
                                           Case{RotationKind::hadamard, 100}, Case{RotationKind::hadamard, 128},
                                           Case{RotationKind::hadamard, 784}, Case{RotationKind::dense, 1},
                                           Case{RotationKind::dense, 7}, Case{RotationKind::dense, 100},
                                           Case{RotationKind::dense, 128}),
                         [](const auto& info) {
                           return std::string(rotation_kind_name(info.param.kind)) + "_" +
                                  std::to_string(info.param.d);
                         });

TEST(RandomRotation, SeededAndRestoredFromParameters) {
  for (RotationKind kind : {RotationKind::hadamard, RotationKind::dense}) {
    const RandomRotation a(50, kind, 3), b(50, kind, 3), c(50, kind, 4);
    EXPECT_EQ(a.parameters(), b.parameters());
    EXPECT_NE(a.parameters(), c.parameters());
    const RandomRotation restored = RandomRotation::from_parameters(50, kind, a.parameters());
    EXPECT_EQ(restored.matrix(), a.matrix());
  }
}

TEST(RandomRotation, BadInputIsRefused) {
  EXPECT_THROW(RandomRotation(0, RotationKind::hadamard, 1), InvalidArgument);
  EXPECT_THROW(parse_rotation_kind("fft"), InvalidArgument);
  EXPECT_EQ(parse_rotation_kind("dense"), RotationKind::dense);
  const RandomRotation h(10, RotationKind::hadamard, 1), dense(10, RotationKind::dense, 1);
  auto signs = h.parameters();
  signs[4] = 0.5f;
  EXPECT_THROW(RandomRotation::from_parameters(10, RotationKind::hadamard, signs), InvalidArgument);
  EXPECT_THROW(RandomRotation::from_parameters(11, RotationKind::hadamard, h.parameters()), InvalidArgument);
  auto m = dense.parameters();
  m[3] = NAN;
  EXPECT_THROW(RandomRotation::from_parameters(10, RotationKind::dense, m), InvalidArgument);
  m = dense.parameters();
  m[3] *= 2;
  EXPECT_THROW(RandomRotation::from_parameters(10, RotationKind::dense, m), InvalidArgument);
  EXPECT_THROW(RandomRotation().apply(1, nullptr, nullptr), InvalidArgument);
}

// The Hadamard kind equals, to the bit, the plain definition: per round, signs, then the stage-by-stage
// butterflies (h = 1, 2, 4, …) on the round's block and one scale by 1/√L (the vectorised transform only
// regroups those butterflies). Dimensions below, at and above the 8-lane width, powers of two or not.
TEST(RandomRotation, HadamardEqualsThePlainTransformToTheBit) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g;
  for (size_t d : {1, 2, 5, 8, 12, 16, 100, 128, 200, 784}) {
    const RandomRotation r(d, RotationKind::hadamard, 77);
    size_t len = 1;
    while (len * 2 <= d) len *= 2;
    std::vector<float> x(3 * d), got(3 * d);
    for (float& v : x) v = g(rng);
    r.apply(3, x.data(), got.data());
    for (size_t row = 0; row < 3; ++row) {
      std::vector<float> v(x.begin() + row * d, x.begin() + (row + 1) * d);
      for (int round = 0; round < 3; ++round) {
        for (size_t j = 0; j < d; ++j) v[j] *= r.parameters()[size_t(round) * d + j];
        float* b = v.data() + (round % 2 ? d - len : 0);
        for (size_t h = 1; h < len; h *= 2)
          for (size_t i = 0; i < len; i += 2 * h)
            for (size_t j = i; j < i + h; ++j) {
              const float p = b[j], q = b[j + h];
              b[j] = p + q, b[j + h] = p - q;
            }
        const float scale = float(1.0 / std::sqrt(double(len)));
        for (size_t j = 0; j < len; ++j) b[j] *= scale;
      }
      for (size_t j = 0; j < d; ++j) ASSERT_EQ(got[row * d + j], v[j]) << "d " << d << " row " << row << " j " << j;
    }
  }
}
