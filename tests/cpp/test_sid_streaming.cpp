// `tessera sid build|encode` on sharded and streamed .npy input: the same files as one in-memory matrix,
// bad shards named, peak memory in metrics.json.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <optional>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io_test_util.h"
#include "test_helpers.h"
#include "tessera/io/npy.h"
#include "tessera/io/npy_shards.h"
#include "tessera/sid/pipeline.h"

using namespace tessera;
namespace fs = std::filesystem;
using tessera_test::slurp;

namespace {

std::string run_cli(const std::string& args, int* status) {
  const std::string log = ::testing::TempDir() + "/sid_streaming_cli.log";
  const int rc = std::system((std::string(TESSERA_CLI) + " " + args + " >" + log + " 2>&1").c_str());
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return slurp(log);
}

nlohmann::json metrics_without_run_facts(const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(slurp(path));
  j.erase("seconds_total");
  j.erase("peak_rss_bytes");
  for (auto& l : j["levels"]) l.erase("seconds");
  return j;
}

class SidStreaming : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
    dir = ::testing::TempDir() + "/sid_streaming_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::create_directories(dir + "/shards");
    x = tessera::testing::gaussian_mixture(3000, 12, 20, 7);
    write_npy(dir + "/x.npy", x.view());
    // Three shards of unequal sizes, named so that sorted order is row order.
    const size_t cut[] = {0, 1100, 1900, 3000};
    for (int k = 0; k < 3; ++k)
      write_npy(dir + "/shards/part-" + std::to_string(k) + ".npy",
                MatrixView<const float>(x.row(cut[k]), cut[k + 1] - cut[k], x.cols()));
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string build(const std::string& input, const std::string& out, const std::string& extra = "") {
    int st = 0;
    const std::string log = run_cli("sid build " + input + " --out " + out + " --levels 2 --codebook-size 8 " +
                                        "--max-iter 10 --n-init 1 -q " + extra,
                                    &st);
    EXPECT_EQ(st, 0) << log;
    return log;
  }
  std::string dir;
  FloatMatrix x;
};

TEST_F(SidStreaming, EncodeShardsEqualsOneFileAndTheInMemoryEncoder) {
  build(dir + "/x.npy", dir + "/model");
  for (const std::string dedup : {"append", "reassign"}) {
    // Today's encoder on the whole matrix, in process.
    SidModel m = load_sid_model(dir + "/model/model.tsq");
    SemanticIds ref = encode_semantic_ids(m.model, x.view(), parse_dedup(dedup), m.format);
    const std::string lib = dir + "/lib-" + dedup;
    write_semantic_ids(lib, ref, nullptr, false);
    if (dedup == "reassign") ASSERT_GT(ref.metrics.reassigned_items, 0u);  // the test exercises the moves
    int st = 0;
    for (const std::string& input : {dir + "/x.npy", dir + "/shards", "'" + dir + "/shards/part-*.npy'"})
      for (const std::string chunk : {"", "--chunk-rows 700"}) {
        const std::string out = dir + "/enc";
        fs::remove_all(out);
        const std::string log =
            run_cli("sid encode " + dir + "/model/model.tsq " + input + " --out " + out + " --dedup " + dedup + " " + chunk, &st);
        ASSERT_EQ(st, 0) << log;
        SCOPED_TRACE(input + " " + chunk + " " + dedup);
        EXPECT_EQ(slurp(out + "/codes.npy"), slurp(lib + "/codes.npy"));
        EXPECT_EQ(slurp(out + "/index.json"), slurp(lib + "/index.json"));
        const auto got = metrics_without_run_facts(out + "/metrics.json"),
                   want = metrics_without_run_facts(lib + "/metrics.json");
        if (chunk.empty()) {
          EXPECT_EQ(got, want);  // one chunk: the same sums, bit for bit
        } else {
          EXPECT_NEAR(got["mse"].get<double>(), want["mse"].get<double>(), 1e-12 * want["mse"].get<double>());
          EXPECT_EQ(got["collision_rate"], want["collision_rate"]);
          EXPECT_EQ(got["final_collisions"], want["final_collisions"]);
        }
        const auto j = nlohmann::json::parse(slurp(out + "/metrics.json"));
        ASSERT_TRUE(j.contains("peak_rss_bytes"));
        EXPECT_GT(j["peak_rss_bytes"].get<double>(), 1e6);
      }
  }
}

TEST_F(SidStreaming, BuildOnShardsEqualsBuildOnOneFile) {
  build(dir + "/x.npy", dir + "/one");
  build(dir + "/shards", dir + "/three");
  for (const char* f : {"codes.npy", "index.json", "codebooks.npz"})
    EXPECT_EQ(slurp(dir + "/one/" + f), slurp(dir + "/three/" + f)) << f;
  EXPECT_EQ(metrics_without_run_facts(dir + "/one/metrics.json"), metrics_without_run_facts(dir + "/three/metrics.json"));
  const auto j = nlohmann::json::parse(slurp(dir + "/one/metrics.json"));
  ASSERT_TRUE(j.contains("peak_rss_bytes"));
  EXPECT_GT(j["peak_rss_bytes"].get<double>(), 1e6);
}

