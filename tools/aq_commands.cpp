#include "aq_commands.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_common.h"
#include "progress_bar.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"
#include "tessera/index/index_additive_quantizer.h"
#include "tessera/index/index_io.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/npy.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/residual_quantizer.h"
#include "tessera/quant/serialization.h"
#include "tessera/sid/pipeline.h"

namespace tessera::cli {

namespace {

std::shared_ptr<AdditiveQuantizer> load_model(const std::string& path, std::string* meta = nullptr) {
  std::unique_ptr<Quantizer> q = load_quantizer(path, meta);
  auto* aq = dynamic_cast<AdditiveQuantizer*>(q.get());
  TESSERA_CHECK_ARG(aq, path << " holds a '" << q->type_name() << "' model, not an additive quantizer");
  q.release();
  return std::shared_ptr<AdditiveQuantizer>(aq);
}

FloatMatrix read_input(const std::string& path, const AdditiveQuantizer* model, const char* what) {
  return cli::read_input(path, what, model ? model->dim() : 0);
}

// A flat index over the model holding base's codes (add() encodes in blocks and notices Ctrl-C between them).
IndexAdditiveQuantizer build_index(std::shared_ptr<const AdditiveQuantizer> model, MetricType metric,
                                   const FloatMatrix& base) {
  IndexAdditiveQuantizer index(std::move(model), metric);
  index.add(base.view());
  return index;
}

struct SearchOut {
  std::vector<float> D;
  std::vector<int64_t> I;
};

SearchOut search_all(const IndexAdditiveQuantizer& index, const FloatMatrix& q, size_t k) {
  SearchOut r{std::vector<float>(q.rows() * k), std::vector<int64_t>(q.rows() * k)};
  index.search(q.view(), k, r.D.data(), r.I.data());
  return r;
}

}  // namespace

struct AqCommands::Impl {
  CLI::App *aq = nullptr, *train = nullptr, *encode = nullptr, *search = nullptr, *eval = nullptr;
  // train
  std::string method = "lsq", search_type = "ST_decompress", input, out;
  size_t M = 8, nbits = 8;
  std::optional<size_t> train_iters, encode_ils_iters, train_ils_iters, max_beam_size;
  std::optional<uint64_t> seed;
  std::optional<double> codebook_cg_tol;
  // encode / search / eval
  std::string model, base, queries, gt_file, metric = "l2";
  bool unpacked = false;
  size_t k = 100;
  std::string save_index;
  int threads = 0;
  bool quiet = false;

  void add_common(CLI::App* c) {
    c->add_option("--threads", threads, "threads, at least 1 (default: all cores)")->check(CLI::Range(1, 1 << 16));
    c->add_flag("-q,--quiet", quiet, "no progress bar");
  }

  void run_train();
  void run_encode();
  void run_search();
  void run_eval();
};

AqCommands::AqCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.aq = app.add_subcommand("aq", "additive quantizers (LSQ / RQ) and flat-index search");
  s.aq->require_subcommand(1);

  s.train = s.aq->add_subcommand("train", "train an LSQ or RQ model and write it (.tsq)");
  s.train->add_option("input", s.input, "training vectors: .npy, .fvecs or .bvecs (n × d)")->required();
  s.train->add_option("--out", s.out, "model file to write (.tsq)")->required();
  s.train->add_option("--method", s.method, "lsq (LSQ++, joint codes) or rq (residual, beam search)")
      ->check(CLI::IsMember({"lsq", "rq"}))
      ->capture_default_str();
  s.train->add_option("--M", s.M, "number of codebooks")->capture_default_str();
  s.train->add_option("--nbits", s.nbits, "bits per codebook (1..16): 2^nbits codewords each")->capture_default_str();
  s.train->add_option("--search-type", s.search_type,
                      "search type and stored norm: ST_decompress, ST_LUT_nonorm, ST_norm_from_LUT, ST_norm_float, "
                      "ST_norm_qint8/4, ST_norm_cqint8/4, ST_norm_lsq2x4, ST_norm_rq2x4 (faiss's names)")
      ->capture_default_str();
  s.train->add_option("--train-iters", s.train_iters, "lsq: training iterations (default 25)");
  s.train->add_option("--encode-ils-iters", s.encode_ils_iters, "lsq: ILS steps when encoding (default 16)");
  s.train->add_option("--train-ils-iters", s.train_ils_iters, "lsq: ILS steps per training iteration (default 8)");
  s.train->add_option("--codebook-cg-tol", s.codebook_cg_tol,
                      "lsq: relative residual of the training's codebook updates by conjugate gradients (default "
                      "1e-5; 0: the exact solve every iteration, as faiss)")
      ->check(CLI::NonNegativeNumber);
  s.train->add_option("--max-beam-size", s.max_beam_size, "rq: beam width of the encoder (default 5)");
  s.train->add_option("--seed", s.seed, "random seed")->check(CLI::NonNegativeNumber);
  s.add_common(s.train);

