// tessera command-line tool: thin front end over the library (parse, validate, call, print).
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include "aq_commands.h"
#include "cli_common.h"
#include "neural_commands.h"
#include "rabitq_commands.h"
#include "progress_bar.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/peak_memory.h"
#include "tessera/core/runtime.h"
#include "tessera/core/threading.h"
#include "tessera/io/npy_shards.h"
#include "tessera/io/vectors.h"
#include "tessera/sid/index_json.h"
#include "tessera/sid/pipeline.h"

namespace {

using namespace tessera;

std::vector<size_t> parse_sizes(const std::string& s) {
  std::vector<size_t> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    size_t pos = 0;
    long long v = -1;
    try {
      v = std::stoll(tok, &pos);
    } catch (...) {
    }
    TESSERA_CHECK_ARG(v >= 1 && pos == tok.size(), "--codebook-sizes: '" << tok << "' is not a positive integer");
    out.push_back((size_t)v);
  }
  TESSERA_CHECK_ARG(!out.empty(), "--codebook-sizes is empty");
  return out;
}

void print_summary(const SemanticIds& s, const std::string& out_dir) {
  const SidMetrics& m = s.metrics;
  std::printf("semantic IDs for %zu items (d = %zu) in %.2f s -> %s/\n", m.n_items, m.dim, m.seconds_total,
              out_dir.c_str());
  std::printf("  %-6s %6s %7s %8s %8s %9s %10s %10s %8s%s\n", "level", "K", "used", "min", "max", "perplex.",
              "mse_before", "mse_after", "seconds", m.levels.size() && m.levels[0].purity ? "   purity  chance" : "");
  for (const auto& l : m.levels) {
    std::printf("  %-6zu %6zu %7zu %8zu %8zu %9.1f %10.5g %10.5g %8.2f", l.level + 1, l.codebook_size, l.unique_codes,
                l.min_cluster_size, l.max_cluster_size, l.perplexity, l.mse_before, l.mse_after, l.seconds);
    if (l.purity) std::printf("   %6.3f  %6.3f", *l.purity, *l.purity_chance);
    std::printf("\n");
  }
  std::printf("  reconstruction MSE %.6g (input mean square %.6g)\n", m.mse, m.mse_before);
  std::printf("  before resolution: %zu unique of %zu, collision rate %.4f, largest group %zu\n", m.before.unique_ids,
              m.n_items, m.before.collision_rate, m.before.largest_group);
  std::printf("  dedup %s: %zu items still collide, longest ID %zu tokens", m.dedup.c_str(), m.final_collisions,
              m.max_id_length);
  if (m.dedup == "reassign")
    std::printf(", %zu items moved (MSE %.6g -> %.6g)", m.reassigned_items, m.mse, m.mse_after_resolution);
  std::printf("\n");
}

std::vector<std::string> optional_lines(const std::string& path, size_t n, const char* what) {
  if (path.empty()) return {};
  auto lines = read_lines(path);
  TESSERA_CHECK_ARG(lines.size() == n, path << " has " << lines.size() << " lines but the input has " << n
                                            << " rows: give one " << what << " per row");
  return lines;
}

bool ends_with_npy(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0;
}