TEST_F(SidStreaming, GreedyBuildOnASampleStreamsAndEqualsTheInMemoryBuild) {
  for (const std::string dedup : {"append", "reassign"}) {
    SidParams p;
    p.codebook_sizes = {8, 8};
    p.balance = false;
    p.max_iter = 10;
    p.n_init = 1;
    p.train_sample = 500;
    p.dedup = parse_dedup(dedup);
    const SemanticIds ref = build_semantic_ids(x.view(), p);
    const std::string lib = dir + "/lib-" + dedup;
    write_semantic_ids(lib, ref, nullptr, true);
    for (const std::string& input : {dir + "/x.npy", dir + "/shards"})
      for (const std::string chunk : {"", "--chunk-rows 700"}) {
        SCOPED_TRACE(input + " " + chunk + " " + dedup);
        const std::string out = dir + "/b";
        fs::remove_all(out);
        build(input, out, "--balance none --train-sample 500 --dedup " + dedup + " " + chunk);
        for (const char* f : {"codes.npy", "index.json", "codebooks.npz", "model.tsq"})
          EXPECT_EQ(slurp(out + "/" + f), slurp(lib + "/" + f)) << f;
        const auto got = metrics_without_run_facts(out + "/metrics.json"),
                   want = metrics_without_run_facts(lib + "/metrics.json");
        if (chunk.empty())
          EXPECT_EQ(got, want);
        else
          EXPECT_NEAR(got["mse"].get<double>(), want["mse"].get<double>(), 1e-12 * want["mse"].get<double>());
        EXPECT_GT(nlohmann::json::parse(slurp(out + "/metrics.json"))["peak_rss_bytes"].get<double>(), 1e6);
      }
  }
}

// Balanced levels trained on a sample: only the sample is read for training, then one residual matrix is filled
// chunk by chunk and balanced in place; the files are those of the in-memory build (codes, IDs and model byte for
// byte; MSEs within float rounding: the final residual's mean square against the reconstruction's error). Explicit size bounds are for all rows, also on this path; reassign moves codes.
TEST_F(SidStreaming, BalancedBuildOnASampleEqualsTheInMemoryBuild) {
  struct Case {
    std::string dedup;
    std::optional<size_t> lo, hi;
    size_t budget;  // balanced_dense_max_bytes: the in-memory build on the dense or the bounded assigner
  };
  for (const Case& c : {Case{"append", {}, {}, size_t(256) << 20}, Case{"reassign", {}, {}, 0},
                        Case{"append", 300, 450, size_t(256) << 20}}) {
    SidParams p;
    p.codebook_sizes = {8, 8};
    p.balance = true;
    p.max_iter = 10;
    p.n_init = 1;
    p.train_sample = 500;
    p.size_min = c.lo;
    p.size_max = c.hi;
    p.dedup = parse_dedup(c.dedup);
    const SemanticIds ref = build_semantic_ids(x.view(), p);
    const std::string lib = dir + "/lib-" + c.dedup + (c.lo ? "-bounds" : "");
    write_semantic_ids(lib, ref, nullptr, true);
    if (c.dedup == "reassign") ASSERT_GT(ref.metrics.reassigned_items, 0u);
    const auto want = metrics_without_run_facts(lib + "/metrics.json");
    const std::string bounds = c.lo ? " --size-min 300 --size-max 450" : "";
    for (const std::string& input : {dir + "/x.npy", dir + "/shards"})
      for (const std::string chunk : {"", "--chunk-rows 700"}) {
        SCOPED_TRACE(input + " " + chunk + " " + c.dedup + bounds);
        const std::string out = dir + "/b";
        fs::remove_all(out);
        build(input, out, "--train-sample 500 --dedup " + c.dedup + bounds + " " + chunk);
        for (const char* f : {"codes.npy", "index.json", "codebooks.npz", "model.tsq"})
          EXPECT_EQ(slurp(out + "/" + f), slurp(lib + "/" + f)) << f;
        auto got = metrics_without_run_facts(out + "/metrics.json");
        for (const char* k : {"mse", "mse_after_resolution", "mse_increase_from_resolution", "mse_before"})
          if (want.contains(k)) {
            EXPECT_NEAR(got[k].get<double>(), want[k].get<double>(), 1e-7 * want["mse"].get<double>()) << k;
            got[k] = want[k];
          }
        for (size_t l = 0; l < want["levels"].size(); ++l)
          for (const char* k : {"mse_before", "mse_after"}) {
            EXPECT_NEAR(got["levels"][l][k].get<double>(), want["levels"][l][k].get<double>(),
                        1e-7 * want["levels"][l][k].get<double>());
            got["levels"][l][k] = want["levels"][l][k];
          }
        EXPECT_EQ(got, want);  // everything else: the same
        EXPECT_GT(nlohmann::json::parse(slurp(out + "/metrics.json"))["peak_rss_bytes"].get<double>(), 1e6);
      }
  }
}

TEST_F(SidStreaming, BadShardsFailNamingTheShardAndWriteNothing) {
  build(dir + "/x.npy", dir + "/model");
  FloatMatrix bad = FloatMatrix::copy_of(MatrixView<const float>(x.row(0), 50, x.cols()));
  bad(42, 3) = NAN;
  write_npy(dir + "/shards/part-3.npy", bad.view());
  int st = 0;
  for (const std::string cmd : {"sid encode " + dir + "/model/model.tsq " + dir + "/shards --chunk-rows 1000",
                                "sid build " + dir + "/shards -q"}) {
    const std::string log = run_cli(cmd + " --out " + dir + "/out", &st);
    EXPECT_EQ(st, 1) << log;
    EXPECT_NE(log.find("part-3.npy row 42 (row 3042 of the input)"), std::string::npos) << log;
    EXPECT_FALSE(fs::exists(dir + "/out"));
  }
  write_npy(dir + "/shards/part-3.npy", FloatMatrix(10, 5).view());
  std::string log = run_cli("sid encode " + dir + "/model/model.tsq " + dir + "/shards --out " + dir + "/out", &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(log.find("part-3.npy has 5 columns"), std::string::npos) << log;
  write_npy(dir + "/shards/part-3.npy", FloatMatrix(0, 12).view());
  log = run_cli("sid build " + dir + "/shards -q --out " + dir + "/out", &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(log.find("part-3.npy is empty"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir + "/out"));
}

}  // namespace
