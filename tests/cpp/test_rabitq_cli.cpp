// `tessera rabitq build|search|eval` as a user runs it: results equal the library's in-process search on the
// same index, recall figures equal recall computed here, ann-benchmarks HDF5 files work without extra flags,
// and bad input fails with a clear message and writes nothing.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "hdf5_test_util.h"
#include "test_helpers.h"
#include "tessera/index/index_ivf_rabitq.h"
#include "tessera/io/npy.h"
#include "tessera/io/texmex.h"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

std::string run_cli(const std::string& args, int* status) {
  const std::string log = ::testing::TempDir() + "/rabitq_cli.log";
  const int rc = std::system((std::string(TESSERA_CLI) + " " + args + " >" + log + " 2>&1").c_str());
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream in(log);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `tessera rabitq eval ARGS --out JSON`: what it wrote (null, with the failure reported, if it failed).
nlohmann::json eval_json(const std::string& args, const std::string& json) {
  int st = 0;
  const std::string out = run_cli("rabitq eval " + args + " --out " + json, &st);
  EXPECT_EQ(st, 0) << out;
  if (st != 0) return nlohmann::json();
  std::ifstream in(json);
  return nlohmann::json::parse(in);
}

// The exact k nearest base rows of every query by squared L2 (brute force).
CodeMatrix exact_neighbours(const FloatMatrix& x, const FloatMatrix& q, size_t k) {
  CodeMatrix gt(q.rows(), k);
  for (size_t i = 0; i < q.rows(); ++i) {
    std::vector<std::pair<double, int32_t>> d(x.rows());
    for (size_t j = 0; j < x.rows(); ++j) {
      double s = 0;
      for (size_t c = 0; c < x.cols(); ++c) s += (double(x(j, c)) - q(i, c)) * (double(x(j, c)) - q(i, c));
      d[j] = {s, int32_t(j)};
    }
    std::partial_sort(d.begin(), d.begin() + k, d.end());
    for (size_t t = 0; t < k; ++t) gt(i, t) = d[t].second;
  }
  return gt;
}

double overlap(const std::vector<int64_t>& labels, size_t k, const CodeMatrix& gt, size_t r) {
  double sum = 0;
  for (size_t i = 0; i < gt.rows(); ++i) {
    const std::set<int64_t> truth(gt.row(i), gt.row(i) + r);
    for (size_t t = 0; t < r; ++t) sum += truth.count(labels[i * k + t]);
  }
  return sum / double(r * gt.rows());
}

class RabitqCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(TESSERA_CLI).empty()) GTEST_SKIP() << "CLI not built";
    dir = ::testing::TempDir() + "/rabitq_cli_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::create_directories(dir);
    x = tessera::testing::gaussian_mixture(3000, 32, 40, 51);
    q = tessera::testing::gaussian_mixture(40, 32, 40, 52);
    gt = exact_neighbours(x, q, 10);
    write_npy(dir + "/x.npy", x.view());
    write_fvecs(dir + "/q.fvecs", q.view());
    write_ivecs(dir + "/gt.ivecs", gt.view());
  }
  std::string dir;
  FloatMatrix x, q;
  CodeMatrix gt;
};

