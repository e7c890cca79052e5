#include "tessera/neural/checkpoint.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <sstream>
#include <type_traits>

#include "neural/pickle_file.h"
#include "tessera/core/error.h"
#include "tessera/neural/state_dict.h"

namespace tessera::neural {

namespace {

using IDict = c10::impl::GenericDict;

// A dict of string keys and values of any type (a plain Python dict once pickled).
IDict new_dict() { return IDict(c10::StringType::get(), c10::AnyType::get()); }

// A list of any type: typed lists (List[int], List[Tensor]) are pickled as calls of torch.jit._pickle's
// build_intlist / build_tensorlist, which torch.load(weights_only=True) refuses.
template <class T>
c10::impl::GenericList any_list(const std::vector<T>& v) {
  c10::impl::GenericList out(c10::AnyType::get());
  for (const T& x : v) out.push_back(c10::IValue(x));
  return out;
}

// The checkpoint stores unsigned 64-bit values (seed, fingerprint) as the int64 of the same bits: pickle's
// integers and torch's IValue are signed.
int64_t as_signed(uint64_t v) { return std::bit_cast<int64_t>(v); }
uint64_t as_unsigned(int64_t v) { return std::bit_cast<uint64_t>(v); }

IDict config_value(const RQVAEConfig& c) {
  IDict d = new_dict();
  d.insert("in_dim", c.in_dim);
  d.insert("e_dim", c.e_dim);
  d.insert("layers", any_list(c.layers));
  d.insert("codebook_sizes", any_list(c.codebook_sizes));
  d.insert("dropout", c.dropout);
  d.insert("batch_norm", c.batch_norm);
  d.insert("beta", c.beta);
  d.insert("quant_weight", c.quant_weight);
  d.insert("residual_encoder", c.residual_encoder);
  d.insert("residual_decoder", c.residual_decoder);
  d.insert("partial_sum_commitment", c.partial_sum_commitment);
  d.insert("seed", as_signed(c.seed));
  d.insert("sk_epsilons", any_list(c.sk_epsilons));
  d.insert("sk_iters", int64_t(c.sk_iters));
  return d;
}

IDict history_value(const std::vector<EpochReport>& h) {
  std::vector<int64_t> epoch, evaluated, codes_used;
  std::vector<double> loss, rec, quant, secs, rate;
  for (const EpochReport& r : h) {
    epoch.push_back(r.epoch);
    loss.push_back(r.loss);
    rec.push_back(r.reconstruction);
    quant.push_back(r.quantization);
    secs.push_back(r.seconds);
    evaluated.push_back(r.evaluated);
    rate.push_back(r.evaluated ? r.collision_rate : std::nan(""));
    for (size_t u : r.codes_used) codes_used.push_back(int64_t(u));  // flattened: L entries per evaluation
  }
  IDict d = new_dict();
  d.insert("epoch", any_list(epoch));
  d.insert("loss", any_list(loss));
  d.insert("reconstruction", any_list(rec));
  d.insert("quantization", any_list(quant));
  d.insert("seconds", any_list(secs));
  d.insert("evaluated", any_list(evaluated));
  d.insert("collision_rate", any_list(rate));
  d.insert("codes_used", any_list(codes_used));
  return d;
}

// Reads entries of a checkpoint's dicts; a missing entry or one of another type is a FormatError naming it.
class Reader {
 public:
  Reader(std::string path, c10::impl::GenericDict dict, std::string where)
      : path_(std::move(path)), dict_(std::move(dict)), where_(std::move(where)) {}

