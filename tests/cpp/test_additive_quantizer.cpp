// The additive-quantizer base: faiss's shapes and code layout, norm encodings, lookup tables and the
// distances of every search type, against direct computations in double.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "test_helpers.h"
#include "tessera/cluster/kmeans1d.h"
#include "tessera/quant/residual_quantizer.h"
#include "tessera/quant/serialization.h"

using namespace tessera;
using tessera::testing::gaussian_mixture;

namespace {

const SearchType kAllTypes[] = {SearchType::ST_decompress,  SearchType::ST_LUT_nonorm,  SearchType::ST_norm_from_LUT,
                                SearchType::ST_norm_float,  SearchType::ST_norm_qint8,  SearchType::ST_norm_qint4,
                                SearchType::ST_norm_cqint8, SearchType::ST_norm_cqint4, SearchType::ST_norm_lsq2x4,
                                SearchType::ST_norm_rq2x4};

ResidualQuantizerParams quick() {
  ResidualQuantizerParams p;
  p.n_init = 1;
  p.max_iter = 10;
  return p;
}

std::vector<int32_t> random_codes(const AdditiveQuantizer& q, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> c(n * q.num_codebooks());
  for (size_t i = 0; i < c.size(); ++i)
    c[i] = (int32_t)std::uniform_int_distribution<size_t>(0, q.codebook_sizes()[i % q.num_codebooks()] - 1)(rng);
  return c;
}

// Σ_m C_m[c_m] in double.
std::vector<double> ref_decode(const AdditiveQuantizer& q, const int32_t* c) {
  std::vector<double> x(q.dim(), 0.0);
  for (size_t m = 0; m < q.num_codebooks(); ++m)
    for (size_t j = 0; j < q.dim(); ++j) x[j] += q.codebook(m)(c[m], j);
  return x;
}

double dot(const std::vector<double>& a, const float* b) {
  double s = 0;
  for (size_t j = 0; j < a.size(); ++j) s += a[j] * b[j];
  return s;
}

double sqnorm(const std::vector<double>& a) {
  double s = 0;
  for (double t : a) s += t * t;
  return s;
}

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception";
  return {};
}

}  // namespace

TEST(SearchType, NamesValuesAndNormBits) {
  for (int v = 0; v < kNumSearchTypes; ++v) {
    const SearchType st = search_type_from_int(v);
    EXPECT_EQ(static_cast<int>(st), v);
    EXPECT_EQ(parse_search_type(search_type_name(st)), st);
    EXPECT_EQ(parse_search_type(search_type_name(st).substr(3)), st);
  }
  EXPECT_EQ(search_type_name(SearchType::ST_norm_float), "ST_norm_float");
  EXPECT_EQ(static_cast<int>(parse_search_type("ST_norm_rq2x4")), 9);
  EXPECT_EQ(static_cast<int>(parse_search_type("ST_norm_cqint8")), 6);
  const size_t bits[] = {0, 0, 0, 32, 8, 4, 8, 4, 8, 8};
  for (int v = 0; v < kNumSearchTypes; ++v) EXPECT_EQ(search_type_norm_bits(search_type_from_int(v)), bits[v]) << v;
  EXPECT_NE(error_of<InvalidArgument>([] { parse_search_type("ST_norm_int8"); }).find("ST_norm_qint8"),
            std::string::npos);
  EXPECT_THROW(search_type_from_int(10), InvalidArgument);
  EXPECT_THROW(search_type_from_int(-1), InvalidArgument);
}

