// `tessera aq train|encode|search|eval` as a user runs it: outputs equal the library's in-process results,
// bad input fails with a clear message and writes nothing, and SIGINT stops training cleanly.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_helpers.h"
#include "tessera/index/index_additive_quantizer.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/npy.h"
#include "tessera/io/texmex.h"
#include "tessera/quant/additive_quantizer.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/serialization.h"

extern char** environ;

using namespace tessera;
namespace fs = std::filesystem;

namespace {

std::string run_cli(const std::string& args, int* status) {
  const std::string log = ::testing::TempDir() + "/aq_cli.log";
  const int rc = std::system((std::string(TESSERA_CLI) + " " + args + " >" + log + " 2>&1").c_str());
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream in(log);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::shared_ptr<AdditiveQuantizer> load_aq(const std::string& path) {
  auto q = load_quantizer(path);
  auto* aq = dynamic_cast<AdditiveQuantizer*>(q.release());
  return std::shared_ptr<AdditiveQuantizer>(aq);
}

class AqCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
    dir = ::testing::TempDir() + "/aq_cli_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::create_directories(dir);
    x = tessera::testing::gaussian_mixture(1200, 8, 15, 41);
    q = tessera::testing::gaussian_mixture(30, 8, 15, 42);
    write_npy(dir + "/x.npy", x.view());
    write_fvecs(dir + "/q.fvecs", q.view());
  }
  std::string dir;
  FloatMatrix x, q;
};

TEST_F(AqCli, TrainEncodeSearchEvalMatchTheLibrary) {
  int st = 0;
  std::string out = run_cli("aq train " + dir + "/x.npy --method lsq --M 3 --nbits 5 --train-iters 3 --search-type "
                            "ST_norm_qint8 --codebook-cg-tol 1e-6 --out " + dir + "/lsq.tsq -q", &st);
  ASSERT_EQ(st, 0) << out;
  out = run_cli("aq train " + dir + "/x.npy --method rq --M 3 --nbits 5 --out " + dir + "/rq.tsq -q", &st);
  ASSERT_EQ(st, 0) << out;
  const auto lsq = load_aq(dir + "/lsq.tsq");
  ASSERT_EQ(lsq->type_name(), "lsq");
  EXPECT_EQ(lsq->search_type(), SearchType::ST_norm_qint8);
  EXPECT_EQ(dynamic_cast<const LocalSearchQuantizer&>(*lsq).params().codebook_cg_tol, 1e-6);
  EXPECT_EQ(load_aq(dir + "/rq.tsq")->type_name(), "residual");

  // encode: packed bytes and unpacked indices as the model gives them.
  out = run_cli("aq encode --model " + dir + "/lsq.tsq " + dir + "/x.npy --out " + dir + "/codes.npy", &st);
  ASSERT_EQ(st, 0) << out;
  out = run_cli("aq encode --model " + dir + "/lsq.tsq " + dir + "/x.npy --out " + dir + "/u.npy --unpacked", &st);
  ASSERT_EQ(st, 0) << out;
  std::vector<uint8_t> packed(x.rows() * lsq->code_size());
  lsq->encode_packed(x.view(), packed.data());
  const CodeMatrix got = read_npy_i32(dir + "/codes.npy");
  ASSERT_EQ(got.rows(), x.rows());
  ASSERT_EQ(got.cols(), lsq->code_size());
  for (size_t i = 0; i < packed.size(); ++i) ASSERT_EQ(got.data()[i], packed[i]) << "byte " << i;
  std::vector<int32_t> unpacked(x.rows() * 3);
  lsq->encode(x.view(), unpacked.data());
  const CodeMatrix u = read_npy_i32(dir + "/u.npy");
  ASSERT_EQ(u.cols(), 3u);
  EXPECT_TRUE(std::equal(unpacked.begin(), unpacked.end(), u.data()));

  // search: the flat index's results, for both metrics.
  for (const std::string metric : {"l2", "ip"}) {
    out = run_cli("aq search --model " + dir + "/lsq.tsq --base " + dir + "/x.npy --queries " + dir +
                      "/q.fvecs -k 7 --metric " + metric + " --out " + dir + "/res_" + metric,
                  &st);
    ASSERT_EQ(st, 0) << out;
    IndexAdditiveQuantizer index(lsq, parse_metric(metric));
    index.add(x.view());
    std::vector<float> D(q.rows() * 7);
    std::vector<int64_t> I(q.rows() * 7);
    index.search(q.view(), 7, D.data(), I.data());
    const CodeMatrix labels = read_npy_i32(dir + "/res_" + metric + "/labels.npy");
    const FloatMatrix dists = read_npy_f32(dir + "/res_" + metric + "/distances.npy");
    ASSERT_EQ(labels.rows(), q.rows());
    ASSERT_EQ(labels.cols(), 7u);
    for (size_t i = 0; i < I.size(); ++i) {
      EXPECT_EQ(labels.data()[i], I[i]);
      EXPECT_EQ(dists.data()[i], D[i]);
    }
  }

  // eval: MSE, recall and times, printed and written.
  {
    CodeMatrix gt(q.rows(), 1);
    for (size_t i = 0; i < q.rows(); ++i) {
      double best = 1e300;
      for (size_t j = 0; j < x.rows(); ++j) {
        double s = 0;
        for (size_t t = 0; t < 8; ++t) s += double(q(i, t) - x(j, t)) * (q(i, t) - x(j, t));
        if (s < best) best = s, gt(i, 0) = int32_t(j);
      }
    }
    write_ivecs(dir + "/gt.ivecs", gt.view());
  }
  out = run_cli("aq eval --model " + dir + "/rq.tsq --base " + dir + "/x.npy --queries " + dir + "/q.fvecs --gt " +
                    dir + "/gt.ivecs --out " + dir + "/metrics.json",
                &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("recall@10"), std::string::npos) << out;
  std::ifstream in(dir + "/metrics.json");
  const auto m = nlohmann::json::parse(in);
  const auto rq = load_aq(dir + "/rq.tsq");
  EXPECT_NEAR(m["mse_per_vector"].get<double>(), rq->reconstruction_error(x.view()), 1e-3 * m["mse_per_vector"].get<double>());
  EXPECT_NEAR(m["mse_per_component"].get<double>() * 8, m["mse_per_vector"].get<double>(), 1e-9);
  const double r1 = m["recall@1"], r10 = m["recall@10"], r100 = m["recall@100"];
  EXPECT_LE(r1, r10);
  EXPECT_LE(r10, r100);
  EXPECT_GT(r100, 0.9);
  EXPECT_GE(m["train_seconds"].get<double>(), 0.0);
  EXPECT_GE(m["encode_seconds"].get<double>(), 0.0);
  EXPECT_GE(m["search_seconds"].get<double>(), 0.0);
}

