#include "neural_commands.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli_common.h"
#include "progress_bar.h"
#include "tessera/core/error.h"
#include "tessera/core/threading.h"
#include "tessera/io/atomic_file.h"
#include "tessera/sid/pipeline.h"
#ifdef TESSERA_WITH_NEURAL
#include "tessera/neural/config.h"
#include "tessera/neural/model.h"
#include "tessera/neural/semantic_ids.h"
#endif

namespace tessera::cli {

namespace {

namespace fs = std::filesystem;

enum class Method { rqkmeans_plus, rqvae };

const char* method_name(Method m) { return m == Method::rqkmeans_plus ? "rqkmeans-plus" : "rqvae"; }

// What `train` takes. Defaults are MiniOneRec's (rqvae.py / rqkmeans_plus.py) where they suit a CPU; see
// docs/neural.md, "Command line".
struct TrainOptions {
  std::string data, codebooks, out, layers = "2048,1024,512,256,128,64", codebook_sizes = "256,256,256";
  std::string schedule = "constant", resume, sk_epsilons, decoder, commitment;
  int epochs = 0, warmup_epochs = 0, threads = 0, kmeans_iters = 100, eval_every = 10, keep_last = 5, sk_iters = 50;
  double lr = 1e-3, weight_decay = 0, dropout = 0, beta = 0.25, quant_weight = 1, clip = 1;
  size_t batch_size = 2048, e_dim = 32, rows_per_centroid = 64;
  uint64_t seed = 42;
  bool batch_norm = false, quiet = false;
};

struct GenerateOptions {
  std::string checkpoint, data, out, dedup = "append", ids, labels, balance = "none";
  int token_base = 1, threads = 0;
  size_t batch_size = 4096;
  bool quiet = false;
};

// "2048,1024,64" → sizes; an empty text is an empty list when allowed (no hidden layer).
[[maybe_unused]] std::vector<int64_t> parse_int_list(const std::string& text, const char* what, bool allow_empty) {
  std::vector<int64_t> out;
  if (text.empty()) {
    TESSERA_CHECK_ARG(allow_empty, what << " is empty");
    return out;
  }
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TESSERA_CHECK_ARG(used == item.size() && !item.empty() && v >= 1,
                      what << ": '" << item << "' is not a positive integer (expected e.g. 256,256,256)");
    out.push_back(int64_t(v));
    at = comma + 1;
  }
  return out;
}

// "0,0,0.003" → values (finite, ≥ 0).
[[maybe_unused]] std::vector<double> parse_real_list(const std::string& text, const char* what) {
  std::vector<double> out;
  if (text.empty()) return out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TESSERA_CHECK_ARG(used == item.size() && !item.empty() && std::isfinite(v) && v >= 0,
                      what << ": '" << item << "' is not a number ≥ 0 (expected e.g. 0,0,0.003)");
    out.push_back(v);
    at = comma + 1;
  }
  return out;
}

[[maybe_unused]] std::vector<std::string> lines_per_row(const std::string& path, size_t n, const char* what) {
  if (path.empty()) return {};
  auto lines = read_lines(path);
  TESSERA_CHECK_ARG(lines.size() == n, path << " has " << lines.size() << " lines but the data has " << n
                                            << " rows: give one " << what << " per row");
  return lines;
}

