// Row-major matrices: a non-owning MatrixView (pointer, rows, cols, row stride) and an owning Matrix
// whose buffer may be its own vector or an external one kept alive by a handle (a memory-mapped file,
// a numpy array). Copying a Matrix shares its buffer, like a numpy view; clone() copies the data.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "tessera/core/error.h"

namespace tessera {

/// A rows × cols row-major view; row i starts at data + i * stride.
template <class T>
struct MatrixView {
  T* data = nullptr;
  size_t rows = 0;
  size_t cols = 0;
  size_t stride = 0;

  MatrixView() = default;
  MatrixView(T* data_, size_t rows_, size_t cols_) : data(data_), rows(rows_), cols(cols_), stride(cols_) {}
  MatrixView(T* data_, size_t rows_, size_t cols_, size_t stride_)
      : data(data_), rows(rows_), cols(cols_), stride(stride_) {}
  /// A view of non-const data converts to a view of const data.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  MatrixView(const MatrixView<U>& o) : data(o.data), rows(o.rows), cols(o.cols), stride(o.stride) {}

  T* row(size_t i) const { return data + i * stride; }
  T& operator()(size_t i, size_t j) const { return data[i * stride + j]; }
  bool contiguous() const { return stride == cols || rows <= 1; }
  bool empty() const { return rows == 0 || cols == 0; }
  /// Rows [begin, begin + count).
  MatrixView rows_slice(size_t begin, size_t count) const { return {data + begin * stride, count, cols, stride}; }
};

template <class T>
class Matrix {
 public:
  Matrix() = default;
  /// A zero-filled rows × cols matrix.
  Matrix(size_t rows, size_t cols) : rows_(rows), cols_(cols) {
    auto buf = std::make_shared<std::vector<T>>(rows * cols, T{});
    data_ = buf->data();
    owner_ = std::move(buf);
  }
  /// Wrap external storage; `owner` keeps it alive for as long as this matrix (or a copy) lives.
  static Matrix adopt(std::shared_ptr<void> owner, T* data, size_t rows, size_t cols) {
    Matrix m;
    m.owner_ = std::move(owner);
    m.data_ = data;
    m.rows_ = rows;
    m.cols_ = cols;
    return m;
  }
  /// A deep copy of any view.
  static Matrix copy_of(MatrixView<const T> v) {
    Matrix m(v.rows, v.cols);
    for (size_t i = 0; i < v.rows; ++i)
      std::copy(v.row(i), v.row(i) + v.cols, m.row(i));
    return m;
  }
  Matrix clone() const { return copy_of(view()); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  size_t size() const { return rows_ * cols_; }
  bool empty() const { return size() == 0; }
  T* row(size_t i) { return data_ + i * cols_; }
  const T* row(size_t i) const { return data_ + i * cols_; }
  T& operator()(size_t i, size_t j) { return data_[i * cols_ + j]; }
  const T& operator()(size_t i, size_t j) const { return data_[i * cols_ + j]; }
  MatrixView<T> view() { return {data_, rows_, cols_}; }
  MatrixView<const T> view() const { return {data_, rows_, cols_}; }
  operator MatrixView<const T>() const { return view(); }
  const std::shared_ptr<void>& owner() const { return owner_; }

 private:
  std::shared_ptr<void> owner_;
  T* data_ = nullptr;
  size_t rows_ = 0;
  size_t cols_ = 0;
};

using FloatMatrix = Matrix<float>;
using CodeMatrix = Matrix<int32_t>;

/// Throws InvalidArgument naming the first row holding NaN or ±Inf. `what` names the input in the message.
void check_finite(MatrixView<const float> x, const char* what = "input");

}  // namespace tessera
