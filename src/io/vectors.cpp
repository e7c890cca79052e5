#include "tessera/io/vectors.h"

#include <algorithm>
#include <cctype>

#include "tessera/io/hdf5.h"
#include "tessera/io/idx.h"
#include "tessera/io/npy.h"
#include "tessera/io/texmex.h"

namespace tessera {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

FloatMatrix read_vectors(const std::string& path) {
  std::string name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  // ann-benchmarks files: the "train" vectors, or another dataset named after a colon ("sift.hdf5:test").
  if (is_hdf5_path(name)) {
    const auto [file, dataset] = split_hdf5_path(path, "train");
    return read_hdf5_f32(file, dataset);
  }
  if (ends_with(name, ".npy")) return read_npy_f32(path);
  if (ends_with(name, ".fvecs")) return read_fvecs(path);
  if (ends_with(name, ".bvecs")) return read_bvecs(path);
  if (ends_with(name, ".ivecs")) {
    const CodeMatrix c = read_ivecs(path);
    FloatMatrix m(c.rows(), c.cols());
    std::transform(c.data(), c.data() + c.size(), m.data(), [](int32_t v) { return float(v); });
    return m;
  }
  // MNIST idx: train-images-idx3-ubyte(.gz) as distributed, or a plain .idx(.gz); gzip is detected by content.
  if (ends_with(name, "-ubyte") || ends_with(name, "-ubyte.gz") || ends_with(name, ".idx") ||
      ends_with(name, ".idx.gz"))
    return read_idx(path);
  TESSERA_THROW_ARG(path << ": cannot tell the vector format from the file name: supported are .npy, .fvecs, "
                         << ".bvecs, .ivecs, MNIST idx (*-ubyte, *-ubyte.gz, *.idx, *.idx.gz) and HDF5 "
                         << "(.hdf5 / .h5, dataset 'train' or file.hdf5:NAME)");
}

}  // namespace tessera
