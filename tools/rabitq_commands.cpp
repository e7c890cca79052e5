#include "rabitq_commands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_common.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"
#include "tessera/index/index_ivf_rabitq.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/hdf5.h"
#include "tessera/sid/pipeline.h"

namespace tessera::cli {

namespace {

// nlist when none is given: about 4·√n lists (the usual IVF rule of thumb), at most n / 39 so that k-means
// has 39 rows per list (faiss's warning threshold), at least 1.
size_t default_nlist(size_t n) {
  const size_t by_sqrt = size_t(std::lround(4.0 * std::sqrt(double(n))));
  return std::max<size_t>(1, std::min(by_sqrt, n / 39));
}

std::vector<size_t> parse_list(const std::string& text, const char* what) {
  std::vector<size_t> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    size_t used = 0;
    unsigned long long v = 0;
    try {
      v = std::stoull(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TESSERA_CHECK_ARG(used == item.size() && !item.empty() && item[0] != '-' && v >= 1,
                      what << ": '" << item << "' is not a positive integer (expected e.g. 1,4,16)");
    out.push_back(size_t(v));
    at = comma + 1;
  }
  return out;
}

struct SearchRun {
  std::vector<float> D;
  std::vector<int64_t> I;
  double seconds = 0;  // the fastest of the timed runs
};

// Searches every query; short runs are repeated (at most 3 runs, about a second in all) and the fastest kept,
// so QPS figures of small query sets are not one timer tick.
SearchRun timed_search(const IndexIVFRaBitQ& index, const FloatMatrix& q, size_t k, size_t nprobe, size_t rerank,
                       bool single_stage) {
  SearchRun r{std::vector<float>(q.rows() * k), std::vector<int64_t>(q.rows() * k), 0};
  double total = 0;
  for (int run = 0; run < 3 && (run == 0 || total < 1.0); ++run) {
    check_interrupt();
    const auto t0 = std::chrono::steady_clock::now();
    index.search(q.view(), k, nprobe, r.D.data(), r.I.data(), single_stage, rerank);
    const double s = seconds_since(t0);
    r.seconds = run == 0 ? s : std::min(r.seconds, s);
    total += s;
  }
  return r;
}

}  // namespace

struct RabitqCommands::Impl {
  CLI::App *rabitq = nullptr, *build = nullptr, *search = nullptr, *eval = nullptr;
  // build options (build, and eval with --base)
  std::string input, out, metric = "l2", rotation = "hadamard";
  int bits = 4;
  std::optional<size_t> nlist;
  bool fast_quantization = false, no_vectors = false;
  uint64_t seed = 0x12345;
  // search / eval
  std::string index_file, base, queries, gt_file, nprobe_list = "1,2,4,8,16,32,64", save_index;
  size_t k = 10, nprobe = 16, rerank = 0;  // rerank: kRerankByBound for --rerank auto
  bool single_stage = false;
  int threads = 0;
  bool quiet = false;

  void add_build_options(CLI::App* c) {
    c->add_option("--bits", bits, "bits per coordinate, 1..9 (1 = RaBitQ, more = Extended RaBitQ)")
        ->check(CLI::Range(1, 9))
        ->capture_default_str();
    c->add_option("--nlist", nlist, "coarse lists (default: about 4·√n, at most n/39; 1 = flat)")
        ->check(CLI::Range(size_t(1), size_t(1) << 24));
    c->add_option("--metric", metric,
                  "l2 (squared Euclidean), ip (inner product) or cosine (vectors and queries scaled to unit norm; "
                  "distances are cosine similarities, larger first)")
        ->check(CLI::IsMember({"l2", "ip", "cosine"}))
        ->capture_default_str();
    c->add_option("--rotation", rotation, "random orthogonal transform: hadamard (fast) or dense (Haar QR)")
        ->check(CLI::IsMember({"hadamard", "dense"}))
        ->capture_default_str();
    c->add_flag("--fast-quantization", fast_quantization,
                "constant rescale factor instead of the exact per-vector search (faster build, slightly less accurate)");
    c->add_option("--seed", seed, "random seed (coarse k-means and rotation)")->capture_default_str();
    c->add_flag("--no-vectors", no_vectors,
                "keep only the codes (no raw vectors: a smaller index that cannot --rerank)");
  }
  void add_search_options(CLI::App* c) {
    c->add_option("-k", k, "neighbours per query")->check(CLI::Range(size_t(1), size_t(1) << 20))->capture_default_str();
    c->add_option_function<std::string>(
         "--rerank",
         [this](const std::string& v) {
           if (v == "auto") {
             rerank = IndexIVFRaBitQ::kRerankByBound;
             return;
           }
           size_t used = 0;
           unsigned long long r = 0;
           try {
             r = std::stoull(v, &used);
           } catch (const std::exception&) {
           }
           if (v.empty() || used != v.size() || v[0] == '-')
             throw CLI::ValidationError("--rerank", "expected a count R ≥ 0 or 'auto', got '" + v + "'");
           rerank = size_t(r);
         },
         "R: the best R candidates by estimate get exact distances from the stored vectors (0 = off); auto: "
         "every candidate whose error bound reaches the k-th exact distance so far gets it (the RaBitQ paper's "
         "re-ranking)")
        ->type_name("R|auto")
        ->default_str("0");
    c->add_flag("--single-stage", single_stage, "estimate every scanned code from all its bits (no 1-bit pruning)");
  }
  void add_common(CLI::App* c) {
    c->add_option("--threads", threads, "threads, at least 1 (default: all cores)")->check(CLI::Range(1, 1 << 16));
    c->add_flag("-q,--quiet", quiet, "no progress messages");
  }