void add_train_options(CLI::App* cmd, TrainOptions& o, Method m) {
  cmd->add_option("--data", o.data, "embeddings: .npy (float16/32/64), .fvecs or .bvecs (N × d)")->required();
  if (m == Method::rqkmeans_plus)
    cmd->add_option("--codebooks", o.codebooks,
                    "codebooks.npz written by `tessera sid build` (codebook_0, …); required unless --resume");
  cmd->add_option("--out", o.out, "output directory: state_dict.pt, config.json and checkpoints/")->required();
  cmd->add_option("--epochs", o.epochs, "training epochs; 0 writes the initial model (MiniOneRec: 5000)")
      ->required()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--lr", o.lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "rows per optimiser step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--warmup-epochs", o.warmup_epochs, "epochs of linear lr warm-up (MiniOneRec: 50)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--schedule", o.schedule, "lr after warm-up: constant, or linear decay to 0")
      ->check(CLI::IsMember({"constant", "linear"}))
      ->capture_default_str();
  cmd->add_option("--clip-grad-norm", o.clip, "clip the gradients' global L2 norm (0: no clipping)")
      ->capture_default_str();
  cmd->add_option("--layers", o.layers, "hidden widths of the encoder MLP (the decoder's reversed); '' for none")
      ->capture_default_str();
  if (m == Method::rqvae) {
    cmd->add_option("--codebook-sizes", o.codebook_sizes, "codes per level, e.g. 256,256,256")->capture_default_str();
    cmd->add_option("--e-dim", o.e_dim, "latent width (the codebooks' width)")->capture_default_str()->check(
        CLI::PositiveNumber);
    cmd->add_option("--kmeans-iters", o.kmeans_iters, "Lloyd iterations of the codebooks' k-means initialisation")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--kmeans-rows-per-centroid", o.rows_per_centroid,
                    "the k-means initialisation samples this many rows per codeword (all rows when fewer)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
  }
  o.decoder = m == Method::rqkmeans_plus ? "residual" : "mlp";
  cmd->add_option("--decoder", o.decoder,
                  m == Method::rqkmeans_plus
                      ? "residual: x̂ = q + MLP(q), the MLP's last Linear at zero, so training starts from RQ-KMeans's "
                        "reconstruction; mlp: x̂ = MLP(q) from random weights, as MiniOneRec"
                      : "mlp: x̂ = MLP(q), as MiniOneRec; residual: x̂ = q + MLP(q), the MLP's last Linear at zero "
                        "(needs --e-dim equal to the input dimension)")
      ->check(CLI::IsMember({"mlp", "residual"}))
      ->capture_default_str();
  o.commitment = m == Method::rqkmeans_plus ? "partial-sums" : "per-level";
  cmd->add_option("--commitment", o.commitment,
                  "commitment term of level l: per-level, mse(sg(e_l), r_l) as MiniOneRec (only level 0 reaches "
                  "the encoder); partial-sums, mse(sg(e_0 + … + e_l), z) as Lee et al.'s RQ-VAE")
      ->check(CLI::IsMember({"per-level", "partial-sums"}))
      ->capture_default_str();
  cmd->add_option("--dropout", o.dropout, "dropout before every Linear")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--batch-norm", o.batch_norm, "BatchNorm1d after every hidden Linear");
  cmd->add_option("--beta", o.beta, "commitment weight of the VQ loss")->capture_default_str();
  cmd->add_option("--quant-weight", o.quant_weight, "weight of the VQ loss in the total loss")->capture_default_str();
  cmd->add_option("--sk-epsilons", o.sk_epsilons,
                  "Sinkhorn balanced assignment while training: one ε per level, 0 = argmin (e.g. 0,0,0.003)");
  cmd->add_option("--sk-iters", o.sk_iters, "Sinkhorn iterations")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--eval-every", o.eval_every,
                  "collision rate on all rows and a checkpoint every N epochs, and after the last (0: only after the last)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep-last", o.keep_last, "epoch checkpoints kept in OUT/checkpoints (besides the best two)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--resume", o.resume,
                  "continue a run from one of its checkpoints (OUT/checkpoints/epoch_N.ckpt), with the same data, "
                  "--batch-size and --seed; the model comes from the checkpoint");
  cmd->add_option("--seed", o.seed, "random seed (weights, k-means, shuffling, dropout)")->capture_default_str();
  cmd->add_option("--threads", o.threads, "threads, at least 1 (default: all cores)")->check(CLI::Range(1, 1 << 16));
  cmd->add_flag("-q,--quiet", o.quiet, "no per-epoch lines on stderr");
}