TEST(AdditiveQuantizer, ShapesAndCodeSizesAsFaiss) {
  // lsq.md §6: d = 16, M = 3, nbits = 4 → 2 / 6 / 3 / 2 bytes for no norm / float / 8-bit / 4-bit norms.
  const std::pair<SearchType, size_t> expect[] = {
      {SearchType::ST_decompress, 2},  {SearchType::ST_LUT_nonorm, 2},  {SearchType::ST_norm_from_LUT, 2},
      {SearchType::ST_norm_float, 6},  {SearchType::ST_norm_qint8, 3},  {SearchType::ST_norm_cqint8, 3},
      {SearchType::ST_norm_lsq2x4, 3}, {SearchType::ST_norm_rq2x4, 3},  {SearchType::ST_norm_qint4, 2},
      {SearchType::ST_norm_cqint4, 2}};
  for (auto [st, bytes] : expect) {
    ResidualQuantizer q(16, 3, 4, st);
    EXPECT_EQ(q.code_size(), bytes) << search_type_name(st);
    EXPECT_EQ(q.index_bits(), 12u);
    EXPECT_EQ(q.norm_bits(), search_type_norm_bits(st));
    EXPECT_EQ(q.tot_bits(), 12u + q.norm_bits());  // faiss counts the norm in tot_bits
  }
  ResidualQuantizer q(8, {16, 5, 256});
  EXPECT_EQ(q.nbits(0), 4u);
  EXPECT_EQ(q.nbits(1), 3u);
  EXPECT_EQ(q.nbits(2), 8u);
  EXPECT_EQ(q.codebook_offsets(), (std::vector<size_t>{0, 16, 21, 277}));
  EXPECT_EQ(q.total_codebook_size(), 277u);
  EXPECT_EQ(q.tot_bits(), 15u);
  EXPECT_EQ(q.index_bits(), 15u);
  EXPECT_EQ(q.code_size(), 2u);
  EXPECT_NE(error_of<InvalidArgument>([] { ResidualQuantizer(8, 2, 17); }).find("1..16"), std::string::npos);
  EXPECT_THROW(ResidualQuantizer(8, 2, 0), InvalidArgument);
  EXPECT_THROW(ResidualQuantizer(8, 0, 4), InvalidArgument);
}

TEST(AdditiveQuantizer, FlatCodebooksAreFaissLayout) {
  ResidualQuantizer q(5, {4, 3});
  FloatMatrix flat(7, 5);
  for (size_t i = 0; i < flat.size(); ++i) flat.data()[i] = float(i) * 0.25f;
  q.set_codebooks(flat.view());
  ASSERT_TRUE(q.is_trained());
  EXPECT_EQ(q.codebooks_flat().rows, 7u);
  for (size_t m = 0; m < 2; ++m)
    for (size_t k = 0; k < q.codebook_sizes()[m]; ++k)
      for (size_t j = 0; j < 5; ++j) EXPECT_EQ(q.codebook(m)(k, j), flat(q.codebook_offsets()[m] + k, j));
  // The list form fills the same array.
  ResidualQuantizer r(5, {4, 3});
  r.set_codebooks({FloatMatrix::copy_of(q.codebook(0)), FloatMatrix::copy_of(q.codebook(1))});
  EXPECT_EQ(0, std::memcmp(r.codebooks_flat().data, flat.data(), flat.size() * sizeof(float)));
  EXPECT_THROW(r.set_codebooks(FloatMatrix(6, 5).view()), InvalidArgument);
}

TEST(NormEncoder, QintFormulaAndClamp) {
  for (SearchType st : {SearchType::ST_norm_qint8, SearchType::ST_norm_qint4}) {
    const int L = st == SearchType::ST_norm_qint8 ? 256 : 16;
    NormEncoder e(st);
    EXPECT_FALSE(e.is_trained());
    EXPECT_THROW(e.encode(1.0f), InvalidArgument);
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<float> u(3.0f, 40.0f);
    std::vector<float> norms(1000);
    for (auto& v : norms) v = u(rng);
    e.train(norms.size(), norms.data());
    const float mn = *std::min_element(norms.begin(), norms.end()), mx = *std::max_element(norms.begin(), norms.end());
    EXPECT_EQ(e.norm_min(), mn);
    EXPECT_EQ(e.norm_max(), mx);
    for (float v : norms) {
      const double t = (double(v) - mn) / (double(mx) - mn) * L;
      const double frac = t - std::floor(t);
      if (frac < 1e-4 || frac > 1 - 1e-4) continue;  // float vs double rounding right at a bin edge
      const int ref = std::clamp((int)std::floor(t), 0, L - 1);
      EXPECT_EQ(e.encode(v), (uint64_t)ref) << v;
    }
    EXPECT_EQ(e.encode(mn - 5), 0u);
    EXPECT_EQ(e.encode(mx), uint64_t(L - 1));
    EXPECT_EQ(e.encode(mx + 100), uint64_t(L - 1));
    for (int c = 0; c < L; ++c) EXPECT_NEAR(e.decode(c), (c + 0.5) / L * (double(mx) - mn) + mn, 1e-4);
    EXPECT_THROW(e.decode(L), InvalidArgument);
  }
  // One distinct training value: every code is 0 and decodes to it (faiss would divide by zero).
  NormEncoder e(SearchType::ST_norm_qint8);
  const float same[] = {2.5f, 2.5f};
  e.train(2, same);
  EXPECT_EQ(e.encode(7.0f), 0u);
  EXPECT_EQ(e.decode(0), 2.5f);
}

