#include "cli_common.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <unordered_set>

#include "tessera/core/distances.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/hdf5.h"
#include "tessera/io/npy.h"
#include "tessera/io/texmex.h"
#include "tessera/io/vectors.h"
#include "tessera/sid/pipeline.h"

namespace tessera::cli {

namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  set_interrupt_check([] { return g_signal != 0; });
}

int received_signal() { return g_signal ? int(g_signal) : SIGINT; }

bool verbose_errors(bool flag) {
  const char* env = std::getenv("TESSERA_VERBOSE");
  return flag || (env && *env && std::string(env) != "0");
}

namespace fs = std::filesystem;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void check_output_file(const std::string& path) {
  std::error_code ec;
  TESSERA_CHECK_ARG(!fs::is_directory(path, ec), "output " << path << " is a directory, expected a file name");
  const fs::path parent = fs::path(path).parent_path();
  TESSERA_CHECK_ARG(parent.empty() || fs::is_directory(parent, ec),
                    "output " << path << ": directory " << parent.string() << " does not exist");
  check_output_dir(parent.empty() ? "." : parent.string());
}

FloatMatrix read_input(const std::string& path, const char* what, size_t dim) {
  FloatMatrix x = read_vectors(path);
  TESSERA_CHECK_ARG(x.rows() > 0, what << " " << path << " holds no vectors");
  TESSERA_CHECK_ARG(dim == 0 || x.cols() == dim,
                    "dimension mismatch: " << what << " " << path << " has " << x.cols() << " columns, expected " << dim);
  check_finite(x.view(), path.c_str());
  return x;
}

CodeMatrix read_ground_truth(const std::string& path, size_t n_queries, size_t n_base) {
  CodeMatrix gt;
  const std::string ext = fs::path(path).extension().string();
  if (is_hdf5_path(path)) {
    const auto [file, dataset] = split_hdf5_path(path, "neighbors");
    gt = read_hdf5_i32(file, dataset);
  } else if (ext == ".ivecs") {
    gt = read_ivecs(path);
  } else if (ext == ".npy") {
    gt = read_npy_i32(path);
  } else {
    TESSERA_THROW_ARG("ground truth " << path << ": expected .ivecs, .npy or .hdf5 (n_queries × k integer ids)");
  }
  TESSERA_CHECK_ARG(gt.rows() == n_queries && gt.cols() >= 1,
                    "ground truth " << path << " has " << gt.rows() << " rows, the queries " << n_queries);
  for (size_t i = 0; i < gt.rows(); ++i)
    for (size_t j = 0; j < gt.cols(); ++j)
      TESSERA_CHECK_ARG(gt(i, j) >= 0 && size_t(gt(i, j)) < n_base,
                        "ground truth " << path << " row " << i << " names base vector " << gt(i, j) << ", the base has "
                                        << n_base);
  return gt;
}

double first_neighbour_recall(const std::vector<int64_t>& labels, size_t k, const CodeMatrix& gt, size_t r) {
  size_t hits = 0;
  for (size_t i = 0; i < gt.rows(); ++i) {
    const int64_t* row = labels.data() + i * k;
    hits += std::find(row, row + std::min(r, k), int64_t(gt(i, 0))) != row + std::min(r, k);
  }
  return gt.rows() ? double(hits) / double(gt.rows()) : 0.0;
}

double overlap_recall(const std::vector<int64_t>& labels, size_t k, const CodeMatrix& gt, size_t r) {
  TESSERA_CHECK_ARG(r <= k && r <= gt.cols(), "recall@" << r << " needs " << r << " labels and true neighbours");
  double sum = 0;
  for (size_t i = 0; i < gt.rows(); ++i) {
    const std::unordered_set<int64_t> truth(gt.row(i), gt.row(i) + r);
    size_t hits = 0;
    for (size_t t = 0; t < r; ++t) hits += truth.count(labels[i * k + t]);
    sum += double(hits) / double(r);
  }
  return gt.rows() ? sum / double(gt.rows()) : 0.0;
}

void write_search_results(const std::string& dir, const std::vector<int64_t>& labels, const std::vector<float>& dists,
                          size_t nq, size_t k, const std::function<void()>& also) {
  const bool existed = fs::exists(dir);
  try {
    prepare_output_dir(dir);
    AtomicFile l(dir + "/labels.npy"), d(dir + "/distances.npy");
    l.write(npy_bytes(MatrixView<const int64_t>(labels.data(), nq, k)));
    d.write(npy_bytes(MatrixView<const float>(dists.data(), nq, k)));
    if (also) also();
    l.commit();
    d.commit();
  } catch (...) {
    std::error_code ec;
    if (!existed) fs::remove_all(dir, ec);
    throw;
  }
}

}  // namespace tessera::cli