  s.encode = s.aq->add_subcommand("encode", "encode vectors with a model: packed codes (.npy uint8)");
  s.encode->add_option("input", s.input, "vectors: .npy, .fvecs or .bvecs")->required();
  s.encode->add_option("--model", s.model, "model file (.tsq) from `aq train`")->required();
  s.encode->add_option("--out", s.out, "codes (.npy): n × code_size uint8, faiss's packed layout")->required();
  s.encode->add_flag("--unpacked", s.unpacked, "write n × M int32 codebook indices instead");
  s.add_common(s.encode);

  s.search = s.aq->add_subcommand("search", "k nearest base vectors of each query through the flat index");
  s.search->add_option("--model", s.model, "model file (.tsq) from `aq train`")->required();
  s.search->add_option("--base", s.base, "base vectors to encode and search (.npy, .fvecs, .bvecs)")->required();
  s.search->add_option("--queries", s.queries, "query vectors")->required();
  s.search->add_option("-k", s.k, "neighbours per query")->check(CLI::Range(size_t(1), size_t(1) << 20))->capture_default_str();
  s.search->add_option("--metric", s.metric, "l2 or ip (inner product)")
      ->check(CLI::IsMember({"l2", "ip"}))
      ->capture_default_str();
  s.search->add_option("--out", s.out, "output directory: labels.npy (nq × k int64), distances.npy (nq × k float32)")
      ->required();
  s.search->add_option("--save-index", s.save_index, "also write the index (model + codes) to this file");
  s.add_common(s.search);

  s.eval = s.aq->add_subcommand("eval", "MSE, recall@1/10/100 and times of a model on a base / query / ground-truth set");
  s.eval->add_option("--model", s.model, "model file (.tsq) from `aq train`")->required();
  s.eval->add_option("--base", s.base, "base vectors (.npy, .fvecs, .bvecs)")->required();
  s.eval->add_option("--queries", s.queries, "query vectors")->required();
  s.eval->add_option("--gt", s.gt_file, "ground truth (.ivecs or integer .npy): row i's first id is query i's nearest base vector")
      ->required();
  s.eval->add_option("-k", s.k, "neighbours searched per query (recall@R is reported for R ≤ k)")
      ->check(CLI::Range(size_t(1), size_t(1) << 20))
      ->capture_default_str();
  s.eval->add_option("--metric", s.metric, "l2 or ip (inner product)")
      ->check(CLI::IsMember({"l2", "ip"}))
      ->capture_default_str();
  s.eval->add_option("--out", s.out, "also write the figures as JSON to this file");
  s.add_common(s.eval);
}

AqCommands::~AqCommands() = default;

bool AqCommands::quiet() const { return impl_->quiet; }

bool AqCommands::run() {
  Impl& s = *impl_;
  if (!s.aq->parsed()) return false;
  set_num_threads(s.threads);
  if (s.train->parsed()) s.run_train();
  else if (s.encode->parsed()) s.run_encode();
  else if (s.search->parsed()) s.run_search();
  else if (s.eval->parsed()) s.run_eval();
  return true;
}