TEST(NormEncoder, CqintIsExactOneDimensionalKMeans) {
  for (SearchType st : {SearchType::ST_norm_cqint4, SearchType::ST_norm_cqint8}) {
    const size_t k = st == SearchType::ST_norm_cqint4 ? 16 : 256;
    std::mt19937_64 rng(11);
    std::gamma_distribution<float> g(2.0f, 3.0f);
    std::vector<float> norms(3000);
    for (auto& v : norms) v = g(rng);
    NormEncoder e(st);
    e.train(norms.size(), norms.data());
    ASSERT_EQ(e.table().size(), k);
    const KMeans1DResult ref = kmeans1d(norms.size(), norms.data(), k);
    for (size_t c = 0; c < k; ++c) EXPECT_NEAR(e.table()[c], ref.centroids[c], 1e-5 * (1 + std::abs(ref.centroids[c])));
    // Encoding is the nearest centre (brute force), decoding gives it back.
    for (size_t i = 0; i < 500; ++i) {
      const float v = norms[i] * 1.01f;
      size_t best = 0;
      for (size_t c = 1; c < k; ++c)
        if (std::abs(v - e.table()[c]) < std::abs(v - e.table()[best])) best = c;
      EXPECT_EQ(std::abs(e.decode(e.encode(v)) - v), std::abs(e.table()[best] - v));
      EXPECT_EQ(e.encode_qcint(v), e.encode(v));
      EXPECT_EQ(e.decode_qcint(e.encode_qcint(v)), e.decode(e.encode(v)));
    }
    // Re-training replaces the centres (faiss appends).
    e.train(norms.size(), norms.data());
    EXPECT_EQ(e.table().size(), k);
  }
  // Fewer training norms than centres still gives a full table whose extra entries repeat the top centre.
  NormEncoder e(SearchType::ST_norm_cqint4);
  const float few[] = {1, 2, 4};
  e.train(3, few);
  ASSERT_EQ(e.table().size(), 16u);
  EXPECT_EQ(e.decode(e.encode(3.9f)), 4.0f);
  EXPECT_LT(e.encode(3.9f), 3u);
}

TEST(NormEncoder, TwoByFourBitTableIsSumsAndBeatsResidualStart) {
  std::mt19937_64 rng(3);
  std::gamma_distribution<float> g(4.0f, 10.0f);
  std::vector<float> norms(4000);
  for (auto& v : norms) v = g(rng);
  // The residual start computed here independently: exact 16-means, then 16-means of the residuals,
  // then every code re-chosen over all 256 sums.
  const KMeans1DResult l0 = kmeans1d(norms.size(), norms.data(), 16);
  std::vector<float> res(norms.size());
  for (size_t i = 0; i < norms.size(); ++i) {
    double b = l0.centroids[0];
    for (double c : l0.centroids)
      if (std::abs(norms[i] - c) < std::abs(norms[i] - b)) b = c;
    res[i] = float(norms[i] - b);
  }
  const KMeans1DResult l1 = kmeans1d(res.size(), res.data(), 16);
  double start_err = 0;
  for (float v : norms) {
    double b = std::numeric_limits<double>::infinity();
    for (double a : l0.centroids)
      for (double c : l1.centroids) b = std::min(b, (v - a - c) * (v - a - c));
    start_err += b;
  }
  for (SearchType st : {SearchType::ST_norm_lsq2x4, SearchType::ST_norm_rq2x4}) {
    NormEncoder e(st);
    e.train(norms.size(), norms.data());
    ASSERT_EQ(e.tabs().size(), 32u);
    ASSERT_EQ(e.table().size(), 256u);
    for (size_t i = 0; i < 16; ++i)
      for (size_t j = 0; j < 16; ++j) EXPECT_EQ(e.table()[i * 16 + j], e.tabs()[j] + e.tabs()[16 + i]);
    double err = 0;
    for (float v : norms) {
      const uint64_t c = e.encode(v);
      ASSERT_LT(c, 256u);
      float best = std::numeric_limits<float>::infinity();
      for (float t : e.table()) best = std::min(best, std::abs(v - t));
      EXPECT_EQ(std::abs(v - e.decode(c)), best);
      err += double(v - e.decode(c)) * (v - e.decode(c));
    }
    EXPECT_LE(err, start_err * (1 + 1e-6)) << search_type_name(st);
  }
}

