// texmex .fvecs/.ivecs/.bvecs, on fixtures, on the real shared data sets, and on damaged files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "io_test_util.h"
#include "tessera/io/npy.h"
#include "tessera/io/texmex.h"
#include "tessera/io/vectors.h"

using namespace tessera;
using namespace tessera_test;

namespace {
}  // namespace

TEST(TexmexRead, NumpyWrittenFixtures) {
  const FloatMatrix f = read_fvecs(fixture("small.fvecs"));
  ASSERT_EQ(f.rows(), 5u);
  ASSERT_EQ(f.cols(), 3u);
  for (size_t k = 0; k < 15; ++k) EXPECT_EQ(f.data()[k], (float(k) - 7) / 4);
  const CodeMatrix i = read_ivecs(fixture("small.ivecs"));
  ASSERT_EQ(i.rows(), 2u);
  ASSERT_EQ(i.cols(), 5u);
  for (size_t k = 0; k < 10; ++k) EXPECT_EQ(i.data()[k], int32_t(k) - 3);
  const FloatMatrix b = read_bvecs(fixture("small.bvecs"));
  ASSERT_EQ(b.rows(), 2u);
  ASSERT_EQ(b.cols(), 4u);
  for (size_t k = 0; k < 8; ++k) EXPECT_EQ(b.data()[k], float(k * 37 % 256));
  const std::string ib = slurp(fixture("small.ivecs"));
  const FloatMatrix iv = parse_texmex(ib.data(), ib.size(), 'i');
  EXPECT_EQ(iv(1, 4), 6.0f);
  EXPECT_THROW(parse_texmex(ib.data(), ib.size(), 'x'), InvalidArgument);
}

TEST(TexmexRead, SiftSmall) {
  const std::string base = shared_data("siftsmall/siftsmall_base.fvecs");
  const std::string truth = shared_data("siftsmall/siftsmall_groundtruth.ivecs");
  const std::string query = shared_data("siftsmall/siftsmall_query.fvecs");
  if (const std::string why = missing_shared_data({base, truth, query}); !why.empty()) GTEST_SKIP() << why;
  const FloatMatrix x = read_fvecs(base);
  ASSERT_EQ(x.rows(), 10000u);
  ASSERT_EQ(x.cols(), 128u);
  // SIFT descriptors are small non-negative integers stored as floats.
  for (size_t k = 0; k < x.size(); ++k) {
    ASSERT_GE(x.data()[k], 0.0f);
    ASSERT_LE(x.data()[k], 255.0f);
    ASSERT_EQ(x.data()[k], std::floor(x.data()[k]));
  }
  const CodeMatrix gt = read_ivecs(truth);
  ASSERT_EQ(gt.rows(), 100u);
  ASSERT_EQ(gt.cols(), 100u);
  for (size_t k = 0; k < gt.size(); ++k) ASSERT_TRUE(gt.data()[k] >= 0 && gt.data()[k] < 10000);
  // The ground truth is right: the listed nearest base vector of query 0 is at least as close as any other.
  const FloatMatrix q = read_fvecs(query);
  auto dist = [&](size_t b) {
    double s = 0;
    for (size_t j = 0; j < 128; ++j) s += double(q(0, j) - x(b, j)) * (q(0, j) - x(b, j));
    return s;
  };
  const double best = dist(size_t(gt(0, 0)));
  for (size_t b = 0; b < x.rows(); ++b) ASSERT_LE(best, dist(b));
}

TEST(TexmexRead, Bigann10k) {
  const std::string base = shared_data("bigann10k/bigann10k_base.bvecs");
  const std::string query = shared_data("bigann10k/bigann10k_query.bvecs");
  const std::string truth = shared_data("bigann10k/bigann10k_groundtruth.ivecs");
  if (const std::string why = missing_shared_data({base, query, truth}); !why.empty()) GTEST_SKIP() << why;
  const FloatMatrix x = read_bvecs(base);
  ASSERT_EQ(x.rows(), 10000u);
  ASSERT_EQ(x.cols(), 128u);
  const FloatMatrix q = read_bvecs(query);
  ASSERT_EQ(q.rows(), 100u);
  EXPECT_EQ(std::memcmp(q.data(), x.data(), q.size() * 4), 0) << "the queries are the first 100 base rows";
  const CodeMatrix gt = read_ivecs(truth);
  ASSERT_EQ(gt.rows(), 100u);
  ASSERT_EQ(gt.cols(), 100u);
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(gt(i, 0), int32_t(i));
}

