// state_dict files: round trip, strict import, atomic writes, and interop with Python's torch (torch.load
// of our export, our import of torch.save's output, and the loss and gradients of a model computed by
// PyTorch from the exported weights).
#include <gtest/gtest.h>
#include <torch/serialize.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "neural/tensor_convert.h"
#include "neural_test_util.h"
#include "tessera/core/error.h"
#include "tessera/neural/rqvae.h"
#include "tessera/neural/state_dict.h"

namespace tessera::neural {
namespace {

using tessera_test::error_of;
using tessera_test::ScratchDir;
using testing::missing_torch_python;
using testing::run_python;

RQVAEConfig small_config(bool bn = false) {
  RQVAEConfig c;
  c.in_dim = 10;
  c.e_dim = 4;
  c.layers = {16, 8};
  c.codebook_sizes = {8, 4};
  c.batch_norm = bn;
  return c;
}

void expect_same_state(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto sa = named_state(a), sb = named_state(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
  }
}

TEST(NeuralStateDict, RoundTripWithBatchNormBuffers) {
  ScratchDir dir;
  RQVAEConfig c = small_config(true);
  RQVAE a(c);
  torch::manual_seed(1);
  a->forward(torch::randn({32, 10}));  // training mode: the running statistics move
  c.seed = 7;
  RQVAE b(c);
  save_state_dict(*a, dir / "model.pt");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.pt"}) << "a temporary file was left behind";
  load_state_dict(*b, dir / "model.pt");
  expect_same_state(*a, *b);
  const auto state = named_state(*b);
  EXPECT_EQ(state[6].first, "encoder.mlp_layers.2.num_batches_tracked");
  EXPECT_EQ(state[6].second.item<int64_t>(), 1);
}

TEST(NeuralStateDict, ImportIsStrictAndNamesTheDifferences) {
  RQVAE model(small_config());
  auto state = named_state(*model);
  RQVAE other(small_config());
  const auto before = named_state(*other);

  auto missing = state;
  missing.erase(missing.begin() + 6);  // rq.vq_layers.0.embedding.weight
  std::string msg = error_of<InvalidArgument>([&] { load_state(*other, missing); });
  EXPECT_NE(msg.find("missing: rq.vq_layers.0.embedding.weight"), std::string::npos) << msg;

  auto extra = state;
  extra.emplace_back("rq.vq_layers.2.embedding.weight", torch::zeros({4, 4}));
  msg = error_of<InvalidArgument>([&] { load_state(*other, extra); });
  EXPECT_NE(msg.find("unexpected: rq.vq_layers.2.embedding.weight"), std::string::npos) << msg;

  auto shape = state;
  shape[0].second = torch::zeros({16, 11});
  msg = error_of<InvalidArgument>([&] { load_state(*other, shape); });
  EXPECT_NE(msg.find("encoder.mlp_layers.1.weight is (16, 11), the model's (16, 10)"), std::string::npos) << msg;

  // A failed import changes nothing.
  const auto after = named_state(*other);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i].second, after[i].second));

  // A batch-norm model's file does not load into a model without (the names shift: strict=False would not see it).
  ScratchDir dir;
  RQVAE bn(small_config(true));
  save_state_dict(*bn, dir / "bn.pt");
  msg = error_of<InvalidArgument>([&] { load_state_dict(*other, dir / "bn.pt"); });
  EXPECT_NE(msg.find("bn.pt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected"), std::string::npos) << msg;
}

TEST(NeuralStateDict, BadFilesAndPathsAreClearErrors) {
  ScratchDir dir;
  RQVAE model(small_config());
  tessera_test::spit(dir / "foreign.pt", "not a torch file at all");
  EXPECT_THROW(load_state_dict(*model, dir / "foreign.pt"), FormatError);
  save_state_dict(*model, dir / "ok.pt");
  const std::string bytes = tessera_test::slurp(dir / "ok.pt");
  tessera_test::spit(dir / "truncated.pt", bytes.substr(0, bytes.size() / 2));
  EXPECT_THROW(load_state_dict(*model, dir / "truncated.pt"), FormatError);
  EXPECT_THROW(load_state_dict(*model, dir / "absent.pt"), IOError);
  EXPECT_THROW(save_state_dict(*model, dir / "no/such/dir/model.pt"), IOError);
}

