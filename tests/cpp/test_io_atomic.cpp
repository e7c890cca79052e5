// Atomic output: the target appears complete or not at all, whatever happens to the writer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "io_test_util.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/npy.h"

using namespace tessera;
using namespace tessera_test;

namespace {
// The temporary files AtomicFile makes for `name` inside `dir`.
std::vector<std::string> temps_of(const ScratchDir& dir, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& e : dir.entries())
    if (e.rfind(name + ".tmp.", 0) == 0) out.push_back(e);
  return out;
}
}  // namespace

TEST(AtomicFile, TargetAppearsOnlyOnCommit) {
  ScratchDir dir;
  const std::string target = dir / "out.bin";
  AtomicFile f(target);
  f.write("hello ");
  f.write(std::string_view("world"));
  EXPECT_FALSE(exists(target));
  const auto temps = temps_of(dir, "out.bin");
  ASSERT_EQ(temps.size(), 1u);
  EXPECT_EQ(temps[0].rfind("out.bin.tmp." + std::to_string(::getpid()) + ".", 0), 0u) << temps[0];
  f.commit();
  EXPECT_EQ(slurp(target), "hello world");
  EXPECT_TRUE(temps_of(dir, "out.bin").empty());
  EXPECT_THROW(f.commit(), InvalidArgument);
}

TEST(AtomicFile, AbandonedWriteKeepsTheOldFileAndRemovesTheTemp) {
  ScratchDir dir;
  const std::string target = dir / "out.bin";
  write_file_atomic(target, "old contents");
  try {
    AtomicFile f(target);
    f.write("new, half-way");
    throw std::runtime_error("the writer failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(slurp(target), "old contents");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFile, ConcurrentWritersUseDistinctTemps) {
  ScratchDir dir;
  AtomicFile a(dir / "x"), b(dir / "x");
  a.write("a");
  b.write("b");
  EXPECT_EQ(temps_of(dir, "x").size(), 2u);
  a.commit();
  b.commit();
  EXPECT_EQ(slurp(dir / "x"), "b");  // last rename wins, and each version was whole
}

TEST(AtomicFile, ReadFile) {
  ScratchDir dir;
  write_file_atomic(dir / "f", std::string("a\0b", 3));
  EXPECT_EQ(read_file(dir / "f"), std::string("a\0b", 3));
  write_file_atomic(dir / "empty", "");
  EXPECT_EQ(read_file(dir / "empty"), "");
  EXPECT_THROW(read_file(dir / "missing"), IOError);
  EXPECT_THROW(read_file(dir.path()), IOError);
  EXPECT_FALSE(read_file("/proc/self/status").empty()) << "unmappable files are read";
}

TEST(AtomicFile, UnwritableDirectory) {
  try {
    AtomicFile f("/proc/nonexistent/x.npy");
    FAIL() << "expected an IOError";
  } catch (const IOError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("/proc/nonexistent/x.npy"), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  }
  EXPECT_THROW(write_file_atomic("", "x"), InvalidArgument);
}

// A writer SIGKILLed half-way through a large .npy must not leave a partial file at the target path.
// (Its temporary file does remain: nothing runs in a killed process. It has a distinct
// "<target>.tmp.<pid>.<n>" name, so no reader mistakes it for the output; the test removes it.)
TEST(AtomicFile, KilledWriterLeavesNoPartialTarget) {
  ScratchDir dir;
  const std::string target = dir / "big.npy";
  FloatMatrix old(2, 3);
  old(1, 2) = 42.0f;
  write_npy(target, old.view());  // a previous complete result, which must survive

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Child: stream a large .npy through AtomicFile; it never reaches commit().
    try {
      AtomicFile f(target);
      f.write(npy_bytes(MatrixView<const float>(nullptr, 0, 128)));
      const std::vector<float> rows(128 * 1024, 1.0f);
      for (int i = 0; i < 512; ++i) f.write(rows.data(), rows.size() * sizeof(float));  // up to 256 MB
      ::pause();  // then wait for the kill
    } catch (...) {
    }
    ::_exit(3);
  }
  // Parent: wait until the child has written a few megabytes, then kill it.
  size_t written = 0;
  for (int i = 0; i < 2000 && written < (size_t(8) << 20); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (const auto& t : temps_of(dir, "big.npy")) {
      struct stat st {};
      if (::stat((dir / t).c_str(), &st) == 0) written = size_t(st.st_size);
    }
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child was killed mid-write";
  EXPECT_GE(written, size_t(8) << 20) << "the child had started writing";

  const FloatMatrix back = read_npy_f32(target);  // still the old, complete file
  ASSERT_EQ(back.rows(), 2u);
  EXPECT_EQ(back(1, 2), 42.0f);
  const auto temps = temps_of(dir, "big.npy");
  EXPECT_EQ(temps.size(), 1u) << "the killed writer's temporary file";
  for (const auto& t : temps) std::filesystem::remove(dir / t);

  // And with no previous result, the target simply does not exist.
  const pid_t child2 = ::fork();
  ASSERT_GE(child2, 0);
  if (child2 == 0) {
    try {
      AtomicFile f(dir / "fresh.npy");
      const std::vector<float> row(1 << 16, 1.0f);
      for (int i = 0; i < 256; ++i) f.write(row.data(), row.size() * sizeof(float));
      ::pause();
    } catch (...) {
    }
    ::_exit(3);
  }
  for (int i = 0; i < 2000 && temps_of(dir, "fresh.npy").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(child2, SIGKILL);
  ASSERT_EQ(::waitpid(child2, &status, 0), child2);
  EXPECT_FALSE(exists(dir / "fresh.npy"));
}