// sid build's input: one file of any supported format (a float32 .npy is memory-mapped), or a directory or
// glob of .npy shards concatenated in sorted path order (a NaN is named by shard and row).
FloatMatrix read_build_input(const std::string& path) {
  if (!is_shard_pattern(path)) return read_vectors(path);
  const NpyShards shards = NpyShards::open(path);
  FloatMatrix x = shards.read_all();
  shards.check_finite(0, x.view());
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP workers should wait without spinning (on small or shared machines spinning steals the cores BLAS
  // and the other threads need), as the Python module arranges. libgomp reads the setting when it loads,
  // before main: so set it and start again, once; if that fails, run as we are.
  if (!std::getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0) execv("/proc/self/exe", argv);
  CLI::App app{"tessera: vector quantization and semantic IDs"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "errors also name where in the source they were detected (or TESSERA_VERBOSE=1)");
  app.add_subcommand("version", "print the version, the BLAS kernels and the vector unit in use")->callback([] {
    std::printf("tessera %s\nBLAS: %s\nSIMD: %s\n", TESSERA_VERSION, tessera::blas_kernels().c_str(),
                tessera::simd_unit().c_str());
  });

  auto* sid = app.add_subcommand("sid", "semantic IDs by (balanced) residual k-means");
  sid->require_subcommand(1);

  // sid build
  auto* build = sid->add_subcommand("build", "train a model and give every item a semantic ID");
  std::string input, out_dir, ids_file, labels_file, balance = "exact", dedup = "append", sizes_arg;
  size_t levels = 3, codebook_size = 256, train_sample = 0, size_min = 0, size_max = 0;
  uint64_t seed = 42;
  int n_init = 3, max_iter = 100, threads = 0;
  double tol = 1e-4;
  bool zero_based = false, quiet = false, all_rows_lloyd = false;
  build->add_option("input", input,
                    "embeddings: .npy (float16/32/64), .fvecs or .bvecs (N × d), or a directory or glob of .npy "
                    "shards (quote the glob)")
      ->required();
  build->add_option("--out", out_dir, "output directory")->required();
  auto* levels_opt = build->add_option("--levels", levels, "number of levels L")->capture_default_str();
  build->add_option("--codebook-size", codebook_size, "codes per level K")->capture_default_str();
  build->add_option("--codebook-sizes", sizes_arg, "per-level sizes, e.g. 1024,256,64 (overrides --codebook-size)");
  build->add_option("--balance", balance, "exact: size-constrained levels; none: plain k-means")
      ->check(CLI::IsMember({"exact", "none"}))
      ->capture_default_str();
  build->add_option("--dedup", dedup, "collision resolution")
      ->check(CLI::IsMember({"append", "append-all", "reassign", "none"}))
      ->capture_default_str();
  build->add_option("--seed", seed, "random seed (each level derives its own)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  build->add_option("--n-init", n_init, "k-means restarts per level")->capture_default_str();
  build->add_option("--max-iter", max_iter, "Lloyd iterations per restart")->capture_default_str();
  build->add_option("--tol", tol, "relative tolerance on centroid movement")->capture_default_str();
  build->add_option("--size-min", size_min, "smallest cluster size (default max(1, N/K - 1))");
  build->add_option("--size-max", size_max, "largest cluster size (default N/K + 1)");
  build->add_option("--train-sample", train_sample, "train on N sampled rows, then assign every row");
  size_t build_chunk_rows = 0;
  build->add_option("--chunk-rows", build_chunk_rows,
                    "with --train-sample on .npy input: rows read (and, with --balance none, encoded) this many at a "
                    "time (default: 64 MiB of float32)")
      ->check(CLI::PositiveNumber);
  build->add_flag("--no-sample-warm-start", all_rows_lloyd,
                  "every Lloyd iteration on all rows (default: from 32·K rows on, restarts run on a sample of "
                  "min(256·K, N/2) rows and the last quarter of the iterations on all rows)");
  std::string init_name = "auto";
  build->add_option("--init", init_name,
                    "how each k-means restart starts: auto (plain levels: k-means++ and progressive-dimension "
                    "seeds race for 5 iterations; balanced levels: k-means++), k-means++, random, progressive")
      ->check(CLI::IsMember({"auto", "k-means++", "random", "progressive"}))
      ->capture_default_str();
  build->add_option("--ids", ids_file, "text file: one item id per line (index.json keys)");
  build->add_option("--labels", labels_file, "text file: one category per line (purity metrics)");
  build->add_flag("--zero-based", zero_based, "tokens count from 0 (RQ-VAE style) instead of 1");
  build->add_option("--threads", threads, "threads, at least 1 (default: all cores)")->check(CLI::Range(1, 1 << 16));
  build->add_flag("-q,--quiet", quiet, "no progress bar");

  // sid encode
  auto* encode = sid->add_subcommand("encode", "semantic IDs for new items with a trained model");
  std::string model_path, enc_input, enc_out, enc_ids, enc_dedup;
  int enc_threads = 0;
  encode->add_option("model", model_path, "model.tsq written by `sid build`")->required();
  encode->add_option("input", enc_input,
                     "embeddings (.npy, .fvecs, .bvecs), or a directory or glob of .npy shards (quote the glob); "
                     ".npy input is streamed")
      ->required();
  size_t chunk_rows = 0;
  encode->add_option("--chunk-rows", chunk_rows,
                     "rows of .npy input encoded at a time (default: 64 MiB of float32, at most 1,000,000)")
      ->check(CLI::PositiveNumber);
  encode->add_option("--out", enc_out, "output directory")->required();
  encode->add_option("--ids", enc_ids, "text file: one item id per line");
  encode->add_option("--dedup", enc_dedup, "collision resolution (default: the model's)")
      ->check(CLI::IsMember({"append", "append-all", "reassign", "none"}));
  encode->add_option("--threads", enc_threads, "threads, at least 1 (default: all cores)")
      ->check(CLI::Range(1, 1 << 16));

  tessera::cli::AqCommands aq(app);
  tessera::cli::RabitqCommands rabitq(app);
  tessera::cli::NeuralCommands neural(app, argv);

  CLI11_PARSE(app, argc, argv);
  cli::install_signal_handlers();

  try {
    if (build->parsed()) {
      set_num_threads(threads);
      SidParams p;
      if (!sizes_arg.empty()) {
        p.codebook_sizes = parse_sizes(sizes_arg);
        TESSERA_CHECK_ARG(levels_opt->count() == 0 || p.codebook_sizes.size() == levels,
                          "--levels " << levels << " disagrees with --codebook-sizes (" << p.codebook_sizes.size()
                                      << " sizes)");
      } else {
        TESSERA_CHECK_ARG(levels >= 1, "--levels must be at least 1");
        p.codebook_sizes.assign(levels, codebook_size);
      }
      p.balance = balance == "exact";
      TESSERA_CHECK_ARG(p.balance || (!size_min && !size_max),
                        "--size-min/--size-max bound balanced levels: they need --balance exact");
      p.dedup = parse_dedup(dedup);
      p.format.zero_based = zero_based;
      p.seed = seed;
      p.n_init = n_init;
      p.max_iter = max_iter;
      p.tol = tol;
      p.train_sample = train_sample;
      p.sample_warm_start = !all_rows_lloyd;
      p.init = parse_kmeans_init(init_name);
      if (size_min) p.size_min = size_min;
      if (size_max) p.size_max = size_max;
      p.progress = cli::progress_bar(quiet);
      // Everything that can be checked is checked before the work starts.
      SemanticIds s;
      if (p.train_sample && (ends_with_npy(input) || is_shard_pattern(input))) {
        // Levels trained on a sample: only the sample is read for training; greedy codes are then streamed
        // (the input never held whole), balanced ones assigned on one residual matrix filled chunk by chunk.
        const NpyShards shards = NpyShards::open(input);
        const auto keys = optional_lines(ids_file, shards.rows(), "id");
        if (!keys.empty()) check_unique_keys(keys);
        const auto labels = optional_lines(labels_file, shards.rows(), "label");
        check_output_dir(out_dir);
        s = build_semantic_ids(shards, p, labels.empty() ? nullptr : &labels, build_chunk_rows);
        if (!quiet) std::fprintf(stderr, "\n");
        s.metrics.peak_rss_bytes = peak_rss_bytes();
        write_semantic_ids(out_dir, s, keys.empty() ? nullptr : &keys, true);
        print_summary(s, out_dir);
        return 0;
      }
      const FloatMatrix x = read_build_input(input);
      const auto keys = optional_lines(ids_file, x.rows(), "id");
      if (!keys.empty()) check_unique_keys(keys);
      const auto labels = optional_lines(labels_file, x.rows(), "label");
      check_output_dir(out_dir);
      s = build_semantic_ids(x.view(), p, labels.empty() ? nullptr : &labels);
      if (!quiet) std::fprintf(stderr, "\n");
      s.metrics.peak_rss_bytes = peak_rss_bytes();
      write_semantic_ids(out_dir, s, keys.empty() ? nullptr : &keys, true);
      print_summary(s, out_dir);
    } else if (encode->parsed()) {
      set_num_threads(enc_threads);
      SidModel m = load_sid_model(model_path);
      const Dedup d = enc_dedup.empty() ? m.dedup : parse_dedup(enc_dedup);
      SemanticIds s;
      if (ends_with_npy(enc_input) || is_shard_pattern(enc_input)) {
        // Streamed: memory is one chunk of the input, the codes and the model.
        const NpyShards shards = NpyShards::open(enc_input);
        const auto keys = optional_lines(enc_ids, shards.rows(), "id");
        if (!keys.empty()) check_unique_keys(keys);
        check_output_dir(enc_out);
        s = encode_semantic_ids(m.model, shards, d, m.format, chunk_rows);
        s.metrics.peak_rss_bytes = peak_rss_bytes();
        write_semantic_ids(enc_out, s, keys.empty() ? nullptr : &keys, false);
        print_summary(s, enc_out);
        return 0;
      }
      const FloatMatrix x = read_vectors(enc_input);
      const auto keys = optional_lines(enc_ids, x.rows(), "id");
      if (!keys.empty()) check_unique_keys(keys);
      check_output_dir(enc_out);
      s = encode_semantic_ids(m.model, x.view(), d, m.format);
      s.metrics.peak_rss_bytes = peak_rss_bytes();
      write_semantic_ids(enc_out, s, keys.empty() ? nullptr : &keys, false);
      print_summary(s, enc_out);
    } else if (!aq.run() && !neural.run()) {
      rabitq.run();
    }
  } catch (const tessera::Interrupted&) {
    const int sig = cli::received_signal();
    std::fprintf(stderr, "%stessera: stopped by %s; no output was written\n", quiet || aq.quiet() || neural.quiet() ? "" : "\n",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return 128 + sig;
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "tessera: error: %s", e.what());
    if (cli::verbose_errors(verbose) && !e.location().empty()) std::fprintf(stderr, " [%s]", e.location().c_str());
    std::fprintf(stderr, "\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera: unexpected error: %s\n", e.what());
    return 3;
  }
  return 0;
}
