// Copies between tessera's matrices and torch tensors (float32, CPU, row-major).
#pragma once
#include <torch/types.h>

#include "tessera/core/error.h"
#include "tessera/core/matrix.h"

namespace tessera::neural::detail {

/// A new n × d float32 tensor holding x (any row stride).
inline torch::Tensor tensor_from(MatrixView<const float> x) {
  torch::Tensor t = torch::empty({int64_t(x.rows), int64_t(x.cols)}, torch::kFloat32);
  float* out = t.data_ptr<float>();
  for (size_t i = 0; i < x.rows; ++i) std::copy(x.row(i), x.row(i) + x.cols, out + i * x.cols);
  return t;
}

/// A new matrix holding a 2-D tensor's values (converted to float32, CPU).
inline FloatMatrix matrix_from(const torch::Tensor& t) {
  TESSERA_CHECK_ARG(t.dim() == 2, "expected a 2-D tensor, got " << t.dim() << " dimension(s)");
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  FloatMatrix m(size_t(c.size(0)), size_t(c.size(1)));
  std::copy(c.data_ptr<float>(), c.data_ptr<float>() + c.numel(), m.data());
  return m;
}

}  // namespace tessera::neural::detail