// Python's torch.load reads our file, also with weights_only=True: same names in the same order, same values.
TEST(NeuralStateDict, TorchLoadReadsOurExport) {
  if (const std::string why = missing_torch_python(); !why.empty()) GTEST_SKIP() << why;
  ScratchDir dir;
  RQVAE model(small_config(true));
  save_state_dict(*model, dir / "model.pt");
  const auto [status, out] = run_python(
      "import torch, json\n"
      "sd = torch.load('" + dir / "model.pt" + "')\n"
      "safe = torch.load('" + dir / "model.pt" + "', weights_only=True)\n"  // the default from torch 2.6 on
      "assert list(safe) == list(sd) and all(torch.equal(safe[k], sd[k]) for k in sd)\n"
      "print(json.dumps([[k, list(v.shape), str(v.dtype), float(v.double().sum())] for k, v in sd.items()]))\n");
  ASSERT_EQ(status, 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  const auto state = named_state(*model);
  ASSERT_EQ(j.size(), state.size()) << out;
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(j[i][0].get<std::string>(), state[i].first);
    EXPECT_EQ(j[i][1].get<std::vector<int64_t>>(), state[i].second.sizes().vec());
    EXPECT_EQ(j[i][2].get<std::string>(), state[i].second.scalar_type() == torch::kLong ? "torch.int64" : "torch.float32");
    EXPECT_NEAR(j[i][3].get<double>(), state[i].second.to(torch::kFloat64).sum().item<double>(), 1e-9);
  }
}

// We read what Python's torch.save writes from a plain dict; the OrderedDict model.state_dict() returns is a clear
// error (libtorch 1.13's unpickler turns it into None).
TEST(NeuralStateDict, ImportsTorchSaveOutput) {
  if (const std::string why = missing_torch_python(); !why.empty()) GTEST_SKIP() << why;
  ScratchDir dir;
  RQVAE model(small_config());
  // Python fills every entry with 0.001 · (position in the flattened tensor) + its index in the dict.
  std::string names = "[";
  for (const auto& [name, t] : named_state(*model))
    names += "('" + name + "', " + "[" + [&] {
      std::string s;
      for (int64_t d : t.sizes().vec()) s += std::to_string(d) + ",";
      return s;
    }() + "]),";
  names += "]";
  for (const std::string kind : {"dict", "collections.OrderedDict"}) {
    const std::string path = dir / ("py_" + kind + ".pt");
    const auto [status, out] = run_python(
        "import torch, collections\n"
        "names = " + names + "\n"
        "sd = " + kind + "((n, torch.arange(float(torch.Size(s).numel())).reshape(s) * 0.001 + i) "
        "for i, (n, s) in enumerate(names))\n"
        "torch.save(sd, '" + path + "')\n");
    ASSERT_EQ(status, 0) << out;
    RQVAE loaded(small_config());
    if (kind != "dict") {  // libtorch's unpickler cannot read an OrderedDict: a clear error saying what to do
      const std::string msg = error_of<FormatError>([&] { load_state_dict(*loaded, path); });
      EXPECT_NE(msg.find("torch.save(dict(model.state_dict()), path)"), std::string::npos) << msg;
      continue;
    }
    ASSERT_NO_THROW(load_state_dict(*loaded, path)) << kind;
    const auto state = named_state(*loaded);
    for (size_t i = 0; i < state.size(); ++i) {
      const torch::Tensor expected =
          torch::arange(double(state[i].second.numel()), torch::kFloat64).reshape(state[i].second.sizes()) * 0.001 +
          double(i);
      EXPECT_TRUE(torch::allclose(state[i].second.to(torch::kFloat64), expected, 1e-6, 1e-6)) << kind << " " << state[i].first;
    }
  }
}

