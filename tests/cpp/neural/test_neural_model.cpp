// The torch-free interface (model.h): the same results as the module it wraps, and no torch header in it.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "../io_test_util.h"
#include "neural/tensor_convert.h"
#include "tessera/core/error.h"
#include "tessera/neural/model.h"
#include "tessera/neural/rqvae.h"
#include "tessera/sid/pipeline.h"

namespace tessera::neural {
namespace {

using tessera_test::ScratchDir;

TEST(NeuralModel, RQKMeansPlusThroughTheTorchFreeInterface) {
  ScratchDir dir;
  const FloatMatrix x = tessera::testing::gaussian_mixture(800, 10, 20, 31);
  SidParams sp;
  sp.codebook_sizes = {16, 8};
  sp.n_init = 1;
  const SemanticIds sids = build_semantic_ids(x.view(), sp);
  write_semantic_ids(dir.path() + "/sid", sids, nullptr);

  RQVAEConfig c;
  c.in_dim = c.e_dim = 10;
  c.layers = {16};
  c.codebook_sizes = {};
  RQVAEModel model = RQVAEModel::rqkmeans_plus(c, dir.path() + "/sid/codebooks.npz");
  ASSERT_EQ(model.num_levels(), 2u);
  for (size_t l = 0; l < 2; ++l) {
    const FloatMatrix book = model.codebook(l);
    ASSERT_EQ(book.rows(), sids.model->codebook(l).rows);
    EXPECT_TRUE(std::equal(book.data(), book.data() + book.size(), sids.model->codebook(l).data));
  }
  EXPECT_THROW(model.codebook(2), InvalidArgument);

  std::vector<int32_t> greedy(800 * 2);
  sids.model->encode_greedy(x.view(), greedy.data());
  const CodeStats s = model.codes(x.view(), 300);
  EXPECT_TRUE(std::equal(greedy.begin(), greedy.end(), s.codes.data()));

  const FloatMatrix recon = model.reconstruct(x.view(), 300);
  torch::NoGradGuard no_grad;
  model.module()->eval();
  const torch::Tensor ref = model.module()->forward(detail::tensor_from(x.view())).reconstruction;
  EXPECT_TRUE(torch::allclose(detail::tensor_from(recon.view()), ref, 1e-5, 1e-6));
  // decode() of the greedy codes is the same reconstruction; of other codes, another one.
  const FloatMatrix decoded = model.decode(s.codes, 300);
  EXPECT_TRUE(torch::allclose(detail::tensor_from(decoded.view()), ref, 1e-5, 1e-6));
  CodeMatrix shifted = s.codes.clone();
  for (size_t i = 0; i < 800; ++i) shifted(i, 1) = (shifted(i, 1) + 1) % 8;
  EXPECT_FALSE(torch::allclose(detail::tensor_from(model.decode(shifted).view()), ref, 1e-5, 1e-6));
  shifted(5, 0) = 16;
  EXPECT_THROW(model.decode(shifted), InvalidArgument);

  model.save_state_dict(dir / "m.pt");
  RQVAEConfig plain = model.config();
  plain.seed = 99;
  RQVAEModel copy(plain);
  copy.load_state_dict(dir / "m.pt");
  const CodeStats s2 = copy.codes(x.view());
  EXPECT_TRUE(std::equal(greedy.begin(), greedy.end(), s2.codes.data()));
  EXPECT_THROW(model.reconstruct(FloatMatrix(3, 11).view()), InvalidArgument);
}

// Front ends include model.h and config.h without compiling torch: they include only the standard library,
// tessera/core and config.h.
TEST(NeuralModel, InterfaceHeadersIncludeNoTorch) {
  const std::regex include(R"(^\s*#\s*include\s*[<"]([^>"]+)[>"])");
  for (const std::string name : {"model.h", "config.h"}) {
    std::ifstream in(std::string(TESSERA_SOURCE_DIR) + "/include/tessera/neural/" + name);
    ASSERT_TRUE(in) << name;
    std::string line;
    size_t includes = 0;
    while (std::getline(in, line)) {
      std::smatch m;
      if (!std::regex_search(line, m, include)) continue;
      ++includes;
      const std::string h = m[1];
      const bool ok = h.find('/') == std::string::npos || h.rfind("tessera/core/", 0) == 0 ||
                      h == "tessera/neural/config.h";
      EXPECT_TRUE(ok) << name << " includes " << h;
    }
    EXPECT_GT(includes, 0u) << name;
  }
}

}  // namespace
}  // namespace tessera::neural
