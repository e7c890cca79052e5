// The 4-bit fast-scan index: its kernel against the scalar reference (bit for bit, on every clone unit: the
// test is in the Simd suite the valgrind/qemu runs select), its results against the flat index, files,
// thread-count independence and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "core/simd.h"
#include "index/fast_scan_kernel.h"
#include "test_helpers.h"
#include "tessera/core/threading.h"
#include "tessera/index/index_additive_quantizer.h"
#include "tessera/index/index_additive_quantizer_fast_scan.h"
#include "tessera/index/index_io.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/residual_quantizer.h"

using namespace tessera;

namespace {

struct Result {
  std::vector<float> D;
  std::vector<int64_t> I;
};

template <class Index>
Result run_search(const Index& index, const FloatMatrix& q, size_t k) {
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

// |top-k(a) ∩ top-k(b)| / (nq·k).
double recall(const Result& a, const Result& b, size_t nq, size_t k) {
  size_t hit = 0;
  for (size_t i = 0; i < nq; ++i) {
    std::set<int64_t> ref(b.I.begin() + i * k, b.I.begin() + (i + 1) * k);
    for (size_t j = 0; j < k; ++j) hit += ref.count(a.I[i * k + j]);
  }
  return double(hit) / double(nq * k);
}

}  // namespace

// Table counts: the templated AVX2 kernels (2..32 plain tables in pairs, 0 or 2 scaled), odd counts and
// other scaled counts (the run-time loop), and more tables than the templates cover.
const std::vector<std::tuple<size_t, size_t, uint16_t>> kKernelShapes = {
    {1, 0, 1}, {2, 0, 1}, {3, 1, 5}, {8, 0, 1}, {10, 2, 3}, {11, 2, 4}, {17, 0, 1}, {18, 2, 7}, {34, 2, 2},
    {36, 2, 1}, {9, 3, 2}, {257, 0, 1}, {300, 2, 1000}};

TEST(Simd, FastScanKernelEqualsScalar) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const auto& [nsq, nscaled, scale] : kKernelShapes) {
    const size_t nblocks = 5;
    std::vector<uint8_t> blocks(nblocks * nsq * 16), lut(nsq * 16);
    for (auto& b : blocks) b = uint8_t(byte(rng));
    for (auto& l : lut) l = uint8_t(byte(rng));
    std::vector<uint16_t> ref(nblocks * 32), out(nblocks * 32);
    detail::fast_scan_blocks_scalar(blocks.data(), nblocks, nsq, nscaled, scale, lut.data(), ref.data());
    detail::fast_scan_blocks(blocks.data(), nblocks, nsq, nscaled, scale, lut.data(), out.data());
    EXPECT_EQ(out, ref) << "nsq " << nsq << " dispatched";
    detail::fast_scan_blocks_portable(blocks.data(), nblocks, nsq, nscaled, scale, lut.data(), out.data());
    EXPECT_EQ(out, ref) << "nsq " << nsq << " portable, on " << detail::clone_unit();
    if (detail::fast_scan_has_avx2()) {
      std::fill(out.begin(), out.end(), 0);
      detail::fast_scan_blocks_avx2(blocks.data(), nblocks, nsq, nscaled, scale, lut.data(), out.data());
      EXPECT_EQ(out, ref) << "nsq " << nsq << " AVX2";
    }
  }
}

