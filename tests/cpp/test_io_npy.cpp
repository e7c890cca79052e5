// .npy reading and writing, checked against files numpy wrote (tests/data/make_fixtures.py).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "io_test_util.h"
#include "tessera/io/npy.h"

using namespace tessera;
using namespace tessera_test;

namespace {

// The values make_fixtures.py writes for the 3 × 4 fixtures: arange(12) * 0.5 - 1.25.
float base_value(size_t i, size_t j) { return float(i * 4 + j) * 0.5f - 1.25f; }

bool maps_contain(const std::string& path) {
  const std::string maps = slurp("/proc/self/maps");
  return maps.find(path) != std::string::npos;
}

}  // namespace

TEST(NpyRead, NumpyFloatDtypes) {
  for (const char* name : {"f4.npy", "f8.npy", "v2.npy", "v3.npy", "fortran_row.npy"}) {
    SCOPED_TRACE(name);
    const FloatMatrix x = read_npy_f32(fixture(name));
    const size_t rows = std::string(name) == "fortran_row.npy" ? 1 : 3;
    ASSERT_EQ(x.rows(), rows);
    ASSERT_EQ(x.cols(), 4u);
    for (size_t i = 0; i < rows; ++i)
      for (size_t j = 0; j < 4; ++j) EXPECT_EQ(x(i, j), base_value(i, j));
  }
}

TEST(NpyRead, Uint8AsFloatAndInt) {
  const FloatMatrix x = read_npy_f32(fixture("u1.npy"));
  const CodeMatrix c = read_npy_i32(fixture("u1.npy"));
  ASSERT_EQ(x.rows(), 3u);
  for (size_t k = 0; k < 12; ++k) {
    EXPECT_EQ(x.data()[k], float((250 + k) % 256));
    EXPECT_EQ(c.data()[k], int32_t((250 + k) % 256));
  }
}

TEST(NpyRead, Float16MatchesNumpyIncludingSubnormalsInfNan) {
  const FloatMatrix h = read_npy_f32(fixture("f2.npy"));
  const FloatMatrix ref = read_npy_f32(fixture("f2_as_f4.npy"));  // numpy's own conversion
  ASSERT_EQ(h.rows(), 2u);
  ASSERT_EQ(h.cols(), 8u);
  for (size_t k = 0; k < h.size(); ++k) {
    SCOPED_TRACE(k);
    if (std::isnan(ref.data()[k]))
      EXPECT_TRUE(std::isnan(h.data()[k]));
    else
      EXPECT_EQ(std::bit_cast<uint32_t>(h.data()[k]), std::bit_cast<uint32_t>(ref.data()[k]));
  }
  EXPECT_EQ(h(0, 6), 0x1p-24f);            // smallest subnormal
  EXPECT_EQ(h(0, 7), 1023 * 0x1p-24f);     // largest subnormal
  EXPECT_EQ(h(0, 4), 65504.0f);            // largest finite
  EXPECT_TRUE(std::isinf(h(1, 1)) && h(1, 1) > 0);
  EXPECT_TRUE(std::signbit(h(0, 1)) && h(0, 1) == 0.0f);  // -0 keeps its sign
}

TEST(NpyRead, Int32AndInt64) {
  const CodeMatrix a = read_npy_i32(fixture("i4.npy"));
  const CodeMatrix b = read_npy_i32(fixture("i8.npy"));
  ASSERT_EQ(a.rows(), 3u);
  ASSERT_EQ(b.cols(), 4u);
  for (int k = 0; k < 12; ++k) {
    EXPECT_EQ(a.data()[k], k - 6);
    EXPECT_EQ(b.data()[k], (k - 6) * 1000);
  }
  const std::string msg = error_of<FormatError>([] { read_npy_i32(fixture("i8_out_of_range.npy")); });
  EXPECT_NE(msg.find("2147483648"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not fit in int32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("row 1, column 1"), std::string::npos) << msg;
}

TEST(NpyRead, RefusedLayoutsSayWhy) {
  struct Case {
    const char* file;
    const char* says;
  };
  for (const Case& c : {Case{"fortran.npy", "np.ascontiguousarray"}, Case{"one_d.npy", "1-D array is not accepted"},
                        Case{"three_d.npy", "got 3-D"}, Case{"big_endian.npy", "big-endian"},
                        Case{"object.npy", "object array"}, Case{"complex.npy", "unsupported dtype '<c8'"},
                        Case{"i4.npy", "unsupported dtype '<i4'"}}) {
    SCOPED_TRACE(c.file);
    const std::string msg = error_of<FormatError>([&] { read_npy_f32(fixture(c.file)); });
    EXPECT_NE(msg.find(c.says), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.file), std::string::npos) << "the message names the file: " << msg;
  }
  EXPECT_THROW(read_npy_i32(fixture("f4.npy")), FormatError);
}