TEST_F(RabitqCli, BuildSearchEvalMatchTheLibrary) {
  int st = 0;
  std::string out = run_cli("rabitq build " + dir + "/x.npy --out " + dir + "/i.rbq --bits 4 --nlist 16 -q", &st);
  ASSERT_EQ(st, 0) << out;
  const IndexIVFRaBitQ index = IndexIVFRaBitQ::load(dir + "/i.rbq");
  EXPECT_EQ(index.ntotal(), x.rows());
  EXPECT_EQ(index.nlist(), 16u);
  EXPECT_EQ(index.quantizer().params().bits, 4);

  out = run_cli("rabitq search --index " + dir + "/i.rbq --queries " + dir + "/q.fvecs -k 10 --nprobe 4 --out " + dir +
                    "/res",
                &st);
  ASSERT_EQ(st, 0) << out;
  std::vector<float> D(q.rows() * 10);
  std::vector<int64_t> I(q.rows() * 10);
  index.search(q.view(), 10, 4, D.data(), I.data());
  const CodeMatrix labels = read_npy_i32(dir + "/res/labels.npy");  // int64 on disk, ids < 2^31
  const FloatMatrix dists = read_npy_f32(dir + "/res/distances.npy");
  ASSERT_EQ(labels.rows(), q.rows());
  ASSERT_EQ(labels.cols(), 10u);
  for (size_t i = 0; i < I.size(); ++i) {
    EXPECT_EQ(labels.data()[i], I[i]) << i;
    EXPECT_EQ(dists.data()[i], D[i]) << i;
  }

  // eval: the printed and written recall is the recall of the library's results.
  const auto j = eval_json("--index " + dir + "/i.rbq --queries " + dir + "/q.fvecs --gt " + dir +
                                "/gt.ivecs --nprobe 1,4,99",
                            dir + "/e.json");
  ASSERT_EQ(j["runs"].size(), 3u);
  EXPECT_EQ(j["runs"][2]["nprobe"], 16);  // clamped to nlist
  for (const auto& run : j["runs"]) {
    const size_t np = run["nprobe"];
    index.search(q.view(), 10, np, D.data(), I.data());
    EXPECT_DOUBLE_EQ(run["recall@10"].get<double>(), overlap(I, 10, gt, 10)) << np;
    EXPECT_DOUBLE_EQ(run["recall@1"].get<double>(), overlap(I, 10, gt, 1)) << np;
    EXPECT_GT(run["qps"].get<double>(), 0);
  }
  EXPECT_GE(j["runs"][2]["recall@10"].get<double>(), j["runs"][0]["recall@10"].get<double>());
  EXPECT_GT(j["runs"][2]["recall@10"].get<double>(), 0.8);  // 4 bits over all lists
  EXPECT_EQ(j["code_bytes_per_vector"], index.quantizer().code_size());

  // Re-ranking every vector with its exact distance over all lists is exact search.
  const auto jr = eval_json("--index " + dir + "/i.rbq --queries " + dir + "/q.fvecs --gt " + dir +
                                 "/gt.ivecs --nprobe 16 --rerank 3000",
                             dir + "/r.json");
  EXPECT_EQ(jr["runs"][0]["recall@10"].get<double>(), 1.0);
  // --rerank auto (by the error bound): the library's results, recorded as "auto"; a bad count is refused.
  const auto ja = eval_json("--index " + dir + "/i.rbq --queries " + dir + "/q.fvecs --gt " + dir +
                                 "/gt.ivecs --nprobe 16 --rerank auto",
                             dir + "/a.json");
  EXPECT_EQ(ja["rerank"], "auto");
  index.search(q.view(), 10, 16, D.data(), I.data(), false, IndexIVFRaBitQ::kRerankByBound);
  EXPECT_DOUBLE_EQ(ja["runs"][0]["recall@10"].get<double>(), overlap(I, 10, gt, 10));
  EXPECT_GE(ja["runs"][0]["recall@10"].get<double>(), 0.97);
  for (const char* bad : {"-3", "lots", "5x"}) {
    out = run_cli("rabitq eval --index " + dir + "/i.rbq --queries " + dir + "/q.fvecs --gt " + dir +
                      "/gt.ivecs --rerank " + bad + " --out " + dir + "/bad.json",
                  &st);
    EXPECT_NE(st, 0) << bad;
    EXPECT_NE(out.find("--rerank"), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(dir + "/bad.json"));
  }
  // An index built without its vectors refuses to re-rank.
  out = run_cli("rabitq build " + dir + "/x.npy --out " + dir + "/nv.rbq --nlist 4 --no-vectors -q", &st);
  ASSERT_EQ(st, 0) << out;
  out = run_cli("rabitq search --index " + dir + "/nv.rbq --queries " + dir + "/q.fvecs --rerank 50 --out " + dir + "/rr",
                &st);
  EXPECT_EQ(st, 1) << out;
  EXPECT_FALSE(fs::exists(dir + "/rr"));
}