TEST(AdditiveQuantizer, PackLayoutWithNormsAndRoundTrip) {
  const size_t n = 300;
  for (SearchType st : kAllTypes) {
    ResidualQuantizer q(6, {16, 8, 32}, quick(), st);  // 4 + 3 + 5 = 12 bits of codes
    const auto x = gaussian_mixture(800, 6, 20, 4);
    q.train(x.view());
    const auto codes = random_codes(q, n, 9);
    std::vector<float> norms(n);
    for (size_t i = 0; i < n; ++i) norms[i] = float(sqnorm(ref_decode(q, codes.data() + i * 3))) * 1.05f;
    std::vector<uint8_t> packed(n * q.code_size());
    q.pack_codes(n, codes.data(), packed.data(), -1, norms.data());
    for (size_t i = 0; i < n; ++i) {
      // Reference: the codes then the norm code, as one little-endian integer (≤ 44 bits here).
      uint64_t ref = 0;
      size_t shift = 0;
      const size_t bits[] = {4, 3, 5};
      for (size_t m = 0; m < 3; ++m) ref |= uint64_t(codes[i * 3 + m]) << shift, shift += bits[m];
      if (q.norm_bits()) ref |= q.encode_norm(norms[i]) << shift;
      for (size_t b = 0; b < q.code_size(); ++b)
        ASSERT_EQ(packed[i * q.code_size() + b], uint8_t(ref >> (8 * b))) << search_type_name(st) << " row " << i;
      if (q.norm_bits())
        EXPECT_EQ(q.decode_norm_from_packed(packed.data() + i * q.code_size()), q.decode_norm(q.encode_norm(norms[i])));
    }
    std::vector<int32_t> back(n * 3);
    q.unpack_codes(packed.data(), n, back.data());
    EXPECT_EQ(back, codes);
    FloatMatrix dec(n, 6), dec2(n, 6);
    q.decode_packed(packed.data(), n, dec.data());
    q.decode(codes.data(), n, dec2.data());
    EXPECT_EQ(0, std::memcmp(dec.data(), dec2.data(), dec.size() * sizeof(float)));
  }
}

TEST(AdditiveQuantizer, PackComputesNormsOfReconstructionsPlusCentroids) {
  ResidualQuantizer q(6, 2, 3, SearchType::ST_norm_float, quick());
  q.train(gaussian_mixture(500, 6, 10, 5).view());
  const size_t n = 50;
  const auto codes = random_codes(q, n, 2);
  const auto cent = gaussian_mixture(n, 6, 3, 6);
  std::vector<uint8_t> a(n * q.code_size()), b(a.size());
  q.pack_codes(n, codes.data(), a.data());
  q.pack_codes(n, codes.data(), b.data(), -1, nullptr, cent.data());
  for (size_t i = 0; i < n; ++i) {
    auto x = ref_decode(q, codes.data() + i * 2);
    EXPECT_NEAR(q.decode_norm_from_packed(a.data() + i * q.code_size()), sqnorm(x), 1e-5 * (1 + sqnorm(x)));
    for (size_t j = 0; j < 6; ++j) x[j] += cent(i, j);
    EXPECT_NEAR(q.decode_norm_from_packed(b.data() + i * q.code_size()), sqnorm(x), 1e-5 * (1 + sqnorm(x)));
  }
  // A row stride wider than M.
  std::vector<int32_t> wide(n * 4, 0);
  for (size_t i = 0; i < n; ++i) wide[i * 4] = codes[i * 2], wide[i * 4 + 1] = codes[i * 2 + 1];
  std::vector<uint8_t> c(a.size());
  q.pack_codes(n, wide.data(), c.data(), 4);
  EXPECT_EQ(a, c);
  std::vector<float> norms(n, 1.0f);
  EXPECT_THROW(q.pack_codes(n, codes.data(), c.data(), -1, norms.data(), cent.data()), InvalidArgument);
  auto badc = codes;
  badc[3] = 8;
  EXPECT_THROW(q.pack_codes(n, badc.data(), c.data()), InvalidArgument);
}