  void run_build();
  void run_search();
  void run_eval();

  // Trains and fills an index on x (the build options); prints and returns the build seconds.
  IndexIVFRaBitQ build_index(const FloatMatrix& x, double* seconds) const {
    RabitqParams p;
    p.bits = bits;
    p.metric = parse_metric(metric, /*allow_cosine=*/true);
    p.rotation = parse_rotation_kind(rotation);
    p.fast_quantization = fast_quantization;
    p.seed = seed;
    const size_t lists = nlist ? *nlist : default_nlist(x.rows());
    TESSERA_CHECK_ARG(lists <= x.rows(), "--nlist " << lists << " is more than the " << x.rows() << " vectors");
    const auto t0 = std::chrono::steady_clock::now();
    IndexIVFRaBitQ index(x.cols(), lists, p, !no_vectors);
    if (!quiet) std::fprintf(stderr, "training %zu lists on %zu × %zu ...\n", lists, x.rows(), x.cols());
    index.train(x.view());
    if (!quiet) std::fprintf(stderr, "coding %zu vectors at %d bits ...\n", x.rows(), bits);
    index.add(x.view());
    *seconds = seconds_since(t0);
    return index;
  }
  IndexIVFRaBitQ load_index() const {
    IndexIVFRaBitQ index = IndexIVFRaBitQ::load(index_file);
    TESSERA_CHECK_ARG(index.ntotal() > 0, index_file << " holds no vectors");
    return index;
  }
};

RabitqCommands::RabitqCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.rabitq = app.add_subcommand("rabitq", "Extended RaBitQ IVF indexes: build, search, evaluate");
  s.rabitq->require_subcommand(1);

  s.build = s.rabitq->add_subcommand("build", "train coarse lists, code every vector, write the index file");
  s.build->add_option("input", s.input, "vectors: .npy, .fvecs, .bvecs or .hdf5 (its 'train'; file.hdf5:NAME)")
      ->required();
  s.build->add_option("--out", s.out, "index file to write")->required();
  s.add_build_options(s.build);
  s.add_common(s.build);

  s.search = s.rabitq->add_subcommand("search", "k nearest indexed vectors of each query");
  s.search->add_option("--index", s.index_file, "index file from `rabitq build`")->required();
  s.search->add_option("--queries", s.queries, "query vectors (.npy, .fvecs, .bvecs, .hdf5:test)")->required();
  s.search->add_option("--nprobe", s.nprobe, "lists scanned per query (more than nlist scans all)")
      ->check(CLI::Range(size_t(1), size_t(1) << 24))
      ->capture_default_str();
  s.add_search_options(s.search);
  s.search->add_option("--out", s.out, "output directory: labels.npy (nq × k int64), distances.npy (nq × k float32)")
      ->required();
  s.add_common(s.search);