// Every collecting variant, for 1..4 queries at once: exactly the (sum, label) keys below each threshold, in
// label order, whether the buffers fill (small cap: the scan stops and resumes) or not.
TEST(Simd, FastScanCollectEqualsScalar) {
  using Collect = size_t (*)(const uint8_t*, size_t, size_t, size_t, uint16_t, detail::FastScanQuery*, size_t,
                             uint64_t, size_t);
  std::vector<std::pair<const char*, Collect>> variants = {{"dispatched", &detail::fast_scan_collect},
                                                           {"portable", &detail::fast_scan_collect_portable}};
  if (detail::fast_scan_has_avx2()) variants.emplace_back("AVX2", &detail::fast_scan_collect_avx2);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const auto& [nsq, nscaled, scale] : kKernelShapes) {
    const size_t nblocks = 7, nq = detail::kFastScanMaxQueries;
    std::vector<uint8_t> blocks(nblocks * nsq * 16), luts(nq * nsq * 16);
    for (auto& b : blocks) b = uint8_t(byte(rng));
    for (auto& l : luts) l = uint8_t(byte(rng));
    // Per query, the scalar sums and a threshold keeping about a quarter of them (query 3: none, 0).
    std::vector<std::vector<uint16_t>> sums(nq, std::vector<uint16_t>(nblocks * 32));
    std::vector<uint32_t> thresholds(nq);
    for (size_t i = 0; i < nq; ++i) {
      detail::fast_scan_blocks_scalar(blocks.data(), nblocks, nsq, nscaled, scale, luts.data() + i * nsq * 16,
                                      sums[i].data());
      std::vector<uint16_t> sorted = sums[i];
      std::sort(sorted.begin(), sorted.end());
      thresholds[i] = i == 3 ? 0 : i == 2 ? 65536 : sorted[sorted.size() / 4];
    }
    for (const auto& [name, collect] : variants)
      for (size_t group = 1; group <= nq; ++group)
        for (const size_t cap : {size_t(40), size_t(nblocks * 32)}) {
          std::vector<std::vector<uint64_t>> got(nq);
          for (size_t g0 = 0; g0 < nq; g0 += group) {
            const size_t ng = std::min(group, nq - g0);
            std::vector<std::vector<uint64_t>> buf(ng, std::vector<uint64_t>(cap));
            detail::FastScanQuery qs[detail::kFastScanMaxQueries];
            for (size_t i = 0; i < ng; ++i)
              qs[i] = {luts.data() + (g0 + i) * nsq * 16, thresholds[g0 + i], buf[i].data(), 0};
            for (size_t b = 0; b < nblocks;) {
              const size_t done = collect(blocks.data() + b * nsq * 16, nblocks - b, nsq, nscaled, scale, qs, ng,
                                          100 + b * 32, cap);
              ASSERT_TRUE(done > 0 || std::any_of(qs, qs + ng, [&](const auto& q) { return q.n + 32 > cap; }));
              b += done;
              for (size_t i = 0; i < ng; ++i) {  // empty full buffers into the result
                ASSERT_LE(qs[i].n, cap);
                if (qs[i].n + 32 > cap || b == nblocks) {
                  got[g0 + i].insert(got[g0 + i].end(), qs[i].keys, qs[i].keys + qs[i].n);
                  qs[i].n = 0;
                }
              }
            }
          }
          for (size_t i = 0; i < nq; ++i) {
            std::vector<uint64_t> want;
            for (size_t v = 0; v < nblocks * 32; ++v)
              if (sums[i][v] < thresholds[i]) want.push_back(detail::fast_scan_key(sums[i][v], 100 + v));
            EXPECT_EQ(got[i], want) << name << " nsq " << nsq << " query " << i << " of groups of " << group
                                    << ", cap " << cap;
          }
        }
  }
}

// The tables' quantisation (SSE2 on x86-64) equals the scalar reference bit for bit: bytes, scale, bias and
// magnitude, on Gaussian tables, ties at half units, flat tables, ±0 entries, weighted norm tables and table
// counts past the stack buffer.
TEST(Simd, FastScanQuantizeTablesEqualScalar) {
  std::mt19937 rng(8);
  std::normal_distribution<float> gauss(0.0f, 5.0f);
  for (const size_t nsq : {size_t(1), size_t(4), size_t(18), size_t(70)})
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> tables(nsq * 16);
      for (size_t j = 0; j < tables.size(); ++j) {
        float v = gauss(rng);
        if (kind == 1) v = std::round(2 * v) / 2;  // many entries at half units of the scale
        if (kind == 2) v = j % 16 < 8 ? 0.0f : -0.0f;  // flat, with signed zeros
        if (kind == 3) v = j % 3 == 0 ? -0.0f : v * 1e6f;
        tables[j] = v;
      }
      for (const size_t nscaled : {size_t(0), std::min<size_t>(2, nsq)}) {
        std::vector<uint8_t> want(nsq * 16), got(nsq * 16);
        float ws, wb, wm, gs, gb, gm;
        detail::fast_scan_quantize_tables_scalar(tables.data(), nsq, nscaled, 3.0f, want.data(), &ws, &wb, &wm);
        detail::fast_scan_quantize_tables(tables.data(), nsq, nscaled, 3.0f, got.data(), &gs, &gb, &gm);
        EXPECT_EQ(got, want) << "nsq " << nsq << " kind " << kind;
        EXPECT_EQ(std::bit_cast<uint32_t>(gs), std::bit_cast<uint32_t>(ws)) << "nsq " << nsq << " kind " << kind;
        EXPECT_EQ(std::bit_cast<uint32_t>(gb), std::bit_cast<uint32_t>(wb)) << "nsq " << nsq << " kind " << kind;
        EXPECT_EQ(std::bit_cast<uint32_t>(gm), std::bit_cast<uint32_t>(wm)) << "nsq " << nsq << " kind " << kind;
      }
    }
}