TEST(AdditiveQuantizer, NormNeededBeforeTraining) {
  ResidualQuantizer q(4, 2, 2, SearchType::ST_norm_qint8);
  FloatMatrix books(8, 4);
  for (size_t i = 0; i < books.size(); ++i) books.data()[i] = float(i % 5);
  q.set_codebooks(books.view());
  const int32_t codes[] = {1, 2};
  std::vector<uint8_t> out(q.code_size());
  EXPECT_NE(error_of<InvalidArgument>([&] { q.pack_codes(1, codes, out.data()); }).find("train_norm"),
            std::string::npos);
  const float norms[] = {1.0f, 9.0f};
  q.train_norm(2, norms);
  q.pack_codes(1, codes, out.data());
  // A new search type restarts the norm encoder: packing needs train_norm again.
  q.set_search_type(SearchType::ST_norm_cqint4);
  EXPECT_EQ(q.code_size(), 1u);  // 2 + 2 bits of codes, 4 of norm
  EXPECT_THROW(q.pack_codes(1, codes, out.data()), InvalidArgument);
  q.set_search_type(SearchType::ST_norm_float);
  out.resize(q.code_size());  // 4 code bits + 32 norm bits
  q.pack_codes(1, codes, out.data());
  q.set_search_type(SearchType::ST_LUT_nonorm);
  EXPECT_THROW(q.decode_norm_from_packed(out.data()), InvalidArgument);  // no norm stored
  EXPECT_THROW(q.encode_norm(1.0f), InvalidArgument);
}

TEST(AdditiveQuantizer, LutMatchesDotProducts) {
  ResidualQuantizer q(12, {16, 8, 4}, quick());
  q.train(gaussian_mixture(600, 12, 15, 7).view());
  const auto xq = gaussian_mixture(9, 12, 3, 8);
  const size_t total = q.total_codebook_size(), ld = total + 5;
  std::vector<float> lut(9 * ld, -7.0f);
  q.compute_LUT(9, xq.data(), lut.data(), 2.5f, (int64_t)ld);
  const auto flat = q.codebooks_flat();
  for (size_t i = 0; i < 9; ++i) {
    for (size_t j = 0; j < total; ++j) {
      double s = 0;
      for (size_t t = 0; t < 12; ++t) s += double(xq(i, t)) * flat(j, t);
      EXPECT_NEAR(lut[i * ld + j], 2.5 * s, 1e-4 * (1 + std::abs(s)));
    }
    for (size_t j = total; j < ld; ++j) EXPECT_EQ(lut[i * ld + j], -7.0f);  // padding untouched
  }
  std::vector<float> cn(total);
  q.compute_centroid_norms(cn.data());
  for (size_t j = 0; j < total; ++j) {
    double s = 0;
    for (size_t t = 0; t < 12; ++t) s += double(flat(j, t)) * flat(j, t);
    EXPECT_NEAR(cn[j], s, 1e-5 * (1 + s));
  }
  // Cross products: block m (m ≥ 1) holds ⟨earlier codeword j, C_m[k]⟩ at row j, column k.
  q.compute_codebook_tables();
  const auto& cp = q.codebook_cross_products();
  ASSERT_EQ(cp.size(), 16u * 8 + 24u * 4);
  size_t at = 0;
  for (size_t m = 1; m < 3; ++m) {
    const size_t K = q.codebook_sizes()[m], off = q.codebook_offsets()[m];
    for (size_t j = 0; j < off; ++j)
      for (size_t k = 0; k < K; ++k) {
        double s = 0;
        for (size_t t = 0; t < 12; ++t) s += double(flat(j, t)) * flat(off + k, t);
        EXPECT_NEAR(cp[at + j * K + k], s, 1e-4 * (1 + std::abs(s)));
      }
    at += off * K;
  }
}