TEST(NpyRead, EmptyRowsAreFine) {
  const FloatMatrix x = read_npy_f32(fixture("empty_rows.npy"));
  EXPECT_EQ(x.rows(), 0u);
  EXPECT_EQ(x.cols(), 7u);
}

TEST(NpyRead, TruncatedAtEveryLengthIsAFormatError) {
  const std::string bytes = slurp(fixture("f4.npy"));
  for (size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE(n);
    EXPECT_THROW(parse_npy_f32(bytes.data(), n), FormatError);
  }
  ScratchDir dir;
  spit(dir / "cut.npy", bytes.substr(0, bytes.size() - 5));
  const std::string msg = error_of<FormatError>([&] { read_npy_f32(dir / "cut.npy"); });
  EXPECT_NE(msg.find("cut.npy: truncated: header says 3 × 4 float32 (48 bytes of data), file has 43"),
            std::string::npos)
      << msg;
  spit(dir / "long.npy", bytes + "xx");
  EXPECT_THROW(read_npy_f32(dir / "long.npy"), FormatError);
}

TEST(NpyRead, ForeignAndCorruptedHeaders) {
  ScratchDir dir;
  spit(dir / "text.npy", "hello, this is not numpy\n");
  EXPECT_NE(error_of<FormatError>([&] { read_npy_f32(dir / "text.npy"); }).find("not a .npy file"), std::string::npos);
  std::string bytes = slurp(fixture("f4.npy"));
  bytes[6] = 9;  // version 9.0
  EXPECT_NE(error_of<FormatError>([&] { parse_npy_f32(bytes.data(), bytes.size()); }).find("version 9.0"),
            std::string::npos);
  bytes = slurp(fixture("f4.npy"));
  bytes.replace(bytes.find("'shape'"), 7, "'shapf'");
  EXPECT_NE(error_of<FormatError>([&] { parse_npy_f32(bytes.data(), bytes.size()); }).find("unexpected key"),
            std::string::npos);
  bytes = slurp(fixture("f4.npy"));
  bytes.replace(bytes.find("(3, 4)"), 6, "(3, x)");
  EXPECT_THROW(parse_npy_f32(bytes.data(), bytes.size()), FormatError);
  bytes = slurp(fixture("f4.npy"));
  bytes.replace(bytes.find("(3, 4)"), 6, "(99999999999999999999999, 4)");  // overflows 64 bits
  bytes[8] = char(bytes[8] + 23);
  EXPECT_THROW(parse_npy_f32(bytes.data(), bytes.size()), FormatError);
  EXPECT_THROW(read_npy_f32(dir / "missing.npy"), IOError);
}

TEST(NpyRead, HeaderFields) {
  const std::string bytes = slurp(fixture("v2.npy"));
  const NpyHeader h = parse_npy_header(bytes.data(), bytes.size());
  EXPECT_EQ(h.descr, "<f4");
  EXPECT_FALSE(h.fortran_order);
  EXPECT_EQ(h.shape, (std::vector<size_t>{3, 4}));
  EXPECT_EQ(h.data_offset, bytes.size() - 48);
}

TEST(NpyWrite, ByteIdenticalToNumpy) {
  FloatMatrix f(3, 4);
  CodeMatrix i(3, 4);
  Matrix<int64_t> l(3, 4);
  for (size_t k = 0; k < 12; ++k) {
    f.data()[k] = float(k) * 0.5f - 1.25f;
    i.data()[k] = int32_t(k) - 6;
    l.data()[k] = (int64_t(k) - 6) * 1000;
  }
  EXPECT_EQ(npy_bytes(f.view()), slurp(fixture("f4.npy")));
  EXPECT_EQ(npy_bytes(i.view()), slurp(fixture("i4.npy")));
  EXPECT_EQ(npy_bytes(MatrixView<const int64_t>(l.view())), slurp(fixture("i8.npy")));
  // The data always starts on a 64-byte boundary, whatever the digits of the shape.
  for (size_t rows : {size_t(0), size_t(7), size_t(123456789012345)}) {
    const std::string b = npy_bytes(MatrixView<const float>(nullptr, rows, 0));
    EXPECT_EQ(b.size() % 64, 0u);
    EXPECT_EQ(parse_npy_header(b.data(), b.size()).shape, (std::vector<size_t>{rows, 0}));
  }
}