// The loss, codes and gradients of an RQ-VAE computed by PyTorch from our exported weights, with
// MiniOneRec's formulation written out (F.linear/ReLU chains, q = r + (e − r).detach(), r ← r − q).
TEST(NeuralStateDict, LossAndGradientsMatchAPyTorchReference) {
  if (const std::string why = missing_torch_python(); !why.empty()) GTEST_SKIP() << why;
  ScratchDir dir;
  RQVAEConfig c = small_config();
  c.beta = 0.3;
  c.quant_weight = 0.8;
  RQVAE model(c);
  const FloatMatrix xm = tessera::testing::gaussian_mixture(64, 10, 6, 4);
  init_codebooks_kmeans(*model, xm.view());  // codebooks near the latents: every level gets used
  save_state_dict(*model, dir / "model.pt");
  const torch::Tensor x = detail::tensor_from(xm.view());
  {
    c10::Dict<std::string, at::Tensor> d;
    d.insert("x", x);
    const std::vector<char> bytes = torch::pickle_save(c10::IValue(d));
    tessera_test::spit(dir / "x.pt", std::string(bytes.begin(), bytes.end()));
  }
  const RQVAEOutput out = model->forward(x);
  const RQVAELoss loss = model->loss(out, x);
  loss.total.backward();

  const auto [status, py] = run_python(
      "import torch, json\n"
      "import torch.nn.functional as F\n"
      "sd = {k: v.clone().requires_grad_(True) for k, v in torch.load('" + dir / "model.pt" + "').items()}\n"
      "x = torch.load('" + dir / "x.pt" + "')['x']\n"
      "def mlp(prefix, h):\n"
      "    idx = sorted({int(k.split('.')[-2]) for k in sd if k.startswith(prefix + '.mlp_layers.')})\n"
      "    for n, j in enumerate(idx):\n"
      "        h = F.linear(h, sd[f'{prefix}.mlp_layers.{j}.weight'], sd[f'{prefix}.mlp_layers.{j}.bias'])\n"
      "        if n + 1 < len(idx): h = F.relu(h)\n"
      "    return h\n"
      "z = mlp('encoder', x)\n"
      "r, xq, losses, codes = z, 0, [], []\n"
      "for l in range(2):\n"
      "    E = sd[f'rq.vq_layers.{l}.embedding.weight']\n"
      "    d = (r.detach() ** 2).sum(1, keepdim=True) + (E.detach() ** 2).sum(1) - 2 * r.detach() @ E.detach().t()\n"
      "    k = d.argmin(1)\n"
      "    e = E[k]\n"
      "    losses.append(F.mse_loss(e, r.detach()) + 0.3 * F.mse_loss(r, e.detach()))\n"
      "    q = r + (e - r).detach()\n"
      "    xq = xq + q\n"
      "    r = r - q\n"
      "    codes.append(k.tolist())\n"
      "rq = torch.stack(losses).mean()\n"
      "recon = F.mse_loss(mlp('decoder', xq), x)\n"
      "total = recon + 0.8 * rq\n"
      "total.backward()\n"
      "print(json.dumps({'total': total.item(), 'recon': recon.item(), 'rq': rq.item(), 'codes': codes,\n"
      "  'grads': {k: v.grad.double().abs().sum().item() if v.grad is not None else 0.0 for k, v in sd.items()}}))\n");
  ASSERT_EQ(status, 0) << py;
  const nlohmann::json j = nlohmann::json::parse(py);
  EXPECT_NEAR(loss.total.item<double>(), j["total"].get<double>(), 1e-5 * j["total"].get<double>());
  EXPECT_NEAR(loss.reconstruction.item<double>(), j["recon"].get<double>(), 1e-5 * j["recon"].get<double>());
  EXPECT_NEAR(loss.quantization.item<double>(), j["rq"].get<double>(), 1e-5 * j["rq"].get<double>());
  std::vector<std::vector<int64_t>> codes(2);
  for (int64_t l = 0; l < 2; ++l) {
    const torch::Tensor cl = out.codes.select(1, l).contiguous();
    codes[size_t(l)].assign(cl.data_ptr<int64_t>(), cl.data_ptr<int64_t>() + cl.numel());
    EXPECT_EQ(codes[size_t(l)], j["codes"][size_t(l)].get<std::vector<int64_t>>()) << "level " << l;
  }
  for (const auto& [name, t] : named_state(*model)) {
    const double ours = t.grad().defined() ? t.grad().to(torch::kFloat64).abs().sum().item<double>() : 0.0;
    const double theirs = j["grads"][name].get<double>();
    EXPECT_NEAR(ours, theirs, 1e-4 * theirs + 1e-9) << name;
  }
}

}  // namespace
}  // namespace tessera::neural
