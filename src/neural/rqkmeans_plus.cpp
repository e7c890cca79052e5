#include "tessera/neural/rqkmeans_plus.h"

#include <map>

#include "tessera/core/error.h"
#include "tessera/io/npz.h"

namespace tessera::neural {

namespace {
// The level of a member named codebook_<l> (decimal, no sign or leading zero), or −1.
long codebook_level(const std::string& name) {
  static const std::string prefix = "codebook_";
  if (name.compare(0, prefix.size(), prefix) != 0 || name.size() == prefix.size() || name.size() > prefix.size() + 6)
    return -1;
  const std::string digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos || (digits.size() > 1 && digits[0] == '0'))
    return -1;
  return std::stol(digits);
}
}  // namespace

std::vector<FloatMatrix> read_codebooks_npz(const std::string& path, size_t levels) {
  std::map<long, FloatMatrix> books;
  for (auto& [name, m] : read_npz_f32(path)) {
    const long l = codebook_level(name);
    if (l >= 0) books.emplace(l, std::move(m));
  }
  TESSERA_CHECK_ARG(!books.empty(), path << " holds no codebook_0 (expected members codebook_0, codebook_1, …, "
                                            "as `tessera sid build` writes)");
  const size_t want = levels > 0 ? levels : size_t(books.rbegin()->first) + 1;
  for (size_t l = 0; l < want; ++l)
    TESSERA_CHECK_ARG(books.count(long(l)), path << " has no codebook_" << l << " (expected " << want
                                                 << " levels: codebook_0 … codebook_" << want - 1 << ")");
  TESSERA_CHECK_ARG(books.size() == want, path << " has codebook_" << books.rbegin()->first << " but the model has "
                                               << want << " levels (codebook_0 … codebook_" << want - 1 << ")");
  std::vector<FloatMatrix> out;
  for (auto& [l, m] : books) {
    TESSERA_CHECK_ARG(m.rows() >= 1, path << ": codebook_" << l << " has no rows");
    TESSERA_CHECK_ARG(m.cols() == books.begin()->second.cols(),
                      path << ": codebook_" << l << " is " << m.rows() << " × " << m.cols() << " but codebook_0 has "
                           << books.begin()->second.cols() << " columns");
    out.push_back(std::move(m));
  }
  return out;
}

RQVAE make_rqkmeans_plus(RQVAEConfig config, const std::vector<FloatMatrix>& codebooks) {
  TESSERA_CHECK_ARG(config.e_dim == config.in_dim,
                    "RQ-KMeans+ needs e_dim equal to the input dimension (its encoder is z = x + MLP(x)): input "
                    "dimension "
                        << config.in_dim << ", e_dim " << config.e_dim << " (set e_dim to " << config.in_dim << ")");
  TESSERA_CHECK_ARG(!codebooks.empty(), "RQ-KMeans+ needs at least one codebook");
  if (config.codebook_sizes.empty()) {
    for (const FloatMatrix& c : codebooks) config.codebook_sizes.push_back(int64_t(c.rows()));
  }
  TESSERA_CHECK_ARG(config.codebook_sizes.size() == codebooks.size(),
                    "the model has " << config.codebook_sizes.size() << " levels but " << codebooks.size()
                                     << " codebooks were given");
  for (size_t l = 0; l < codebooks.size(); ++l)
    TESSERA_CHECK_ARG(int64_t(codebooks[l].rows()) == config.codebook_sizes[l] &&
                          int64_t(codebooks[l].cols()) == config.in_dim,
                      "codebook_" << l << " is " << codebooks[l].rows() << " × " << codebooks[l].cols()
                                  << ", expected " << config.codebook_sizes[l] << " × " << config.in_dim
                                  << " (codebook size × input dimension)");
  config.residual_encoder = true;
  RQVAE model(config);
  {
    torch::NoGradGuard no_grad;
    torch::nn::Linear last = model->encoder_mlp()->linears().back();
    last->weight.zero_();
    last->bias.zero_();
  }
  for (size_t l = 0; l < codebooks.size(); ++l) model->rq()->level(l)->set_codebook(codebooks[l].view());
  return model;
}

RQVAE make_rqkmeans_plus(RQVAEConfig config, const std::string& codebooks_npz) {
  const size_t levels = config.codebook_sizes.size();
  const std::vector<FloatMatrix> books = read_codebooks_npz(codebooks_npz, levels);
  for (size_t l = 0; l < books.size(); ++l)
    TESSERA_CHECK_ARG(levels == 0 || int64_t(books[l].rows()) == config.codebook_sizes[l],
                      codebooks_npz << ": codebook_" << l << " has " << books[l].rows() << " rows, the model's level "
                                    << l << " " << config.codebook_sizes[l] << " codewords");
  TESSERA_CHECK_ARG(int64_t(books[0].cols()) == config.in_dim,
                    "dimension mismatch: " << codebooks_npz << " has " << books[0].cols()
                                           << "-dimensional codebooks, the data " << config.in_dim);
  return make_rqkmeans_plus(std::move(config), books);
}

}  // namespace tessera::neural
