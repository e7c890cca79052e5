// MNIST idx files, plain and gzipped (detected by content), including the real Fashion-MNIST test set.
#include <gtest/gtest.h>

#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "io_test_util.h"
#include "tessera/io/idx.h"

using namespace tessera;
using namespace tessera_test;

namespace {
void expect_small_fixture(const FloatMatrix& x) {
  ASSERT_EQ(x.rows(), 3u);
  ASSERT_EQ(x.cols(), 10u);  // 2 × 5 images flattened
  for (size_t k = 0; k < 30; ++k) EXPECT_EQ(x.data()[k], float(k * 11 % 256));
}
}  // namespace

TEST(IdxRead, PlainAndGzippedFixtures) {
  expect_small_fixture(read_idx(fixture("small-idx3-ubyte")));
  expect_small_fixture(read_idx(fixture("small-idx3-ubyte.gz")));
  const std::string raw = slurp(fixture("small-idx3-ubyte"));
  expect_small_fixture(parse_idx(raw.data(), raw.size()));
}

TEST(IdxRead, GzipIsDetectedByContentNotName) {
  ScratchDir dir;
  std::filesystem::copy_file(fixture("small-idx3-ubyte.gz"), dir / "images.idx");
  std::filesystem::copy_file(fixture("small-idx3-ubyte"), dir / "images.idx.gz");
  expect_small_fixture(read_idx(dir / "images.idx"));
  expect_small_fixture(read_idx(dir / "images.idx.gz"));
}

TEST(IdxRead, FashionMnistTestImages) {
  const std::string path = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  // Debian's copy, not one of the shared data sets: TESSERA_DATA does not move it.
  if (!exists(path)) GTEST_SKIP() << path << " is absent: install the Debian package dataset-fashion-mnist";
  const FloatMatrix x = read_idx(path);
  ASSERT_EQ(x.rows(), 10000u);
  ASSERT_EQ(x.cols(), 784u);
  double sum = 0;
  float hi = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    sum += x.data()[k];
    hi = std::max(hi, x.data()[k]);
  }
  EXPECT_EQ(hi, 255.0f);
  EXPECT_GT(sum / double(x.size()), 30.0);  // mean pixel ≈ 73 for Fashion-MNIST
  EXPECT_LT(sum / double(x.size()), 120.0);
  const std::string labels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  if (exists(labels)) {
    const FloatMatrix y = read_idx(labels);
    ASSERT_EQ(y.rows(), 10000u);
    ASSERT_EQ(y.cols(), 1u);
    std::vector<int> count(10);
    for (size_t i = 0; i < y.rows(); ++i) count.at(size_t(y(i, 0)))++;
    for (int c : count) EXPECT_EQ(c, 1000);
  }
}

TEST(IdxRead, RefusesOtherTypesAndDamage) {
  std::string msg = error_of<FormatError>([] { read_idx(fixture("int32.idx")); });
  EXPECT_NE(msg.find("0xc (int32) is not supported"), std::string::npos) << msg;
  const std::string raw = slurp(fixture("small-idx3-ubyte"));
  for (size_t n = 0; n < raw.size(); ++n) EXPECT_THROW(parse_idx(raw.data(), n), FormatError) << n;
  msg = error_of<FormatError>([&] { parse_idx(raw.data(), raw.size() - 3); });
  EXPECT_NE(msg.find("truncated: header says 3 × 10 uint8 (30 bytes of data), file has 27"), std::string::npos) << msg;
  EXPECT_THROW(parse_idx((raw + "x").data(), raw.size() + 1), FormatError);
  // Dimensions whose product overflows 64 bits.
  const std::string huge("\x00\x00\x08\x04\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 20);
  msg = error_of<FormatError>([&] { parse_idx(huge.data(), huge.size()); });
  EXPECT_NE(msg.find("overflow"), std::string::npos) << msg;
  msg = error_of<FormatError>([] { parse_idx("PK\x03\x04", 4); });
  EXPECT_NE(msg.find("not an MNIST idx file"), std::string::npos) << msg;

  ScratchDir dir;
  const std::string gz = slurp(fixture("small-idx3-ubyte.gz"));
  spit(dir / "cut-ubyte.gz", gz.substr(0, gz.size() - 12));  // loses the end of the stream and the trailer
  msg = error_of<FormatError>([&] { read_idx(dir / "cut-ubyte.gz"); });
  EXPECT_NE(msg.find("cut-ubyte.gz"), std::string::npos) << msg;
  std::string flipped = gz;
  flipped[gz.size() - 6] ^= 0x55;  // the CRC32 in the trailer
  spit(dir / "crc-ubyte.gz", flipped);
  EXPECT_THROW(read_idx(dir / "crc-ubyte.gz"), FormatError);
  EXPECT_THROW(read_idx(dir / "missing-ubyte"), IOError);
}

TEST(IdxRead, GzipThatInflatesPastItsHeaderIsRefusedEarly) {
  // A 2 × 4 image header followed by 64 MiB of zeros: a few tens of KB compressed. The reader must stop
  // at the declared size (one byte past it) instead of inflating everything, and say so.
  ScratchDir dir;
  const std::string path = dir / "bomb-ubyte.gz";
  gzFile gz = gzopen(path.c_str(), "wb9");
  ASSERT_NE(gz, nullptr);
  const unsigned char header[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 4};
  ASSERT_EQ(gzwrite(gz, header, sizeof header), (int)sizeof header);
  const std::string zeros(size_t(1) << 20, '\0');
  for (int i = 0; i < 64; ++i) ASSERT_EQ(gzwrite(gz, zeros.data(), (unsigned)zeros.size()), (int)zeros.size());
  ASSERT_EQ(gzclose(gz), Z_OK);
  ASSERT_LT(std::filesystem::file_size(path), size_t(1) << 20);
  const std::string msg = error_of<FormatError>([&] { read_idx(path); });
  EXPECT_NE(msg.find("runs past the 20 bytes its idx header declares"), std::string::npos) << msg;
}
