// The semantic-ID pipeline: embeddings in, unique token tuples out.
// (balanced) RQ-KMeans → codes → collision resolution → IDs, with metrics; and encoding of new items
// with a trained model. Files: index.json, codes.npy, codebooks.npz, metrics.json, model.tsq.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tessera/quant/residual_quantizer.h"
#include "tessera/sid/collisions.h"
#include "tessera/sid/index_json.h"
#include "tessera/sid/metrics.h"

namespace tessera {

struct SidParams {
  std::vector<size_t> codebook_sizes = {256, 256, 256};
  bool balance = true;  ///< size-constrained levels (MiniOneRec's constrained RQ-KMeans)
  std::optional<size_t> size_min, size_max;
  Dedup dedup = Dedup::append;
  TokenFormat format;
  uint64_t seed = 42;
  int n_init = 3;
  int max_iter = 100;
  double tol = 1e-4;
  size_t train_sample = 0;  ///< train on this many sampled rows, then assign all (0: train on all)
  bool sample_warm_start = true;  ///< see KMeansParams::sample_warm_start
  KMeansInit init = KMeansInit::automatic;  ///< see KMeansInit
  ProgressFn progress;
};

struct SemanticIds {
  std::shared_ptr<ResidualQuantizer> model;
  CodeMatrix codes;  ///< n × L codes before collision resolution (0-based)
  CodeMatrix ids;    ///< n × W resolved tokens (W = L, or L + 1 with a suffix); −1 = no token
  Dedup dedup = Dedup::append;
  TokenFormat format;
  SidMetrics metrics;
};

/// Train a model on x (n × d) and give every row a semantic ID. labels: n categories for purity metrics.
SemanticIds build_semantic_ids(MatrixView<const float> x, const SidParams& p,
                               const std::vector<std::string>* labels = nullptr);

/// IDs for x with a trained model (greedy residual codes, whatever the model's max_beam_size), resolved with `dedup`.
SemanticIds encode_semantic_ids(std::shared_ptr<ResidualQuantizer> model, MatrixView<const float> x, Dedup dedup,
                                TokenFormat format, const std::vector<std::string>* labels = nullptr);

class NpyShards;

/// encode_semantic_ids over the rows of `input` (one .npy or a set of shards), read chunk_rows at a time
/// (0: default_chunk_rows): memory is one chunk of the input plus the n × L codes and the model, whatever n.
/// Non-finite values are an InvalidArgument naming the shard and the row within it. `reassign` reads again the
/// rows of the prefix groups that hold a collision (their residuals are the only ones held) and, when codes
/// moved, makes a second pass for the MSE after resolution. With chunk_rows ≥ n the result is that of
/// encode_semantic_ids on the whole matrix, bit for bit; with smaller chunks the codes and IDs are the same and the
/// MSEs are summed chunk by chunk (equal within rounding).
SemanticIds encode_semantic_ids(std::shared_ptr<ResidualQuantizer> model, const NpyShards& input, Dedup dedup,
                                TokenFormat format, size_t chunk_rows = 0);

/// build_semantic_ids on the rows of `input`. Without train_sample (or with train_sample ≥ n) the whole input is read
/// (a single float32 shard stays memory-mapped) and this is build_semantic_ids on that matrix. With
/// 0 < train_sample < n, only the sampled rows (those fit would sample) are read for training, so the model is that
/// of build_semantic_ids on the whole matrix; then with balance = false every row is encoded chunk by chunk as by
/// the streaming encode_semantic_ids (memory O(train_sample + chunk)), and with balanced levels one n × d float32
/// residual matrix is filled chunk by chunk (the chunks' mapped pages given back) and every level's balanced
/// assignment runs in place on it (memory: that matrix, the codes, and the bounded assigner's O(n·c) candidate
/// lists when n × K floats exceed ResidualQuantizerParams::balanced_dense_max_bytes). Either way the codes and
/// IDs are those of build_semantic_ids on the whole matrix; MSEs are equal within rounding (summed by chunk, or,
/// balanced, the reconstruction error taken as the final residual's mean square).
SemanticIds build_semantic_ids(const NpyShards& input, const SidParams& p, const std::vector<std::string>* labels,
                               size_t chunk_rows = 0);

/// Rows per chunk for streaming d-dimensional input: 64 MiB of float32, within [1024, 1,000,000] (encoding holds
/// about four chunk-sized buffers: the rows, a residual copy, their reconstruction, the mapped pages).
size_t default_chunk_rows(size_t dim);

/// IDs from codes made elsewhere (e.g. an RQ-VAE's quantizer): codes (n × L, 0-based) of the vectors x (n × d)
/// under the codebooks of `model` (trained, L levels of width d), resolved with `dedup`, with the metrics of
/// encode_semantic_ids (reconstruction errors are those of x by the codewords). encode_semantic_ids is this
/// with the model's greedy codes.
SemanticIds semantic_ids_from_codes(std::shared_ptr<ResidualQuantizer> model, MatrixView<const float> x,
                                    CodeMatrix codes, Dedup dedup, TokenFormat format,
                                    const std::vector<std::string>* labels = nullptr);

/// Check, without creating anything, that `dir` could be written: an existing writable directory, or a
/// path whose nearest existing ancestor is one. IOError / InvalidArgument otherwise. Front ends call it
/// before the work starts, so that a bad output path fails early and leaves nothing behind.
void check_output_dir(const std::string& dir);

/// Create `dir` (and parents) if needed and check it is writable; IOError otherwise.
void prepare_output_dir(const std::string& dir);

/// Write index.json, codes.npy, metrics.json and, with `with_model`, codebooks.npz and model.tsq into dir,
/// as one set: all files are first written (each fsync'ed) into a staging folder inside dir and moved into
/// place only when every one is complete, so an error leaves none of them behind (nor dir, if this call
/// created it). keys: n item ids for index.json (nullptr: row numbers), unique.
void write_semantic_ids(const std::string& dir, const SemanticIds& s, const std::vector<std::string>* keys,
                        bool with_model = true);

/// A model.tsq written by write_semantic_ids, with the collision strategy and token format it was built with.
struct SidModel {
  std::shared_ptr<ResidualQuantizer> model;
  Dedup dedup = Dedup::append;
  TokenFormat format;
};
SidModel load_sid_model(const std::string& path);

/// Lines of a text file (one item id or label per line; a trailing newline is optional; '\r' stripped).
std::vector<std::string> read_lines(const std::string& path);

}  // namespace tessera
