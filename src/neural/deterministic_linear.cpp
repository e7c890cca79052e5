#include "neural/deterministic_linear.h"

#include <torch/autograd.h>

#include "core/blas.h"
#include "tessera/core/error.h"

namespace tessera::neural::detail {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

const float* floats(const torch::Tensor& t) { return t.data_ptr<float>(); }

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& w_in,
                               const torch::Tensor& bias) {
    const torch::Tensor x = x_in.contiguous(), w = w_in.contiguous();
    const int64_t rows = x.size(0), in = x.size(1), out = w.size(0);
    torch::Tensor y = torch::empty({rows, out}, x.options());
    ::tessera::detail::gemm_abt(size_t(rows), size_t(out), size_t(in), 1.0f, floats(x), size_t(in), floats(w),
                                size_t(in), 0.0f, y.data_ptr<float>(), size_t(out));
    if (bias.defined()) y.add_(bias);
    ctx->save_for_backward({x, w});
    ctx->saved_data["has_bias"] = bias.defined();
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1];
    const torch::Tensor g = grads[0].contiguous();
    const int64_t rows = x.size(0), in = x.size(1), out = w.size(0);
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {  // g · W: B × in
      gx = torch::empty({rows, in}, x.options());
      ::tessera::detail::gemm_ab(size_t(rows), size_t(in), size_t(out), 1.0f, floats(g), size_t(out), floats(w),
                                 size_t(in), 0.0f, gx.data_ptr<float>(), size_t(in));
    }
    if (ctx->needs_input_grad(1)) {  // gᵀ · x: out × in
      gw = torch::empty({out, in}, w.options());
      ::tessera::detail::gemm_atb(size_t(out), size_t(in), size_t(rows), 1.0f, floats(g), size_t(out), floats(x),
                                  size_t(in), 0.0f, gw.data_ptr<float>(), size_t(in));
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) gb = g.sum(0);
    return {gx, gw, gb};
  }
};

}  // namespace

torch::Tensor deterministic_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  TESSERA_CHECK_ARG(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1),
                    "linear: input " << x.sizes() << " does not fit weight " << weight.sizes());
  TESSERA_CHECK_ARG(x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32,
                    "linear: float32 tensors expected");
  return LinearFunction::apply(x, weight, bias);
}

}  // namespace tessera::neural::detail
