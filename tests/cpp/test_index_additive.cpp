// The flat additive-quantizer index against exhaustive search over the decoded vectors and against the
// codec's own per-code distances; files, edge cases and thread-count independence.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "index/additive_scan.h"
#include "test_helpers.h"
#include "tessera/core/threading.h"
#include "tessera/index/index_additive_quantizer.h"
#include "tessera/index/index_io.h"
#include "tessera/io/atomic_file.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/residual_quantizer.h"
#include "tessera/quant/serialization.h"

using namespace tessera;

namespace {

struct Result {
  std::vector<float> D;
  std::vector<int64_t> I;
};

Result run_search(const IndexAdditiveQuantizer& index, const FloatMatrix& q, size_t k) {
  Result r{std::vector<float>(q.rows() * k), std::vector<int64_t>(q.rows() * k)};
  index.search(q.view(), k, r.D.data(), r.I.data());
  return r;
}

std::shared_ptr<ResidualQuantizer> trained_rq(const FloatMatrix& x, size_t M, size_t nbits, SearchType st) {
  ResidualQuantizerParams p;
  p.n_init = 1;
  p.max_iter = 15;
  auto rq = std::make_shared<ResidualQuantizer>(x.cols(), M, nbits, st, p);
  rq->train(x.view());
  return rq;
}

// Exhaustive reference over the decoded vectors, in double: per query, every stored label's distance.
std::vector<double> exact_distances(const AdditiveQuantizer& aq, const std::vector<uint8_t>& codes, size_t n,
                                    const FloatMatrix& q, bool ip) {
  const size_t d = aq.dim();
  std::vector<float> dec(n * d);
  aq.decode_packed(codes.data(), n, dec.data());
  std::vector<double> out(q.rows() * n);
  for (size_t i = 0; i < q.rows(); ++i)
    for (size_t j = 0; j < n; ++j) {
      double s = 0;
      for (size_t t = 0; t < d; ++t) {
        const double a = q(i, t), b = dec[j * d + t];
        s += ip ? a * b : (a - b) * (a - b);
      }
      out[i * n + j] = s;
    }
  return out;
}

// The returned top-k equals the exhaustive one up to float ties: rank j's label has (within tol) the j-th
// best exact distance, labels are distinct, and the returned distances are close to the exact ones.
void expect_matches_exhaustive(const Result& r, const std::vector<double>& exact, size_t nq, size_t n, size_t k,
                               bool ip, double tol) {
  for (size_t i = 0; i < nq; ++i) {
    std::vector<double> row(exact.begin() + i * n, exact.begin() + (i + 1) * n);
    std::vector<double> sorted = row;
    if (ip) std::sort(sorted.rbegin(), sorted.rend());
    else std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> seen;
    for (size_t j = 0; j < k; ++j) {
      const int64_t l = r.I[i * k + j];
      ASSERT_GE(l, 0) << "query " << i << " rank " << j;
      ASSERT_LT(size_t(l), n);
      seen.push_back(l);
      const double scale = std::max(1.0, std::abs(sorted[j]));
      EXPECT_NEAR(row[l], sorted[j], tol * scale) << "query " << i << " rank " << j;
      EXPECT_NEAR(r.D[i * k + j], row[l], tol * scale) << "query " << i << " rank " << j;
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "a label twice for query " << i;
  }
}

// The index's distances are the codec's compute_1_distance_LUT (+ ‖q‖² for L2) bit for bit, sorted with
// equal distances by label. The tables are computed for all queries in one call, as the index does for
// this few: BLAS may round a one-row product differently from a many-row one (OpenBLAS's Zen kernels do).
void expect_codec_distances(const IndexAdditiveQuantizer& index, const FloatMatrix& q, const Result& r, size_t k) {
  const AdditiveQuantizer& aq = index.quantizer();
  const bool ip = index.metric_type() == MetricType::inner_product;
  const size_t n = index.ntotal(), total = aq.total_codebook_size();
  std::vector<float> luts(q.rows() * total);
  aq.compute_LUT(q.rows(), q.data(), luts.data());
  for (size_t i = 0; i < q.rows(); ++i) {
    const float* lut = luts.data() + i * total;
    float qn = 0;
    for (size_t t = 0; t < q.cols(); ++t) qn += q(i, t) * q(i, t);
    std::vector<std::pair<float, int64_t>> all(n);
    for (size_t j = 0; j < n; ++j) {
      const float dist = aq.compute_1_distance_LUT(index.codes().data() + j * index.code_size(), lut, ip);
      all[j] = {ip ? dist : dist + qn, int64_t(j)};
    }
    std::sort(all.begin(), all.end(), [&](const auto& a, const auto& b) {
      if (a.first != b.first) return ip ? a.first > b.first : a.first < b.first;
      return a.second < b.second;
    });
    for (size_t j = 0; j < std::min(k, n); ++j) {
      EXPECT_EQ(r.I[i * k + j], all[j].second) << "query " << i << " rank " << j;
      EXPECT_EQ(r.D[i * k + j], all[j].first) << "query " << i << " rank " << j;
    }
  }
}

class IndexSearchTypes : public ::testing::TestWithParam<SearchType> {};

TEST_P(IndexSearchTypes, L2EqualsCodecDistancesAndExhaustiveSearch) {
  const SearchType st = GetParam();
  const auto x = tessera::testing::gaussian_mixture(1500, 12, 20, 3);
  const auto q = tessera::testing::gaussian_mixture(40, 12, 20, 4);
  // 3 × 4 bits: codes and norms off byte boundaries; 2 × 8 bits: the byte-wise scan and byte-aligned norms.
  for (auto [M, nbits] : {std::pair<size_t, size_t>{3, 4}, {2, 8}}) {
    SCOPED_TRACE(::testing::Message() << M << " x " << nbits << " bits");
    auto rq = trained_rq(x, M, nbits, st);
    IndexAdditiveQuantizer index(rq, MetricType::L2);
    index.add(x.view());
    ASSERT_EQ(index.ntotal(), 1500u);
    ASSERT_EQ(index.codes().size(), 1500u * rq->code_size());
    const size_t k = 10;
    const Result r = run_search(index, q, k);
    expect_codec_distances(index, q, r, k);
    // Exact L2 over the decoded vectors for the types whose norm is exact.
    if (st == SearchType::ST_decompress || st == SearchType::ST_norm_float || st == SearchType::ST_norm_from_LUT)
      expect_matches_exhaustive(r, exact_distances(*rq, index.codes(), 1500, q, false), q.rows(), 1500, k, false, 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, IndexSearchTypes,
                         ::testing::Values(SearchType::ST_decompress, SearchType::ST_LUT_nonorm,
                                           SearchType::ST_norm_from_LUT, SearchType::ST_norm_float,
                                           SearchType::ST_norm_qint8, SearchType::ST_norm_qint4,
                                           SearchType::ST_norm_cqint8, SearchType::ST_norm_cqint4,
                                           SearchType::ST_norm_lsq2x4, SearchType::ST_norm_rq2x4),
                         [](const auto& info) { return search_type_name(info.param); });

TEST(IndexAdditive, InnerProductEqualsExhaustiveSearch) {
  const auto x = tessera::testing::gaussian_mixture(800, 10, 10, 5);
  const auto q = tessera::testing::gaussian_mixture(30, 10, 10, 6);
  for (SearchType st : {SearchType::ST_decompress, SearchType::ST_LUT_nonorm, SearchType::ST_norm_float}) {
    auto rq = trained_rq(x, 2, 5, st);
    IndexAdditiveQuantizer index(rq, MetricType::inner_product);
    index.add(x.view());
    const Result r = run_search(index, q, 7);
    expect_codec_distances(index, q, r, 7);
    expect_matches_exhaustive(r, exact_distances(*rq, index.codes(), 800, q, true), q.rows(), 800, 7, true, 1e-4);
  }
}

TEST(IndexAdditive, LocalSearchQuantizer) {
  const auto x = tessera::testing::gaussian_mixture(1000, 8, 12, 7);
  const auto q = tessera::testing::gaussian_mixture(25, 8, 12, 8);
  LocalSearchQuantizerParams p;
  p.train_iters = 3;
  auto lsq = std::make_shared<LocalSearchQuantizer>(8, 3, 4, p, SearchType::ST_norm_float);
  lsq->train(x.view());
  IndexAdditiveQuantizer index(lsq);
  index.add(x.view());
  const Result r = run_search(index, q, 5);
  expect_codec_distances(index, q, r, 5);
  expect_matches_exhaustive(r, exact_distances(*lsq, index.codes(), 1000, q, false), q.rows(), 1000, 5, false, 1e-4);
}

TEST(IndexAdditive, OddCodeSizesAndAddCodes) {
  // Codebooks of 5 and 12 codewords: 3 + 4 bits, codes not byte-aligned.
  const auto x = tessera::testing::gaussian_mixture(300, 6, 8, 9);
  ResidualQuantizerParams p;
  p.n_init = 1;
  auto rq = std::make_shared<ResidualQuantizer>(6, std::vector<size_t>{5, 12}, p, SearchType::ST_norm_qint4);
  rq->train(x.view());
  std::vector<uint8_t> codes(300 * rq->code_size());
  rq->encode_packed(x.view(), codes.data());
  IndexAdditiveQuantizer a(rq), b(rq);
  a.add(x.view());
  b.add_codes(300, codes.data());
  EXPECT_EQ(a.codes(), b.codes());
  const auto q = tessera::testing::gaussian_mixture(10, 6, 8, 10);
  const Result r = run_search(a, q, 4);
  expect_codec_distances(a, q, r, 4);
  // An index beyond K_m is refused (it would read past the lookup table), and nothing is added.
  std::vector<uint8_t> packed(rq->code_size(), 0);
  packed[0] = 7;  // code 0 = 7 ≥ 5
  EXPECT_THROW(b.add_codes(1, packed.data()), InvalidArgument);
  EXPECT_EQ(b.ntotal(), 300u);
}

// The scan's code readers (bytes for 8 bits, nibbles for 4, 32-bit words for other widths and mixtures, read_code
// for the last codes of a buffer) against a bit-at-a-time reader: the same indices, and sums equal bit for bit
// (summed m = 0..M−1 as the codec does). Codes fill an exactly sized buffer, so a read past it shows under ASan.
TEST(IndexAdditive, ScanCodeReadersEqualABitwiseReader) {
  std::mt19937_64 rng(17);
  std::vector<std::vector<size_t>> shapes;
  for (size_t b = 1; b <= 16; ++b)
    for (size_t M : {1, 2, 3, 5, 8, 16}) shapes.push_back(std::vector<size_t>(M, b));
  for (int t = 0; t < 60; ++t) {  // mixtures of 0..16 bits (K_m = 1: 0 bits), a few with one up to 24 (the limit)
    std::vector<size_t> nb(1 + rng() % 9);
    for (auto& b : nb) b = rng() % 17;
    if (t % 10 == 0) nb.insert(nb.begin() + rng() % (nb.size() + 1), 17 + rng() % 8);
    shapes.push_back(nb);
  }
  for (const auto& nbits : shapes) {
    std::vector<size_t> offsets;
    size_t total = 0, bits = 0;
    for (size_t b : nbits) {
      offsets.push_back(total);
      total += size_t(1) << b;
      bits += b;
    }
    const detail::ScanLayout L = detail::make_scan_layout(nbits, offsets);
    const bool all8 = std::all_of(nbits.begin(), nbits.end(), [](size_t b) { return b == 8; });
    const bool all4 = std::all_of(nbits.begin(), nbits.end(), [](size_t b) { return b == 4; });
    EXPECT_EQ(L.read, all8 ? detail::CodeRead::bytes : all4 ? detail::CodeRead::nibbles : detail::CodeRead::words);
    // Table entries of many magnitudes, so a different summation order would show.
    std::vector<float> lut(total);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& v : lut) v = u(rng) * std::ldexp(1.0f, int(rng() % 40) - 20);
    for (size_t norm_bits : {0, 3, 8, 32}) {
      const size_t cs = (bits + norm_bits + 7) / 8, n = 23;
      SCOPED_TRACE(::testing::Message() << nbits.size() << " codebooks, " << bits << " index bits, code size " << cs);
      std::vector<uint8_t> codes(n * cs);
      for (auto& c : codes) c = uint8_t(rng());
      std::vector<float> want(n);
      for (size_t i = 0; i < n; ++i) {
        float s = 0;
        for (size_t m = 0, bit = 0; m < nbits.size(); bit += nbits[m], ++m) {
          size_t idx = 0;
          for (size_t j = 0; j < nbits[m]; ++j) idx |= size_t((codes[i * cs + (bit + j) / 8] >> ((bit + j) % 8)) & 1) << j;
          s += lut[offsets[m] + idx];
        }
        want[i] = s;
        EXPECT_EQ(detail::lut_sum(L, codes.data() + i * cs, lut.data()), s) << "code " << i;
      }
      // Whole buffers and ranges of it (the flat index splits codes between threads).
      for (auto [i0, i1] : {std::pair<size_t, size_t>{0, n}, {0, 1}, {3, 10}, {5, n}, {n - 1, n}}) {
        std::vector<float> got(i1 - i0);
        detail::lut_sums(L, codes.data(), cs, n, i0, i1, lut.data(), got.data());
        for (size_t i = i0; i < i1; ++i) EXPECT_EQ(got[i - i0], want[i]) << "code " << i << " of [" << i0 << ", " << i1 << ")";
      }
    }
  }
}

TEST(IndexAdditive, FewerThanKAndEmpty) {
  const auto x = tessera::testing::gaussian_mixture(200, 6, 5, 11);
  auto rq = trained_rq(x, 2, 3, SearchType::ST_norm_float);
  const auto q = tessera::testing::gaussian_mixture(3, 6, 5, 12);
  for (MetricType m : {MetricType::L2, MetricType::inner_product}) {
    IndexAdditiveQuantizer index(rq, m);
    Result r = run_search(index, q, 4);  // empty
    for (size_t i = 0; i < r.I.size(); ++i) {
      EXPECT_EQ(r.I[i], -1);
      EXPECT_TRUE(std::isinf(r.D[i]));
      EXPECT_EQ(r.D[i] > 0, m == MetricType::L2);
    }
    index.add(MatrixView<const float>(x.data(), 5, 6));
    r = run_search(index, q, 8);
    for (size_t i = 0; i < q.rows(); ++i) {
      std::vector<int64_t> got(r.I.begin() + i * 8, r.I.begin() + i * 8 + 5);
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, (std::vector<int64_t>{0, 1, 2, 3, 4}));
      for (size_t j = 5; j < 8; ++j) {
        EXPECT_EQ(r.I[i * 8 + j], -1);
        EXPECT_TRUE(std::isinf(r.D[i * 8 + j]));
      }
    }
    index.reset();
    EXPECT_EQ(index.ntotal(), 0u);
    r = run_search(index, q, 2);
    EXPECT_EQ(r.I[0], -1);
  }
}

TEST(IndexAdditive, TiesGoToTheLowerLabel) {
  const auto x = tessera::testing::gaussian_mixture(100, 4, 3, 13);
  auto rq = trained_rq(x, 2, 2, SearchType::ST_norm_float);
  IndexAdditiveQuantizer index(rq);
  // The same vector five times among others: identical codes, identical distances.
  FloatMatrix y(9, 4);
  for (size_t i = 0; i < 9; ++i)
    for (size_t t = 0; t < 4; ++t) y(i, t) = x(i % 2 ? 0 : i + 1, t);
  index.add(y.view());
  FloatMatrix q(1, 4);
  for (size_t t = 0; t < 4; ++t) q(0, t) = x(0, t);
  const Result r = run_search(index, q, 9);
  for (size_t j = 0; j + 1 < 9; ++j)
    if (r.D[j] == r.D[j + 1]) EXPECT_LT(r.I[j], r.I[j + 1]) << "rank " << j;
  // The duplicates: one distance, in label order.
  std::vector<ptrdiff_t> at;
  for (int64_t l : {1, 3, 5, 7}) at.push_back(std::find(r.I.begin(), r.I.end(), l) - r.I.begin());
  EXPECT_TRUE(std::is_sorted(at.begin(), at.end()));
  for (ptrdiff_t a : at) EXPECT_EQ(r.D[a], r.D[at[0]]);
}

TEST(IndexAdditive, ResultsDoNotDependOnThreadCount) {
  const auto x = tessera::testing::gaussian_mixture(3000, 16, 30, 14);
  const auto q = tessera::testing::gaussian_mixture(200, 16, 30, 15);
  auto rq = trained_rq(x, 4, 6, SearchType::ST_norm_cqint8);
  IndexAdditiveQuantizer index(rq);
  Result one, two;
  {
    ScopedThreads t(1);
    index.add(x.view());
    one = run_search(index, q, 20);
  }
  {
    ScopedThreads t(2);
    IndexAdditiveQuantizer other(rq);
    other.add(x.view());
    EXPECT_EQ(other.codes(), index.codes());
    two = run_search(other, q, 20);
  }
  EXPECT_EQ(one.I, two.I);
  EXPECT_EQ(one.D, two.D);
}

TEST(IndexAdditive, QueriesFewerThanThreadsSplitTheCodes) {
  // Fewer queries than threads: the threads share each query's codes; the results are those of one thread.
  const auto x = tessera::testing::gaussian_mixture(50000, 8, 40, 20);
  const auto q = tessera::testing::gaussian_mixture(3, 8, 40, 21);
  auto rq = trained_rq(FloatMatrix::copy_of(MatrixView<const float>(x.data(), 4000, 8)), 2, 6,
                       SearchType::ST_norm_qint8);
  for (MetricType m : {MetricType::L2, MetricType::inner_product}) {
    IndexAdditiveQuantizer index(rq, m);
    index.add(x.view());
    Result one, many;
    {
      ScopedThreads t(1);
      one = run_search(index, q, 25);
    }
    {
      ScopedThreads t(4);
      many = run_search(index, q, 25);
    }
    EXPECT_EQ(one.I, many.I);
    EXPECT_EQ(one.D, many.D);
    expect_codec_distances(index, q, many, 25);
  }
}

TEST(IndexAdditive, BadInput) {
  const auto x = tessera::testing::gaussian_mixture(200, 6, 5, 16);
  auto untrained = std::make_shared<ResidualQuantizer>(6, 2, 3);
  EXPECT_THROW(IndexAdditiveQuantizer{untrained}, InvalidArgument);
  EXPECT_THROW(IndexAdditiveQuantizer{nullptr}, InvalidArgument);
  EXPECT_THROW(parse_metric("cosine"), InvalidArgument);
  EXPECT_THROW(metric_from_int(2), InvalidArgument);
  EXPECT_EQ(metric_from_int(0), MetricType::inner_product);
  EXPECT_EQ(metric_from_int(1), MetricType::L2);
  auto rq = trained_rq(x, 2, 3, SearchType::ST_norm_float);
  IndexAdditiveQuantizer index(rq);
  index.add(x.view());
  const auto wrong = tessera::testing::gaussian_mixture(3, 7, 2, 17);
  std::vector<float> D(30);
  std::vector<int64_t> I(30);
  EXPECT_THROW(index.add(wrong.view()), InvalidArgument);
  EXPECT_THROW(index.search(wrong.view(), 2, D.data(), I.data()), InvalidArgument);
  FloatMatrix nan(1, 6);
  nan(0, 3) = NAN;
  EXPECT_THROW(index.search(nan.view(), 2, D.data(), I.data()), InvalidArgument);
  EXPECT_THROW(index.add(nan.view()), InvalidArgument);
  EXPECT_THROW(index.search(MatrixView<const float>(x.data(), 1, 6), 0, D.data(), I.data()), InvalidArgument);
  EXPECT_EQ(index.ntotal(), 200u);
  // The shared codec's code layout changed under the index: refused, not misread.
  rq->set_search_type(SearchType::ST_decompress);
  EXPECT_THROW(index.search(MatrixView<const float>(x.data(), 1, 6), 2, D.data(), I.data()), InvalidArgument);
}

TEST(IndexAdditive, FileRoundTripAndCorruption) {
  const std::string dir = ::testing::TempDir() + "/index_files";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto x = tessera::testing::gaussian_mixture(500, 8, 6, 18);
  const auto q = tessera::testing::gaussian_mixture(20, 8, 6, 19);
  for (SearchType st : {SearchType::ST_decompress, SearchType::ST_norm_from_LUT, SearchType::ST_norm_lsq2x4}) {
    for (MetricType m : {MetricType::L2, MetricType::inner_product}) {
      auto rq = trained_rq(x, 3, 4, st);
      IndexAdditiveQuantizer index(rq, m);
      index.add(x.view());
      const std::string path = dir + "/index.tsi";
      write_index(index, path, R"({"note": "test"})");
      std::string meta;
      const IndexAdditiveQuantizer back = read_index(path, &meta);
      EXPECT_EQ(meta, R"({"note":"test"})");
      EXPECT_EQ(back.metric_type(), m);
      EXPECT_EQ(back.ntotal(), 500u);
      EXPECT_EQ(back.codes(), index.codes());
      EXPECT_EQ(back.quantizer().search_type(), st);
      const Result a = run_search(index, q, 6), b = run_search(back, q, 6);
      EXPECT_EQ(a.I, b.I);
      EXPECT_EQ(a.D, b.D);
    }
  }
  auto rq = trained_rq(x, 2, 4, SearchType::ST_norm_float);
  IndexAdditiveQuantizer index(rq);
  index.add(x.view());
  const std::string bytes = index_bytes(index);
  // Every truncation and a flipped byte anywhere are FormatErrors.
  for (size_t cut : {size_t(0), size_t(5), size_t(20), size_t(100), bytes.size() / 2, bytes.size() - 1})
    EXPECT_THROW(parse_index(bytes.data(), cut), FormatError) << "cut at " << cut;
  for (size_t at : {size_t(3), size_t(10), size_t(30), bytes.size() / 2, bytes.size() - 3}) {
    std::string bad = bytes;
    bad[at] ^= 0x20;
    EXPECT_THROW(parse_index(bad.data(), bad.size()), FormatError) << "byte " << at;
  }
  // Each reader names what it was given instead.
  try {
    parse_index(quantizer_bytes(*rq).data(), quantizer_bytes(*rq).size());
    ADD_FAILURE() << "a model file read as an index";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not an index"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_quantizer(bytes.data(), bytes.size()), FormatError);
  // A failed write leaves nothing; the file name is in read errors.
  EXPECT_THROW(write_index(index, "/proc/no/such/index.tsi"), Error);
  write_file_atomic(dir + "/cut.tsi", bytes.substr(0, bytes.size() - 10));
  try {
    read_index(dir + "/cut.tsi");
    ADD_FAILURE() << "a truncated file was read";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.tsi"), std::string::npos) << e.what();
  }
}

}  // namespace
