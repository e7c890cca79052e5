// HDF5 files as ann-benchmarks distributes its data sets: 2-D datasets "train" and "test" (float32 vectors),
// "neighbors" (int32 ids of each test vector's true nearest train vectors) and "distances", and a file
// attribute "distance" ("euclidean", "angular", ...). Read through Debian's libhdf5 when tessera was built
// with it (hdf5_available()); otherwise every call is an InvalidArgument that says so.
#pragma once
#include <string>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

bool hdf5_available();

/// The 2-D numeric dataset `dataset` of the file as float32 (other numeric types are converted).
/// A missing dataset is an InvalidArgument that lists the file's datasets.
FloatMatrix read_hdf5_f32(const std::string& path, const std::string& dataset);
/// The same as int32; the dataset must hold integers.
CodeMatrix read_hdf5_i32(const std::string& path, const std::string& dataset);
/// Names of the datasets at the file's root, in the file's order.
std::vector<std::string> hdf5_datasets(const std::string& path);
/// A string attribute of the file's root ("" when absent), e.g. ann-benchmarks' "distance".
std::string hdf5_root_attribute(const std::string& path, const std::string& name);

/// "data.hdf5:test" → {"data.hdf5", "test"}; a path without a ":name" suffix gets `default_dataset`.
/// Applies to .hdf5 / .h5 paths only (is_hdf5_path).
bool is_hdf5_path(const std::string& path);
std::pair<std::string, std::string> split_hdf5_path(const std::string& path, const std::string& default_dataset);

}  // namespace tessera
