// `tessera rqkmeans-plus|rqvae train|generate` as a user runs them: codebooks from `tessera sid build`, a
// warm-start model (--epochs 0) whose semantic IDs are RQ-KMeans's greedy codes, files written as `tessera sid`
// writes them, training that moves the weights, and bad input that fails with a clear message and writes nothing.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../io_test_util.h"
#include "neural_test_util.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/npy.h"
#include "tessera/io/npz.h"
#include "tessera/sid/pipeline.h"

namespace tessera::neural {
namespace {

namespace fs = std::filesystem;
using tessera_test::ScratchDir;

struct CliRun {
  int status = -1;
  std::string output;  // stdout and stderr
};

CliRun neural_cli_run(const ScratchDir& dir, const std::string& args) {
  const std::string log = dir / "cli.log";
  const int rc = std::system((std::string(TESSERA_CLI) + " " + args + " >" + log + " 2>&1").c_str());
  CliRun r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream in(log);
  r.output.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

nlohmann::json neural_cli_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// A failing command: non-zero exit, the message names `what`, and `out` was not created.
void neural_cli_expect_failure(const ScratchDir& dir, const std::string& args, const std::string& what,
                               const std::string& out) {
  const CliRun r = neural_cli_run(dir, args);
  EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
  EXPECT_NE(r.output.find("tessera: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(what), std::string::npos) << "expected '" << what << "' in: " << r.output;
  EXPECT_FALSE(fs::exists(out)) << out << " was left behind by: " << args;
}

class NeuralCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
    x = tessera::testing::gaussian_mixture(400, 12, 16, 77);
    write_npy(dir / "x.npy", x.view());
    const CliRun r = neural_cli_run(dir, "sid build " + (dir / "x.npy") + " --out " + (dir / "sid") +
                                             " --codebook-sizes 16,16,16 --n-init 1 --threads 1 -q");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  std::string x_npy() const { return dir / "x.npy"; }

  ScratchDir dir;
  FloatMatrix x;
};

TEST_F(NeuralCli, RQKMeansPlusWarmStartGivesTheGreedyCodesThroughTheSidModule) {
  const std::string common = " --layers 32,16 --threads 1 -q";
  CliRun r = neural_cli_run(dir, "rqkmeans-plus train --data " + x_npy() + " --codebooks " + (dir / "sid/codebooks.npz") +
                                     " --out " + (dir / "m0") + " --epochs 0" + common);
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(fs::exists(dir / "m0/state_dict.pt"));
  const nlohmann::json cfg = neural_cli_json(dir / "m0/config.json");
  EXPECT_EQ(cfg["method"], "rqkmeans-plus");
  EXPECT_EQ(cfg["model"]["e_dim"], 12);
  EXPECT_EQ(cfg["model"]["codebook_sizes"], nlohmann::json({16, 16, 16}));
  EXPECT_EQ(cfg["model"]["layers"], nlohmann::json({32, 16}));
  EXPECT_EQ(cfg["model"]["residual_decoder"], true);  // rqkmeans-plus's default --decoder residual
  EXPECT_EQ(cfg["model"]["partial_sum_commitment"], true);  // and --commitment partial-sums

  r = neural_cli_run(dir, "rqkmeans-plus generate --checkpoint " + (dir / "m0/state_dict.pt") + " --data " + x_npy() +
                              " --out " + (dir / "g0"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("semantic IDs for 400 items"), std::string::npos) << r.output;

  // codes.npy: the greedy RQ-KMeans codes of the sid model (`sid encode` computes the same).
  const SidModel sid = load_sid_model(dir / "sid/model.tsq");
  CodeMatrix greedy(400, 3);
  sid.model->encode_greedy(x.view(), greedy.data());
  const CodeMatrix codes = read_npy_i32(dir / "g0/codes.npy");
  ASSERT_EQ(codes.rows(), 400u);
  ASSERT_EQ(codes.cols(), 3u);
  EXPECT_TRUE(std::equal(greedy.data(), greedy.data() + greedy.size(), codes.data()));
  r = neural_cli_run(dir, "sid encode " + (dir / "sid/model.tsq") + " " + x_npy() + " --out " + (dir / "enc"));
  ASSERT_EQ(r.status, 0) << r.output;
  const CodeMatrix enc = read_npy_i32(dir / "enc/codes.npy");
  EXPECT_TRUE(std::equal(enc.data(), enc.data() + enc.size(), codes.data()));
  // With the same tokens and dedup, index.json is the one `sid encode` writes from those codes.
  EXPECT_EQ(read_file(dir / "g0/index.json"), read_file(dir / "enc/index.json"));

  // index.json: one entry per item, no ID twice after append.
  const nlohmann::json index = neural_cli_json(dir / "g0/index.json");
  ASSERT_EQ(index.size(), 400u);
  std::set<std::vector<std::string>> ids;
  for (const auto& [key, tokens] : index.items()) ids.insert(tokens.get<std::vector<std::string>>());
  EXPECT_EQ(ids.size(), 400u);
  const nlohmann::json metrics = neural_cli_json(dir / "g0/metrics.json");
  ASSERT_TRUE(metrics.contains("recon_mse"));
  EXPECT_TRUE(std::isfinite(metrics["recon_mse"].get<double>()));
  EXPECT_GT(metrics["recon_mse"].get<double>(), 0.0);
  EXPECT_EQ(metrics["n_items"], 400);
  EXPECT_EQ(metrics["final_collisions"], 0);
  EXPECT_EQ(metrics["dedup"], "append");

  // Two epochs move the weights; the per-epoch lines go to stderr.
  r = neural_cli_run(dir, "rqkmeans-plus train --data " + x_npy() + " --codebooks " + (dir / "sid/codebooks.npz") +
                              " --out " + (dir / "m2") + " --epochs 2 --lr 1e-3 --batch-size 128 --layers 32,16 --threads 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("epoch 2/2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("collision rate"), std::string::npos) << r.output;
  EXPECT_NE(read_file(dir / "m0/state_dict.pt"), read_file(dir / "m2/state_dict.pt"));
  const nlohmann::json cfg2 = neural_cli_json(dir / "m2/config.json");
  ASSERT_EQ(cfg2["training"]["history"].size(), 3u);
  EXPECT_TRUE(cfg2["training"]["history"][2].contains("collision_rate"));
  EXPECT_TRUE(std::isfinite(cfg2["training"]["history"][2]["loss"].get<double>()));
  r = neural_cli_run(dir, "rqkmeans-plus generate --checkpoint " + (dir / "m2/state_dict.pt") + " --data " + x_npy() +
                              " --out " + (dir / "g2") + " --dedup reassign -q");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(neural_cli_json(dir / "g2/index.json").size(), 400u);
  EXPECT_EQ(neural_cli_json(dir / "g2/metrics.json")["dedup"], "reassign");
  EXPECT_TRUE(neural_cli_json(dir / "g2/metrics.json").contains("recon_mse"));
}

TEST_F(NeuralCli, RQVAETrainsAndGenerates) {
  CliRun r = neural_cli_run(dir, "rqvae train --data " + x_npy() + " --out " + (dir / "v") +
                                     " --epochs 2 --codebook-sizes 8,8 --e-dim 4 --layers 16 --batch-size 100 --threads 1 -q");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json cfg = neural_cli_json(dir / "v/config.json");
  EXPECT_EQ(cfg["method"], "rqvae");
  EXPECT_EQ(cfg["model"]["codebook_sizes"], nlohmann::json({8, 8}));
  r = neural_cli_run(dir, "rqvae generate --checkpoint " + (dir / "v/state_dict.pt") + " --data " + x_npy() +
                              " --out " + (dir / "vg") + " --dedup append-all -q");
  ASSERT_EQ(r.status, 0) << r.output;
  const CodeMatrix codes = read_npy_i32(dir / "vg/codes.npy");
  EXPECT_EQ(codes.rows(), 400u);
  EXPECT_EQ(codes.cols(), 2u);
  const nlohmann::json index = neural_cli_json(dir / "vg/index.json");
  ASSERT_EQ(index.size(), 400u);
  EXPECT_EQ(index["0"].size(), 3u);  // append-all: every ID has the suffix
  EXPECT_EQ(index["0"][0].get<std::string>().rfind("<a_", 0), 0u);
  EXPECT_TRUE(neural_cli_json(dir / "vg/metrics.json").contains("recon_mse"));

  // A model of one method is not the other's.
  neural_cli_expect_failure(dir,
                            "rqkmeans-plus generate --checkpoint " + (dir / "v/state_dict.pt") + " --data " + x_npy() +
                                " --out " + (dir / "bad"),
                            "tessera rqvae generate", dir / "bad");
}

// A run stopped after epoch 2 and resumed with --resume writes the same state_dict.pt, byte for byte, as the run
// that went through; generate reads a checkpoint as well as a state_dict.
TEST_F(NeuralCli, ResumeFromACheckpointEqualsTheRunThatNeverStopped) {
  const std::string common = " --data " + x_npy() + " --codebooks " + (dir / "sid/codebooks.npz") +
                             " --layers 16 --lr 1e-3 --batch-size 128 --eval-every 2 --keep-last 1 --threads 1 -q";
  CliRun r = neural_cli_run(dir, "rqkmeans-plus train --epochs 4 --out " + (dir / "full") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(dir / "full/checkpoints")) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"best_collision.ckpt", "best_loss.ckpt", "epoch_4.ckpt"}));
  r = neural_cli_run(dir, "rqkmeans-plus train --epochs 2 --out " + (dir / "part") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  r = neural_cli_run(dir, "rqkmeans-plus train --epochs 4 --out " + (dir / "part") + common + " --resume " +
                              (dir / "part/checkpoints/epoch_2.ckpt"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(tessera_test::slurp(dir / "part/state_dict.pt"), tessera_test::slurp(dir / "full/state_dict.pt"));
  const nlohmann::json cfg = neural_cli_json(dir / "part/config.json");
  ASSERT_EQ(cfg["training"]["history"].size(), 4u);  // epochs 1-4 (epoch 0 belongs to the first run)
  EXPECT_EQ(cfg["training"]["history"][3]["loss"], neural_cli_json(dir / "full/config.json")["training"]["history"][4]["loss"]);

  r = neural_cli_run(dir, "rqkmeans-plus generate --checkpoint " + (dir / "full/checkpoints/epoch_4.ckpt") +
                              " --data " + x_npy() + " --out " + (dir / "from-ckpt") + " -q");
  ASSERT_EQ(r.status, 0) << r.output;
  r = neural_cli_run(dir, "rqkmeans-plus generate --checkpoint " + (dir / "full/state_dict.pt") + " --data " +
                              x_npy() + " --out " + (dir / "from-sd") + " -q");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(tessera_test::slurp(dir / "from-ckpt/codes.npy"), tessera_test::slurp(dir / "from-sd/codes.npy"));
  // Another run's data: a clear error, nothing written.
  const FloatMatrix other = tessera::testing::gaussian_mixture(400, 12, 16, 78);
  write_npy(dir / "other.npy", other.view());
  neural_cli_expect_failure(dir,
                            "rqkmeans-plus train --epochs 4 --data " + (dir / "other.npy") + " --layers 16 --out " +
                                (dir / "other") + " --resume " + (dir / "part/checkpoints/epoch_4.ckpt"),
                            "trained on other data", dir / "other");
  neural_cli_expect_failure(dir,
                            "rqvae generate --checkpoint " + (dir / "full/checkpoints/epoch_4.ckpt") + " --data " +
                                x_npy() + " --out " + (dir / "other"),
                            "tessera rqkmeans-plus generate", dir / "other");
}

// --balance last|all: exact size bounds over all items with the balanced assigner; the levels before keep the
// model's greedy codes, and recon_mse is what the written codes reconstruct.
TEST_F(NeuralCli, GenerateWithBalancedLevels) {
  CliRun r = neural_cli_run(dir, "rqvae train --data " + x_npy() + " --out " + (dir / "v") +
                                     " --epochs 1 --codebook-sizes 16,16 --e-dim 4 --layers 16 --batch-size 100 --threads 1 -q");
  ASSERT_EQ(r.status, 0) << r.output;
  std::map<std::string, CodeMatrix> codes;
  std::map<std::string, double> recon;
  for (const std::string mode : {"none", "last", "all"}) {
    r = neural_cli_run(dir, "rqvae generate --checkpoint " + (dir / "v/state_dict.pt") + " --data " + x_npy() +
                                " --out " + (dir / ("g-" + mode)) + " --dedup none --balance " + mode + " -q");
    ASSERT_EQ(r.status, 0) << r.output;
    codes[mode] = read_npy_i32(dir / ("g-" + mode + "/codes.npy"));
    recon[mode] = neural_cli_json(dir / ("g-" + mode + "/metrics.json"))["recon_mse"].get<double>();
  }
  auto sizes = [](const CodeMatrix& c, size_t level) {
    std::vector<size_t> s(16, 0);
    for (size_t i = 0; i < c.rows(); ++i) s[size_t(c(i, level))]++;
    return s;
  };
  auto within = [](const std::vector<size_t>& s) {  // 400 items, 16 codes: [24, 26]
    return *std::min_element(s.begin(), s.end()) >= 24 && *std::max_element(s.begin(), s.end()) <= 26;
  };
  for (size_t i = 0; i < 400; ++i) EXPECT_EQ(codes["last"](i, 0), codes["none"](i, 0)) << "row " << i;
  EXPECT_TRUE(within(sizes(codes["last"], 1)));
  EXPECT_TRUE(within(sizes(codes["all"], 0)));
  EXPECT_TRUE(within(sizes(codes["all"], 1)));
  EXPECT_FALSE(within(sizes(codes["none"], 0)) && within(sizes(codes["none"], 1))) << "the test data are too easy";
  EXPECT_NE(recon["last"], recon["none"]);
}

// A MiniOneRec checkpoint (a dict with an argparse Namespace and the OrderedDict of state_dict(), which libtorch
// cannot read) converted by python/tessera/minionerec.py gives the model's codes; the OrderedDict itself is a
// clear error that names the converter.
TEST_F(NeuralCli, MiniOneRecCheckpointConverts) {
  if (const std::string why = testing::missing_torch_python(); !why.empty()) GTEST_SKIP() << why;
  CliRun r = neural_cli_run(dir, "rqvae train --data " + x_npy() + " --out " + (dir / "v") +
                                     " --epochs 1 --codebook-sizes 8,8 --e-dim 4 --layers 16 --batch-norm --threads 1 -q");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto [status, out] = testing::run_python(
      "import argparse, collections, torch\n"
      "sd = torch.load('" + (dir / "v/state_dict.pt") + "')\n"
      "args = argparse.Namespace(layers=[16], e_dim=4, num_emb_list=[8, 8, 8], sk_epsilons=[0.0, 0.003],\n"
      "                          dropout_prob=0.0, bn=True, beta=0.25, quant_loss_weight=1.0, sk_iters=50)\n"
      "od = collections.OrderedDict(sd)\n"
      "torch.save({'args': args, 'epoch': 7, 'best_loss': 0.5, 'best_collision_rate': 0.1, 'state_dict': od,\n"
      "            'optimizer': {}}, '" + (dir / "m.pth") + "')\n"
      "torch.save(od, '" + (dir / "od.pt") + "')\n"
      "import sys, runpy\n"
      "sys.argv = ['minionerec', '" + (dir / "m.pth") + "', '--out', '" + (dir / "conv") + "']\n"
      "runpy.run_path('" + std::string(TESSERA_SOURCE_DIR) + "/python/tessera/minionerec.py', run_name='__main__')\n");
  ASSERT_EQ(status, 0) << out;
  const nlohmann::json cfg = neural_cli_json(dir / "conv/config.json");
  EXPECT_EQ(cfg["method"], "rqvae");
  EXPECT_EQ(cfg["model"]["codebook_sizes"], nlohmann::json({8, 8}));  // from the weights: num_emb_list lies
  EXPECT_EQ(cfg["model"]["layers"], nlohmann::json({16}));
  EXPECT_EQ(cfg["model"]["batch_norm"], true);
  EXPECT_EQ(cfg["model"]["sk_epsilons"], nlohmann::json({0.0, 0.003}));
  for (const std::string ckpt : {"v", "conv"}) {
    r = neural_cli_run(dir, "rqvae generate --checkpoint " + (dir / (ckpt + "/state_dict.pt")) + " --data " + x_npy() +
                                " --out " + (dir / ("g-" + ckpt)) + " -q");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  EXPECT_EQ(tessera_test::slurp(dir / "g-conv/codes.npy"), tessera_test::slurp(dir / "g-v/codes.npy"));
  fs::copy_file(dir / "v/config.json", dir / "config.json");
  neural_cli_expect_failure(dir,
                            "rqvae generate --checkpoint " + (dir / "od.pt") + " --data " + x_npy() + " --out " +
                                (dir / "bad"),
                            "python -m tessera.minionerec", dir / "bad");
}

TEST_F(NeuralCli, BadInputFailsClearlyAndWritesNothing) {
  const std::string books = dir / "sid/codebooks.npz", out = dir / "bad";
  const std::string train = "rqkmeans-plus train --layers 8 --epochs 0 -q --out " + out;
  // Data of another width than the codebooks.
  const FloatMatrix wide = tessera::testing::gaussian_mixture(50, 13, 4, 5);
  write_npy(dir / "wide.npy", wide.view());
  neural_cli_expect_failure(dir, train + " --data " + (dir / "wide.npy") + " --codebooks " + books, "dimension mismatch",
                            out);
  // An npz without codebook_0.
  FloatMatrix book(16, 12);
  write_npz(dir / "gap.npz", {{"codebook_1", book.view()}}, false);
  neural_cli_expect_failure(dir, train + " --data " + x_npy() + " --codebooks " + (dir / "gap.npz"), "codebook_0", out);
  // NaN in the data: the row is named.
  FloatMatrix nan = x.clone();
  nan(7, 3) = std::nanf("");
  write_npy(dir / "nan.npy", nan.view());
  neural_cli_expect_failure(dir, train + " --data " + (dir / "nan.npy") + " --codebooks " + books, "row 7", out);
  // An output directory that cannot be made (below a regular file).
  neural_cli_expect_failure(dir, "rqkmeans-plus train --layers 8 --epochs 0 -q --data " + x_npy() + " --codebooks " +
                                     books + " --out " + (dir / "x.npy/sub"),
                            "output directory", dir / "x.npy/sub");

  // generate: a model to start from.
  const CliRun r = neural_cli_run(dir, "rqkmeans-plus train --layers 8 --epochs 0 -q --data " + x_npy() +
                                           " --codebooks " + books + " --out " + (dir / "m"));
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string gen = "rqkmeans-plus generate -q --out " + out;
  neural_cli_expect_failure(dir, gen + " --checkpoint " + (dir / "nowhere/state_dict.pt") + " --data " + x_npy(),
                            "does not exist", out);
  neural_cli_expect_failure(dir, gen + " --checkpoint " + (dir / "m/state_dict.pt") + " --data " + (dir / "wide.npy"),
                            "dimension mismatch", out);
  // (NaN data and an unwritable --out go through the same checks as in train, above.)
  // A checkpoint without its config.json, and a foreign file with one.
  fs::create_directories(dir / "lone");
  fs::copy_file(dir / "m/state_dict.pt", dir / "lone/state_dict.pt");
  neural_cli_expect_failure(dir, gen + " --checkpoint " + (dir / "lone/state_dict.pt") + " --data " + x_npy(),
                            "config.json", out);
  fs::create_directories(dir / "foreign");
  fs::copy_file(dir / "m/config.json", dir / "foreign/config.json");
  write_file_atomic(dir / "foreign/state_dict.pt", "not a state_dict");
  neural_cli_expect_failure(dir, gen + " --checkpoint " + (dir / "foreign/state_dict.pt") + " --data " + x_npy(),
                            "state_dict.pt", out);
  // A truncated one.
  const std::string full = read_file(dir / "m/state_dict.pt");
  write_file_atomic(dir / "foreign/state_dict.pt", full.substr(0, full.size() / 2));
  neural_cli_expect_failure(dir, gen + " --checkpoint " + (dir / "foreign/state_dict.pt") + " --data " + x_npy(),
                            "state_dict.pt", out);
}

}  // namespace
}  // namespace tessera::neural
