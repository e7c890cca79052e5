// torch.save's file format for any value torch.load(weights_only=True) accepts (dicts, lists, strings,
// numbers, tensors): a zip archive holding data.pkl and one record per tensor storage. Shared by the
// state_dict files and the training checkpoints.
#pragma once
#include <ATen/core/ivalue.h>

#include <string>

namespace tessera::neural::detail {

/// Write `value` to `path` as torch.save would, atomically (temporary file + rename). IOError on failure.
void save_pickle_file(const c10::IValue& value, const std::string& path);

/// Read a file written by save_pickle_file or by Python's torch.save. FormatError naming the file when it is
/// not one; a collections.OrderedDict (which libtorch 1.13 cannot read) gets a message saying so, with `hint`.
c10::IValue load_pickle_file(const std::string& path, const std::string& hint);

}  // namespace tessera::neural::detail