// --metric cosine: the index keeps the metric, search writes the library's cosines (descending), and eval's
// recall is against the true cosine neighbours (exact with every list and every vector re-ranked).
TEST_F(RabitqCli, CosineBuildSearchEval) {
  // Vectors at very different scales: cosine must not see them.
  FloatMatrix xs = x;
  for (size_t i = 0; i < xs.rows(); ++i)
    for (size_t c = 0; c < xs.cols(); ++c) xs(i, c) *= float(1 + i % 7) * (i % 2 ? 100.0f : 0.01f);
  write_npy(dir + "/xs.npy", xs.view());
  CodeMatrix truth(q.rows(), 10);
  for (size_t i = 0; i < q.rows(); ++i) {
    std::vector<std::pair<double, int32_t>> s(xs.rows());
    double qq = 0;
    for (size_t c = 0; c < q.cols(); ++c) qq += double(q(i, c)) * q(i, c);
    for (size_t j = 0; j < xs.rows(); ++j) {
      double xq = 0, xx = 0;
      for (size_t c = 0; c < q.cols(); ++c) xq += double(xs(j, c)) * q(i, c), xx += double(xs(j, c)) * xs(j, c);
      s[j] = {-xq / std::sqrt(xx * qq), int32_t(j)};
    }
    std::partial_sort(s.begin(), s.begin() + 10, s.end());
    for (size_t t = 0; t < 10; ++t) truth(i, t) = s[t].second;
  }
  write_ivecs(dir + "/cos_gt.ivecs", truth.view());
  int st = 0;
  std::string out =
      run_cli("rabitq build " + dir + "/xs.npy --out " + dir + "/c.rbq --bits 4 --nlist 16 --metric cosine", &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("cosine"), std::string::npos) << out;
  const IndexIVFRaBitQ index = IndexIVFRaBitQ::load(dir + "/c.rbq");
  EXPECT_EQ(index.metric_type(), MetricType::cosine);
  out = run_cli("rabitq search --index " + dir + "/c.rbq --queries " + dir + "/q.fvecs -k 10 --nprobe 4 --out " +
                    dir + "/res",
                &st);
  ASSERT_EQ(st, 0) << out;
  std::vector<float> D(q.rows() * 10);
  std::vector<int64_t> I(q.rows() * 10);
  index.search(q.view(), 10, 4, D.data(), I.data());
  const CodeMatrix labels = read_npy_i32(dir + "/res/labels.npy");
  const FloatMatrix dists = read_npy_f32(dir + "/res/distances.npy");
  for (size_t i = 0; i < I.size(); ++i) {
    EXPECT_EQ(labels.data()[i], I[i]) << i;
    EXPECT_EQ(dists.data()[i], D[i]) << i;
    EXPECT_LE(std::abs(D[i]), 1.0f);
    if (i % 10) EXPECT_LE(D[i], D[i - 1]);
  }
  const auto j = eval_json("--index " + dir + "/c.rbq --queries " + dir + "/q.fvecs --gt " + dir +
                                "/cos_gt.ivecs --nprobe 4,16",
                            dir + "/e.json");
  EXPECT_EQ(j["metric"], "cosine");
  EXPECT_GT(j["runs"][1]["recall@10"].get<double>(), 0.8);
  EXPECT_EQ(eval_json("--base " + dir + "/xs.npy --metric cosine --nlist 16 --queries " + dir + "/q.fvecs --gt " +
                          dir + "/cos_gt.ivecs --nprobe 16 --rerank 3000 -q",
                      dir + "/r.json")["runs"][0]["recall@10"]
                .get<double>(),
            1.0);
  out = run_cli("rabitq build " + dir + "/xs.npy --out " + dir + "/h.rbq --metric hamming", &st);
  EXPECT_NE(st, 0);
  EXPECT_FALSE(fs::exists(dir + "/h.rbq"));
}

TEST_F(RabitqCli, EvalBuildsFromBaseAndSavesTheIndex) {
  int st = 0;
  const auto j = eval_json("--base " + dir + "/x.npy --queries " + dir + "/q.fvecs --gt " + dir +
                                "/gt.ivecs --bits 2 --nlist 8 --nprobe 8 --save-index " + dir + "/b.rbq -q",
                            dir + "/e.json");
  EXPECT_GT(j["build_seconds"].get<double>(), 0);
  EXPECT_EQ(j["bits"], 2);
  const IndexIVFRaBitQ index = IndexIVFRaBitQ::load(dir + "/b.rbq");
  EXPECT_EQ(index.ntotal(), x.rows());
  EXPECT_EQ(index.nlist(), 8u);
}

