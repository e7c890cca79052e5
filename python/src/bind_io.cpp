// Readers and writers: .npy, .npz, texmex (.fvecs/.bvecs/.ivecs), MNIST idx, by extension.
#include <algorithm>
#include <fstream>

#include "common.h"
#include "tessera/core/error.h"
#include "tessera/io/idx.h"
#include "tessera/io/npy.h"
#include "tessera/io/npy_shards.h"
#include "tessera/io/npz.h"
#include "tessera/io/texmex.h"
#include "tessera/io/vectors.h"

namespace tessera_py {

namespace {

/// Read the header of a .npy file to choose float32 or int32.
bool npy_is_integer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error(g_ioerror, "cannot open " + path);
  std::string buf(12, '\0');
  in.read(buf.data(), 12);
  buf.resize(size_t(in.gcount()));
  size_t need = buf.size();
  if (buf.size() >= 10 && buf.compare(0, 6, "\x93NUMPY") == 0) {
    const auto b = [&](size_t i) { return size_t(static_cast<unsigned char>(buf[i])); };
    const size_t prefix = b(6) == 1 ? 10 : 12;
    size_t hlen = b(8) | b(9) << 8;
    if (prefix == 12 && buf.size() >= 12) hlen |= b(10) << 16 | b(11) << 24;
    need = std::min<size_t>(prefix + hlen, size_t(1) << 26);
  }
  if (need > buf.size()) {
    const size_t have = buf.size();
    buf.resize(need);
    in.read(buf.data() + have, std::streamsize(need - have));
    buf.resize(have + size_t(in.gcount()));
  }
  const tessera::NpyHeader h = [&] {
    try {
      return tessera::parse_npy_header(buf.data(), buf.size());
    } catch (const tessera::FormatError& e) {
      // Name the file rather than the in-memory image ("npy image: ...").
      std::string msg = e.what();
      const std::string memory_name = "npy image: ";
      if (msg.compare(0, memory_name.size(), memory_name) == 0) msg.erase(0, memory_name.size());
      throw tessera::FormatError(path + ": " + msg, e.location());
    }
  }();
  const std::string& d = h.descr;
  const size_t at = (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '=' || d[0] == '|')) ? 1 : 0;
  return at < d.size() && (d[at] == 'i' || d[at] == 'u') && d.substr(at) != "u1" && d.substr(at) != "i1";
}

// A Python function path -> ndarray over a C++ reader `path -> Matrix<T>` (GIL released while reading).
template <class T>
void def_matrix_reader(py::module_& m, const char* name, tessera::Matrix<T> (*read)(const std::string&),
                       const char* doc) {
  m.def(
      name,
      [read](const py::object& path) {
        const std::string p = path_str(path);
        return matrix_to_numpy(without_gil(nullptr, [&] { return read(p); }));
      },
      "path"_a, doc);
}

}  // namespace