TEST(TexmexWrite, RoundTrips) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  FloatMatrix f(300, 7);
  CodeMatrix c(300, 7);
  Matrix<uint8_t> b(300, 7);
  for (size_t k = 0; k < f.size(); ++k) {
    f.data()[k] = g(rng);
    c.data()[k] = int32_t(rng()) ;
    b.data()[k] = uint8_t(rng());
  }
  ScratchDir dir;
  write_fvecs(dir / "a.fvecs", f.view());
  write_ivecs(dir / "a.ivecs", c.view());
  write_bvecs(dir / "a.bvecs", MatrixView<const uint8_t>(b.view()));
  EXPECT_EQ(std::filesystem::file_size(dir / "a.fvecs"), 300u * (4 + 7 * 4));
  const FloatMatrix f2 = read_fvecs(dir / "a.fvecs");
  const CodeMatrix c2 = read_ivecs(dir / "a.ivecs");
  const FloatMatrix b2 = read_bvecs(dir / "a.bvecs");
  ASSERT_EQ(f2.rows(), 300u);
  EXPECT_EQ(std::memcmp(f.data(), f2.data(), f.size() * 4), 0);
  EXPECT_EQ(std::memcmp(c.data(), c2.data(), c.size() * 4), 0);
  for (size_t k = 0; k < b.size(); ++k) ASSERT_EQ(b2.data()[k], float(b.data()[k]));
  // A strided view is written row by row.
  write_fvecs(dir / "s.fvecs", MatrixView<const float>(f.data() + 1, 150, 3, 14));
  const FloatMatrix s = read_fvecs(dir / "s.fvecs");
  EXPECT_EQ(s(149, 2), f(298, 3));
  EXPECT_THROW(write_fvecs(dir / "e.fvecs", MatrixView<const float>(nullptr, 3, 0)), InvalidArgument);
  EXPECT_EQ(dir.entries().size(), 4u);
}

TEST(TexmexRead, DamagedFilesSayWhatIsWrong) {
  ScratchDir dir;
  const std::string good = slurp(fixture("small.fvecs"));  // 5 rows of 4 + 3 × 4 bytes
  struct Case {
    std::string bytes;
    const char* says;
  };
  std::string mixed = good;
  mixed[16] = 2;  // row 1 claims d = 2
  std::string zero = good, negative = good, huge = good;
  zero[0] = 0;
  std::memcpy(negative.data(), "\xff\xff\xff\xff", 4);
  std::memcpy(huge.data(), "\x00\x00\x00\x40", 4);
  for (const Case& c : {Case{good.substr(0, good.size() - 1), "is not a multiple of the row size 4 + 3 × 4 = 16"},
                        Case{mixed, "row 1 has dimension 2 but row 0 has 3"},
                        Case{zero, "dimension is 0"}, Case{negative, "dimension is -1"},
                        Case{huge, "dimension is 1073741824"}, Case{"", "empty file"}, Case{"ab", "truncated"}}) {
    spit(dir / "bad.fvecs", c.bytes);
    const std::string msg = error_of<FormatError>([&] { read_fvecs(dir / "bad.fvecs"); });
    EXPECT_NE(msg.find(c.says), std::string::npos) << msg;
    EXPECT_NE(msg.find("bad.fvecs"), std::string::npos) << msg;
  }
  // A .npy read as .fvecs: its first word is not a sane dimension.
  EXPECT_THROW(read_fvecs(fixture("f4.npy")), FormatError);
  EXPECT_THROW(read_fvecs(dir / "missing.fvecs"), IOError);
  for (size_t n = 0; n < good.size(); ++n)
    if (n % 16 != 0 || n == 0) EXPECT_THROW(parse_texmex(good.data(), n, 'f'), FormatError) << n;
}

TEST(TexmexRead, ReadVectorsDispatchesByExtension) {
  EXPECT_EQ(read_vectors(fixture("small.fvecs")).rows(), 5u);
  EXPECT_EQ(read_vectors(fixture("small.bvecs"))(1, 3), float(7 * 37 % 256));
  EXPECT_EQ(read_vectors(fixture("small.ivecs"))(1, 4), 6.0f);
  EXPECT_EQ(read_vectors(fixture("f2.npy")).cols(), 8u);
  EXPECT_EQ(read_vectors(fixture("small-idx3-ubyte")).cols(), 10u);
  EXPECT_EQ(read_vectors(fixture("small-idx3-ubyte.gz")).rows(), 3u);
  ScratchDir dir;
  std::filesystem::copy_file(fixture("small.fvecs"), dir / "UPPER.FVECS");
  EXPECT_EQ(read_vectors(dir / "UPPER.FVECS").rows(), 5u);
  std::filesystem::copy_file(fixture("small-idx3-ubyte.gz"), dir / "images.idx.gz");
  EXPECT_EQ(read_vectors(dir / "images.idx.gz").rows(), 3u);
  const std::string msg = error_of<InvalidArgument>([] { read_vectors("data.bin"); });
  EXPECT_NE(msg.find("data.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find(".npy, .fvecs, .bvecs, .ivecs"), std::string::npos) << msg;
}
