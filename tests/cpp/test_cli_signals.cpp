// The CLI as a user meets it: SIGINT/SIGTERM stop a long build promptly and leave nothing behind, and
// error messages say what was wrong without a source location unless asked for.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "test_helpers.h"
#include "tessera/io/npy.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Start the CLI with these arguments, stdout and stderr to `log`.
pid_t spawn_cli(std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), TESSERA_CLI);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class CliSignals : public ::testing::TestWithParam<int> {};

TEST_P(CliSignals, StopPromptlyWithStatusAndNoOutput) {
  if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
  const int sig = GetParam();
  const std::string dir = ::testing::TempDir() + "/cli_signal_" + std::to_string(sig);
  fs::remove_all(dir);
  fs::create_directories(dir);
  // Long enough to be mid-training when the signal comes (tens of seconds on 2 cores).
  write_npy(dir + "/x.npy", tessera::testing::gaussian_mixture(200000, 64, 300, 31).view());
  const std::string out = dir + "/out", log = dir + "/log.txt";
  const pid_t pid = spawn_cli({"sid", "build", dir + "/x.npy", "--out", out, "--n-init", "3", "-q"}, log);
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto sent = Clock::now();
  ASSERT_EQ(kill(pid, sig), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  const double seconds = std::chrono::duration<double>(Clock::now() - sent).count();
  ASSERT_TRUE(WIFEXITED(status)) << "killed instead of stopping cleanly; log:\n" << slurp(log);
  EXPECT_EQ(WEXITSTATUS(status), 128 + sig) << slurp(log);
  EXPECT_LT(seconds, 3.0) << "took " << seconds << " s to stop";
  EXPECT_NE(slurp(log).find(sig == SIGTERM ? "SIGTERM" : "SIGINT"), std::string::npos) << slurp(log);
  EXPECT_FALSE(fs::exists(out)) << "an interrupted build must not leave its output directory";
}

INSTANTIATE_TEST_SUITE_P(IntAndTerm, CliSignals, ::testing::Values(SIGINT, SIGTERM));

TEST(CliErrors, SayWhatWithoutSourceLocationUnlessVerbose) {
  if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
  const std::string dir = ::testing::TempDir() + "/cli_errors";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string log = dir + "/log.txt";
  auto run = [&](std::vector<std::string> args) {
    const pid_t pid = spawn_cli(std::move(args), log);
    int status = 0;
    waitpid(pid, &status, 0);
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(log));
  };
  auto [st, text] = run({"sid", "build", dir + "/missing.npy", "--out", dir + "/o", "-q"});
  EXPECT_EQ(st, 1);
  EXPECT_NE(text.find("tessera: error: "), std::string::npos) << text;
  EXPECT_NE(text.find("missing.npy"), std::string::npos) << text;
  EXPECT_EQ(text.find(".cpp:"), std::string::npos) << "no source location by default: " << text;
  std::tie(st, text) = run({"--verbose", "sid", "build", dir + "/missing.npy", "--out", dir + "/o", "-q"});
  EXPECT_EQ(st, 1);
  EXPECT_NE(text.find(".cpp:"), std::string::npos) << "--verbose names the source location: " << text;
  EXPECT_EQ(text.find(TESSERA_SOURCE_DIR), std::string::npos) << "no absolute build paths: " << text;
  // --threads 0 is refused, not silently taken as "all cores".
  write_npy(dir + "/x.npy", tessera::testing::gaussian_mixture(100, 4, 3, 5).view());
  std::tie(st, text) = run({"sid", "build", dir + "/x.npy", "--out", dir + "/o", "--threads", "0", "-q"});
  EXPECT_NE(st, 0);
  EXPECT_NE(text.find("--threads"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(dir + "/o"));
}

}  // namespace
