// .npz archives: numpy's savez (stored) and savez_compressed (deflated), our writer, and damage.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>

#include "io_test_util.h"
#include "tessera/io/npy.h"
#include "tessera/io/npz.h"

using namespace tessera;
using namespace tessera_test;

namespace {
const char* kPython = TESSERA_SOURCE_DIR "/.venv/bin/python";
}  // namespace

TEST(NpzRead, NumpySavezAndSavezCompressed) {
  for (const char* name : {"stored.npz", "deflated.npz"}) {
    SCOPED_TRACE(name);
    const auto members = read_npz_f32(fixture(name));
    ASSERT_EQ(members.size(), 2u);
    EXPECT_EQ(members[0].first, "codebook_0");
    EXPECT_EQ(members[1].first, "codebook_1");
    const FloatMatrix& a = members[0].second;
    ASSERT_EQ(a.rows(), 3u);
    ASSERT_EQ(a.cols(), 4u);
    for (size_t k = 0; k < 12; ++k) EXPECT_EQ(a.data()[k], float(k) * 0.5f - 1.25f);
    const FloatMatrix& b = members[1].second;  // float16 member
    ASSERT_EQ(b.rows(), 2u);
    ASSERT_EQ(b.cols(), 3u);
    for (size_t k = 0; k < 6; ++k) EXPECT_EQ(b.data()[k], float(k));
  }
}

TEST(NpzRead, BadMembersAndForeignArchives) {
  std::string msg = error_of<FormatError>([] { read_npz_f32(fixture("one_d_member.npz")); });
  EXPECT_NE(msg.find("one_d_member.npz[bad.npy]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1-D"), std::string::npos) << msg;
  msg = error_of<FormatError>([] { read_npz_f32(fixture("foreign.npz")); });
  EXPECT_NE(msg.find("[readme.txt]: not a .npy member"), std::string::npos) << msg;
  msg = error_of<FormatError>([] { read_npz_f32(fixture("f4.npy")); });
  EXPECT_NE(msg.find("not a valid .npz (zip) archive"), std::string::npos) << msg;
  EXPECT_THROW(read_npz_f32(fixture("missing.npz")), IOError);
  EXPECT_THROW(read_npz_f32_from_memory("", 0), FormatError);
}

TEST(NpzRead, TruncatedOrCorruptedIsAFormatErrorNeverACrash) {
  for (const char* name : {"stored.npz", "deflated.npz"}) {
    SCOPED_TRACE(name);
    const std::string bytes = slurp(fixture(name));
    for (size_t n = 0; n < bytes.size(); ++n)
      EXPECT_THROW(read_npz_f32_from_memory(bytes.data(), n), FormatError) << n;
    // Flip each byte of the archive in turn: either still readable (a byte that does not matter, such as a
    // timestamp) or a FormatError; never another exception or a crash.
    size_t refused = 0;
    for (size_t i = 0; i < bytes.size(); ++i) {
      std::string bad = bytes;
      bad[i] = char(bad[i] ^ 0x5a);
      try {
        read_npz_f32_from_memory(bad.data(), bad.size());
      } catch (const FormatError&) {
        ++refused;
      }
    }
    EXPECT_GT(refused, bytes.size() / 4);
  }
  // A flipped byte inside the compressed data is caught (CRC or inflate error). The first member's data
  // starts at 64 (30-byte local header, 14-byte name, 20-byte zip64 extra) and is 106 bytes long.
  std::string bytes = slurp(fixture("deflated.npz"));
  bytes[114] = char(bytes[114] ^ 0xff);
  EXPECT_THROW(read_npz_f32_from_memory(bytes.data(), bytes.size()), FormatError);
}

TEST(NpzWrite, RoundTripStoredAndDeflated) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  FloatMatrix a(256, 32), b(4, 3);
  for (size_t k = 0; k < a.size(); ++k) a.data()[k] = g(rng);
  for (size_t k = 0; k < b.size(); ++k) b.data()[k] = float(k);
  ScratchDir dir;
  for (bool compress : {false, true}) {
    const std::string path = dir / (compress ? "c.npz" : "s.npz");
    write_npz(path, {{"codebook_0", a.view()}, {"codebook_1", b.view()}}, compress);
    const auto m = read_npz_f32(path);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0].first, "codebook_0");
    EXPECT_EQ(m[1].first, "codebook_1");
    ASSERT_EQ(m[0].second.rows(), 256u);
    EXPECT_EQ(std::memcmp(m[0].second.data(), a.data(), a.size() * 4), 0);
    EXPECT_EQ(m[1].second(3, 2), 11.0f);
  }
  EXPECT_LT(std::filesystem::file_size(dir / "c.npz"), std::filesystem::file_size(dir / "s.npz"));
  // The same arrays always give the same bytes (fixed entry timestamps).
  write_npz(dir / "again.npz", {{"codebook_0", a.view()}, {"codebook_1", b.view()}}, true);
  EXPECT_EQ(slurp(dir / "again.npz"), slurp(dir / "c.npz"));
  write_npz(dir / "empty.npz", {});
  EXPECT_TRUE(read_npz_f32(dir / "empty.npz").empty());
  EXPECT_EQ(dir.entries().size(), 4u) << "no temporary files are left behind";
}

TEST(NpzWrite, BadNamesAndUnwritableDirectory) {
  FloatMatrix a(2, 2);
  ScratchDir dir;
  EXPECT_THROW(write_npz(dir / "d.npz", {{"x", a.view()}, {"x", a.view()}}), InvalidArgument);
  EXPECT_THROW(write_npz(dir / "d.npz", {{"", a.view()}}), InvalidArgument);
  const std::string msg = error_of<IOError>([&] { write_npz("/proc/nonexistent/x.npz", {{"x", a.view()}}); });
  EXPECT_NE(msg.find("/proc/nonexistent/x.npz"), std::string::npos) << msg;
  EXPECT_TRUE(dir.entries().empty());
}

// numpy itself loads what we write (skipped when the project's venv is absent).
TEST(NpzWrite, NumpyLoadsOurFiles) {
  if (!exists(kPython)) GTEST_SKIP() << kPython << " is absent";
  FloatMatrix a(5, 3);
  for (size_t k = 0; k < a.size(); ++k) a.data()[k] = float(k) / 8;
  CodeMatrix c(2, 4);
  for (size_t k = 0; k < c.size(); ++k) c.data()[k] = int32_t(k) - 1;
  ScratchDir dir;
  write_npz(dir / "c.npz", {{"codebook_0", a.view()}, {"codebook_1", a.view()}}, true);
  write_npz(dir / "s.npz", {{"codebook_0", a.view()}}, false);
  write_npy(dir / "a.npy", a.view());
  write_npy(dir / "c.npy", c.view());
  const std::string script =
      "import numpy as np, sys; d = sys.argv[1]; ref = np.arange(15, dtype=np.float32).reshape(5, 3) / 8\n"
      "z = np.load(d + '/c.npz'); assert sorted(z.files) == ['codebook_0', 'codebook_1'], z.files\n"
      "assert (z['codebook_1'] == ref).all() and z['codebook_1'].dtype == np.float32\n"
      "assert (np.load(d + '/s.npz')['codebook_0'] == ref).all()\n"
      "assert (np.load(d + '/a.npy') == ref).all()\n"
      "assert (np.load(d + '/c.npy') == np.arange(8).reshape(2, 4) - 1).all()\n";
  spit(dir / "check.py", script);
  const std::string cmd = std::string(kPython) + " " + (dir / "check.py") + " " + dir.path();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}
