#include "tessera/io/npy_stream_writer.h"

#include "io/npy_detail.h"
#include "tessera/core/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera {

NpyStreamWriter::NpyStreamWriter(const std::string& path, Dtype dtype, size_t rows, size_t cols)
    : file_(std::make_unique<AtomicFile>(path)), dtype_(dtype), rows_(rows), cols_(cols) {
  file_->write(io_detail::npy_header_bytes(dtype == Dtype::float32 ? "<f4" : "<i4", rows, cols));
}

NpyStreamWriter::~NpyStreamWriter() = default;

void NpyStreamWriter::append(MatrixView<const float> block) {
  append_bytes(block.data, block.rows, block.cols, block.stride * sizeof(float), Dtype::float32);
}

void NpyStreamWriter::append(MatrixView<const int32_t> block) {
  append_bytes(block.data, block.rows, block.cols, block.stride * sizeof(int32_t), Dtype::int32);
}

void NpyStreamWriter::append_bytes(const void* data, size_t rows, size_t cols, size_t row_stride_bytes, Dtype dtype) {
  TESSERA_CHECK_ARG(dtype == dtype_, file_->path() << ": the block's dtype is not the array's ("
                                                   << (dtype_ == Dtype::float32 ? "float32" : "int32") << ")");
  TESSERA_CHECK_ARG(cols == cols_, file_->path() << ": a block of " << cols << " columns, the array has " << cols_);
  TESSERA_CHECK_ARG(rows <= rows_ - written_, file_->path() << ": " << written_ << " + " << rows
                                                            << " rows is more than the " << rows_ << " declared");
  if (rows == 0 || cols == 0) return;
  const size_t row_bytes = cols * 4;
  const auto* p = static_cast<const unsigned char*>(data);
  if (row_stride_bytes == row_bytes)
    file_->write(p, rows * row_bytes);
  else
    for (size_t i = 0; i < rows; ++i) file_->write(p + i * row_stride_bytes, row_bytes);
  written_ += rows;
}

void NpyStreamWriter::commit() {
  TESSERA_CHECK_ARG(written_ == rows_, file_->path() << ": " << written_ << " rows were written, the header declares "
                                                     << rows_);
  file_->commit();
}

}  // namespace tessera