void AqCommands::Impl::run_train() {
  const bool lsq = method == "lsq";
  TESSERA_CHECK_ARG(lsq || (!train_iters && !encode_ils_iters && !train_ils_iters && !codebook_cg_tol),
                    "--train-iters, --encode-ils-iters, --train-ils-iters and --codebook-cg-tol apply to --method lsq");
  TESSERA_CHECK_ARG(!lsq || !max_beam_size, "--max-beam-size applies to --method rq");
  TESSERA_CHECK_ARG(!max_beam_size || *max_beam_size >= 1, "--max-beam-size must be at least 1");
  const SearchType st = parse_search_type(search_type);
  // Shapes first (nbits range, LSQ's memory bound): a bad setting fails before the data is read.
  AdditiveQuantizer::equal_codebook_sizes(M, nbits);
  check_output_file(out);
  const FloatMatrix x = read_input(input, nullptr, "training set");
  std::shared_ptr<AdditiveQuantizer> q;
  if (lsq) {
    LocalSearchQuantizerParams p;
    if (train_iters) p.train_iters = *train_iters;
    if (encode_ils_iters) p.encode_ils_iters = *encode_ils_iters;
    if (train_ils_iters) p.train_ils_iters = *train_ils_iters;
    if (codebook_cg_tol) p.codebook_cg_tol = *codebook_cg_tol;
    if (seed) p.random_seed = *seed;
    p.progress = progress_bar(quiet);
    auto l = std::make_shared<LocalSearchQuantizer>(x.cols(), M, nbits, p, st);
    q = l;
  } else {
    ResidualQuantizerParams p;
    if (max_beam_size) p.max_beam_size = int(*max_beam_size);
    if (seed) p.seed = *seed;
    p.progress = progress_bar(quiet);
    q = std::make_shared<ResidualQuantizer>(x.cols(), M, nbits, st, p);
  }
  const auto t0 = std::chrono::steady_clock::now();
  q->train(x.view());
  const double train_s = seconds_since(t0);
  if (!quiet) std::fprintf(stderr, "\n");
  // The progress callback is the CLI's: models do not keep it.
  if (auto* l = dynamic_cast<LocalSearchQuantizer*>(q.get())) l->params().progress = nullptr;
  if (auto* r = dynamic_cast<ResidualQuantizer*>(q.get())) r->params().progress = nullptr;
  const nlohmann::json meta = {{"method", method}, {"train_seconds", train_s}, {"train_rows", x.rows()},
                               {"input", input}};
  check_interrupt_now();
  save_quantizer(*q, out, meta.dump());
  std::printf("%s model, M = %zu, nbits = %zu, %s: trained on %zu × %zu in %.2f s -> %s (%zu bytes per code)\n",
              method.c_str(), M, nbits, search_type_name(st).c_str(), x.rows(), x.cols(), train_s, out.c_str(),
              q->code_size());
}

void AqCommands::Impl::run_encode() {
  check_output_file(out);
  const auto q = load_model(model);
  const FloatMatrix x = read_input(input, q.get(), "input");
  const size_t n = x.rows(), M = q->num_codebooks(), cs = q->code_size();
  const auto t0 = std::chrono::steady_clock::now();
  Matrix<uint8_t> packed(n, cs);
  CodeMatrix codes(unpacked ? n : 0, M);
  constexpr size_t kChunk = size_t(1) << 16;  // Ctrl-C is noticed between chunks
  for (size_t i0 = 0; i0 < n; i0 += kChunk) {
    check_interrupt();
    const MatrixView<const float> xb(x.row(i0), std::min(kChunk, n - i0), x.cols(), x.cols());
    if (unpacked) q->encode(xb, codes.row(i0));
    else q->encode_packed(xb, packed.row(i0));
  }
  const double enc_s = seconds_since(t0);
  check_interrupt_now();
  if (unpacked) write_npy(out, codes.view());
  else write_npy(out, packed.view());
  std::printf("encoded %zu vectors in %.2f s -> %s (%s)\n", n, enc_s, out.c_str(),
              unpacked ? ("n × " + std::to_string(M) + " int32").c_str()
                       : ("n × " + std::to_string(cs) + " uint8, packed").c_str());
}

