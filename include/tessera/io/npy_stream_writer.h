// A 2-D .npy written a block of rows at a time: the header with the final shape first, then the rows as they
// come, into a temporary file renamed onto the target by commit() (AtomicFile), so memory stays one block and
// a failure leaves no partial file. The bytes are those of write_npy for the same array (numpy's np.save).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tessera/core/matrix.h"

namespace tessera {

class AtomicFile;

class NpyStreamWriter {
 public:
  enum class Dtype { float32, int32 };
  /// Opens the temporary file and writes the header of a rows × cols array.
  NpyStreamWriter(const std::string& path, Dtype dtype, size_t rows, size_t cols);
  ~NpyStreamWriter();  ///< without commit(), removes the temporary file
  NpyStreamWriter(const NpyStreamWriter&) = delete;
  NpyStreamWriter& operator=(const NpyStreamWriter&) = delete;

  /// The next block of rows (block.cols must be cols(), and their dtype the writer's).
  void append(MatrixView<const float> block);
  void append(MatrixView<const int32_t> block);
  /// Checks that exactly rows() rows were appended, then fsyncs and renames onto the target.
  void commit();

  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  size_t rows_written() const { return written_; }

 private:
  void append_bytes(const void* data, size_t rows, size_t cols, size_t row_stride_bytes, Dtype dtype);
  std::unique_ptr<AtomicFile> file_;
  Dtype dtype_;
  size_t rows_, cols_, written_ = 0;
};

}  // namespace tessera