#ifdef TESSERA_WITH_HDF5
TEST_F(RabitqCli, AnnBenchmarksFileNeedsNoOtherInputs) {
  const std::string path = dir + "/toy-32-euclidean.hdf5";
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  tessera_test::write_dataset(f, "train", H5T_NATIVE_FLOAT, x.rows(), x.cols(),
                              std::vector<float>(x.data(), x.data() + x.size()));
  tessera_test::write_dataset(f, "test", H5T_NATIVE_FLOAT, q.rows(), q.cols(),
                              std::vector<float>(q.data(), q.data() + q.size()));
  tessera_test::write_dataset(f, "neighbors", H5T_NATIVE_INT32, gt.rows(), gt.cols(),
                              std::vector<int32_t>(gt.data(), gt.data() + gt.size()));
  tessera_test::write_string_attribute(f, "distance", "euclidean");
  H5Fclose(f);
  const auto j = eval_json("--base " + path + " --nlist 4 --nprobe 4 -q", dir + "/e.json");
  EXPECT_EQ(j["n_base"], x.rows());
  EXPECT_EQ(j["n_queries"], q.rows());
  EXPECT_GT(j["runs"][0]["recall@10"].get<double>(), 0.8);
}
#endif

TEST_F(RabitqCli, BadInputIsAClearErrorAndWritesNothing) {
  int st = 0;
  std::string out = run_cli("rabitq build " + dir + "/x.npy --out " + dir + "/o.rbq --bits 10", &st);
  EXPECT_NE(st, 0);
  out = run_cli("rabitq build " + dir + "/x.npy --out " + dir + "/o.rbq --nlist 5000", &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(out.find("--nlist 5000"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/o.rbq"));
  out = run_cli("rabitq build " + dir + "/x.npy --out " + dir + "/no/such/dir/o.rbq", &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;

  out = run_cli("rabitq build " + dir + "/x.npy --out " + dir + "/i.rbq --nlist 4 -q", &st);
  ASSERT_EQ(st, 0) << out;
  // Queries of another dimension.
  write_npy(dir + "/q8.npy", tessera::testing::gaussian_mixture(5, 8, 2, 3).view());
  out = run_cli("rabitq search --index " + dir + "/i.rbq --queries " + dir + "/q8.npy --out " + dir + "/r1", &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(out.find("dimension mismatch"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/r1"));
  // k beyond the index, NaN queries, a truncated index, ground truth of the wrong shape.
  out = run_cli("rabitq search --index " + dir + "/i.rbq --queries " + dir + "/q.fvecs -k 5000 --out " + dir + "/r2", &st);
  EXPECT_EQ(st, 1);
  EXPECT_FALSE(fs::exists(dir + "/r2"));
  FloatMatrix bad = q;
  bad(3, 7) = std::nanf("");
  write_npy(dir + "/nan.npy", bad.view());
  out = run_cli("rabitq search --index " + dir + "/i.rbq --queries " + dir + "/nan.npy --out " + dir + "/r3", &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(out.find("row 3"), std::string::npos) << out;
  {
    std::ifstream in(dir + "/i.rbq", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream o(dir + "/cut.rbq", std::ios::binary);
    o << bytes.substr(0, bytes.size() / 2);
  }
  out = run_cli("rabitq search --index " + dir + "/cut.rbq --queries " + dir + "/q.fvecs --out " + dir + "/r4", &st);
  EXPECT_EQ(st, 1) << out;
  EXPECT_FALSE(fs::exists(dir + "/r4"));
  write_ivecs(dir + "/short.ivecs", CodeMatrix(3, 10).view());
  out = run_cli("rabitq eval --index " + dir + "/i.rbq --queries " + dir + "/q.fvecs --gt " + dir + "/short.ivecs --out " +
                    dir + "/e.json",
                &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(out.find("ground truth"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/e.json"));
  out = run_cli("rabitq eval --index " + dir + "/i.rbq --queries " + dir + "/q.fvecs --gt " + dir +
                    "/gt.ivecs --nprobe 1,x",
                &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(out.find("'x'"), std::string::npos) << out;
}

}  // namespace