  s.eval = s.rabitq->add_subcommand(
      "eval", "recall@1 / recall@k and queries per second along an nprobe sweep (and build seconds with --base)");
  auto* from_index = s.eval->add_option("--index", s.index_file, "index file from `rabitq build`");
  auto* from_base = s.eval->add_option("--base", s.base, "or: base vectors to build the index from (build options apply)");
  from_index->excludes(from_base);
  s.eval->add_option("--queries", s.queries, "query vectors (default with an .hdf5 --base: its 'test')");
  s.eval->add_option("--gt", s.gt_file,
                     "true neighbours, n_queries × (≥ k) ids: .ivecs, .npy or .hdf5 (default with an .hdf5 --base: "
                     "its 'neighbors')");
  s.eval->add_option("--nprobe", s.nprobe_list, "comma-separated nprobe values (each clamped to nlist)")
      ->capture_default_str();
  s.add_search_options(s.eval);
  s.add_build_options(s.eval);
  s.eval->add_option("--save-index", s.save_index, "with --base: also write the built index here");
  s.eval->add_option("--out", s.out, "also write the figures as JSON to this file");
  s.add_common(s.eval);
}

RabitqCommands::~RabitqCommands() = default;

bool RabitqCommands::run() {
  Impl& s = *impl_;
  if (!s.rabitq->parsed()) return false;
  set_num_threads(s.threads);
  if (s.build->parsed()) s.run_build();
  else if (s.search->parsed()) s.run_search();
  else if (s.eval->parsed()) s.run_eval();
  return true;
}

void RabitqCommands::Impl::run_build() {
  check_output_file(out);
  const FloatMatrix x = read_input(input, "input");
  double seconds = 0;
  const IndexIVFRaBitQ index = build_index(x, &seconds);
  check_interrupt_now();
  index.save(out);
  std::printf("%zu vectors × %zu, %d bits, %zu lists, %s: built in %.2f s -> %s (%zu code bytes per vector)\n",
              index.ntotal(), index.dim(), bits, index.nlist(), metric.c_str(), seconds, out.c_str(),
              index.quantizer().code_size());
}

void RabitqCommands::Impl::run_search() {
  check_output_dir(out);
  const IndexIVFRaBitQ index = load_index();
  const FloatMatrix q = read_input(queries, "queries", index.dim());
  TESSERA_CHECK_ARG(k <= index.ntotal(), "-k " << k << " is more than the " << index.ntotal() << " indexed vectors");
  const SearchRun r = timed_search(index, q, k, nprobe, rerank, single_stage);
  check_interrupt_now();
  write_search_results(out, r.I, r.D, q.rows(), k);
  std::printf("%zu queries, k = %zu, nprobe = %zu of %zu lists: %.4f s (%.0f queries/s) -> %s/{labels,distances}.npy\n",
              q.rows(), k, std::min(nprobe, index.nlist()), index.nlist(), r.seconds, double(q.rows()) / r.seconds,
              out.c_str());
}

void RabitqCommands::Impl::run_eval() {
  TESSERA_CHECK_ARG(!index_file.empty() || !base.empty(), "eval needs --index FILE or --base FILE");
  TESSERA_CHECK_ARG(save_index.empty() || !base.empty(), "--save-index applies to --base (the index built here)");
  // An ann-benchmarks file carries its queries and true neighbours.
  if (queries.empty() && is_hdf5_path(base)) queries = split_hdf5_path(base, "train").first + ":test";
  if (gt_file.empty() && is_hdf5_path(base)) gt_file = split_hdf5_path(base, "train").first + ":neighbors";
  TESSERA_CHECK_ARG(!queries.empty(), "eval needs --queries (or an .hdf5 --base that holds 'test')");
  TESSERA_CHECK_ARG(!gt_file.empty(), "eval needs --gt (or an .hdf5 --base that holds 'neighbors')");
  const std::vector<size_t> nprobes = parse_list(nprobe_list, "--nprobe");
  if (!out.empty()) check_output_file(out);
  if (!save_index.empty()) check_output_file(save_index);

  std::optional<double> build_s;
  std::optional<IndexIVFRaBitQ> built;
  if (!base.empty()) {
    const FloatMatrix x = read_input(base, "base");
    double s = 0;
    built.emplace(build_index(x, &s));
    build_s = s;
  } else {
    built.emplace(load_index());
  }
  const IndexIVFRaBitQ& index = *built;
  const FloatMatrix q = read_input(queries, "queries", index.dim());
  const CodeMatrix gt = read_ground_truth(gt_file, q.rows(), index.ntotal());
  TESSERA_CHECK_ARG(k <= index.ntotal(), "-k " << k << " is more than the " << index.ntotal() << " indexed vectors");
  const size_t kr = std::min(k, gt.cols());  // recall@k needs k true neighbours per query

  nlohmann::json j;
  j["n_base"] = index.ntotal();
  j["n_queries"] = q.rows();
  j["d"] = index.dim();
  j["bits"] = index.quantizer().params().bits;
  j["nlist"] = index.nlist();
  j["metric"] = metric_name(index.metric_type());
  j["code_bytes_per_vector"] = index.quantizer().code_size();
  j["k"] = k;
  if (rerank == IndexIVFRaBitQ::kRerankByBound)
    j["rerank"] = "auto";
  else
    j["rerank"] = rerank;
  j["single_stage"] = single_stage;
  j["threads"] = num_threads();
  if (build_s) j["build_seconds"] = *build_s;
  std::printf("%zu vectors × %zu, %d bits, %zu lists, %zu queries", index.ntotal(), index.dim(),
              index.quantizer().params().bits, index.nlist(), q.rows());
  if (build_s) std::printf(", built in %.2f s", *build_s);
  std::printf("\n  nprobe   recall@1  recall@%-3zu  queries/s\n", kr);
  nlohmann::json runs = nlohmann::json::array();
  for (size_t np : nprobes) {
    const size_t used = std::min(np, index.nlist());
    const SearchRun r = timed_search(index, q, k, used, rerank, single_stage);
    const double r1 = overlap_recall(r.I, k, gt, 1), rk = overlap_recall(r.I, k, gt, kr);
    const double qps = double(q.rows()) / std::max(r.seconds, 1e-9);
    std::printf("  %6zu   %8.4f  %9.4f  %9.0f\n", used, r1, rk, qps);
    runs.push_back({{"nprobe", used},
                    {"recall@1", r1},
                    {"recall@" + std::to_string(kr), rk},
                    {"search_seconds", r.seconds},
                    {"qps", qps}});
    if (used == index.nlist()) break;  // larger values scan the same lists
  }
  j["runs"] = runs;
  check_interrupt_now();
  if (!save_index.empty()) index.save(save_index);
  if (!out.empty()) write_file_atomic(out, j.dump(2) + "\n");
}

}  // namespace tessera::cli