TEST_F(AqCli, BadInputFailsCleanlyWithoutOutput) {
  int st = 0;
  auto expect_fail = [&](const std::string& args, const std::string& needle, const std::string& must_not_exist) {
    const std::string out = run_cli(args, &st);
    EXPECT_NE(st, 0) << args << "\n" << out;
    EXPECT_NE(out.find(needle), std::string::npos) << args << "\n" << out;
    EXPECT_FALSE(fs::exists(must_not_exist)) << must_not_exist;
  };
  const std::string m = dir + "/m.tsq";
  expect_fail("aq train " + dir + "/x.npy --nbits 17 --M 2 --out " + m, "nbits", m);
  expect_fail("aq train " + dir + "/x.npy --nbits 0 --M 2 --out " + m, "nbits", m);
  expect_fail("aq train " + dir + "/x.npy --method lsq --M 64 --nbits 16 --out " + m, "GiB", m);
  expect_fail("aq train " + dir + "/x.npy --method lsq --M 2 --nbits 4 --max-beam-size 3 --out " + m,
              "--max-beam-size applies to --method rq", m);
  expect_fail("aq train " + dir + "/x.npy --method rq --M 2 --nbits 4 --codebook-cg-tol 0 --out " + m,
              "apply to --method lsq", m);
  expect_fail("aq train " + dir + "/x.npy --method lsq --M 2 --nbits 4 --codebook-cg-tol -1 --out " + m,
              "codebook-cg-tol", m);
  expect_fail("aq train " + dir + "/x.npy --M 2 --nbits 4 --search-type ST_bogus --out " + m, "ST_norm_float", m);
  expect_fail("aq train " + dir + "/missing.npy --M 2 --nbits 4 --out " + m, "missing.npy", m);
  expect_fail("aq train " + dir + "/x.npy --M 2 --nbits 4 --out /proc/no/such/m.tsq", "/proc/no/such", m);
  FloatMatrix bad = x.clone();
  bad(17, 2) = INFINITY;
  write_npy(dir + "/bad.npy", bad.view());
  expect_fail("aq train " + dir + "/bad.npy --M 2 --nbits 4 --out " + m, "row 17", m);

  std::string out = run_cli("aq train " + dir + "/x.npy --method rq --M 2 --nbits 4 --out " + m + " -q", &st);
  ASSERT_EQ(st, 0) << out;
  const std::string c = dir + "/c.npy";
  write_npy(dir + "/y.npy", tessera::testing::gaussian_mixture(20, 5, 2, 43).view());
  expect_fail("aq encode --model " + m + " " + dir + "/y.npy --out " + c, "dimension mismatch", c);
  expect_fail("aq encode --model " + dir + "/nope.tsq " + dir + "/x.npy --out " + c, "nope.tsq", c);
  {
    const std::string bytes = read_file(m);
    std::ofstream(dir + "/cut.tsq", std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() - 9));
  }
  expect_fail("aq encode --model " + dir + "/cut.tsq " + dir + "/x.npy --out " + c, "cut.tsq", c);
  expect_fail("aq search --model " + m + " --base " + dir + "/x.npy --queries " + dir + "/y.npy --out " + dir + "/r",
              "dimension mismatch", dir + "/r");
  expect_fail("aq search --model " + m + " --base " + dir + "/x.npy --queries " + dir + "/q.fvecs --metric cos --out " +
                  dir + "/r",
              "metric", dir + "/r");
  write_ivecs(dir + "/gt.ivecs", CodeMatrix(3, 1).view());
  expect_fail("aq eval --model " + m + " --base " + dir + "/x.npy --queries " + dir + "/q.fvecs --gt " + dir +
                  "/gt.ivecs --out " + dir + "/e.json",
              "ground truth", dir + "/e.json");
}

TEST_F(AqCli, SigintStopsTrainingWithoutOutput) {
  // Long enough to be mid-training when the signal comes.
  write_npy(dir + "/big.npy", tessera::testing::gaussian_mixture(60000, 64, 100, 44).view());
  const std::string model = dir + "/big.tsq", log = dir + "/log.txt";
  std::vector<std::string> args = {TESSERA_CLI, "aq",   "train", dir + "/big.npy", "--method", "lsq", "--M", "8",
                                   "--nbits",   "8",    "--out", model,            "-q"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);  // before any ASSERT can return
  ASSERT_EQ(spawned, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT) << text;
  EXPECT_LT(seconds, 5.0);
  EXPECT_NE(text.find("SIGINT"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(model));
}

}  // namespace