// The re-scoring sums (float, one codebook after another) of every variant equal the plain loop's bit for
// bit: codebook counts with and without a partial 8-nibble word, odd code sizes, counts not a multiple of 8.
TEST(Simd, FastScanCodeSumsEqualScalar) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> gauss(0.0f, 3.0f);
  for (const size_t M : {size_t(1), size_t(3), size_t(8), size_t(11), size_t(16), size_t(21), size_t(32)})
    for (const size_t n : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(29)}) {
      const size_t code_size = (M + 1) / 2 + 1, ncodes = 53;
      std::vector<uint8_t> codes(ncodes * code_size);
      for (auto& b : codes) b = uint8_t(byte(rng));
      std::vector<float> lut(M * 16);
      for (auto& v : lut) v = gauss(rng);
      std::vector<uint64_t> keys(n);
      for (auto& key : keys) key = detail::fast_scan_key(uint16_t(byte(rng)), uint64_t(rng() % ncodes));
      if (n) keys.back() = detail::fast_scan_key(7, ncodes - 1);  // the last code: no reads past the buffer
      std::vector<float> want(n);
      for (size_t j = 0; j < n; ++j) {
        const uint8_t* code = codes.data() + detail::fast_scan_key_label(keys[j]) * code_size;
        float sum = 0;
        for (size_t m = 0; m < M; ++m) sum += lut[m * 16 + ((code[m / 2] >> (m % 2 * 4)) & 15)];
        want[j] = sum;
      }
      using Sums = void (*)(const uint8_t*, size_t, size_t, const uint64_t*, size_t, const float*, float*);
      std::vector<std::pair<const char*, Sums>> variants = {{"dispatched", &detail::fast_scan_code_sums},
                                                            {"scalar", &detail::fast_scan_code_sums_scalar}};
      if (detail::fast_scan_has_avx2()) variants.emplace_back("AVX2", &detail::fast_scan_code_sums_avx2);
      for (const auto& [name, sums] : variants) {
        std::vector<float> got(n);
        sums(codes.data(), code_size, M, keys.data(), n, lut.data(), got.data());
        for (size_t j = 0; j < n; ++j)
          EXPECT_EQ(std::bit_cast<uint32_t>(got[j]), std::bit_cast<uint32_t>(want[j]))
              << name << " M " << M << " n " << n << " j " << j;
      }
    }
}

