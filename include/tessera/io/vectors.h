// One entry point for vector inputs: picks the reader by file extension.
#pragma once
#include <string>

#include "tessera/core/matrix.h"

namespace tessera {

/// .npy, .fvecs, .bvecs, .ivecs, idx (.idx3-ubyte / -ubyte, optionally .gz), HDF5 (.hdf5 / .h5: the dataset
/// "train", or the one named after a colon: "sift-128-euclidean.hdf5:test") → n × d float32.
/// Unknown extensions are an InvalidArgument naming the supported ones.
FloatMatrix read_vectors(const std::string& path);

}  // namespace tessera
