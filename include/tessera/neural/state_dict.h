// PyTorch state_dict files: a model's parameters and buffers under PyTorch's names and in its order
// (a module's own parameters, then its own buffers, then its children's, depth first — what
// torch.nn.Module.state_dict() gives), saved as a pickled dict of tensors that Python's torch.load reads.
// With RQVAE's layout these are MiniOneRec's names (`encoder.mlp_layers.1.weight`, …,
// `rq.vq_layers.0.embedding.weight`, …, `decoder.…`), so `model.load_state_dict(torch.load(path))` works there.
#pragma once
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

namespace tessera::neural {

/// (name, tensor) for every parameter and buffer of `module`, in PyTorch's state_dict order. The tensors
/// share storage with the module.
std::vector<std::pair<std::string, torch::Tensor>> named_state(const torch::nn::Module& module);

/// named_state as a dict of detached, contiguous CPU tensors: the value a state_dict file holds.
c10::Dict<std::string, at::Tensor> state_dict_value(const torch::nn::Module& module);

/// Write module's state (named_state) to `path` as torch.save would (zip archive holding a pickled dict of
/// tensors, readable by torch.load with weights_only=True), atomically (temporary file + rename): an error
/// leaves no partial file.
void save_state_dict(const torch::nn::Module& module, const std::string& path);

/// The (name, tensor) pairs of a state_dict file written by save_state_dict or by Python's
/// torch.save(dict(model.state_dict()), path). FormatError naming the file when it is not one. A file
/// holding the collections.OrderedDict that state_dict() returns (torch.save(model.state_dict(), path)) is a
/// FormatError that says to save dict(...) instead: libtorch 1.13's unpickler cannot read an OrderedDict.
std::vector<std::pair<std::string, torch::Tensor>> read_state_dict(const std::string& path);

/// Copy a state into module, strictly: every name of named_state(module) must be present with the same
/// shape, and no other name; otherwise InvalidArgument naming the missing, unexpected or misshapen
/// entries (the module is then unchanged). Values are converted to the module's dtypes.
void load_state(torch::nn::Module& module, const std::vector<std::pair<std::string, torch::Tensor>>& state);

/// load_state(module, read_state_dict(path)); errors also name the file.
void load_state_dict(torch::nn::Module& module, const std::string& path);

}  // namespace tessera::neural