namespace {

// What search returns, computed the long way: every sum by the scalar kernel, the best ncand by (sum, label),
// their distances in the flat index's arithmetic, the best k by (distance, label).
Result reference_search(const IndexAdditiveQuantizerFastScan& index, const FloatMatrix& q, size_t k) {
  const AdditiveQuantizer& aq = index.quantizer();
  const size_t M = aq.num_codebooks(), nsq = index.nsq(), n = index.ntotal(), d = index.dim();
  const bool ip = index.metric_type() == MetricType::inner_product;
  const size_t ncand = std::min(n, std::max(k, index.rerank_factor() * k));
  const size_t nblocks = index.blocks().size() / (nsq * 16);
  Result r{std::vector<float>(q.rows() * k), std::vector<int64_t>(q.rows() * k)};
  std::vector<uint8_t> lut8(nsq * 16);
  std::vector<float> luts(q.rows() * M * 16);  // one call for all, as search makes it (the same BLAS rounding)
  aq.compute_LUT(q.rows(), q.data(), luts.data());
  std::vector<uint16_t> sums(nblocks * 32);
  for (size_t i = 0; i < q.rows(); ++i) {
    const float* lut = luts.data() + i * M * 16;
    float a, bias;
    index.quantized_tables(q.row(i), lut8.data(), &a, &bias);
    detail::fast_scan_blocks_scalar(index.blocks().data(), nblocks, nsq, nsq - M, uint16_t(index.norm_scale()),
                                    lut8.data(), sums.data());
    std::vector<uint64_t> keys;
    for (size_t v = 0; v < n; ++v) keys.push_back(detail::fast_scan_key(sums[v], v));
    std::sort(keys.begin(), keys.end());
    keys.resize(ncand);
    float qnorm = 0;
    for (size_t j = 0; j < d; ++j) qnorm += q.row(i)[j] * q.row(i)[j];
    std::vector<std::pair<float, int64_t>> ranked;
    for (const uint64_t key : keys) {
      const int64_t label = int64_t(detail::fast_scan_key_label(key));
      const uint8_t* code = index.codes().data() + size_t(label) * index.code_size();
      float s = 0;
      for (size_t m = 0; m < M; ++m) s += lut[m * 16 + ((code[m / 2] >> (4 * (m % 2))) & 15)];
      ranked.emplace_back(ip ? -s : aq.decode_norm(code[M / 2]) - 2 * s + qnorm, label);
    }
    std::sort(ranked.begin(), ranked.end());
    for (size_t j = 0; j < k; ++j) {
      r.D[i * k + j] = j < ranked.size() ? (ip ? -ranked[j].first : ranked[j].first) : (ip ? -INFINITY : INFINITY);
      r.I[i * k + j] = j < ranked.size() ? ranked[j].second : -1;
    }
  }
  return r;
}

}  // namespace

// The candidates (a sampled starting threshold when many are kept, the reservoir's cuts, re-scoring only those
// that can still enter the top k) change nothing: the result is the best ncand by uint8 sum re-scored, for k
// with and without a sampled threshold, L2 and inner product, 1 and 2 threads — and when the sample misleads:
// the sampled blocks full of near copies of the query, too few elsewhere (the query is scanned again).
TEST(IndexFastScan, SearchEqualsTheReference) {
  const auto x = tessera::testing::gaussian_mixture(6000, 16, 40, 21);
  const auto q = tessera::testing::gaussian_mixture(11, 16, 40, 22);
  for (const bool ip : {false, true}) {
    auto rq = trained_rq(x, 4, 4, ip ? SearchType::ST_LUT_nonorm : SearchType::ST_norm_rq2x4);
    const MetricType metric = ip ? MetricType::inner_product : MetricType::L2;
    IndexAdditiveQuantizerFastScan fs(rq, metric);
    fs.add(x.view());
    for (const size_t k : {size_t(1), size_t(10), size_t(60), size_t(100), size_t(300)})
      for (const int threads : {1, 2}) {
        ScopedThreads t(threads);
        const Result got = run_search(fs, q, k), want = reference_search(fs, q, k);
        EXPECT_EQ(got.I, want.I) << (ip ? "ip" : "l2") << " k " << k << " threads " << threads;
        EXPECT_EQ(got.D, want.D) << (ip ? "ip" : "l2") << " k " << k << " threads " << threads;
      }
  }
  // The misleading sample: k = 100 keeps 400 candidates of 6000; sample_plan picks m = 32, i.e. 15 of the 187
  // full blocks, at (2j + 1)·187 / 30, rank 48. Eight vectors of each are copies of the query (120 < 400), the
  // rest far from it: the sample's 48th smallest sum is a copy's, fewer than 400 sums of all are below it.
  auto rq = trained_rq(x, 4, 4, SearchType::ST_norm_rq2x4);
  FloatMatrix y(6000, 16);
  for (size_t i = 0; i < 6000; ++i)
    for (size_t j = 0; j < 16; ++j) y.row(i)[j] = x.row(i)[j] + 40.0f;
  for (size_t jb = 0; jb < 15; ++jb) {
    const size_t b = (2 * jb + 1) * 187 / 30;
    for (size_t v = 0; v < 8; ++v) std::copy(q.row(0), q.row(0) + 16, y.row(b * 32 + v));
  }
  IndexAdditiveQuantizerFastScan fs(rq, MetricType::L2);
  fs.add(y.view());
  const FloatMatrix q0 = FloatMatrix::copy_of(MatrixView<const float>(q.data(), 1, 16));
  const Result got = run_search(fs, q0, 100), want = reference_search(fs, q0, 100);
  EXPECT_EQ(got.I, want.I);
  EXPECT_EQ(got.D, want.D);
}

