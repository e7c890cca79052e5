#include "tessera/neural/semantic_ids.h"

#include <memory>

#include "tessera/core/error.h"
#include "tessera/quant/residual_quantizer.h"

namespace tessera::neural {

Balance parse_balance(const std::string& name) {
  if (name == "none") return Balance::none;
  if (name == "last") return Balance::last;
  if (name == "all") return Balance::all;
  TESSERA_THROW_ARG("balance must be none, last or all, got '" << name << "'");
}

SemanticIds model_semantic_ids(const RQVAEModel& model, MatrixView<const float> x, Dedup dedup,
                               const TokenFormat& format, Balance balance, const std::vector<std::string>* labels,
                               size_t batch_size) {
  const RQVAEConfig& c = model.config();
  CodeStats stats = model.codes(x, batch_size);
  const FloatMatrix z = model.latent(x, batch_size);
  std::vector<size_t> sizes(c.codebook_sizes.begin(), c.codebook_sizes.end());
  auto rq = std::make_shared<ResidualQuantizer>(size_t(c.e_dim), sizes);
  std::vector<FloatMatrix> books;
  for (size_t l = 0; l < sizes.size(); ++l) books.push_back(model.codebook(l));
  rq->set_codebooks(std::move(books));
  // Exact size bounds over all items (not Sinkhorn within a batch), after the greedy earlier levels.
  if (balance != Balance::none)
    rq->assign_balanced_from(balance == Balance::last ? sizes.size() - 1 : 0, z.view(), stats.codes.data());
  const FloatMatrix rec = model.decode(stats.codes, batch_size);  // what the written codes reconstruct
  SemanticIds s = semantic_ids_from_codes(rq, z.view(), std::move(stats.codes), dedup, format, labels);
  s.metrics.recon_mse = mean_squared_error(x, rec.view());
  return s;
}

}  // namespace tessera::neural