  const c10::IValue& at(const std::string& key) const {
    const auto it = dict_.find(key);
    TESSERA_CHECK_FORMAT(it != dict_.end(), path_ << ": no entry " << where_ << key << " (not a tessera checkpoint?)");
    return it->value();
  }
  int64_t integer(const std::string& key) const { return get(key, "an integer", &c10::IValue::isInt).toInt(); }
  double real(const std::string& key) const { return get(key, "a number", &c10::IValue::isDouble).toDouble(); }
  bool boolean(const std::string& key) const { return get(key, "a bool", &c10::IValue::isBool).toBool(); }
  std::string text(const std::string& key) const { return get(key, "a string", &c10::IValue::isString).toStringRef(); }
  std::vector<int64_t> integers(const std::string& key) const {
    return elements<int64_t>(key, "a list of integers", &c10::IValue::isInt, &c10::IValue::toInt);
  }
  std::vector<double> reals(const std::string& key) const {
    return elements<double>(key, "a list of numbers", &c10::IValue::isDouble, &c10::IValue::toDouble);
  }
  std::vector<at::Tensor> tensors(const std::string& key) const {
    return elements<at::Tensor>(key, "a list of tensors", &c10::IValue::isTensor,
                                [](const c10::IValue& v) { return v.toTensor(); });
  }
  bool has(const std::string& key) const { return dict_.find(key) != dict_.end(); }
  const c10::impl::GenericDict& dict() const { return dict_; }
  Reader sub(const std::string& key) const {
    return Reader(path_, get(key, "a dict", &c10::IValue::isGenericDict).toGenericDict(), where_ + key + ".");
  }

 private:
  const c10::IValue& get(const std::string& key, const char* kind, bool (c10::IValue::*is)() const) const {
    const c10::IValue& v = at(key);
    TESSERA_CHECK_FORMAT((v.*is)(), path_ << ": " << where_ << key << " is not " << kind);
    return v;
  }
  template <class T, class To>
  std::vector<T> elements(const std::string& key, const char* kind, bool (c10::IValue::*is)() const, To to) const {
    std::vector<T> out;
    for (const c10::IValue& e : get(key, kind, &c10::IValue::isList).toListRef()) {
      TESSERA_CHECK_FORMAT((e.*is)(), path_ << ": " << where_ << key << " is not " << kind);
      out.push_back(std::invoke(to, e));
    }
    return out;
  }

  std::string path_;
  c10::impl::GenericDict dict_;
  std::string where_;
};

RQVAEConfig read_config(const Reader& r) {
  RQVAEConfig c;
  c.in_dim = r.integer("in_dim");
  c.e_dim = r.integer("e_dim");
  c.layers = r.integers("layers");
  c.codebook_sizes = r.integers("codebook_sizes");
  c.dropout = r.real("dropout");
  c.batch_norm = r.boolean("batch_norm");
  c.beta = r.real("beta");
  c.quant_weight = r.real("quant_weight");
  c.residual_encoder = r.boolean("residual_encoder");
  c.residual_decoder = r.has("residual_decoder") && r.boolean("residual_decoder");  // absent before they existed
  c.partial_sum_commitment = r.has("partial_sum_commitment") && r.boolean("partial_sum_commitment");
  c.seed = as_unsigned(r.integer("seed"));
  c.sk_epsilons = r.reals("sk_epsilons");
  c.sk_iters = int(r.integer("sk_iters"));
  return c;
}

std::vector<EpochReport> read_history(const Reader& r, size_t levels, const std::string& path) {
  const auto epoch = r.integers("epoch"), evaluated = r.integers("evaluated"), used = r.integers("codes_used");
  const auto loss = r.reals("loss"), rec = r.reals("reconstruction"), quant = r.reals("quantization"),
             secs = r.reals("seconds"), rate = r.reals("collision_rate");
  const size_t n = epoch.size();
  TESSERA_CHECK_FORMAT(loss.size() == n && rec.size() == n && quant.size() == n && secs.size() == n &&
                           evaluated.size() == n && rate.size() == n,
                       path << ": the training history's lists differ in length");
  std::vector<EpochReport> h(n);
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    h[i].epoch = int(epoch[i]);
    h[i].loss = loss[i];
    h[i].reconstruction = rec[i];
    h[i].quantization = quant[i];
    h[i].seconds = secs[i];
    h[i].evaluated = evaluated[i] != 0;
    if (!h[i].evaluated) continue;
    h[i].collision_rate = rate[i];
    TESSERA_CHECK_FORMAT(at + levels <= used.size(), path << ": the training history's codes_used is too short");
    for (size_t l = 0; l < levels; ++l) h[i].codes_used.push_back(size_t(used[at++]));
  }
  TESSERA_CHECK_FORMAT(at == used.size(), path << ": the training history's codes_used is too long");
  return h;
}

// The key of a parameter's state in an optimiser's state map: libtorch 1.x uses the TensorImpl's address as a
// string, 2.x the address itself.
template <class StateMap>
typename StateMap::key_type optimizer_key(const StateMap&, const torch::Tensor& p) {
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>) {
    std::ostringstream s;  // c10::guts::to_string of the pointer, which libtorch 2 no longer has
    s << static_cast<const void*>(p.unsafeGetTensorImpl());
    return s.str();
  } else
    return static_cast<typename StateMap::key_type>(p.unsafeGetTensorImpl());
}

}  // namespace