void add_generate_options(CLI::App* cmd, GenerateOptions& o, Method m) {
  cmd->add_option("--checkpoint", o.checkpoint,
                  std::string("state_dict.pt written by `tessera ") + method_name(m) +
                      " train` (config.json next to it), or one of its checkpoints (checkpoints/*.ckpt)")
      ->required();
  cmd->add_option("--data", o.data, "embeddings to encode (.npy, .fvecs, .bvecs), one item per row")->required();
  cmd->add_option("--out", o.out, "output directory: index.json, codes.npy, metrics.json")->required();
  cmd->add_option("--dedup", o.dedup, "collision resolution, as `tessera sid`")
      ->check(CLI::IsMember({"append", "append-all", "reassign", "none"}))
      ->capture_default_str();
  cmd->add_option("--balance", o.balance,
                  "exact size bounds over all items: none (the model's greedy codes), last (the last level "
                  "assigned with sizes in [n/K-1, n/K+1] after the greedy earlier levels) or all (every level)")
      ->check(CLI::IsMember({"none", "last", "all"}))
      ->capture_default_str();
  o.token_base = m == Method::rqkmeans_plus ? 1 : 0;  // MiniOneRec: generate_indices_plus.py 1-based, LC-Rec's 0-based
  cmd->add_option("--token-base", o.token_base, "index.json tokens count from 0 or 1")
      ->check(CLI::IsMember({0, 1}))
      ->capture_default_str();
  cmd->add_option("--ids", o.ids, "text file: one item id per line (index.json keys)");
  cmd->add_option("--labels", o.labels, "text file: one category per line (purity metrics)");
  cmd->add_option("--batch-size", o.batch_size, "rows encoded at a time")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o.threads, "threads, at least 1 (default: all cores)")->check(CLI::Range(1, 1 << 16));
  cmd->add_flag("-q,--quiet", o.quiet, "no summary on stdout");
}

#ifdef TESSERA_WITH_NEURAL

using neural::RQVAEConfig;
using neural::RQVAEModel;

constexpr const char* kConfigFormat = "tessera-neural-config";
constexpr int kConfigVersion = 1;

void set_threads(int threads) {
  set_num_threads(threads);
  RQVAEModel::set_torch_threads(threads);
}

nlohmann::ordered_json config_json(const RQVAEConfig& c) {
  nlohmann::ordered_json j;
  j["in_dim"] = c.in_dim;
  j["e_dim"] = c.e_dim;
  j["layers"] = c.layers;
  j["codebook_sizes"] = c.codebook_sizes;
  j["dropout"] = c.dropout;
  j["batch_norm"] = c.batch_norm;
  j["beta"] = c.beta;
  j["quant_weight"] = c.quant_weight;
  j["residual_encoder"] = c.residual_encoder;
  j["residual_decoder"] = c.residual_decoder;
  j["partial_sum_commitment"] = c.partial_sum_commitment;
  j["seed"] = c.seed;
  j["sk_epsilons"] = c.sk_epsilons;
  j["sk_iters"] = c.sk_iters;
  return j;
}

// The model configuration of the config.json next to a checkpoint, for `method`.
RQVAEConfig read_model_config(const std::string& checkpoint, Method method) {
  std::error_code ec;
  if (!fs::exists(checkpoint, ec)) TESSERA_THROW_IO("checkpoint " << checkpoint << " does not exist");
  TESSERA_CHECK_ARG(fs::is_regular_file(checkpoint, ec), "checkpoint " << checkpoint << " is not a file");
  const fs::path parent = fs::path(checkpoint).parent_path();
  const std::string path = ((parent.empty() ? fs::path(".") : parent) / "config.json").string();
  if (!fs::exists(path, ec))
    TESSERA_THROW_IO("checkpoint " << checkpoint << ": no config.json next to it (`tessera " << method_name(method)
                                   << " train` writes both)");
  const auto j = nlohmann::json::parse(read_file(path), nullptr, false);
  TESSERA_CHECK_FORMAT(j.is_object() && j.value("format", "") == kConfigFormat,
                       path << " is not a tessera neural model configuration (no \"format\": \"" << kConfigFormat
                            << "\")");
  TESSERA_CHECK_FORMAT(j.value("version", 0) == kConfigVersion,
                       path << ": version " << j.value("version", 0) << " is not supported (this build reads "
                            << kConfigVersion << ")");
  const std::string m = j.value("method", "");
  TESSERA_CHECK_ARG(m == method_name(method), checkpoint << " is a model of `tessera " << m << " train`: use `tessera "
                                                         << m << " generate`, not " << method_name(method));
  TESSERA_CHECK_FORMAT(j.contains("model") && j["model"].is_object(), path << " has no \"model\" object");
  const auto& mj = j["model"];
  RQVAEConfig c;
  try {
    c.in_dim = mj.at("in_dim").get<int64_t>();
    c.e_dim = mj.at("e_dim").get<int64_t>();
    c.layers = mj.at("layers").get<std::vector<int64_t>>();
    c.codebook_sizes = mj.at("codebook_sizes").get<std::vector<int64_t>>();
    c.dropout = mj.at("dropout").get<double>();
    c.batch_norm = mj.at("batch_norm").get<bool>();
    c.beta = mj.at("beta").get<double>();
    c.quant_weight = mj.at("quant_weight").get<double>();
    c.residual_encoder = mj.at("residual_encoder").get<bool>();
    c.residual_decoder = mj.value("residual_decoder", false);
    c.partial_sum_commitment = mj.value("partial_sum_commitment", false);
    c.seed = mj.at("seed").get<uint64_t>();
    c.sk_epsilons = mj.value("sk_epsilons", std::vector<double>{});
    c.sk_iters = mj.value("sk_iters", 50);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT(path << ": bad \"model\" entry (" << e.what() << ")");
  }
  TESSERA_CHECK_FORMAT(c.residual_encoder == (method == Method::rqkmeans_plus),
                       path << ": residual_encoder " << c.residual_encoder << " does not fit " << method_name(method));
  return c;
}