TEST(NpyWrite, RoundTripIncludingStridedViews) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  FloatMatrix x(37, 19);
  for (size_t k = 0; k < x.size(); ++k) x.data()[k] = g(rng);
  ScratchDir dir;
  write_npy(dir / "x.npy", x.view());
  const FloatMatrix y = read_npy_f32(dir / "x.npy");
  ASSERT_EQ(y.rows(), 37u);
  ASSERT_EQ(y.cols(), 19u);
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0);
  // Columns 3..10 of every other row: a view with a stride.
  const MatrixView<const float> sub(x.data() + 3, 18, 8, 2 * 19);
  write_npy(dir / "sub.npy", sub);
  const FloatMatrix s = read_npy_f32(dir / "sub.npy");
  for (size_t i = 0; i < 18; ++i)
    for (size_t j = 0; j < 8; ++j) EXPECT_EQ(s(i, j), x(2 * i, 3 + j));
  CodeMatrix c(5, 3);
  for (size_t k = 0; k < c.size(); ++k) c.data()[k] = int32_t(k * 1000003 % 8192) - 17;
  write_npy(dir / "c.npy", c.view());
  const CodeMatrix d = read_npy_i32(dir / "c.npy");
  EXPECT_EQ(std::memcmp(c.data(), d.data(), c.size() * 4), 0);
  Matrix<int64_t> l(2, 2);
  l(1, 1) = int64_t(1) << 40;
  write_npy(dir / "l.npy", MatrixView<const int64_t>(l.view()));
  EXPECT_THROW(read_npy_i32(dir / "l.npy"), FormatError);
  EXPECT_EQ(dir.entries().size(), 4u) << "no temporary files are left behind";
}

TEST(NpyRead, LargeFloat32FileIsMappedNotCopied) {
  // 1,000,000 × 128 float32 (512 MB) as a sparse file: cheap to make, and a copy would be obvious.
  ScratchDir dir;
  const std::string path = dir / "big.npy";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 128), }";
  header.append(128 - 10 - 1 - header.size(), ' ');
  header += '\n';
  const std::string prefix = std::string("\x93NUMPY\x01\x00", 8) + char(118) + char(0) + header;
  ASSERT_EQ(prefix.size(), 128u);
  spit(path, prefix);
  ASSERT_EQ(::truncate(path.c_str(), off_t(128 + size_t(1000000) * 128 * 4)), 0);
  {
    const FloatMatrix x = read_npy_f32(path);
    ASSERT_EQ(x.rows(), 1000000u);
    ASSERT_EQ(x.cols(), 128u);
    EXPECT_TRUE(maps_contain(path)) << "the file is memory-mapped";
    const uintptr_t start = reinterpret_cast<uintptr_t>(x.data()) - 128;
    EXPECT_EQ(start % uintptr_t(::sysconf(_SC_PAGESIZE)), 0u) << "the matrix points into the mapping";
    EXPECT_EQ(x(999999, 127), 0.0f);
    FloatMatrix copy = x;      // copies share the mapping
    copy(0, 0) = 1.0f;         // private copy-on-write pages: allowed, never reaches the file
    EXPECT_EQ(x(0, 0), 1.0f);  // (shared buffer, like a numpy view)
  }
  EXPECT_FALSE(maps_contain(path)) << "the mapping is released with the last matrix";
  EXPECT_EQ(read_npy_f32(path)(0, 0), 0.0f) << "the file itself was not modified";
}

TEST(NpyRead, DebianEmbeddingsFloat16RowsAreUnitNorm) {
  const std::string path = shared_data("debian-packages/embeddings.npy");
  if (const std::string why = missing_shared_data({path}); !why.empty()) GTEST_SKIP() << why;
  const FloatMatrix x = read_npy_f32(path);
  ASSERT_EQ(x.rows(), 63440u);
  ASSERT_EQ(x.cols(), 256u);
  size_t bad = 0;
  for (size_t i = 0; i < x.rows(); ++i) {
    double s = 0;
    for (size_t j = 0; j < x.cols(); ++j) s += double(x(i, j)) * x(i, j);
    if (std::abs(std::sqrt(s) - 1.0) > 5e-3) ++bad;
  }
  EXPECT_EQ(bad, 0u) << "rows whose L2 norm is not ≈ 1";
}

TEST(NpyWrite, UnwritableDirectoryIsAnIOErrorNamingThePath) {
  const FloatMatrix x(2, 2);
  const std::string msg = error_of<IOError>([&] { write_npy("/proc/nonexistent/x.npy", x.view()); });
  EXPECT_NE(msg.find("/proc/nonexistent/x.npy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_FALSE(exists("/proc/nonexistent/x.npy"));
}

TEST(NpyWrite, FailedRenameLeavesNothingBehind) {
  ScratchDir dir;
  ASSERT_EQ(::mkdir((dir / "target.npy").c_str(), 0755), 0);  // rename onto a directory fails
  const FloatMatrix x(2, 2);
  EXPECT_THROW(write_npy(dir / "target.npy", x.view()), IOError);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"target.npy"});
}
