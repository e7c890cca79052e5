#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>

#include "test_helpers.h"
#include "tessera/io/npy.h"
#include "tessera/io/npz.h"
#include "tessera/sid/pipeline.h"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

SidParams small_params() {
  SidParams p;
  p.codebook_sizes = {8, 8, 8};
  p.n_init = 1;
  p.max_iter = 20;
  return p;
}

std::string run_cli(const std::string& args, int* status) {
  const std::string log = ::testing::TempDir() + "/cli.log";
  *status = std::system((std::string(TESSERA_CLI) + " " + args + " >" + log + " 2>&1").c_str());
  std::ifstream in(log);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(SidPipeline, EveryStrategyGivesUniqueIdsAndBalancedLevels) {
  // Many near-duplicates: 40 tight blobs of 50 items.
  const auto x = tessera::testing::gaussian_mixture(2000, 8, 40, 21, 0.001f);
  for (Dedup d : {Dedup::append, Dedup::append_all, Dedup::reassign}) {
    auto p = small_params();
    p.codebook_sizes = {8, 8, 64};  // 64 prefixes of ~31 items, each fitting in the 64 last-level codes
    p.dedup = d;
    const auto s = build_semantic_ids(x.view(), p);
    std::set<std::vector<int32_t>> seen;
    for (size_t i = 0; i < s.ids.rows(); ++i) {
      std::vector<int32_t> t;
      for (size_t j = 0; j < s.ids.cols(); ++j)
        if (s.ids(i, j) >= 0) t.push_back(s.ids(i, j));
      EXPECT_TRUE(seen.insert(t).second) << dedup_name(d) << " row " << i;
    }
    EXPECT_EQ(s.metrics.final_collisions, 0u);
    for (const auto& l : s.metrics.levels) {
      EXPECT_GE(l.min_cluster_size, 2000 / l.codebook_size - 1);
      EXPECT_LE(l.max_cluster_size, 2000 / l.codebook_size + 1);
    }
    if (d == Dedup::reassign) {
      // A suffix is only needed when some prefix holds more items than the last level has codes.
      std::map<std::pair<int32_t, int32_t>, size_t> prefix;
      for (size_t i = 0; i < s.codes.rows(); ++i) ++prefix[{s.codes(i, 0), s.codes(i, 1)}];
      size_t largest = 0;
      for (const auto& [key, count] : prefix) largest = std::max(largest, count);
      if (largest <= 64) EXPECT_EQ(s.ids.cols(), 3u);
      size_t with_suffix = 0;
      for (size_t i = 0; s.ids.cols() == 4 && i < s.ids.rows(); ++i) with_suffix += s.ids(i, 3) >= 0;
      size_t overflow = 0;
      for (const auto& [key, count] : prefix) overflow += count > 64 ? count : 0;
      EXPECT_LE(with_suffix, overflow);
    }
  }
}

TEST(SidPipeline, WritesFilesThatRoundTrip) {
  const auto x = tessera::testing::gaussian_mixture(600, 6, 10, 22);
  const auto s = build_semantic_ids(x.view(), small_params());
  const std::string dir = ::testing::TempDir() + "/sid_out";
  fs::remove_all(dir);
  std::vector<std::string> keys;
  for (size_t i = 0; i < 600; ++i) keys.push_back("item" + std::to_string(i));
  write_semantic_ids(dir, s, &keys);
  for (const char* f : {"index.json", "codes.npy", "codebooks.npz", "metrics.json", "model.tsq"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  const auto codes = read_npy_i32(dir + "/codes.npy");
  ASSERT_EQ(codes.rows(), 600u);
  EXPECT_EQ(0, std::memcmp(codes.data(), s.codes.data(), 600 * 3 * sizeof(int32_t)));
  const auto books = read_npz_f32(dir + "/codebooks.npz");
  ASSERT_EQ(books.size(), 3u);
  EXPECT_EQ(books[2].first, "codebook_2");
  std::ifstream in(dir + "/index.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.size(), 600u);
  EXPECT_EQ(j["item0"][0].get<std::string>(), "<a_" + std::to_string(s.codes(0, 0) + 1) + ">");
  // The saved model encodes the training rows the way it was trained when levels are unbalanced,
  // and always produces valid codes.
  const SidModel m = load_sid_model(dir + "/model.tsq");
  const auto e = encode_semantic_ids(m.model, x.view(), m.dedup, m.format);
  EXPECT_EQ(e.metrics.final_collisions, 0u);
  EXPECT_LE(e.metrics.mse, s.metrics.mse * 1.05);  // greedy codes are at least about as good
}

TEST(SidPipeline, BadInputsAreClearErrors) {
  const auto x = tessera::testing::gaussian_mixture(100, 4, 3, 23);
  auto p = small_params();
  p.codebook_sizes = {200};
  EXPECT_THROW(build_semantic_ids(x.view(), p), InvalidArgument);
  p = small_params();
  p.size_min = 20;  // 8 · 20 > 100
  EXPECT_THROW(build_semantic_ids(x.view(), p), InvalidArgument);
  std::vector<std::string> labels(99, "a");
  EXPECT_THROW(build_semantic_ids(x.view(), small_params(), &labels), InvalidArgument);
  EXPECT_THROW(prepare_output_dir("/proc/tessera-cannot-write-here"), Error);
  EXPECT_THROW(check_output_dir("/proc/tessera-cannot-write-here/sub"), Error);
  EXPECT_FALSE(fs::exists("/proc/tessera-cannot-write-here"));
  EXPECT_NO_THROW(check_output_dir(::testing::TempDir() + "/not/yet/there"));
  EXPECT_FALSE(fs::exists(::testing::TempDir() + "/not"));
}

TEST(Cli, BuildThenEncode) {
  if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
  const std::string dir = ::testing::TempDir() + "/cli_case";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto x = tessera::testing::gaussian_mixture(1000, 8, 12, 24);
  write_npy(dir + "/x.npy", x.view());
  int st = 0;
  auto out = run_cli("sid build " + dir + "/x.npy --out " + dir + "/out --levels 2 --codebook-size 16 --n-init 1 "
                     "--max-iter 10 --dedup reassign -q", &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("collision rate"), std::string::npos) << out;
  for (const char* f : {"index.json", "codes.npy", "codebooks.npz", "metrics.json", "model.tsq"})
    EXPECT_TRUE(fs::exists(dir + "/out/" + f)) << f;
  out = run_cli("sid encode " + dir + "/out/model.tsq " + dir + "/x.npy --out " + dir + "/enc", &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_TRUE(fs::exists(dir + "/enc/codes.npy"));
  EXPECT_TRUE(fs::exists(dir + "/enc/index.json"));
  // encode reports the residual MSE of every level, as build does: falling level by level to the total.
  std::ifstream in(dir + "/enc/metrics.json");
  const auto m = nlohmann::json::parse(in);
  ASSERT_EQ(m["levels"].size(), 2u);
  EXPECT_NEAR(m["levels"][0]["mse_before"].get<double>(), m["mse_before"].get<double>(), 1e-9);
  EXPECT_LT(m["levels"][0]["mse_after"].get<double>(), m["levels"][0]["mse_before"].get<double>());
  EXPECT_NEAR(m["levels"][1]["mse_before"].get<double>(), m["levels"][0]["mse_after"].get<double>(), 1e-12);
  EXPECT_NEAR(m["levels"][1]["mse_after"].get<double>(), m["mse"].get<double>(), 1e-6);
}

TEST(Cli, BadInputFailsCleanlyWithoutOutput) {
  if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
  const std::string dir = ::testing::TempDir() + "/cli_bad";
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto x = tessera::testing::gaussian_mixture(50, 4, 3, 25);
  x(17, 2) = NAN;
  write_npy(dir + "/nan.npy", x.view());
  int st = 0;
  auto out = run_cli("sid build " + dir + "/nan.npy --out " + dir + "/o1 --codebook-size 4 -q", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("row 17"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/o1")) << "a failed run must not even leave its output directory";
  x(17, 2) = 0;
  write_npy(dir + "/x.npy", x.view());
  out = run_cli("sid build " + dir + "/x.npy --out " + dir + "/o2 --codebook-size 64 -q", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("N < K"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/o2"));
  // The same id twice would make index.json lose an item.
  {
    std::ofstream ids(dir + "/ids.txt");
    for (int i = 0; i < 50; ++i) ids << (i == 31 ? std::string("item3") : "item" + std::to_string(i)) << "\n";
  }
  out = run_cli("sid build " + dir + "/x.npy --out " + dir + "/o6 --codebook-size 4 --ids " + dir + "/ids.txt -q", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("\"item3\" is given twice (lines 4 and 32)"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/o6"));
  // A later file that cannot be written leaves none of the set behind.
  fs::create_directories(dir + "/o7/index.json/blocker");
  out = run_cli("sid build " + dir + "/x.npy --out " + dir + "/o7 --codebook-size 4 -q", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("not a regular file"), std::string::npos) << out;
  for (const auto& e : fs::directory_iterator(dir + "/o7"))
    EXPECT_EQ(e.path().filename(), "index.json") << "left behind: " << e.path();
  out = run_cli("sid build " + dir + "/x.npy --out /proc/no/such --codebook-size 4 -q", &st);
  EXPECT_NE(st, 0);
  // Options that would be silently ignored or wrapped around.
  out = run_cli("sid build " + dir + "/x.npy --out " + dir + "/o8 --codebook-size 4 --balance none --size-min 3 -q", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("need --balance exact"), std::string::npos) << out;
  out = run_cli("sid build " + dir + "/x.npy --out " + dir + "/o8 --codebook-size 4 --seed -1 -q", &st);
  EXPECT_NE(st, 0);
  EXPECT_FALSE(fs::exists(dir + "/o8"));
  // Encoding with a model of another dimension.
  out = run_cli("sid build " + dir + "/x.npy --out " + dir + "/o3 --codebook-size 4 --levels 1 -q", &st);
  ASSERT_EQ(st, 0) << out;
  const auto y = tessera::testing::gaussian_mixture(20, 5, 2, 26);
  write_npy(dir + "/y.npy", y.view());
  out = run_cli("sid encode " + dir + "/o3/model.tsq " + dir + "/y.npy --out " + dir + "/o4", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("dimension mismatch"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/o4/index.json"));
  // A truncated model file.
  {
    std::ifstream in(dir + "/o3/model.tsq", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir + "/trunc.tsq", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  out = run_cli("sid encode " + dir + "/trunc.tsq " + dir + "/x.npy --out " + dir + "/o5", &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("model"), std::string::npos) << out;
}