bool is_checkpoint_file(const std::string& path) { return fs::path(path).extension() == ".ckpt"; }

// The model of a checkpoint (checkpoints/*.ckpt) or of a state_dict.pt with its config.json, for `method`.
RQVAEModel load_model(const std::string& path, Method method) {
  if (is_checkpoint_file(path)) {
    RQVAEModel model = RQVAEModel::from_checkpoint(path);
    const bool plus = model.config().residual_encoder;
    TESSERA_CHECK_ARG(plus == (method == Method::rqkmeans_plus),
                      path << " is a checkpoint of `tessera " << (plus ? "rqkmeans-plus" : "rqvae")
                           << " train`: use `tessera " << (plus ? "rqkmeans-plus" : "rqvae") << " generate`, not "
                           << method_name(method));
    return model;
  }
  RQVAEModel model(read_model_config(path, method));
  try {
    model.load_state_dict(path);
  } catch (const tessera::Error&) {
    throw;
  } catch (const std::exception& e) {  // torch's own errors (c10::Error): a file torch cannot read
    TESSERA_THROW_FORMAT("checkpoint " << path << " cannot be read as a state_dict: " << e.what());
  }
  return model;
}

nlohmann::ordered_json epoch_json(const neural::EpochReport& r) {
  nlohmann::ordered_json h;
  h["epoch"] = r.epoch;
  h["loss"] = r.loss;
  h["reconstruction"] = r.reconstruction;
  h["quantization"] = r.quantization;
  h["seconds"] = r.seconds;
  if (r.evaluated) {
    h["collision_rate"] = r.collision_rate;
    h["codes_used"] = r.codes_used;
  }
  return h;
}

void print_epoch(Method m, const neural::EpochReport& r, int epochs, double secs) {
  std::fprintf(stderr, "%s epoch %d/%d", method_name(m), r.epoch, epochs);
  if (r.epoch > 0) std::fprintf(stderr, "  loss %.6g", r.loss);
  if (r.evaluated) std::fprintf(stderr, "  collision rate %.4f", r.collision_rate);
  std::fprintf(stderr, "  (%.1f s)\n", secs);
}