TEST(IndexFastScan, BlocksHoldTheCodesAndSumsMatchTheTables) {
  const auto x = tessera::testing::gaussian_mixture(100, 16, 8, 1);
  auto rq = trained_rq(x, 4, 4, SearchType::ST_norm_rq2x4);
  IndexAdditiveQuantizerFastScan index(rq, MetricType::L2, 64);
  index.add(x);
  EXPECT_EQ(index.nsq(), 6u);
  EXPECT_GE(index.norm_scale(), 1);
  EXPECT_EQ(index.blocks().size(), 128 / 32 * 6 * 16u);  // padded to bbs = 64
  std::vector<uint8_t> lut8(6 * 16);
  float a, bias;
  index.quantized_tables(x.row(0), lut8.data(), &a, &bias);
  std::vector<uint16_t> sums(128);
  detail::fast_scan_blocks_scalar(index.blocks().data(), 4, 6, 2, uint16_t(index.norm_scale()), lut8.data(),
                                  sums.data());
  for (size_t i = 0; i < 100; ++i) {
    const uint8_t* code = index.codes().data() + i * index.code_size();
    unsigned s = 0;
    for (size_t t = 0; t < 6; ++t) {
      const unsigned c = (code[t / 2] >> (4 * (t % 2))) & 15;
      s += lut8[t * 16 + c] * (t >= 4 ? unsigned(index.norm_scale()) : 1u);
    }
    ASSERT_EQ(sums[i], s) << i;
  }
}

TEST(IndexFastScan, RecallAgainstTheFlatIndex) {
  const auto x = tessera::testing::gaussian_mixture(5000, 32, 30, 2);
  const auto q = tessera::testing::gaussian_mixture(100, 32, 30, 3);
  const size_t k = 10;
  for (const bool ip : {false, true}) {
    auto rq = trained_rq(x, 8, 4, ip ? SearchType::ST_LUT_nonorm : SearchType::ST_norm_rq2x4);
    const MetricType metric = ip ? MetricType::inner_product : MetricType::L2;
    IndexAdditiveQuantizer flat(rq, metric);
    flat.add(x.view());
    IndexAdditiveQuantizerFastScan fs(rq, metric);
    fs.add(x.view());
    const Result ref = run_search(flat, q, k);
    fs.set_rerank_factor(0);
    const Result raw = run_search(fs, q, k);
    fs.set_rerank_factor(4);
    const Result rr = run_search(fs, q, k);
    const double r_raw = recall(raw, ref, q.rows(), k), r_rr = recall(rr, ref, q.rows(), k);
    std::printf("%s: recall@10 vs flat %.3f without re-ranking, %.3f with (norm_scale %d)\n", ip ? "ip" : "l2", r_raw,
                r_rr, fs.norm_scale());
    EXPECT_GE(r_raw, 0.9) << (ip ? "ip" : "l2");
    EXPECT_GE(r_rr, 0.99) << (ip ? "ip" : "l2");
    // Re-ranked distances are the flat index's own wherever the labels agree.
    for (size_t i = 0; i < q.rows() * k; ++i)
      if (rr.I[i] == ref.I[i]) ASSERT_EQ(rr.D[i], ref.D[i]) << i;
    // The uint8 estimate is close to the exact distance.
    for (size_t i = 0; i < q.rows() * k; ++i) {
      const float exact = ref.D[i];
      ASSERT_NEAR(raw.D[i], exact, 0.1f * std::max(1.0f, std::abs(exact)) + 2.0f) << i;
    }
  }
}

