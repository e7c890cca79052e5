#include "neural/deterministic_linear.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <bit>
#include <cstdint>

#include "core/blas.h"
#include "tessera/core/error.h"

namespace tessera::neural::detail {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

const float* floats(const torch::Tensor& t) { return t.data_ptr<float>(); }

// v when keep, else +0: a select without a branch (ReLU's signs are unpredictable; a branch per element cost
// more than the pass it saved), which compilers vectorise.
inline float keep_if(bool keep, float v) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & (0u - uint32_t(keep)));
}

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& w_in,
                               const torch::Tensor& bias_in, const torch::Tensor& residual_in, bool has_bias,
                               bool relu, bool has_residual) {
    // libtorch 1.13 refuses undefined tensors as inputs of a custom function: an absent bias or residual
    // comes as an empty tensor with its flag false.
    const torch::Tensor x = x_in.contiguous(), w = w_in.contiguous();
    const torch::Tensor bias = has_bias ? bias_in.contiguous() : torch::Tensor();
    const torch::Tensor residual = has_residual ? residual_in.contiguous() : torch::Tensor();
    const int64_t rows = x.size(0), in = x.size(1), out = w.size(0);
    torch::Tensor y = torch::empty({rows, out}, x.options());
    float* yp = y.data_ptr<float>();
    const float* bp = has_bias ? floats(bias) : nullptr;
    const float* rp = has_residual ? floats(residual) : nullptr;
    // Each block of rows, right after its product: the same float operations, in the same order, as
    // y.add_(bias), then torch::relu(y) (clamp_min(y, 0): NaN and −0 stay), then residual + y.
    ::tessera::detail::RowBlockFn then;
    if (bp || relu || rp)
      then = [&](size_t r0, size_t nr) {
        for (size_t i = r0; i < r0 + nr; ++i) {
          float* yi = yp + i * size_t(out);
          if (bp)
            for (int64_t j = 0; j < out; ++j) yi[j] = yi[j] + bp[j];
          if (relu)
            for (int64_t j = 0; j < out; ++j) yi[j] = keep_if(!(yi[j] < 0.0f), yi[j]);
          if (rp) {
            const float* ri = rp + i * size_t(out);
            for (int64_t j = 0; j < out; ++j) yi[j] = ri[j] + yi[j];
          }
        }
      };
    ::tessera::detail::gemm_abt(size_t(rows), size_t(out), size_t(in), 1.0f, floats(x), size_t(in), floats(w),
                                size_t(in), 0.0f, yp, size_t(out), then);
    if (relu)
      ctx->save_for_backward({x, w, y});  // the mask of ReLU's gradient is y > 0 (torch: threshold_backward)
    else
      ctx->save_for_backward({x, w});
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["has_residual"] = has_residual;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1];
    const torch::Tensor g_out = grads[0].contiguous();
    const int64_t rows = x.size(0), in = x.size(1), out = w.size(0);
    torch::Tensor g = g_out;
    if (ctx->saved_data["relu"].toBool()) {  // threshold_backward(g, y, 0): y ≤ 0 → 0, else g
      const torch::Tensor y = saved[2].contiguous();
      g = torch::empty_like(g_out);
      const float *gp = floats(g_out), *yp = floats(y);
      float* mp = g.data_ptr<float>();
      at::parallel_for(0, rows * out, 32768, [&](int64_t b, int64_t e) {  // element-wise: any split gives these bits
        for (int64_t i = b; i < e; ++i) mp[i] = keep_if(!(yp[i] <= 0.0f), gp[i]);
      });
    }
    torch::Tensor gx, gw, gb, gr;
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
    if (ctx->saved_data["has_residual"].toBool() && ctx->needs_input_grad(3)) gr = g_out;  // d(r + y)/dr = 1 
    return {gx, gw, gb, gr, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor deterministic_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                   bool relu, const torch::Tensor& residual) {
  TESSERA_CHECK_ARG(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1),
                    "linear: input " << x.sizes() << " does not fit weight " << weight.sizes());
  TESSERA_CHECK_ARG(x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32,
                    "linear: float32 tensors expected");
  TESSERA_CHECK_ARG(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0) &&
                                        bias.scalar_type() == torch::kFloat32),
                    "linear: bias " << bias.sizes() << " does not fit weight " << weight.sizes());
  TESSERA_CHECK_ARG(!residual.defined() || (residual.dim() == 2 && residual.size(0) == x.size(0) &&
                                            residual.size(1) == weight.size(0) &&
                                            residual.scalar_type() == torch::kFloat32),
                    "linear: residual " << residual.sizes() << " does not fit the output " << x.size(0) << " × "
                                        << weight.size(0));
  TESSERA_CHECK_ARG(!(relu && residual.defined()), "linear: a ReLU and a residual input exclude each other");
  const torch::Tensor none = torch::empty({0}, x.options());
  return LinearFunction::apply(x, weight, bias.defined() ? bias : none, residual.defined() ? residual : none,
                               bias.defined(), relu, residual.defined());
}

torch::Tensor deterministic_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return deterministic_linear(x, weight, bias, false, torch::Tensor());
}

}  // namespace tessera::neural::detail