void train(Method method, const TrainOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  set_threads(o.threads);
  TESSERA_CHECK_ARG(std::isfinite(o.lr) && o.lr >= 0, "--lr must be finite and ≥ 0, got " << o.lr);
  TESSERA_CHECK_ARG(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "--weight-decay must be ≥ 0");
  TESSERA_CHECK_ARG(method != Method::rqkmeans_plus || !o.codebooks.empty() || !o.resume.empty(),
                    "--codebooks is required (the codebooks.npz of `tessera sid build`), unless --resume");
  RQVAEConfig c;
  c.layers = parse_int_list(o.layers, "--layers", true);
  c.dropout = o.dropout;
  c.batch_norm = o.batch_norm;
  c.residual_decoder = o.decoder == "residual";
  c.partial_sum_commitment = o.commitment == "partial-sums";
  c.beta = o.beta;
  c.quant_weight = o.quant_weight;
  c.seed = o.seed;
  c.sk_epsilons = parse_real_list(o.sk_epsilons, "--sk-epsilons");
  c.sk_iters = o.sk_iters;
  neural::TrainerParams tp;
  tp.lr = o.lr;
  tp.weight_decay = o.weight_decay;
  tp.batch_size = o.batch_size;
  tp.epochs = o.epochs;
  tp.warmup_epochs = o.warmup_epochs;
  tp.schedule = o.schedule == "linear" ? neural::LrSchedule::linear : neural::LrSchedule::constant;
  tp.clip_grad_norm = o.clip;
  tp.seed = o.seed;
  tp.eval_every = o.eval_every;
  tp.keep_last = o.keep_last;
  tp.checkpoint_dir = (fs::path(o.out) / "checkpoints").string();
  tp.resume = o.resume;

  // Everything that can be checked is checked before the work starts.
  const FloatMatrix x = read_input(o.data, "data");
  check_output_dir(o.out);
  c.in_dim = int64_t(x.cols());
  std::optional<RQVAEModel> model;
  if (!o.resume.empty()) {
    // The model is the checkpoint's (its configuration, weights loaded again by the trainer with the optimiser).
    model.emplace(RQVAEModel::from_checkpoint(o.resume));
    TESSERA_CHECK_ARG(model->config().residual_encoder == (method == Method::rqkmeans_plus),
                      o.resume << " is a checkpoint of `tessera "
                               << (model->config().residual_encoder ? "rqkmeans-plus" : "rqvae") << " train`");
  } else if (method == Method::rqkmeans_plus) {
    c.e_dim = c.in_dim;
    c.residual_encoder = true;
    c.codebook_sizes.clear();  // from the npz
    model.emplace(RQVAEModel::rqkmeans_plus(c, o.codebooks));
  } else {
    c.e_dim = int64_t(o.e_dim);
    c.codebook_sizes = parse_int_list(o.codebook_sizes, "--codebook-sizes", false);
    model.emplace(c);
    neural::CodebookInitParams ip;
    ip.rows_per_centroid = o.rows_per_centroid;
    ip.max_iter = o.kmeans_iters;
    ip.seed = o.seed;
    model->init_codebooks_kmeans(x.view(), ip);
  }

  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  if (o.resume.empty()) {  // the initial model (RQ-KMeans+: RQ-KMeans's greedy codes) as epoch 0
    const neural::CodeStats s0 = model->codes(x.view());
    neural::EpochReport r0;
    r0.evaluated = true;
    r0.collision_rate = s0.collision_rate;
    r0.codes_used = s0.codes_used;
    nlohmann::ordered_json h;
    h["epoch"] = 0;
    h["collision_rate"] = s0.collision_rate;
    h["codes_used"] = s0.codes_used;
    history.push_back(h);
    if (!o.quiet) print_epoch(method, r0, o.epochs, seconds_since(t0));
  }
  // A bar over each epoch's batches on a terminal; a line per evaluated epoch (per epoch on a terminal).
  const bool tty = !o.quiet && isatty(2);
  const ProgressFn bar = progress_bar(!tty);
  std::string last_rate;
  if (tty)
    tp.progress = [&](const ProgressEvent& e) { bar(ProgressEvent{e.stage + last_rate, e.done, e.total, e.value}); };
  tp.on_epoch = [&](const neural::EpochReport& r) {
    if (r.evaluated) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "  collision %.4f", r.collision_rate);
      last_rate = buf;
    }
    if (o.quiet || !(r.evaluated || tty)) return;
    if (tty) std::fprintf(stderr, "\r\033[K");
    print_epoch(method, r, o.epochs, seconds_since(t0));
  };

  const std::string ckpt_dir = tp.checkpoint_dir;
  const bool existed = fs::exists(o.out);
  std::vector<neural::EpochReport> reports;
  try {
    reports = model->train(x.view(), tp);
  } catch (...) {
    // Complete checkpoints stay (resumable); a directory this command made and left empty goes.
    std::error_code ec;
    if (fs::is_directory(ckpt_dir, ec) && !fs::is_empty(ckpt_dir, ec)) {
      if (tty) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "checkpoints kept in %s (continue with --resume)\n", ckpt_dir.c_str());
    } else if (!existed) {
      fs::remove_all(o.out, ec);
    }
    throw;
  }
  for (const neural::EpochReport& r : reports) history.push_back(epoch_json(r));
  const neural::CodeStats final_stats = model->codes(x.view());

  nlohmann::ordered_json j;
  j["format"] = kConfigFormat;
  j["version"] = kConfigVersion;
  j["method"] = method_name(method);
  j["model"] = config_json(model->config());
  nlohmann::ordered_json t;
  t["data"] = o.data;
  t["n_items"] = x.rows();
  if (method == Method::rqkmeans_plus && o.resume.empty()) t["codebooks"] = o.codebooks;
  if (!o.resume.empty()) t["resumed_from"] = o.resume;
  t["epochs"] = o.epochs;
  t["lr"] = o.lr;
  t["weight_decay"] = o.weight_decay;
  t["batch_size"] = o.batch_size;
  t["warmup_epochs"] = o.warmup_epochs;
  t["schedule"] = o.schedule;
  t["clip_grad_norm"] = o.clip;
  t["seed"] = o.seed;
  t["threads"] = num_threads();
  t["eval_every"] = o.eval_every;
  t["checkpoints"] = "checkpoints";
  t["keep_last"] = o.keep_last;
  if (method == Method::rqvae && o.resume.empty()) {
    t["kmeans_iters"] = o.kmeans_iters;
    t["kmeans_rows_per_centroid"] = o.rows_per_centroid;
  }
  t["final_collision_rate"] = final_stats.collision_rate;
  t["final_codes_used"] = final_stats.codes_used;
  t["history"] = history;
  j["training"] = t;
  j["state_dict"] = "state_dict.pt";

  // config.json and state_dict.pt as a pair: the state_dict (written atomically by the library) first, then
  // config.json renamed into place; on failure neither is left.
  const std::string sd = (fs::path(o.out) / "state_dict.pt").string();
  const bool sd_existed = fs::exists(sd);
  prepare_output_dir(o.out);
  AtomicFile cfg((fs::path(o.out) / "config.json").string());
  cfg.write(j.dump(2) + "\n");
  model->save_state_dict(sd);
  try {
    cfg.commit();
  } catch (...) {
    std::error_code ec;
    if (!sd_existed) fs::remove(sd, ec);
    throw;
  }

  std::printf("%s: %d epochs on %zu × %zu in %.2f s -> %s/state_dict.pt, config.json, checkpoints/\n",
              method_name(method), o.epochs, x.rows(), x.cols(), seconds_since(t0), o.out.c_str());
  if (!reports.empty())
    std::printf("  last epoch: loss %.6g (reconstruction %.6g, quantization %.6g)\n", reports.back().loss,
                reports.back().reconstruction, reports.back().quantization);
  std::printf("  collision rate %.4f; codes used per level:", final_stats.collision_rate);
  for (size_t l = 0; l < final_stats.codes_used.size(); ++l)
    std::printf(" %zu/%lld", final_stats.codes_used[l], (long long)model->config().codebook_sizes[l]);
  std::printf("\n");
}