TEST(AdditiveQuantizer, EverySearchTypeDistanceFromLut) {
  const auto x = gaussian_mixture(1500, 8, 30, 12);
  const auto xq = gaussian_mixture(5, 8, 5, 13);
  for (SearchType st : kAllTypes) {
    ResidualQuantizer q(8, 3, 3, st, quick());
    q.train(x.view());
    const size_t n = 200, cs = q.code_size(), total = q.total_codebook_size();
    std::vector<uint8_t> packed(n * cs);
    q.encode_packed(x.view().rows_slice(0, n), packed.data());
    std::vector<int32_t> codes(n * 3);
    q.unpack_codes(packed.data(), n, codes.data());
    std::vector<float> lut(5 * total);
    q.compute_LUT(5, xq.data(), lut.data());
    std::vector<float> ip(n), l2(n);
    for (size_t i = 0; i < 5; ++i) {
      q.compute_distances_LUT(n, packed.data(), lut.data() + i * total, true, ip.data());
      q.compute_distances_LUT(n, packed.data(), lut.data() + i * total, false, l2.data());
      const std::vector<double> qi(xq.row(i), xq.row(i) + 8);
      for (size_t c = 0; c < n; ++c) {
        const auto xr = ref_decode(q, codes.data() + c * 3);
        const double qx = dot(xr, xq.row(i)), xn = sqnorm(xr), exact = sqnorm(qi) - 2 * qx + xn;
        const double tol = 1e-4 * (1 + xn + sqnorm(qi));
        EXPECT_NEAR(ip[c], qx, tol);
        switch (st) {
          case SearchType::ST_LUT_nonorm: EXPECT_NEAR(l2[c], -qx, tol); break;
          case SearchType::ST_decompress:
          case SearchType::ST_norm_from_LUT:
          case SearchType::ST_norm_float: EXPECT_NEAR(l2[c] + sqnorm(qi), exact, tol) << search_type_name(st); break;
          default: {
            // Stored norm: the decoded code of the true norm, nearest possible for the table types.
            const float stored = q.decode_norm_from_packed(packed.data() + c * cs);
            EXPECT_NEAR(l2[c], stored - 2 * qx, tol) << search_type_name(st);
            const auto& table = q.norm_encoder().table();
            if (!table.empty()) {
              // The nearest table entry to the true norm (up to the float rounding of the norm itself).
              double best = std::numeric_limits<double>::infinity();
              for (float t : table) best = std::min(best, std::abs(t - xn));
              EXPECT_LE(std::abs(stored - xn), best + 1e-5 * (1 + xn)) << search_type_name(st);
            } else {
              // The library sums the norm in float: allow the code of a norm within rounding of the exact one.
              bool match = false;
              for (double f : {1.0, 1 - 1e-6, 1 + 1e-6}) match |= stored == q.decode_norm(q.encode_norm(float(xn * f)));
              EXPECT_TRUE(match) << search_type_name(st) << ": stored " << stored << " for norm " << xn;
            }
            if (st == SearchType::ST_norm_qint8 || st == SearchType::ST_norm_qint4) {
              const double width = (q.norm_max() - q.norm_min()) / (st == SearchType::ST_norm_qint8 ? 256 : 16);
              if (xn >= q.norm_min() && xn <= q.norm_max()) EXPECT_LE(std::abs(stored - xn), 0.5 * width + 1e-4);
            }
          }
        }
      }
    }
  }
}

