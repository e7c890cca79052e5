// NpyShards (a set of .npy shards read as one matrix) and NpyStreamWriter (a .npy written a block at a time).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "io_test_util.h"
#include "tessera/core/error.h"
#include "tessera/io/npy.h"
#include "tessera/io/npy_shards.h"
#include "tessera/io/npy_stream_writer.h"

using namespace tessera;
using tessera_test::error_of;
using tessera_test::ScratchDir;
using tessera_test::slurp;

namespace {

FloatMatrix iota_matrix(size_t n, size_t d, float start = 0) {
  FloatMatrix m(n, d);
  for (size_t i = 0; i < m.size(); ++i) m.data()[i] = start + float(i);
  return m;
}

FloatMatrix rows_of(const FloatMatrix& x, size_t a, size_t b) {
  return FloatMatrix::copy_of(MatrixView<const float>(x.row(a), b - a, x.cols()));
}

}  // namespace

TEST(NpyShards, ConcatenatesInSortedPathOrder) {
  ScratchDir dir;
  const FloatMatrix x = iota_matrix(10, 3);
  std::filesystem::create_directory(dir / "s");
  // Written out of order: the reader sorts the names.
  write_npy(dir / "s/part-2.npy", rows_of(x, 7, 10).view());
  write_npy(dir / "s/part-0.npy", rows_of(x, 0, 4).view());
  write_npy(dir / "s/part-1.npy", rows_of(x, 4, 7).view());
  for (const std::string& spec : {dir / "s", dir / "s/part-*.npy"}) {
    const NpyShards s = NpyShards::open(spec);
    ASSERT_EQ(s.num_shards(), 3u);
    EXPECT_EQ(s.rows(), 10u);
    EXPECT_EQ(s.cols(), 3u);
    EXPECT_EQ(s.dtype(), "float32");
    EXPECT_EQ(s.where(5), dir / "s/part-1.npy" + " row 1");
    // Any block, across shard boundaries or inside one (a view of the mapping), equals the same rows of x.
    FloatMatrix buf;
    for (size_t a = 0; a < 10; ++a)
      for (size_t b = a + 1; b <= 10; ++b) {
        const MatrixView<const float> v = s.read(a, b, buf);
        ASSERT_EQ(v.rows, b - a);
        for (size_t i = 0; i < v.rows; ++i)
          for (size_t j = 0; j < 3; ++j) ASSERT_EQ(v(i, j), x(a + i, j)) << a << " " << b;
        s.release(a, b);
      }
    const FloatMatrix all = s.read_all();
    EXPECT_TRUE(std::equal(all.data(), all.data() + all.size(), x.data()));
    std::vector<float> g(2 * 3);
    s.gather({8, 1}, g.data());
    EXPECT_EQ(g[0], x(8, 0));
    EXPECT_EQ(g[3], x(1, 0));
  }
}

TEST(NpyShards, SingleFloat32FileIsMappedNotCopied) {
  ScratchDir dir;
  write_npy(dir / "x.npy", iota_matrix(6, 4).view());
  const NpyShards s = NpyShards::open(dir / "x.npy");
  FloatMatrix buf;
  const MatrixView<const float> v = s.read(1, 5, buf);
  EXPECT_TRUE(buf.empty());  // the rows came from the mapping
  EXPECT_EQ(v(0, 0), 4.0f);
  EXPECT_EQ(s.read_all()(5, 3), 23.0f);
}

TEST(NpyShards, ConvertsOtherDtypes) {
  ScratchDir dir;
  // float64 and uint8 shards are converted (all shards share one dtype).
  std::string u8 = npy_bytes(MatrixView<const uint8_t>(reinterpret_cast<const uint8_t*>("\x01\x02\x03\x04"), 2, 2));
  tessera_test::spit(dir / "a.npy", u8);
  tessera_test::spit(dir / "b.npy", u8);
  const NpyShards s = NpyShards::open(dir / "*.npy");
  EXPECT_EQ(s.dtype(), "uint8");
  FloatMatrix buf;
  const MatrixView<const float> v = s.read(1, 3, buf);
  EXPECT_EQ(v(0, 0), 3.0f);
  EXPECT_EQ(v(1, 1), 2.0f);
}