void AqCommands::Impl::run_search() {
  check_output_dir(out);
  if (!save_index.empty()) check_output_file(save_index);
  const auto q = load_model(model);
  const FloatMatrix xb = read_input(base, q.get(), "base");
  const FloatMatrix xq = read_input(queries, q.get(), "queries");
  auto t0 = std::chrono::steady_clock::now();
  const IndexAdditiveQuantizer index = build_index(q, parse_metric(metric), xb);
  const double add_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const SearchOut r = search_all(index, xq, k);
  const double search_s = seconds_since(t0);
  check_interrupt_now();
  write_search_results(out, r.I, r.D, xq.rows(), k, [&] {
    if (!save_index.empty()) write_index(index, save_index);
  });
  std::printf("%zu queries, k = %zu, %s over %zu vectors: encode %.2f s, search %.3f s -> %s/{labels,distances}.npy\n",
              xq.rows(), k, metric.c_str(), xb.rows(), add_s, search_s, out.c_str());
}

void AqCommands::Impl::run_eval() {
  if (!out.empty()) check_output_file(out);
  std::string meta_text;
  const auto q = load_model(model, &meta_text);
  const FloatMatrix xb = read_input(base, q.get(), "base");
  const FloatMatrix xq = read_input(queries, q.get(), "queries");
  const CodeMatrix gt = read_ground_truth(gt_file, xq.rows(), xb.rows());
  auto t0 = std::chrono::steady_clock::now();
  const IndexAdditiveQuantizer index = build_index(q, parse_metric(metric), xb);
  const double encode_s = seconds_since(t0);
  // Reconstruction error of the base, in blocks (bounded memory).
  double sq = 0;
  {
    constexpr size_t kBlock = 4096;
    std::vector<float> rec(kBlock * xb.cols());
    for (size_t i0 = 0; i0 < xb.rows(); i0 += kBlock) {
      check_interrupt();
      const size_t n = std::min(kBlock, xb.rows() - i0);
      index.reconstruct_n(i0, n, rec.data());
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < xb.cols(); ++j) {
          const double e = double(xb(i0 + i, j)) - rec[i * xb.cols() + j];
          sq += e * e;
        }
    }
  }
  const double mse_vec = sq / double(xb.rows()), mse_comp = mse_vec / double(xb.cols());
  t0 = std::chrono::steady_clock::now();
  const SearchOut r = search_all(index, xq, k);
  const double search_s = seconds_since(t0);
  nlohmann::json j;
  j["model"] = model;
  j["search_type"] = search_type_name(q->search_type());
  j["M"] = q->num_codebooks();
  j["code_size"] = q->code_size();
  j["metric"] = metric;
  j["n_base"] = xb.rows();
  j["n_queries"] = xq.rows();
  j["k"] = k;
  j["mse_per_vector"] = mse_vec;
  j["mse_per_component"] = mse_comp;
  const nlohmann::json meta = nlohmann::json::parse(meta_text.empty() ? "{}" : meta_text);
  j["train_seconds"] = meta.contains("train_seconds") ? meta["train_seconds"] : nlohmann::json();
  j["encode_seconds"] = encode_s;
  j["search_seconds"] = search_s;
  std::printf("%s, %zu bytes per code: MSE %.6g per vector (%.6g per component); encode %.2f s, search %.3f s",
              search_type_name(q->search_type()).c_str(), q->code_size(), mse_vec, mse_comp, encode_s, search_s);
  if (meta.contains("train_seconds")) std::printf(", train %.2f s", meta["train_seconds"].get<double>());
  std::printf("\n");
  for (size_t R : {size_t(1), size_t(10), size_t(100)}) {
    if (R > k) break;
    const double recall = first_neighbour_recall(r.I, k, gt, R);
    j["recall@" + std::to_string(R)] = recall;
    std::printf("  recall@%-3zu %.4f\n", R, recall);
  }
  if (!out.empty()) {
    check_interrupt_now();
    write_file_atomic(out, j.dump(2) + "\n");
  }
}

}  // namespace tessera::cli