void generate(Method method, const GenerateOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  set_threads(o.threads);
  const Dedup dedup = parse_dedup(o.dedup);
  const RQVAEModel model = load_model(o.checkpoint, method);
  const FloatMatrix x = read_input(o.data, "data", size_t(model.config().in_dim));
  const auto keys = lines_per_row(o.ids, x.rows(), "id");
  if (!keys.empty()) check_unique_keys(keys);
  const auto labels = lines_per_row(o.labels, x.rows(), "label");
  check_output_dir(o.out);

  TokenFormat fmt;
  fmt.zero_based = o.token_base == 0;
  // Resolution, metrics and files are the semantic-ID module's, on the model's latents and codebooks.
  SemanticIds s = neural::model_semantic_ids(model, x.view(), dedup, fmt, neural::parse_balance(o.balance),
                                             labels.empty() ? nullptr : &labels, o.batch_size);
  s.metrics.seconds_total = seconds_since(t0);
  write_semantic_ids(o.out, s, keys.empty() ? nullptr : &keys, false);

  if (o.quiet) return;
  const SidMetrics& m = s.metrics;
  std::printf("%s: semantic IDs for %zu items in %.2f s -> %s/\n", method_name(method), m.n_items, m.seconds_total,
              o.out.c_str());
  std::printf("  codes used per level:");
  for (const auto& l : m.levels) std::printf(" %zu/%zu", l.unique_codes, l.codebook_size);
  std::printf("\n  reconstruction MSE %.6g (input mean square %.6g); latent quantization MSE %.6g\n", *m.recon_mse,
              mean_square(x.view()), m.mse);
  std::printf("  before resolution: %zu unique of %zu, collision rate %.4f; dedup %s: %zu items still collide, "
              "longest ID %zu tokens\n",
              m.before.unique_ids, m.n_items, m.before.collision_rate, m.dedup.c_str(), m.final_collisions,
              m.max_id_length);
}

