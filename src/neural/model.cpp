#include "tessera/neural/model.h"

#include <torch/utils.h>

#include "neural/tensor_convert.h"
#include "tessera/core/error.h"
#include "tessera/neural/checkpoint.h"
#include "tessera/neural/rqkmeans_plus.h"
#include "tessera/neural/rqvae.h"
#include "tessera/neural/state_dict.h"
#include "tessera/neural/trainer.h"

namespace tessera::neural {

RQVAEModel::RQVAEModel(const RQVAEConfig& config) : impl_(RQVAE(config).ptr()) {}

RQVAEModel RQVAEModel::rqkmeans_plus(RQVAEConfig config, const std::string& codebooks_npz) {
  return RQVAEModel(make_rqkmeans_plus(std::move(config), codebooks_npz).ptr());
}

RQVAEModel RQVAEModel::from_checkpoint(const std::string& path) {
  Checkpoint c = read_checkpoint(path);
  RQVAEModel model(c.config);
  try {
    load_state(*model.impl_, c.state_dict);
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT(path << ": " << e.what());
  }
  model.impl_->eval();
  return model;
}

const RQVAEConfig& RQVAEModel::config() const { return impl_->config(); }

void RQVAEModel::init_codebooks_kmeans(MatrixView<const float> x, const CodebookInitParams& p) {
  neural::init_codebooks_kmeans(*impl_, x, p);
}

std::vector<EpochReport> RQVAEModel::train(MatrixView<const float> x, const TrainerParams& p) {
  return neural::train(*impl_, x, p);
}

CodeStats RQVAEModel::codes(MatrixView<const float> x, size_t batch_size) const {
  return evaluate_codes(*impl_, x, batch_size);
}

namespace {

// f(first row, rows) for batches of n rows, in evaluation mode without gradient (the module's mode is
// restored): the n × width results.
template <class F>
FloatMatrix batched_eval(RQVAEImpl& m, size_t n, size_t batch_size, int64_t width, F f) {
  FloatMatrix out(n, size_t(width));
  const bool was_training = m.is_training();
  m.eval();
  try {
    torch::NoGradGuard no_grad;
    const size_t bs = std::max<size_t>(1, batch_size);
    for (size_t b0 = 0; b0 < n; b0 += bs) {
      const torch::Tensor r = f(b0, std::min(bs, n - b0)).contiguous();
      std::copy(r.data_ptr<float>(), r.data_ptr<float>() + r.numel(), out.row(b0));
    }
  } catch (...) {
    m.train(was_training);
    throw;
  }
  m.train(was_training);
  return out;
}

// batched_eval of g on the rows of x (n × in_dim, finite).
template <class G>
FloatMatrix batched_rows(RQVAEImpl& m, MatrixView<const float> x, size_t batch_size, int64_t width, G g) {
  const int64_t d = m.config().in_dim;
  TESSERA_CHECK_ARG(int64_t(x.cols) == d, "dimension mismatch: data has " << x.cols << " columns, the model " << d);
  check_finite(x, "data");
  return batched_eval(m, x.rows, batch_size, width,
                      [&](size_t b0, size_t nb) { return g(detail::tensor_from(x.rows_slice(b0, nb))); });
}

}  // namespace

FloatMatrix RQVAEModel::latent(MatrixView<const float> x, size_t batch_size) const {
  RQVAEImpl& m = *impl_;
  return batched_rows(m, x, batch_size, m.config().e_dim, [&m](const torch::Tensor& t) { return m.encode(t); });
}

FloatMatrix RQVAEModel::reconstruct(MatrixView<const float> x, size_t batch_size) const {
  RQVAEImpl& m = *impl_;
  return batched_rows(m, x, batch_size, m.config().in_dim,
                      [&m](const torch::Tensor& t) { return m.forward(t).reconstruction; });
}

FloatMatrix RQVAEModel::decode(const CodeMatrix& codes, size_t batch_size) const {
  RQVAEImpl& m = *impl_;
  const size_t n = codes.rows(), L = num_levels();
  TESSERA_CHECK_ARG(codes.cols() == L, "codes have " << codes.cols() << " levels, the model " << L);
  for (size_t i = 0; i < n; ++i)
    for (size_t l = 0; l < L; ++l)
      TESSERA_CHECK_ARG(codes(i, l) >= 0 && codes(i, l) < m.config().codebook_sizes[l],
                        "code " << codes(i, l) << " of row " << i << " is out of level " << l << "'s range");
  return batched_eval(m, n, batch_size, m.config().in_dim, [&](size_t b0, size_t nb) {
    torch::Tensor idx = torch::empty({int64_t(nb), int64_t(L)}, torch::kInt64);
    for (size_t i = 0; i < nb * L; ++i) idx.data_ptr<int64_t>()[i] = codes.data()[b0 * L + i];
    torch::Tensor sum = torch::zeros({int64_t(nb), m.config().e_dim});
    for (size_t l = 0; l < L; ++l) sum += m.rq()->level(l)->codebook().index_select(0, idx.select(1, int64_t(l)));
    return m.decode(sum);
  });
}

FloatMatrix RQVAEModel::codebook(size_t level) const {
  TESSERA_CHECK_ARG(level < num_levels(), "level " << level << " out of range: the model has " << num_levels());
  return detail::matrix_from(impl_->rq()->level(level)->codebook());
}

void RQVAEModel::set_torch_threads(int n) {
  if (n > 0) torch::set_num_threads(n);
}

void RQVAEModel::save_state_dict(const std::string& path) const { neural::save_state_dict(*impl_, path); }

void RQVAEModel::load_state_dict(const std::string& path) { neural::load_state_dict(*impl_, path); }

}  // namespace tessera::neural