TEST(AdditiveQuantizer, NormFromLutNeedsTables) {
  ResidualQuantizer src(6, 2, 3, SearchType::ST_decompress, quick());
  src.train(gaussian_mixture(400, 6, 8, 14).view());
  ResidualQuantizer q(6, 2, 3, SearchType::ST_norm_from_LUT);
  q.set_codebooks(src.codebooks_flat());
  EXPECT_FALSE(q.has_codebook_tables());
  const int32_t codes[] = {3, 5};
  std::vector<uint8_t> p(q.code_size());
  q.pack_codes(1, codes, p.data());
  std::vector<float> lut(q.total_codebook_size());
  const float qv[6] = {1, 2, 3, 4, 5, 6};
  q.compute_LUT(1, qv, lut.data());
  EXPECT_NE(error_of<InvalidArgument>([&] { q.compute_1_distance_LUT(p.data(), lut.data(), false); })
                .find("compute_codebook_tables"),
            std::string::npos);
  EXPECT_NO_THROW(q.compute_1_distance_LUT(p.data(), lut.data(), true));  // inner product needs no norms
  q.compute_codebook_tables();
  const auto xr = ref_decode(q, codes);
  EXPECT_NEAR(q.compute_1_distance_LUT(p.data(), lut.data(), false), sqnorm(xr) - 2 * dot(xr, qv), 1e-3);
}

TEST(AdditiveQuantizer, KnnCentroidsEnumerateEveryCombination) {
  ResidualQuantizer q(5, {8, 4, 2}, quick());  // 64 combinations; labels pack 3 + 2 + 1 bits
  q.train(gaussian_mixture(300, 5, 10, 15).view());
  const auto xq = gaussian_mixture(4, 5, 2, 16);
  const size_t k = 7;
  std::vector<float> dip(4 * k), dl2(4 * k);
  std::vector<int64_t> lip(4 * k), ll2(4 * k);
  q.knn_centroids_inner_product(4, xq.data(), k, dip.data(), lip.data());
  q.knn_centroids_L2(4, xq.data(), k, dl2.data(), ll2.data());
  for (size_t i = 0; i < 4; ++i) {
    std::vector<std::pair<double, int64_t>> ip, l2;
    for (int32_t a = 0; a < 8; ++a)
      for (int32_t b = 0; b < 4; ++b)
        for (int32_t c = 0; c < 2; ++c) {
          const int32_t codes[] = {a, b, c};
          const auto xr = ref_decode(q, codes);
          const int64_t label = a | (b << 3) | (c << 5);
          double d2 = 0;
          for (size_t j = 0; j < 5; ++j) d2 += (xq(i, j) - xr[j]) * (xq(i, j) - xr[j]);
          ip.push_back({-dot(xr, xq.row(i)), label});
          l2.push_back({d2, label});
        }
    std::sort(ip.begin(), ip.end());
    std::sort(l2.begin(), l2.end());
    for (size_t j = 0; j < k; ++j) {
      EXPECT_NEAR(dip[i * k + j], -ip[j].first, 1e-4);
      EXPECT_NEAR(dl2[i * k + j], l2[j].first, 1e-4);
      // Labels agree unless two distances are within rounding of each other.
      if (j + 1 < k && std::abs(ip[j].first - ip[j + 1].first) > 1e-4 && (j == 0 || std::abs(ip[j].first - ip[j - 1].first) > 1e-4))
        EXPECT_EQ(lip[i * k + j], ip[j].second);
      if (j + 1 < k && std::abs(l2[j].first - l2[j + 1].first) > 1e-4 && (j == 0 || std::abs(l2[j].first - l2[j - 1].first) > 1e-4))
        EXPECT_EQ(ll2[i * k + j], l2[j].second);
    }
  }
  // More than 2^20 combinations is refused with the count.
  ResidualQuantizer big(4, 3, 8);
  big.set_codebooks(FloatMatrix(768, 4).view());
  std::vector<float> d(1);
  std::vector<int64_t> l(1);
  EXPECT_NE(error_of<InvalidArgument>([&] { big.knn_centroids_L2(1, xq.data(), 1, d.data(), l.data()); }).find("2^24"),
            std::string::npos);
}

TEST(AdditiveQuantizer, ReconstructionErrorIsMeanSquaredDistance) {
  const auto x = gaussian_mixture(700, 10, 12, 17);
  ResidualQuantizer q(10, {16, 16}, quick());
  q.train(x.view());
  std::vector<int32_t> codes(700 * 2);
  q.encode(x.view(), codes.data());
  double s = 0;
  for (size_t i = 0; i < 700; ++i) {
    const auto xr = ref_decode(q, codes.data() + i * 2);
    for (size_t j = 0; j < 10; ++j) s += (x(i, j) - xr[j]) * (x(i, j) - xr[j]);
  }
  EXPECT_NEAR(q.reconstruction_error(x.view()), s / 700, 1e-6 * s / 700);
}