TEST(NpyShards, BadShardsAreNamed) {
  ScratchDir dir;
  std::filesystem::create_directory(dir / "w");
  write_npy(dir / "w/a.npy", iota_matrix(3, 4).view());
  write_npy(dir / "w/b.npy", iota_matrix(3, 5).view());
  std::string e = error_of<InvalidArgument>([&] { NpyShards::open(dir / "w"); });
  EXPECT_NE(e.find("w/b.npy has 5 columns"), std::string::npos) << e;
  EXPECT_NE(e.find("w/a.npy has 4"), std::string::npos) << e;

  std::filesystem::create_directory(dir / "e");
  write_npy(dir / "e/a.npy", iota_matrix(3, 4).view());
  write_npy(dir / "e/b.npy", FloatMatrix(0, 4).view());
  e = error_of<InvalidArgument>([&] { NpyShards::open(dir / "e"); });
  EXPECT_NE(e.find("e/b.npy is empty"), std::string::npos) << e;

  std::filesystem::create_directory(dir / "t");
  write_npy(dir / "t/a.npy", iota_matrix(3, 4).view());
  tessera_test::spit(dir / "t/b.npy", npy_bytes(MatrixView<const int32_t>(CodeMatrix(3, 4).data(), 3, 4)));
  e = error_of<Error>([&] { NpyShards::open(dir / "t"); });
  EXPECT_NE(e.find("t/b.npy"), std::string::npos) << e;

  e = error_of<InvalidArgument>([&] { NpyShards::open(dir / "nothing-*.npy"); });
  EXPECT_NE(e.find("matches no file"), std::string::npos) << e;
  std::filesystem::create_directory(dir / "none");
  e = error_of<InvalidArgument>([&] { NpyShards::open(dir / "none"); });
  EXPECT_NE(e.find("no .npy shards"), std::string::npos) << e;
}

TEST(NpyShards, NanIsNamedByShardAndRow) {
  ScratchDir dir;
  FloatMatrix b = iota_matrix(5, 3);
  b(3, 2) = NAN;
  write_npy(dir / "p0.npy", iota_matrix(4, 3).view());
  write_npy(dir / "p1.npy", b.view());
  const NpyShards s = NpyShards::open(dir / "p*.npy");
  const FloatMatrix all = s.read_all();
  const std::string e = error_of<InvalidArgument>([&] { s.check_finite(0, all.view()); });
  EXPECT_NE(e.find("p1.npy row 3 (row 7 of the input)"), std::string::npos) << e;
  EXPECT_NE(e.find("column 2"), std::string::npos) << e;
  FloatMatrix buf;
  EXPECT_NO_THROW(s.check_finite(0, s.read(0, 7, buf)));
}

TEST(NpyStreamWriter, RoundTripEqualsWriteNpy) {
  ScratchDir dir;
  CodeMatrix c(1001, 3);
  for (size_t i = 0; i < c.size(); ++i) c.data()[i] = int32_t(i * 7 % 256);
  write_npy(dir / "whole.npy", c.view());
  {
    NpyStreamWriter w(dir / "blocks.npy", NpyStreamWriter::Dtype::int32, 1001, 3);
    for (size_t a = 0; a < 1001; a += 100)
      w.append(MatrixView<const int32_t>(c.row(a), std::min<size_t>(100, 1001 - a), 3));
    EXPECT_FALSE(std::filesystem::exists(dir / "blocks.npy"));  // only the temporary file until commit
    w.commit();
  }
  EXPECT_EQ(slurp(dir / "blocks.npy"), slurp(dir / "whole.npy"));
  const CodeMatrix back = read_npy_i32(dir / "blocks.npy");
  EXPECT_TRUE(std::equal(back.data(), back.data() + back.size(), c.data()));

  const FloatMatrix x = iota_matrix(5, 2);
  {
    NpyStreamWriter w(dir / "f.npy", NpyStreamWriter::Dtype::float32, 5, 2);
    w.append(rows_of(x, 0, 2).view());
    w.append(rows_of(x, 2, 5).view());
    w.commit();
  }
  EXPECT_EQ(slurp(dir / "f.npy"), npy_bytes(x.view()));
}

TEST(NpyStreamWriter, IncompleteOrWrongBlocksLeaveNoFile) {
  ScratchDir dir;
  {
    NpyStreamWriter w(dir / "short.npy", NpyStreamWriter::Dtype::int32, 10, 2);
    w.append(MatrixView<const int32_t>(CodeMatrix(4, 2).data(), 4, 2));
    EXPECT_NE(error_of<InvalidArgument>([&] { w.commit(); }).find("4 rows were written, the header declares 10"),
              std::string::npos);
    EXPECT_THROW(w.append(MatrixView<const int32_t>(CodeMatrix(4, 3).data(), 4, 3)), InvalidArgument);
    EXPECT_THROW(w.append(MatrixView<const int32_t>(CodeMatrix(7, 2).data(), 7, 2)), InvalidArgument);
    EXPECT_THROW(w.append(MatrixView<const float>(FloatMatrix(1, 2).data(), 1, 2)), InvalidArgument);
  }
  EXPECT_TRUE(dir.entries().empty());
}