#endif  // TESSERA_WITH_NEURAL

}  // namespace

struct NeuralCommands::Impl {
  struct Pair {
    Method method;
    CLI::App* train = nullptr;
    CLI::App* generate = nullptr;
    TrainOptions train_opts;
    GenerateOptions generate_opts;
  };
  Pair plus{Method::rqkmeans_plus}, vae{Method::rqvae};
  bool quiet = false;
  char** argv = nullptr;
};

NeuralCommands::NeuralCommands(CLI::App& app, char** argv) : impl_(std::make_unique<Impl>()) {
  impl_->argv = argv;
  for (Impl::Pair* p : {&impl_->plus, &impl_->vae}) {
    const bool plus = p->method == Method::rqkmeans_plus;
    CLI::App* top = app.add_subcommand(
        method_name(p->method), plus ? "RQ-KMeans+: an RQ-VAE warm-started from `sid build`'s codebooks (libtorch)"
                                     : "RQ-VAE: MLP encoder, residual VQ, MLP decoder (libtorch)");
    top->require_subcommand(1);
    p->train = top->add_subcommand("train", "train a model; writes state_dict.pt and config.json");
    p->generate = top->add_subcommand(
        "generate", "semantic IDs with a trained model: index.json, codes.npy, metrics.json (as `tessera sid`)");
    p->train_opts.lr = plus ? 1e-4 : 1e-3;  // MiniOneRec's rqkmeans_plus.py: 1e-4; rqvae.py: 1e-3
    add_train_options(p->train, p->train_opts, p->method);
    add_generate_options(p->generate, p->generate_opts, p->method);
  }
}

NeuralCommands::~NeuralCommands() = default;

bool NeuralCommands::quiet() const { return impl_->quiet; }

bool NeuralCommands::run() {
  for (Impl::Pair* p : {&impl_->plus, &impl_->vae}) {
    const bool is_train = p->train->parsed(), is_generate = p->generate->parsed();
    if (!is_train && !is_generate) continue;
    impl_->quiet = is_train ? p->train_opts.quiet : p->generate_opts.quiet;
#ifdef TESSERA_WITH_NEURAL
    if (is_train)
      train(p->method, p->train_opts);
    else
      generate(p->method, p->generate_opts);
#else
    // The command line parsed here; `tessera-neural` next to this binary runs it (see neural_commands.h).
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    const fs::path worker = ec ? fs::path() : self.parent_path() / "tessera-neural";
    if (impl_->argv && !worker.empty() && ::access(worker.c_str(), X_OK) == 0) {
      std::fflush(nullptr);
      impl_->argv[0] = const_cast<char*>(worker.c_str());
      ::execv(worker.c_str(), impl_->argv);
      TESSERA_THROW_IO("cannot run " << worker.string() << ": " << std::strerror(errno));
    }
    throw Error(std::string("built without libtorch: `tessera ") + method_name(p->method) +
                (is_train ? " train" : " generate") +
                "` needs the neural component (`tessera-neural` next to `tessera`; install libtorch, e.g. "
                "Debian's libtorch-dev, and configure with -DTESSERA_WITH_TORCH=ON)");
#endif
    return true;
  }
  return false;
}

}  // namespace tessera::cli