TEST(AdditiveQuantizer, ModelFileKeepsSearchTypeAndNormEncoder) {
  const auto x = gaussian_mixture(1200, 8, 20, 18);
  for (SearchType st : kAllTypes) {
    ResidualQuantizer q(8, 2, 4, st, quick());
    q.train(x.view());
    const std::string bytes = quantizer_bytes(q);
    uint32_t version;
    std::memcpy(&version, bytes.data() + 8, 4);
    EXPECT_EQ(version, st == SearchType::ST_decompress ? 1u : 2u);  // plain models keep the old format
    const auto loaded = parse_quantizer(bytes.data(), bytes.size());
    const auto* r = dynamic_cast<const ResidualQuantizer*>(loaded.get());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->search_type(), st);
    EXPECT_EQ(r->code_size(), q.code_size());
    EXPECT_EQ(r->norm_min(), q.norm_min());
    EXPECT_EQ(r->norm_max(), q.norm_max());
    EXPECT_EQ(r->norm_encoder().table(), q.norm_encoder().table());
    EXPECT_EQ(r->norm_encoder().tabs(), q.norm_encoder().tabs());
    EXPECT_EQ(r->has_codebook_tables(), st == SearchType::ST_norm_from_LUT);
    std::vector<uint8_t> a(300 * q.code_size()), b(a.size());
    q.encode_packed(x.view().rows_slice(0, 300), a.data());
    r->encode_packed(x.view().rows_slice(0, 300), b.data());
    EXPECT_EQ(a, b) << search_type_name(st);
    for (size_t cut : {bytes.size() - 1, bytes.size() - 5, bytes.size() / 2})
      EXPECT_THROW(parse_quantizer(bytes.data(), cut), FormatError);
  }
}

TEST(AdditiveQuantizer, ModelFileWithBadSearchTypeOrTablesIsFormatError) {
  ResidualQuantizer q(4, 2, 2, SearchType::ST_norm_cqint4, quick());
  q.train(gaussian_mixture(300, 4, 6, 19).view());
  const std::string bytes = quantizer_bytes(q);
  // Rewrite the header and fix the checksum, as a buggy writer (not random corruption) would.
  auto with_header = [&](const std::string& from, const std::string& to) {
    std::string b = bytes;
    uint64_t hlen;
    std::memcpy(&hlen, b.data() + 12, 8);
    std::string h = b.substr(20, hlen);
    const size_t at = h.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    h.replace(at, from.size(), to);
    const uint64_t nh = h.size();
    std::string out = b.substr(0, 12);
    out.append(reinterpret_cast<const char*>(&nh), 8);
    out += h;
    out += b.substr(20 + hlen, b.size() - 20 - hlen - 4);
    const uint32_t crc = (uint32_t)crc32(0L, reinterpret_cast<const Bytef*>(out.data()), (uInt)out.size());
    out.append(reinterpret_cast<const char*>(&crc), 4);
    return out;
  };
  const std::string ok = with_header("\"ST_norm_cqint4\"", "\"ST_norm_cqint4\"");
  EXPECT_NO_THROW(parse_quantizer(ok.data(), ok.size()));
  const std::string unknown = with_header("\"ST_norm_cqint4\"", "\"ST_norm_cqint9\"");
  EXPECT_NE(error_of<FormatError>([&] { parse_quantizer(unknown.data(), unknown.size()); }).find("ST_norm_cqint9"),
            std::string::npos);
  // cqint8 needs 256 centres; the payload holds 16.
  const std::string mismatch = with_header("\"ST_norm_cqint4\"", "\"ST_norm_cqint8\"");
  EXPECT_THROW(parse_quantizer(mismatch.data(), mismatch.size()), FormatError);
  const std::string bad_type = with_header("\"residual\"", "\"lsq9\"");
  EXPECT_THROW(parse_quantizer(bad_type.data(), bad_type.size()), FormatError);
}