uint64_t data_fingerprint(MatrixView<const float> x) {
  // A multiply-xorshift mix of every value's bits, row by row (any row stride): fast, and any change of a value,
  // of its place or of the shape changes it with overwhelming probability.
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(x.rows) * 0xC2B2AE3D27D4EB4Full) ^ uint64_t(x.cols);
  for (size_t i = 0; i < x.rows; ++i) {
    const float* r = x.row(i);
    for (size_t j = 0; j < x.cols; ++j) {
      uint32_t bits;
      std::memcpy(&bits, r + j, 4);
      h = (h ^ bits) * 0x100000001B3ull;
      h ^= h >> 29;
    }
  }
  return h;
}

void save_checkpoint(const std::string& path, const RQVAEImpl& model, const torch::optim::AdamW& opt,
                     const TrainingState& s) {
  std::vector<int64_t> steps;
  std::vector<at::Tensor> avg, avg_sq;
  const auto& state = opt.state();
  for (const torch::Tensor& p : model.parameters()) {
    const auto it = state.find(optimizer_key(state, p));
    if (it == state.end()) {
      steps.push_back(-1);
      avg.push_back(torch::empty({0}));
      avg_sq.push_back(torch::empty({0}));
      continue;
    }
    const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    steps.push_back(st.step());
    avg.push_back(st.exp_avg().detach().cpu().contiguous());
    avg_sq.push_back(st.exp_avg_sq().detach().cpu().contiguous());
  }
  IDict optimizer = new_dict();
  optimizer.insert("step", any_list(steps));
  optimizer.insert("exp_avg", any_list(avg));
  optimizer.insert("exp_avg_sq", any_list(avg_sq));

  IDict training = new_dict();
  training.insert("epoch", int64_t(s.epoch));
  training.insert("step", s.step);
  training.insert("rows", int64_t(s.rows));
  training.insert("cols", int64_t(s.cols));
  training.insert("data_fingerprint", as_signed(s.data_fingerprint));
  training.insert("batch_size", int64_t(s.batch_size));
  training.insert("seed", as_signed(s.seed));
  training.insert("best_loss", s.best_loss);
  training.insert("best_collision_rate", s.best_collision_rate);
  training.insert("history", history_value(s.history));

  IDict top = new_dict();
  top.insert(std::string("format"), std::string(kCheckpointFormat));
  top.insert("version", int64_t(kCheckpointVersion));
  top.insert("config", config_value(model.config()));
  top.insert("state_dict", state_dict_value(model));
  top.insert("optimizer", optimizer);
  top.insert("training", training);
  detail::save_pickle_file(c10::IValue(top), path);
}

