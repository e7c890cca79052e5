// A set of .npy shards read as one n × d float32 matrix, a block of rows at a time: inputs larger than
// memory (`sid encode` streams them; `sid build` concatenates them). The shards are memory-mapped, so a
// block that lies in one float32 shard is a view of the file, not a copy, and release() gives its pages back.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

namespace io_detail {
class MappedFile;
}

/// Whether `path` names several shards: an existing directory, or a glob pattern (it holds * ? or [).
bool is_shard_pattern(const std::string& path);

class NpyShards {
 public:
  /// path: one .npy file, a directory (its *.npy files), or a glob pattern ("emb/part-*.npy"); the shards are
  /// taken in sorted path order. Every shard must be a 2-D C-order .npy of one float-readable dtype
  /// (float16/32/64, uint8/int8), all of the same width and dtype, none empty; otherwise an error naming the shard.
  static NpyShards open(const std::string& path);
  /// These shards, in this order.
  static NpyShards open(const std::vector<std::string>& paths);

  size_t rows() const { return offsets_.empty() ? 0 : offsets_.back(); }
  size_t cols() const { return cols_; }
  size_t num_shards() const { return names_.size(); }
  const std::vector<std::string>& names() const { return names_; }
  const std::string& dtype() const { return dtype_; }
  /// Global row number of the first row of each shard, and rows() last (num_shards() + 1 entries).
  const std::vector<size_t>& offsets() const { return offsets_; }

  /// Rows [begin, end) as float32 (end − begin) × cols(): a view of the mapping when they lie in one float32
  /// shard, else converted into `buffer` (reallocated when its shape differs). Valid while *this and buffer live.
  MatrixView<const float> read(size_t begin, size_t end, FloatMatrix& buffer) const;
  /// Rows [begin, end) converted into out ((end − begin) × cols() floats).
  void read_into(size_t begin, size_t end, float* out) const;
  /// Rows `rows` (any order, each < rows()) into out (rows.size() × cols()).
  void gather(const std::vector<size_t>& rows, float* out) const;
  /// Give back the memory of the pages of rows [begin, end) (the file is read again if they are needed).
  void release(size_t begin, size_t end) const;
  /// Every row in one matrix: a single float32 shard is adopted (no copy), the rest converted and concatenated.
  FloatMatrix read_all() const;

  /// Where global row i is: "shards/part-002.npy row 17".
  std::string where(size_t row) const;
  /// InvalidArgument naming the shard and the row within it of the first NaN/Inf in x, which holds the rows
  /// [begin, begin + x.rows).
  void check_finite(size_t begin, MatrixView<const float> x) const;

 private:
  struct Shard;
  size_t shard_of(size_t row) const;
  std::vector<std::shared_ptr<const Shard>> shards_;
  std::vector<std::string> names_;
  std::vector<size_t> offsets_;
  size_t cols_ = 0;
  std::string dtype_;
};

}  // namespace tessera
