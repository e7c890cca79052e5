#include "tessera/neural/state_dict.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/serialize.h>

#include <map>
#include <sstream>

#include "neural/pickle_file.h"
#include "tessera/core/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera::neural {

namespace {
void collect(const torch::nn::Module& m, const std::string& prefix,
             std::vector<std::pair<std::string, torch::Tensor>>& out) {
  for (const auto& p : m.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& c : m.named_children()) collect(*c.value(), prefix + c.key() + ".", out);
}

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream s;
  s << "(";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  s << (t.dim() == 1 ? ",)" : ")");
  return s.str();
}

// Up to 5 names, then "… (n in all)".
std::string name_list(const std::vector<std::string>& names) {
  std::ostringstream s;
  for (size_t i = 0; i < names.size() && i < 5; ++i) s << (i ? ", " : "") << names[i];
  if (names.size() > 5) s << ", … (" << names.size() << " in all)";
  return s.str();
}
}  // namespace

namespace detail {

namespace {
// torch.save's format: a zip archive holding data.pkl (pickle protocol 2) and one record per tensor storage.
// As torch::pickle_save, but the dict is pickled untagged: tagged, it is wrapped in a call of
// torch.jit._pickle.restore_type_tag, which torch.load(weights_only=True) — the default from torch 2.6 on —
// refuses.
std::vector<char> pickle_untagged(const c10::IValue& value) {
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* p, size_t n) { pickle.insert(pickle.end(), p, p + n); },
                              /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
                              /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(value);
  pickler.stop();
  std::vector<char> out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* p, size_t n) {
    out.insert(out.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
    return n;
  });
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  const std::vector<at::Tensor>& tensors = pickler.tensorData();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::jit::WriteableTensorData data = torch::jit::getWriteableTensorData(tensors[i]);
    writer.writeRecord("data/" + std::to_string(i), data.data(), data.sizeInBytes());
  }
  writer.writeEndOfFile();
  return out;
}
}  // namespace

void save_pickle_file(const c10::IValue& value, const std::string& path) {
  std::vector<char> bytes;
  try {
    bytes = pickle_untagged(value);
  } catch (const c10::Error& e) {
    TESSERA_THROW_IO("cannot serialise " << path << ": " << e.what_without_backtrace());
  }
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

c10::IValue load_pickle_file(const std::string& path, const std::string& hint) {
  const std::string bytes = read_file(path);
  try {
    return torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const c10::Error& e) {
    // libtorch's unpickler turns a collections.OrderedDict (what Module.state_dict() returns) into None
    // and then fails on its items.
    const std::string what = e.what_without_backtrace();
    if (what.find("but got None") != std::string::npos)
      TESSERA_THROW_FORMAT(path << " holds a collections.OrderedDict, which libtorch cannot read: " << hint);
    TESSERA_THROW_FORMAT(path << " is not a file of torch.save: " << what.substr(0, what.find('\n')));
  }
}

}  // namespace detail

std::vector<std::pair<std::string, torch::Tensor>> named_state(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  collect(module, "", out);
  return out;
}

c10::Dict<std::string, at::Tensor> state_dict_value(const torch::nn::Module& module) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : named_state(module)) dict.insert(name, t.detach().cpu().contiguous());
  return dict;
}

void save_state_dict(const torch::nn::Module& module, const std::string& path) {
  detail::save_pickle_file(c10::IValue(state_dict_value(module)), path);
}

std::vector<std::pair<std::string, torch::Tensor>> read_state_dict(const std::string& path) {
  const c10::IValue v = detail::load_pickle_file(
      path, "save a plain dict instead, torch.save(dict(model.state_dict()), path), or convert the file with "
      "`python -m tessera.minionerec FILE --out DIR` (also for MiniOneRec's .pth checkpoints)");
  TESSERA_CHECK_FORMAT(v.isGenericDict(), path << " does not hold a dict of tensors (it holds a "
                                                << v.tagKind() << "); save dict(model.state_dict())");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : v.toGenericDict()) {
    TESSERA_CHECK_FORMAT(item.key().isString(), path << ": a state_dict key is a " << item.key().tagKind()
                                                     << ", not a string");
    TESSERA_CHECK_FORMAT(item.value().isTensor(), path << ": entry " << item.key().toStringRef() << " is a "
                                                       << item.value().tagKind() << ", not a tensor");
    out.emplace_back(item.key().toStringRef(), item.value().toTensor());
  }
  return out;
}

void load_state(torch::nn::Module& module, const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  std::map<std::string, torch::Tensor> given;
  std::vector<std::string> duplicate;
  for (const auto& [name, t] : state)
    if (!given.emplace(name, t).second) duplicate.push_back(name);
  TESSERA_CHECK_ARG(duplicate.empty(), "state_dict names repeated: " << name_list(duplicate));
  const auto own = named_state(module);
  std::vector<std::string> missing, misshapen, unexpected;
  std::map<std::string, int> known;
  for (const auto& [name, t] : own) {
    known[name] = 1;
    auto it = given.find(name);
    if (it == given.end())
      missing.push_back(name);
    else if (!it->second.sizes().equals(t.sizes()))
      misshapen.push_back(name + " is " + shape_string(it->second) + ", the model's " + shape_string(t));
  }
  for (const auto& [name, t] : given)
    if (!known.count(name)) unexpected.push_back(name);
  std::ostringstream why;
  if (!missing.empty()) why << "missing: " << name_list(missing);
  if (!unexpected.empty()) why << (why.tellp() > 0 ? "; " : "") << "unexpected: " << name_list(unexpected);
  if (!misshapen.empty()) why << (why.tellp() > 0 ? "; " : "") << "shape mismatch: " << name_list(misshapen);
  TESSERA_CHECK_ARG(why.tellp() == 0, "the state_dict does not fit the model (" << why.str() << ")");
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : own) t.copy_(given.at(name).to(t.dtype()));
}

void load_state_dict(torch::nn::Module& module, const std::string& path) {
  const auto state = read_state_dict(path);
  try {
    load_state(module, state);
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_ARG(path << ": " << e.what());
  }
}

}  // namespace tessera::neural