TEST(IndexFastScan, LsqAndThreadCountIndependence) {
  const auto x = tessera::testing::gaussian_mixture(2000, 16, 20, 4);
  const auto q = tessera::testing::gaussian_mixture(37, 16, 20, 5);
  LocalSearchQuantizerParams p;
  p.train_iters = 4;
  auto lsq = std::make_shared<LocalSearchQuantizer>(16, 4, 4, p, SearchType::ST_norm_lsq2x4);
  lsq->train(x.view());
  IndexAdditiveQuantizerFastScan fs(lsq, MetricType::L2);
  fs.add(x.view());
  Result one, many;
  {
    ScopedThreads t(1);
    one = run_search(fs, q, 7);
  }
  {
    ScopedThreads t(4);
    many = run_search(fs, q, 7);
  }
  EXPECT_EQ(one.I, many.I);
  EXPECT_EQ(one.D, many.D);
  // k beyond ntotal: −1 and +inf.
  IndexAdditiveQuantizerFastScan small(lsq, MetricType::L2);
  small.add(MatrixView<const float>(x.data(), 3, 16, 16));
  const Result r = run_search(small, q, 5);
  EXPECT_EQ(r.I[3], -1);
  EXPECT_TRUE(std::isinf(r.D[4]));
}

TEST(IndexFastScan, FileRoundTrip) {
  const auto x = tessera::testing::gaussian_mixture(500, 16, 10, 6);
  const auto q = tessera::testing::gaussian_mixture(20, 16, 10, 7);
  auto rq = trained_rq(x, 6, 4, SearchType::ST_norm_lsq2x4);
  IndexAdditiveQuantizerFastScan fs(rq, MetricType::L2);
  fs.add(x.view());
  fs.set_rerank_factor(2);
  const std::string path = (std::filesystem::temp_directory_path() / "tessera_fs_test.tsi").string();
  write_index(fs, path);
  EXPECT_EQ(index_file_type(path), "index_additive_fast_scan");
  const IndexAdditiveQuantizerFastScan back = read_index_fast_scan(path);
  EXPECT_EQ(back.codes(), fs.codes());
  EXPECT_EQ(back.norm_scale(), fs.norm_scale());
  EXPECT_EQ(back.rerank_factor(), 2u);
  const Result a = run_search(fs, q, 5), b = run_search(back, q, 5);
  EXPECT_EQ(a.I, b.I);
  EXPECT_EQ(a.D, b.D);
  EXPECT_THROW(read_index(path), FormatError);  // the flat reader names the fast-scan type
  std::filesystem::remove(path);
}

TEST(IndexFastScan, Errors) {
  const auto x = tessera::testing::gaussian_mixture(300, 8, 5, 8);
  auto rq5 = trained_rq(x, 2, 5, SearchType::ST_norm_rq2x4);
  EXPECT_THROW(IndexAdditiveQuantizerFastScan(rq5, MetricType::L2), InvalidArgument);
  auto rq_float = trained_rq(x, 2, 4, SearchType::ST_norm_float);
  EXPECT_THROW(IndexAdditiveQuantizerFastScan(rq_float, MetricType::L2), InvalidArgument);
  EXPECT_THROW(IndexAdditiveQuantizerFastScan(rq_float, MetricType::inner_product), InvalidArgument);
  auto rq_nonorm = trained_rq(x, 2, 4, SearchType::ST_LUT_nonorm);
  EXPECT_THROW(IndexAdditiveQuantizerFastScan(rq_nonorm, MetricType::L2), InvalidArgument);
  EXPECT_NO_THROW(IndexAdditiveQuantizerFastScan(rq_nonorm, MetricType::inner_product));
  EXPECT_THROW(IndexAdditiveQuantizerFastScan(rq_nonorm, MetricType::inner_product, 48), InvalidArgument);
  auto untrained = std::make_shared<ResidualQuantizer>(8, 2, 4, SearchType::ST_norm_rq2x4);
  EXPECT_THROW(IndexAdditiveQuantizerFastScan(untrained, MetricType::L2), InvalidArgument);
  try {
    IndexAdditiveQuantizerFastScan bad(rq5, MetricType::L2);
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("nbits = 4"), std::string::npos) << e.what();
  }
}