namespace {
Checkpoint read_checkpoint_value(const std::string& path) {
  const c10::IValue v = detail::load_pickle_file(path, "this is not a tessera checkpoint");
  TESSERA_CHECK_FORMAT(v.isGenericDict(), path << " is not a tessera checkpoint (it holds a " << v.tagKind() << ")");
  const Reader top(path, v.toGenericDict(), "");
  TESSERA_CHECK_FORMAT(top.has("format") && top.at("format").isString() &&
                           top.at("format").toStringRef() == kCheckpointFormat,
                       path << " is not a tessera checkpoint (no \"format\": \"" << kCheckpointFormat << "\")");
  const int64_t version = top.integer("version");
  TESSERA_CHECK_FORMAT(version == kCheckpointVersion, path << ": checkpoint version " << version
                                                          << " is not supported (this build reads "
                                                          << kCheckpointVersion << ")");
  Checkpoint c;
  c.config = read_config(top.sub("config"));
  const Reader sd = top.sub("state_dict");
  for (const auto& item : sd.dict()) {
    TESSERA_CHECK_FORMAT(item.key().isString() && item.value().isTensor(),
                         path << ": state_dict holds an entry that is not a named tensor");
    c.state_dict.emplace_back(item.key().toStringRef(), item.value().toTensor());
  }
  const Reader opt = top.sub("optimizer");
  const auto steps = opt.integers("step");
  const auto avg = opt.tensors("exp_avg"), avg_sq = opt.tensors("exp_avg_sq");
  TESSERA_CHECK_FORMAT(avg.size() == steps.size() && avg_sq.size() == steps.size(),
                       path << ": the optimiser's lists differ in length");
  for (size_t i = 0; i < steps.size(); ++i) c.optimizer.push_back({steps[i], avg[i], avg_sq[i]});
  const Reader t = top.sub("training");
  TrainingState& s = c.training;
  s.epoch = int(t.integer("epoch"));
  s.step = t.integer("step");
  s.rows = size_t(t.integer("rows"));
  s.cols = size_t(t.integer("cols"));
  s.data_fingerprint = as_unsigned(t.integer("data_fingerprint"));
  s.batch_size = size_t(t.integer("batch_size"));
  s.seed = as_unsigned(t.integer("seed"));
  s.best_loss = t.real("best_loss");
  s.best_collision_rate = t.real("best_collision_rate");
  s.history = read_history(t.sub("history"), c.config.codebook_sizes.size(), path);
  TESSERA_CHECK_FORMAT(s.epoch >= 0 && s.history.size() == size_t(s.epoch),
                       path << ": " << s.history.size() << " epochs of history for epoch " << s.epoch);
  return c;
}
}  // namespace

Checkpoint read_checkpoint(const std::string& path) {
  try {
    return read_checkpoint_value(path);
  } catch (const c10::Error& e) {  // an entry of an unexpected element type
    const std::string what = e.what_without_backtrace();
    TESSERA_THROW_FORMAT(path << " is a damaged checkpoint: " << what.substr(0, what.find('\n')));
  }
}

void restore_optimizer(torch::optim::AdamW& opt, RQVAEImpl& model, const Checkpoint& c) {
  const auto params = model.parameters();
  TESSERA_CHECK_ARG(params.size() == c.optimizer.size(), "the checkpoint's optimiser has "
                                                            << c.optimizer.size() << " parameters, the model "
                                                            << params.size());
  auto& state = opt.state();
  for (size_t i = 0; i < params.size(); ++i) {
    const AdamWState& a = c.optimizer[i];
    if (a.step < 0) continue;
    TESSERA_CHECK_ARG(a.exp_avg.sizes().equals(params[i].sizes()) && a.exp_avg_sq.sizes().equals(params[i].sizes()),
                      "the checkpoint's optimiser state of parameter " << i << " does not fit its shape");
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(a.step);
    st->exp_avg(a.exp_avg.to(params[i].dtype()).clone());
    st->exp_avg_sq(a.exp_avg_sq.to(params[i].dtype()).clone());
    state[optimizer_key(state, params[i])] = std::move(st);
  }
}

std::vector<std::string> config_differences(const RQVAEConfig& a, const RQVAEConfig& b) {
  std::vector<std::string> d;
  auto check = [&d](bool same, const char* name) {
    if (!same) d.push_back(name);
  };
  check(a.in_dim == b.in_dim, "in_dim");
  check(a.e_dim == b.e_dim, "e_dim");
  check(a.layers == b.layers, "layers");
  check(a.codebook_sizes == b.codebook_sizes, "codebook_sizes");
  check(a.dropout == b.dropout, "dropout");
  check(a.batch_norm == b.batch_norm, "batch_norm");
  check(a.beta == b.beta, "beta");
  check(a.quant_weight == b.quant_weight, "quant_weight");
  check(a.residual_encoder == b.residual_encoder, "residual_encoder");
  check(a.residual_decoder == b.residual_decoder, "residual_decoder");
  check(a.partial_sum_commitment == b.partial_sum_commitment, "partial_sum_commitment");
  check(a.seed == b.seed, "seed");
  check(a.sk_epsilons == b.sk_epsilons, "sk_epsilons");
  check(a.sk_iters == b.sk_iters, "sk_iters");
  return d;
}

}  // namespace tessera::neural