void bind_io(py::module_& m) {
  m.def(
      "read_vectors",
      [](const py::object& path) {
        const std::string p = path_str(path);
        return matrix_to_numpy(without_gil(nullptr, [&] { return tessera::read_vectors(p); }));
      },
      "path"_a,
      "Read vectors by file extension: .npy, .fvecs, .bvecs, .ivecs, idx (-ubyte, optionally .gz).\n"
      "Returns x: n × d float32 (a little-endian float32 .npy is memory-mapped copy-on-write, not read).");
  m.def(
      "read_shards",
      [](const py::object& paths) {
        std::vector<std::string> list;
        const bool one = py::isinstance<py::str>(paths) || py::hasattr(paths, "__fspath__");
        if (!one)
          for (const py::handle p : paths) list.push_back(path_str(py::reinterpret_borrow<py::object>(p)));
        const std::string spec = one ? path_str(paths) : std::string();
        return matrix_to_numpy(without_gil(nullptr, [&] {
          const tessera::NpyShards s = one ? tessera::NpyShards::open(spec) : tessera::NpyShards::open(list);
          tessera::FloatMatrix x = s.read_all();
          s.check_finite(0, x.view());
          return x;
        }));
      },
      "paths"_a,
      "Read .npy shards as one n × d float32 matrix: a path (one .npy file, a directory of .npy files, or a glob\n"
      "such as 'emb/part-*.npy'; sorted path order) or a list of paths (in that order). All shards must have the\n"
      "same width and dtype and at least one row; NaN/Inf is an InvalidArgument naming the shard and row.\n"
      "A single float32 file is memory-mapped, not copied.");
  m.def(
      "read_npy",
      [](const py::object& path) -> py::array {
        const std::string p = path_str(path);
        if (npy_is_integer(p)) return matrix_to_numpy(without_gil(nullptr, [&] { return tessera::read_npy_i32(p); }));
        return matrix_to_numpy(without_gil(nullptr, [&] { return tessera::read_npy_f32(p); }));
      },
      "path"_a,
      "Read a 2-D .npy file: float16/32/64 (and int8/uint8) as n × d float32, wider integers as n × m int32\n"
      "(int64 values must fit in int32). Fortran order, ndim != 2 and truncated files raise FormatError.");
  m.def(
      "write_npy",
      [](const py::object& path, const py::object& array) {
        const std::string p = path_str(path);
        py::array a = as_numeric_array(array, "array", "biuf", 2, "2-D float32, int32 or int64");
        const char kind = a.dtype().kind();
        const size_t item = size_t(a.dtype().itemsize());
        if (kind == 'f') {
          F32In in = as_f32(a, "array");
          without_gil(nullptr, [&] { tessera::write_npy(p, in.view); });
        } else if (kind == 'b' || item < 4 || (kind == 'i' && item == 4) || (kind == 'u' && item < 4)) {
          I32In in = as_i32(a, "array");
          without_gil(nullptr, [&] { tessera::write_npy(p, in.view); });
        } else {
          py::array b = numpy().attr("array")(a, "dtype"_a = "int64", "order"_a = "C", "copy"_a = true);
          tessera::MatrixView<const int64_t> v(static_cast<const int64_t*>(b.data()), size_t(b.shape(0)),
                                               size_t(b.shape(1)));
          without_gil(nullptr, [&] { tessera::write_npy(p, v); });
        }
      },
      "path"_a, "array"_a,
      "Write a 2-D array to .npy atomically: floats as float32, int64/uint32/uint64 as int64, other\n"
      "integers as int32.");
  m.def(
      "read_npz",
      [](const py::object& path) {
        const std::string p = path_str(path);
        auto members = without_gil(nullptr, [&] { return tessera::read_npz_f32(p); });
        py::dict out;
        for (auto& [name, mat] : members) out[py::str(name)] = matrix_to_numpy(std::move(mat));
        return out;
      },
      "path"_a,
      "Read a .npz archive (stored or deflated) of 2-D float arrays: {name: n × d float32}, in archive order.");
  m.def(
      "write_npz",
      [](const py::object& path, const py::dict& arrays, bool compress) {
        const std::string p = path_str(path);
        std::vector<F32In> keep;
        std::vector<std::pair<std::string, tessera::MatrixView<const float>>> members;
        keep.reserve(arrays.size());
        for (auto [k, v] : arrays) {
          keep.push_back(as_f32(v, "npz member", "2-D float"));
          members.emplace_back(py::str(k).cast<std::string>(), keep.back().view);
        }
        without_gil(nullptr, [&] { tessera::write_npz(p, members, compress); });
      },
      "path"_a, "arrays"_a, "compress"_a = true,
      "Write {name: 2-D array} to a .npz archive (members stored as float32) atomically; deflated when\n"
      "compress. numpy.load reads it.");
  // Whole-file readers that return one matrix: the same binding for each.
  def_matrix_reader(m, "read_fvecs", &tessera::read_fvecs, "Read a texmex .fvecs file: n × d float32.");
  def_matrix_reader(m, "read_bvecs", &tessera::read_bvecs, "Read a texmex .bvecs file (uint8 values): n × d float32.");
  def_matrix_reader(m, "read_ivecs", &tessera::read_ivecs, "Read a texmex .ivecs file (e.g. ground truth): n × d int32.");
  def_matrix_reader(m, "read_idx", &tessera::read_idx, "Read an MNIST idx file of uint8 data (gzipped or not): n × (product of other dims) float32.");
}

}  // namespace tessera_py
