// The pybind11 extension tessera._tessera: numpy in, numpy out, the GIL released around all heavy work.
//
// Arrays: float inputs are used in place when they are C-contiguous, aligned, native float32; any other
// real dtype or layout is converted with one copy. Arrays the library returns (readers, k-means results,
// semantic IDs) are handed to numpy without a copy: a capsule owns the C++ buffer.
//
// Errors (tessera::Error family → Python):
//   tessera.Error            base of everything below (an Exception)
//   tessera.InvalidArgument  (Error, ValueError)   bad shapes, NaN/Inf, N < K, infeasible bounds, ...
//   tessera.FormatError      (Error, ValueError)   truncated / corrupted / foreign files
//   tessera.IOError          (Error, OSError)      the OS refused to open, read, write or rename
// Wrong Python types raise TypeError; wrong ndim or array shapes raise tessera.InvalidArgument.
//
// Progress: a Python callable(stage: str, done: int, total: int, value: float), called with the GIL held.
// An exception it raises (KeyboardInterrupt included) stops the computation and propagates.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "tessera/cluster/balanced_assignment.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/core/error.h"
#include "tessera/core/matrix.h"
#include "tessera/core/progress.h"
#include "tessera/core/threading.h"
#include "tessera/io/idx.h"
#include "tessera/io/npy.h"
#include "tessera/io/npz.h"
#include "tessera/io/texmex.h"
#include "tessera/io/vectors.h"
#include "tessera/quant/residual_quantizer.h"
#include "tessera/quant/serialization.h"
#include "tessera/sid/collisions.h"
#include "tessera/sid/index_json.h"
#include "tessera/sid/metrics.h"
#include "tessera/sid/pipeline.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

// ---------------------------------------------------------------------------------------------------
// Progress callbacks.

struct CallbackAbort : std::exception {
  const char* what() const noexcept override { return "progress callback raised"; }
};

// Owns the Python callable (destroyed with the GIL held, on the binding's stack frame); the ProgressFn
// handed to the library captures a raw pointer to it.
class Progress {
 public:
  explicit Progress(py::object fn) : fn_(std::move(fn)) {
    if (!fn_.is_none() && !PyCallable_Check(fn_.ptr()))
      throw py::type_error("progress must be a callable(stage: str, done: int, total: int, value: float) or None");
  }
  tessera::ProgressFn fn() {
    if (fn_.is_none()) return {};
    return [this](const tessera::ProgressEvent& e) {
      py::gil_scoped_acquire gil;
      if (error_) throw CallbackAbort();
      try {
        fn_(e.stage, e.done, e.total, e.value);
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      } catch (py::error_already_set& ex) {
        error_ = std::make_unique<py::error_already_set>(std::move(ex));
        throw CallbackAbort();
      }
    };
  }
  /// Re-raise the callback's Python exception (after an abort).
  [[noreturn]] void rethrow() {
    if (error_) throw *error_;
    throw std::runtime_error("progress callback aborted");
  }

 private:
  py::object fn_;
  std::unique_ptr<py::error_already_set> error_;
};

/// Run f() with the GIL released; a progress abort re-raises the callback's exception.
template <class F>
auto without_gil(Progress* progress, F&& f) -> decltype(f()) {
  try {
    py::gil_scoped_release release;
    return f();
  } catch (const CallbackAbort&) {
    if (progress) progress->rethrow();
    throw;
  }
}

// ---------------------------------------------------------------------------------------------------
// numpy conversion.

py::module_& numpy() {
  static py::module_ np = py::module_::import("numpy");
  return np;
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

[[noreturn]] void throw_invalid(const std::string& msg);  // raises tessera.InvalidArgument

py::array as_numeric_array(py::handle obj, const char* name, const char* kinds, int ndim, const char* shape_doc) {
  py::array a = numpy().attr("asarray")(obj);
  const char kind = a.dtype().kind();
  if (!std::strchr(kinds, kind))
    throw py::type_error(std::string(name) + " must be a numeric array (" + shape_doc + "), got dtype " +
                         py::str(a.dtype()).cast<std::string>());
  if (a.ndim() != ndim)
    throw_invalid(std::string(name) + " must be a " + std::to_string(ndim) + "-D array (" + shape_doc +
                  "), got shape " + shape_str(a));
  return a;
}

/// A float32 view of a 2-D array; zero-copy for aligned C-contiguous native float32.
struct F32In {
  py::array arr;  // keeps the data alive
  tessera::MatrixView<const float> view;
};

F32In as_f32(py::handle obj, const char* name, const char* shape_doc = "n × d float32") {
  py::array a = as_numeric_array(obj, name, "iuf", 2, shape_doc);
  const bool ready = py::isinstance<py::array_t<float>>(a) && (a.flags() & py::array::c_style) &&
                     (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) && a.dtype().byteorder() != '>';
  if (!ready) a = numpy().attr("array")(a, "dtype"_a = "float32", "order"_a = "C", "copy"_a = true);
  F32In in{a, {static_cast<const float*>(a.data()), size_t(a.shape(0)), size_t(a.shape(1))}};
  return in;
}

struct I32In {
  py::array arr;
  tessera::MatrixView<const int32_t> view;
};

I32In as_i32(py::handle obj, const char* name, const char* shape_doc = "n × M int32") {
  py::array a = as_numeric_array(obj, name, "iu", 2, shape_doc);
  const bool ready = py::isinstance<py::array_t<int32_t>>(a) && (a.flags() & py::array::c_style) &&
                     (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) && a.dtype().byteorder() != '>';
  if (!ready) {
    if (a.size() > 0 && a.dtype().itemsize() >= 4) {
      const long long lo = numpy().attr("min")(a).cast<long long>();
      const bool big = a.dtype().kind() == 'u' ? numpy().attr("max")(a).cast<unsigned long long>() > 2147483647ULL
                                                : numpy().attr("max")(a).cast<long long>() > 2147483647LL;
      if (lo < -2147483648LL || big) throw_invalid(std::string(name) + " has values outside the int32 range");
    }
    a = numpy().attr("array")(a, "dtype"_a = "int32", "order"_a = "C", "copy"_a = true);
  }
  return {a, {static_cast<const int32_t*>(a.data()), size_t(a.shape(0)), size_t(a.shape(1))}};
}

void set_readonly(py::array& a) { a.attr("setflags")("write"_a = false); }

/// A numpy array sharing a library matrix's buffer (the capsule keeps the buffer alive).
template <class T>
py::array matrix_to_numpy(tessera::Matrix<T> m, bool writeable = true) {
  const std::vector<py::ssize_t> shape{py::ssize_t(m.rows()), py::ssize_t(m.cols())};
  py::array out;
  if (m.size() == 0 || m.data() == nullptr) {
    out = py::array_t<T>(shape);
  } else {
    auto* holder = new tessera::Matrix<T>(std::move(m));
    py::capsule cap(holder, [](void* p) { delete static_cast<tessera::Matrix<T>*>(p); });
    out = py::array_t<T>(shape, {py::ssize_t(holder->cols() * sizeof(T)), py::ssize_t(sizeof(T))}, holder->data(),
                         cap);
  }
  if (!writeable) set_readonly(out);
  return out;
}

template <class T>
py::array vector_to_numpy(std::vector<T> v) {
  if (v.empty()) return py::array_t<T>(0);
  auto* holder = new std::vector<T>(std::move(v));
  py::capsule cap(holder, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({py::ssize_t(holder->size())}, {py::ssize_t(sizeof(T))}, holder->data(), cap);
}

py::array view_copy(tessera::MatrixView<const float> v) { return matrix_to_numpy(tessera::FloatMatrix::copy_of(v)); }

std::vector<std::string> as_strings(py::handle seq, const char* name) {
  if (py::isinstance<py::str>(seq) || py::isinstance<py::bytes>(seq))
    throw py::type_error(std::string(name) + " must be a sequence of strings, not a single string");
  std::vector<std::string> out;
  for (py::handle item : py::iter(seq)) out.push_back(py::str(item).cast<std::string>());
  return out;
}

std::optional<std::vector<std::string>> opt_strings(const py::object& seq, const char* name, size_t n) {
  if (seq.is_none()) return std::nullopt;
  auto v = as_strings(seq, name);
  if (v.size() != n)
    throw_invalid(std::string(name) + ": there are " + std::to_string(n) + " items but " + std::to_string(v.size()) +
                  " " + name + " were given");
  return v;
}

py::object json_loads(const std::string& s) { return py::module_::import("json").attr("loads")(s); }

std::string path_str(const py::object& p) { return py::str(py::module_::import("os").attr("fspath")(p)); }

std::optional<size_t> opt_size(const py::object& o) {
  if (o.is_none()) return std::nullopt;
  const long long v = o.cast<long long>();
  if (v < 0) throw_invalid("size bounds must be non-negative, got " + std::to_string(v));
  return size_t(v);
}

tessera::KMeansInit parse_init(const std::string& s) {
  if (s == "k-means++" || s == "kmeans++") return tessera::KMeansInit::kmeans_plus_plus;
  if (s == "random") return tessera::KMeansInit::random;
  throw_invalid("init must be 'k-means++' or 'random', got '" + s + "'");
}

tessera::Dedup parse_dedup(std::string s) {
  if (s == "append_all") s = "append-all";
  return tessera::parse_dedup(s);
}

// ---------------------------------------------------------------------------------------------------
// Exceptions.

PyObject* g_error = nullptr;
PyObject* g_invalid = nullptr;
PyObject* g_format = nullptr;
PyObject* g_ioerror = nullptr;

void throw_invalid(const std::string& msg) {
  PyErr_SetString(g_invalid, msg.c_str());
  throw py::error_already_set();
}

PyObject* make_exception(py::module_& m, const char* name, py::tuple bases, const char* doc) {
  const std::string qual = std::string("tessera.") + name;
  PyObject* t = PyErr_NewExceptionWithDoc(qual.c_str(), doc, bases.ptr(), nullptr);
  if (!t) throw py::error_already_set();
  m.add_object(name, py::handle(t));  // the module keeps a reference; so do we (never released)
  return t;
}

// ---------------------------------------------------------------------------------------------------
// ResidualQuantizer wrapper: the model, a reader/writer lock (heavy calls run without the GIL, so
// another Python thread may use the same model meanwhile) and Python-side state.

struct PyRQ {
  std::shared_ptr<tessera::ResidualQuantizer> q;
  std::shared_mutex mu;
  std::atomic<std::thread::id> writer{};
  py::object progress = py::none();
  py::object last_fit_report = py::none();
  py::object metadata = py::none();

  explicit PyRQ(std::shared_ptr<tessera::ResidualQuantizer> m) : q(std::move(m)) {}

  void check_reentry() const {
    if (writer.load() == std::this_thread::get_id())
      throw std::runtime_error("this ResidualQuantizer is being modified by the call that invoked this progress "
                               "callback; it cannot be used until that call returns");
  }
  void require_trained(const char* what) const {
    if (!q->is_trained()) throw_invalid(std::string(what) + " needs a trained model: call fit() or train() first");
  }
};

/// Run f() without the GIL under the model's exclusive lock.
template <class F>
auto write_locked(PyRQ& r, Progress* progress, F&& f) -> decltype(f()) {
  r.check_reentry();
  return without_gil(progress, [&]() -> decltype(f()) {
    std::unique_lock lock(r.mu);
    r.writer = std::this_thread::get_id();
    struct Clear {
      PyRQ& r;
      ~Clear() { r.writer = std::thread::id{}; }
    } clear{r};
    return f();
  });
}

/// Run f() without the GIL under the model's shared lock.
template <class F>
auto read_locked(PyRQ& r, F&& f) -> decltype(f()) {
  r.check_reentry();
  return without_gil(nullptr, [&]() -> decltype(f()) {
    std::shared_lock lock(r.mu);
    return f();
  });
}

py::list reports_to_list(const std::vector<tessera::LevelReport>& reps) {
  py::list out;
  for (size_t m = 0; m < reps.size(); ++m) {
    const auto& r = reps[m];
    out.append(py::dict("level"_a = m, "codebook_size"_a = r.codebook_size, "mse_before"_a = r.mse_before,
                        "mse_after"_a = r.mse_after, "seconds"_a = r.seconds, "iterations"_a = r.iterations,
                        "warm_start_rows"_a = r.warm_start_rows, "size_min"_a = r.bounds.lo, "size_max"_a = r.bounds.hi));
  }
  return out;
}

F32In check_dim(const PyRQ& r, py::handle x, const char* name) {
  F32In in = as_f32(x, name);
  if (in.view.cols != r.q->dim())
    throw_invalid(std::string("dimension mismatch: ") + name + " has " + std::to_string(in.view.cols) +
                  " columns, the model has " + std::to_string(r.q->dim()));
  return in;
}

I32In check_codes(const PyRQ& r, py::handle codes) {
  I32In in = as_i32(codes, "codes", "n × M int32");
  if (in.view.cols != r.q->num_codebooks())
    throw_invalid("codes have " + std::to_string(in.view.cols) + " columns, the model has " +
                  std::to_string(r.q->num_codebooks()) + " codebooks");
  return in;
}

std::vector<tessera::FloatMatrix> codebooks_from_list(const PyRQ& r, py::handle books) {
  std::vector<tessera::FloatMatrix> out;
  for (py::handle b : py::iter(books)) {
    F32In in = as_f32(b, "codebook", "K_m × d float32");
    out.push_back(tessera::FloatMatrix::copy_of(in.view));
  }
  const auto& sizes = r.q->codebook_sizes();
  if (out.size() != sizes.size())
    throw_invalid("expected " + std::to_string(sizes.size()) + " codebooks, got " + std::to_string(out.size()));
  for (size_t m = 0; m < out.size(); ++m)
    if (out[m].rows() != sizes[m] || out[m].cols() != r.q->dim())
      throw_invalid("codebook " + std::to_string(m) + " is " + std::to_string(out[m].rows()) + " × " +
                    std::to_string(out[m].cols()) + ", expected " + std::to_string(sizes[m]) + " × " +
                    std::to_string(r.q->dim()));
  return out;
}

std::unique_ptr<PyRQ> load_rq(const std::string& path) {
  std::string meta;
  std::unique_ptr<tessera::Quantizer> q;
  {
    py::gil_scoped_release release;
    q = tessera::load_quantizer(path, &meta);
  }
  auto* rq = dynamic_cast<tessera::ResidualQuantizer*>(q.get());
  if (!rq) {
    PyErr_SetString(g_format, (path + ": not a residual-quantizer model").c_str());
    throw py::error_already_set();
  }
  q.release();
  auto out = std::make_unique<PyRQ>(std::shared_ptr<tessera::ResidualQuantizer>(rq));
  out->metadata = json_loads(meta.empty() ? "{}" : meta);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Semantic IDs wrapper.

struct PySids {
  tessera::SemanticIds s;
  py::object model;  // the PyRQ wrapping s.model
};

PyRQ& model_of(PySids& s) { return s.model.cast<PyRQ&>(); }

std::string sids_index_json(PySids& s, const py::object& keys) {
  auto k = opt_strings(keys, "keys", s.s.ids.rows());
  return without_gil(nullptr, [&] {
    return tessera::index_json(s.s.ids.view(), s.s.codes.cols(), s.s.format, k ? &*k : nullptr);
  });
}

// ---------------------------------------------------------------------------------------------------
// I/O helpers.

/// Read the header of a .npy file to choose float32 or int32.
bool npy_is_integer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    PyErr_SetString(g_ioerror, ("cannot open " + path).c_str());
    throw py::error_already_set();
  }
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
      // Name the file rather than the in-memory image.
      throw tessera::FormatError(path + ": " + e.what());
    }
  }();
  const std::string& d = h.descr;
  const size_t at = (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '=' || d[0] == '|')) ? 1 : 0;
  return at < d.size() && (d[at] == 'i' || d[at] == 'u') && d.substr(at) != "u1" && d.substr(at) != "i1";
}

}  // namespace

// ===================================================================================================

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

PYBIND11_MODULE(_tessera, m) {
  m.doc() = "tessera: vector quantization and semantic IDs (C++ core, numpy in and out).";
  m.attr("__version__") = "0.1.0";

  // --- exceptions ------------------------------------------------------------------------------------
  g_error = make_exception(m, "Error", py::make_tuple(py::handle(PyExc_Exception)),
                           "Base of every error tessera raises.");
  g_invalid = make_exception(m, "InvalidArgument", py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError)),
                             "An unusable argument: wrong shape, NaN/Inf, N < K, infeasible bounds, ...");
  g_format = make_exception(m, "FormatError", py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError)),
                            "A file is truncated, corrupted, foreign or of an unsupported layout.");
  g_ioerror = make_exception(m, "IOError", py::make_tuple(py::handle(g_error), py::handle(PyExc_OSError)),
                             "The operating system refused to open, read, write or rename a file.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const tessera::InvalidArgument& e) {
      PyErr_SetString(g_invalid, e.what());
    } catch (const tessera::FormatError& e) {
      PyErr_SetString(g_format, e.what());
    } catch (const tessera::IOError& e) {
      PyErr_SetString(g_ioerror, e.what());
    } catch (const tessera::Error& e) {
      PyErr_SetString(g_error, e.what());
    }
  });

  // --- threads ---------------------------------------------------------------------------------------
  m.def(
      "set_num_threads",
      [](int n) { tessera::set_num_threads(n); },
      "n"_a,
      "Set the number of threads tessera's parallel loops use (n <= 0: the OpenMP default, all cores).\n"
      "Applies to work started from any Python thread. Results do not depend on it.");
  m.def(
      "num_threads",
      [] { return tessera::num_threads(); },
      "The number of threads tessera's parallel loops use.");

  // --- I/O -------------------------------------------------------------------------------------------
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

  // --- clustering ------------------------------------------------------------------------------------
  py::class_<tessera::KMeansResult>(m, "KMeansResult", "The outcome of kmeans().")
      .def_property_readonly(
          "centroids", [](const tessera::KMeansResult& r) { return matrix_to_numpy(r.centroids, false); },
          "k × d float32 centroids.")
      .def_property_readonly(
          "labels",
          [](const tessera::KMeansResult& r) {
            return py::array_t<int32_t>(py::ssize_t(r.assignment.size()), r.assignment.data());
          },
          "Cluster of every training row (int32; all n rows, or the rows in sample_rows when subsampled).")
      .def_property_readonly(
          "sample_rows",
          [](const tessera::KMeansResult& r) -> py::object {
            if (r.sample_rows.empty()) return py::none();
            std::vector<int64_t> v(r.sample_rows.begin(), r.sample_rows.end());
            return vector_to_numpy(std::move(v));
          },
          "Rows of x used for training (int64, increasing) when max_train_points subsampled, else None.")
      .def_readonly("objective", &tessera::KMeansResult::objective,
                    "Sum of squared distances of the training rows to their assigned centroid.")
      .def_readonly("iterations", &tessera::KMeansResult::iterations,
                    "Lloyd iterations of the winning restart (on the warm-start sample and on all rows).")
      .def_readonly("warm_start_rows", &tessera::KMeansResult::warm_start_rows,
                    "Rows of the sample the restarts ran on (0: every iteration on all rows).")
      .def_readonly("best_init", &tessera::KMeansResult::best_init, "Index of the winning restart.")
      .def("__repr__", [](const tessera::KMeansResult& r) {
        return "KMeansResult(k=" + std::to_string(r.centroids.rows()) + ", d=" + std::to_string(r.centroids.cols()) +
               ", objective=" + std::to_string(r.objective) + ", iterations=" + std::to_string(r.iterations) + ")";
      });

  m.def(
      "kmeans",
      [](const py::object& x, size_t k, int max_iter, double tol, int n_init, const std::string& init, uint64_t seed,
         size_t max_train_points, const py::object& size_min, const py::object& size_max, bool balanced,
         bool sample_warm_start, const py::object& progress) {
        F32In in = as_f32(x, "x");
        tessera::KMeansParams p;
        p.k = k;
        p.max_iter = max_iter;
        p.tol = tol;
        p.n_init = n_init;
        p.init = parse_init(init);
        p.seed = seed;
        p.max_train_points = max_train_points;
        p.sample_warm_start = sample_warm_start;
        const auto lo = opt_size(size_min), hi = opt_size(size_max);
        if (balanced || lo || hi) {
          const size_t n = in.view.rows, nt = max_train_points && max_train_points < n ? max_train_points : n;
          if (k == 0) throw_invalid("k must be at least 1");
          tessera::SizeBounds b = tessera::default_size_bounds(nt, k);
          if (lo) b.lo = *lo;
          if (hi) b.hi = *hi;
          p.size_bounds = b;
        }
        Progress prog(progress);
        p.progress = prog.fn();
        return without_gil(&prog, [&] {
          return tessera::kmeans(in.view, p);
        });
      },
      "x"_a, "k"_a, py::kw_only(), "max_iter"_a = 100, "tol"_a = 1e-4, "n_init"_a = 3, "init"_a = "k-means++",
      "seed"_a = 42, "max_train_points"_a = 0, "size_min"_a = py::none(), "size_max"_a = py::none(),
      "balanced"_a = false, "sample_warm_start"_a = true, "progress"_a = py::none(),
      "k-means (Lloyd) on x: n × d float32 into k clusters.\n\n"
      "init: 'k-means++' or 'random'; n_init restarts (lowest objective wins); tol as scikit-learn;\n"
      "max_train_points > 0 trains on a uniform sample of that many rows. sample_warm_start: from 64·k\n"
      "training rows on, the restarts run on a sample of min(256·k, n/2) rows and the last quarter of the\n"
      "iterations (at least 4) of the best one on all rows; False: every iteration on all rows. balanced=True, or size_min /\n"
      "size_max, constrain every cluster's size (missing bounds default to max(1, n//k - 1), n//k + 1 for the\n"
      "n training rows). progress: callable(stage, done, total, value). Deterministic for a given seed at any\n"
      "thread count. Returns a KMeansResult (centroids k × d, labels, objective, iterations).");

  m.def(
      "default_size_bounds",
      [](size_t n, size_t k) {
        if (k == 0) throw_invalid("k must be at least 1");
        const auto b = tessera::default_size_bounds(n, k);
        return py::make_tuple(b.lo, b.hi);
      },
      "n"_a, "k"_a, "MiniOneRec's cluster size bounds for n points in k clusters: (max(1, n//k - 1), n//k + 1).");

  m.def(
      "balanced_assign",
      [](const py::object& cost, size_t size_min, size_t size_max) {
        F32In c = as_f32(cost, "cost", "n × k float32");
        py::array_t<int32_t> labels(py::ssize_t(c.view.rows));
        int32_t* out = labels.mutable_data();
        const double total = without_gil(nullptr, [&] {
          tessera::check_size_bounds(c.view.rows, c.view.cols, {size_min, size_max});
          tessera::BalancedAssigner a({size_min, size_max});
          return a.assign_costs(c.view, out);
        });
        return py::make_tuple(labels, total);
      },
      "cost"_a, "size_min"_a, "size_max"_a,
      "Size-constrained assignment on a dense cost matrix (cost: n × k): every point gets one cluster, every\n"
      "cluster's size lies in [size_min, size_max], the total cost is minimal (the scalable solver used inside\n"
      "balanced k-means). Returns (labels: n int32, total cost).");
  m.def(
      "balanced_assign_exact",
      [](const py::object& cost, size_t size_min, size_t size_max) {
        F32In c = as_f32(cost, "cost", "n × k float32");
        py::array_t<int32_t> labels(py::ssize_t(c.view.rows));
        int32_t* out = labels.mutable_data();
        const double total = without_gil(nullptr, [&] {
          tessera::check_size_bounds(c.view.rows, c.view.cols, {size_min, size_max});
          return tessera::balanced_assign_exact(c.view, {size_min, size_max}, out);
        });
        return py::make_tuple(labels, total);
      },
      "cost"_a, "size_min"_a, "size_max"_a,
      "The exact reference for balanced_assign (min-cost flow; memory and time grow with n·k).\n"
      "cost: n × k. Returns (labels: n int32, total cost).");

  // --- quantizer -------------------------------------------------------------------------------------
  py::class_<PyRQ>(m, "ResidualQuantizer",
                   "Residual quantization (RQ-KMeans): x ≈ C_0[i_0] + C_1[i_1] + ..., level m's codebook C_m\n"
                   "(K_m × d) learned by k-means — or size-constrained (balanced) k-means — on the residuals.\n"
                   "Methods may be called from several Python threads; heavy ones release the GIL.")
      .def(py::init([](size_t d, std::vector<size_t> codebook_sizes, bool balance, int max_iter, double tol, int n_init,
                       const std::string& init, uint64_t seed, const py::object& size_min, const py::object& size_max,
                       size_t train_sample, bool sample_warm_start, const py::object& progress) {
             if (d == 0) throw_invalid("d must be at least 1");
             if (codebook_sizes.empty()) throw_invalid("codebook_sizes must name at least one level");
             for (size_t k : codebook_sizes)
               if (k == 0) throw_invalid("every codebook size must be at least 1");
             tessera::ResidualQuantizerParams p;
             p.balance = balance;
             p.max_iter = max_iter;
             p.tol = tol;
             p.n_init = n_init;
             p.init = parse_init(init);
             p.seed = seed;
             p.size_min = opt_size(size_min);
             p.size_max = opt_size(size_max);
             p.train_sample = train_sample;
             p.sample_warm_start = sample_warm_start;
             auto r = std::make_unique<PyRQ>(std::make_shared<tessera::ResidualQuantizer>(d, codebook_sizes, p));
             if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
               throw py::type_error("progress must be a callable or None");
             r->progress = progress;
             return r;
           }),
           "d"_a, "codebook_sizes"_a, py::kw_only(), "balance"_a = false, "max_iter"_a = 100, "tol"_a = 1e-4,
           "n_init"_a = 3, "init"_a = "k-means++", "seed"_a = 42, "size_min"_a = py::none(), "size_max"_a = py::none(),
           "train_sample"_a = 0, "sample_warm_start"_a = true, "progress"_a = py::none(),
           "A residual quantizer for d-dimensional vectors with len(codebook_sizes) levels of K_m codes.\n"
           "balance: train levels with size-constrained k-means (bounds size_min/size_max, default per level\n"
           "max(1, n//K - 1), n//K + 1). Level m trains with a seed derived from (seed, m). train_sample > 0:\n"
           "learn codebooks on that many sampled rows, then assign all rows. sample_warm_start: as in kmeans().")
      .def(
          "fit",
          [](PyRQ& r, const py::object& x) {
            F32In in = check_dim(r, x, "x");
            const size_t n = in.view.rows, M = r.q->num_codebooks();
            py::array_t<int32_t> codes({py::ssize_t(n), py::ssize_t(M)});
            int32_t* out = codes.mutable_data();
            Progress prog(r.progress);
            auto reps = write_locked(r, &prog, [&] {
              r.q->params().progress = prog.fn();
              struct Reset {
                tessera::ResidualQuantizer& q;
                ~Reset() { q.params().progress = nullptr; }
              } reset{*r.q};
              return r.q->fit(in.view, out);
            });
            r.last_fit_report = reports_to_list(reps);
            return codes;
          },
          "x"_a,
          "Train on x: n × d float32 and return every row's codes: n × M int32. With balance, every level's\n"
          "code sizes lie within the level's bounds. Per-level figures go to last_fit_report.")
      .def(
          "train",
          [](PyRQ& r, const py::object& x) {
            F32In in = check_dim(r, x, "x");
            Progress prog(r.progress);
            auto reps = write_locked(r, &prog, [&] {
              r.q->params().progress = prog.fn();
              struct Reset {
                tessera::ResidualQuantizer& q;
                ~Reset() { q.params().progress = nullptr; }
              } reset{*r.q};
              return r.q->fit(in.view, nullptr);
            });
            r.last_fit_report = reports_to_list(reps);
          },
          "x"_a, "Train on x: n × d float32 (fit() without returning codes).")
      .def(
          "encode",
          [](PyRQ& r, const py::object& x) {
            r.require_trained("encode");
            F32In in = check_dim(r, x, "x");
            py::array_t<int32_t> codes({py::ssize_t(in.view.rows), py::ssize_t(r.q->num_codebooks())});
            int32_t* out = codes.mutable_data();
            read_locked(r, [&] {
              r.q->encode(in.view, out);
            });
            return codes;
          },
          "x"_a, "Greedy residual encoding (nearest codeword at every level): x: n × d → codes: n × M int32.")
      .def(
          "assign_balanced",
          [](PyRQ& r, const py::object& x, const py::object& size_min, const py::object& size_max) {
            r.require_trained("assign_balanced");
            F32In in = check_dim(r, x, "x");
            const size_t n = in.view.rows, M = r.q->num_codebooks();
            const auto lo = opt_size(size_min), hi = opt_size(size_max);
            std::vector<tessera::SizeBounds> bounds(M);
            for (size_t m = 0; m < M; ++m) {
              bounds[m] = tessera::default_size_bounds(n, r.q->codebook_sizes()[m]);
              if (lo) bounds[m].lo = *lo;
              if (hi) bounds[m].hi = *hi;
            }
            py::array_t<int32_t> codes({py::ssize_t(n), py::ssize_t(M)});
            int32_t* out = codes.mutable_data();
            Progress prog(r.progress);
            std::vector<tessera::LevelReport> reps;
            write_locked(r, &prog, [&] {
              r.q->params().progress = prog.fn();
              struct Reset {
                tessera::ResidualQuantizer& q;
                ~Reset() { q.params().progress = nullptr; }
              } reset{*r.q};
              r.q->assign_balanced(in.view, out, bounds, &reps);
            });
            r.last_fit_report = reports_to_list(reps);
            return codes;
          },
          "x"_a, py::kw_only(), "size_min"_a = py::none(), "size_max"_a = py::none(),
          "Size-constrained encoding with the trained codebooks: at every level, the assignment of all n\n"
          "residuals minimising squared error with code sizes in [size_min, size_max] (default per level\n"
          "max(1, n//K - 1), n//K + 1). x: n × d → codes: n × M int32. Per-level MSEs go to last_fit_report.")
      .def(
          "decode",
          [](PyRQ& r, const py::object& codes) {
            r.require_trained("decode");
            I32In c = check_codes(r, codes);
            py::array_t<float> out({py::ssize_t(c.view.rows), py::ssize_t(r.q->dim())});
            float* o = out.mutable_data();
            read_locked(r, [&] {
              r.q->decode(c.view.data, c.view.rows, o);
            });
            return out;
          },
          "codes"_a, "Reconstructions Σ_m C_m[codes[:, m]]: codes: n × M int32 → n × d float32.")
      .def(
          "pack_codes",
          [](PyRQ& r, const py::object& codes) {
            I32In c = check_codes(r, codes);
            py::array_t<uint8_t> out({py::ssize_t(c.view.rows), py::ssize_t(r.q->code_size())});
            uint8_t* o = out.mutable_data();
            without_gil(nullptr, [&] { r.q->pack_codes(c.view.data, c.view.rows, o); });
            return out;
          },
          "codes"_a,
          "Bit-pack codes: n × M int32 → n × code_size uint8 (⌈log2 K_m⌉ bits per code, little-endian bit order).")
      .def(
          "unpack_codes",
          [](PyRQ& r, const py::object& packed) {
            py::array a = as_numeric_array(packed, "packed", "iu", 2, "n × code_size uint8");
            if (a.dtype().itemsize() != 1) throw py::type_error("packed codes must be uint8");
            a = numpy().attr("ascontiguousarray")(a, "dtype"_a = "uint8");
            if (size_t(a.shape(1)) != r.q->code_size())
              throw_invalid("packed codes have " + std::to_string(a.shape(1)) + " bytes per row, the model's code size is " +
                            std::to_string(r.q->code_size()));
            const size_t n = size_t(a.shape(0));
            py::array_t<int32_t> out({py::ssize_t(n), py::ssize_t(r.q->num_codebooks())});
            int32_t* o = out.mutable_data();
            const auto* src = static_cast<const uint8_t*>(a.data());
            without_gil(nullptr, [&] { r.q->unpack_codes(src, n, o); });
            return out;
          },
          "packed"_a, "Unpack bit-packed codes: n × code_size uint8 → n × M int32.")
      .def_property_readonly(
          "codebooks",
          [](PyRQ& r) {
            r.require_trained("codebooks");
            auto books = read_locked(r, [&] {
              std::vector<tessera::FloatMatrix> v;
              for (size_t m = 0; m < r.q->num_codebooks(); ++m) v.push_back(tessera::FloatMatrix::copy_of(r.q->codebook(m)));
              return v;
            });
            py::list out;
            for (auto& b : books) out.append(matrix_to_numpy(std::move(b)));
            return out;
          },
          "Copies of the codebooks: a list of M arrays, C_m: K_m × d float32.")
      .def(
          "codebook",
          [](PyRQ& r, size_t m) {
            r.require_trained("codebook");
            if (m >= r.q->num_codebooks())
              throw py::index_error("codebook " + std::to_string(m) + " of " + std::to_string(r.q->num_codebooks()));
            return matrix_to_numpy(read_locked(r, [&] { return tessera::FloatMatrix::copy_of(r.q->codebook(m)); }));
          },
          "m"_a, "A copy of codebook m: K_m × d float32.")
      .def(
          "set_codebooks",
          [](PyRQ& r, const py::object& books) {
            auto v = codebooks_from_list(r, books);
            write_locked(r, nullptr, [&] { r.q->set_codebooks(std::move(v)); });
          },
          "codebooks"_a, "Replace every codebook (a list of M arrays K_m × d); marks the model trained.")
      .def(
          "export_npz",
          [](PyRQ& r, const py::object& path) {
            r.require_trained("export_npz");
            const std::string p = path_str(path);
            read_locked(r, [&] {
              std::vector<std::pair<std::string, tessera::MatrixView<const float>>> books;
              for (size_t m = 0; m < r.q->num_codebooks(); ++m)
                books.emplace_back("codebook_" + std::to_string(m), r.q->codebook(m));
              tessera::write_npz(p, books, true);
            });
          },
          "path"_a, "Write the codebooks to a .npz with keys codebook_0 .. codebook_{M-1} (what MiniOneRec reads).")
      .def(
          "import_npz",
          [](PyRQ& r, const py::object& path) {
            const std::string p = path_str(path);
            auto members = without_gil(nullptr, [&] { return tessera::read_npz_f32(p); });
            const size_t M = r.q->num_codebooks();
            py::list books;
            for (size_t m = 0; m < M; ++m) {
              const std::string key = "codebook_" + std::to_string(m);
              bool found = false;
              for (auto& [name, mat] : members)
                if (name == key) {
                  books.append(matrix_to_numpy(mat));
                  found = true;
                }
              if (!found) {
                PyErr_SetString(g_format, (p + ": no member '" + key + "' (expected codebook_0 .. codebook_" +
                                           std::to_string(M - 1) + ")")
                                              .c_str());
                throw py::error_already_set();
              }
            }
            auto v = codebooks_from_list(r, books);
            write_locked(r, nullptr, [&] { r.q->set_codebooks(std::move(v)); });
          },
          "path"_a, "Load codebooks from a .npz with keys codebook_0 .. (shapes K_m × d); marks the model trained.")
      .def(
          "save",
          [](PyRQ& r, const py::object& path, const py::object& metadata) {
            r.require_trained("save");
            const std::string p = path_str(path);
            const std::string meta =
                metadata.is_none() ? "{}" : py::module_::import("json").attr("dumps")(metadata).cast<std::string>();
            read_locked(r, [&] { tessera::save_quantizer(*r.q, p, meta); });
          },
          "path"_a, "metadata"_a = py::none(),
          "Write the model to a checked binary file (.tsq) atomically; metadata: a JSON-serialisable dict.")
      .def_static(
          "load", [](const py::object& path) { return load_rq(path_str(path)); }, "path"_a,
          "Read a model file written by save() (or model.tsq from build_semantic_ids().save()).")
      .def_property_readonly(
          "metadata", [](PyRQ& r) { return r.metadata; }, "The metadata dict stored in the loaded file, or None.")
      .def_property_readonly(
          "last_fit_report", [](PyRQ& r) { return r.last_fit_report; },
          "Per-level figures of the last fit()/train()/assign_balanced(): a list of dicts with level,\n"
          "codebook_size, mse_before, mse_after, seconds, iterations, warm_start_rows, size_min, size_max (None before).")
      .def_property_readonly("dim", [](PyRQ& r) { return r.q->dim(); }, "Vector dimension d.")
      .def_property_readonly(
          "codebook_sizes", [](PyRQ& r) { return r.q->codebook_sizes(); }, "K_m for each level.")
      .def_property_readonly(
          "num_codebooks", [](PyRQ& r) { return r.q->num_codebooks(); }, "Number of levels M.")
      .def_property_readonly("code_size", [](PyRQ& r) { return r.q->code_size(); }, "Bytes per packed code.")
      .def_property_readonly("is_trained", [](PyRQ& r) { return r.q->is_trained(); }, "Whether codebooks are set.")
      .def_property(
          "progress", [](PyRQ& r) { return r.progress; },
          [](PyRQ& r, const py::object& fn) {
            if (!fn.is_none() && !PyCallable_Check(fn.ptr())) throw py::type_error("progress must be a callable or None");
            r.progress = fn;
          },
          "Progress callable(stage, done, total, value) used by fit/train/assign_balanced, or None.")
      .def_property_readonly(
          "params",
          [](PyRQ& r) {
            const auto& p = r.q->params();
            return py::dict("balance"_a = p.balance, "max_iter"_a = p.max_iter, "tol"_a = p.tol,
                            "n_init"_a = p.n_init,
                            "init"_a = p.init == tessera::KMeansInit::random ? "random" : "k-means++",
                            "seed"_a = p.seed,
                            "size_min"_a = p.size_min ? py::cast(*p.size_min) : py::none(),
                            "size_max"_a = p.size_max ? py::cast(*p.size_max) : py::none(),
                            "train_sample"_a = p.train_sample, "sample_warm_start"_a = p.sample_warm_start);
          },
          "Training parameters (a dict copy).")
      .def("__repr__", [](PyRQ& r) {
        std::string s = "ResidualQuantizer(d=" + std::to_string(r.q->dim()) + ", codebook_sizes=[";
        for (size_t m = 0; m < r.q->num_codebooks(); ++m)
          s += (m ? ", " : "") + std::to_string(r.q->codebook_sizes()[m]);
        return s + "], balance=" + (r.q->params().balance ? "True" : "False") +
               ", trained=" + (r.q->is_trained() ? "True" : "False") + ")";
      });

  m.def(
      "load_quantizer", [](const py::object& path) { return load_rq(path_str(path)); }, "path"_a,
      "Read a model file (.tsq); returns a ResidualQuantizer.");

  m.def(
      "mean_squared_error",
      [](const py::object& x, const py::object& y) {
        F32In a = as_f32(x, "x"), b = as_f32(y, "y");
        return without_gil(nullptr, [&] {
          return tessera::mean_squared_error(a.view, b.view);
        });
      },
      "x"_a, "y"_a, "Mean squared error per component, Σ‖x_i − y_i‖² / (n·d); x, y: n × d.");

  // --- semantic IDs ----------------------------------------------------------------------------------
  m.def(
      "collision_stats",
      [](const py::object& codes) {
        I32In c = as_i32(codes, "codes", "n × L int32, -1 = no token");
        const auto st = without_gil(nullptr, [&] { return tessera::collision_stats(c.view); });
        return py::dict("unique_ids"_a = st.unique_ids, "collision_rate"_a = st.collision_rate,
                        "largest_group"_a = st.largest_group, "colliding_items"_a = st.colliding_items);
      },
      "codes"_a,
      "Collision statistics of the tuples formed by the non-negative entries of each row of codes (n × L):\n"
      "{'unique_ids', 'collision_rate' (1 - unique/n), 'largest_group', 'colliding_items'}.");

  py::class_<PySids>(m, "SemanticIds", "Semantic IDs of n items: codes, resolved token ids, the model and metrics.")
      .def_property_readonly(
          "codes", [](PySids& s) { return matrix_to_numpy(s.s.codes, false); },
          "n × L int32 level codes (0-based) before collision resolution (read-only view).")
      .def_property_readonly(
          "ids", [](PySids& s) { return matrix_to_numpy(s.s.ids, false); },
          "n × W int32 resolved ids: W = L, or L + 1 with a collision suffix; -1 = no token (read-only view).")
      .def_property_readonly(
          "model", [](PySids& s) { return s.model; }, "The trained ResidualQuantizer.")
      .def_property_readonly(
          "metrics", [](PySids& s) { return json_loads(s.s.metrics.to_json()); },
          "Quality figures (a dict, the content of metrics.json).")
      .def_property_readonly(
          "dedup", [](PySids& s) { return std::string(tessera::dedup_name(s.s.dedup)); }, "Collision strategy used.")
      .def_property_readonly(
          "zero_based", [](PySids& s) { return s.s.format.zero_based; }, "Whether level tokens are 0-based.")
      .def(
          "index_json", [](PySids& s, const py::object& keys) { return sids_index_json(s, keys); },
          "keys"_a = py::none(),
          "The MiniOneRec index.json text: {\"<key>\": [\"<a_N>\", \"<b_N>\", ...], ...}; keys: n item ids\n"
          "(default \"0\"..\"n-1\").")
      .def(
          "tokens", [](PySids& s, const py::object& keys) { return json_loads(sids_index_json(s, keys)); },
          "keys"_a = py::none(), "dict[str, list[str]]: exactly what index.json holds.")
      .def(
          "save",
          [](PySids& s, const py::object& out_dir, const py::object& keys, bool with_model) {
            const std::string dir = path_str(out_dir);
            auto k = opt_strings(keys, "keys", s.s.ids.rows());
            PyRQ& r = model_of(s);
            read_locked(r, [&] { tessera::write_semantic_ids(dir, s.s, k ? &*k : nullptr, with_model); });
          },
          "out_dir"_a, "keys"_a = py::none(), "with_model"_a = true,
          "Write index.json, codes.npy, metrics.json and (with_model) codebooks.npz and model.tsq into\n"
          "out_dir (created if needed), each atomically — the same files as the command-line tool.")
      .def("__len__", [](PySids& s) { return s.s.ids.rows(); })
      .def("__repr__", [](PySids& s) {
        return "SemanticIds(n=" + std::to_string(s.s.ids.rows()) + ", levels=" + std::to_string(s.s.codes.cols()) +
               ", width=" + std::to_string(s.s.ids.cols()) + ", dedup='" + tessera::dedup_name(s.s.dedup) + "')";
      });

  m.def(
      "build_semantic_ids",
      [](const py::object& x, size_t levels, size_t codebook_size, const py::object& codebook_sizes, bool balance,
         const std::string& dedup, uint64_t seed, int n_init, int max_iter, double tol, const py::object& size_min,
         const py::object& size_max, size_t train_sample, bool sample_warm_start, bool zero_based,
         const py::object& labels,
         const py::object& progress, const py::object& threads) {
        F32In in = as_f32(x, "x");
        tessera::SidParams p;
        if (codebook_sizes.is_none())
          p.codebook_sizes.assign(levels, codebook_size);
        else
          p.codebook_sizes = codebook_sizes.cast<std::vector<size_t>>();
        for (size_t k : p.codebook_sizes)
          if (k == 0) throw_invalid("every codebook size must be at least 1");
        p.balance = balance;
        p.size_min = opt_size(size_min);
        p.size_max = opt_size(size_max);
        p.dedup = parse_dedup(dedup);
        p.format.zero_based = zero_based;
        p.seed = seed;
        p.n_init = n_init;
        p.max_iter = max_iter;
        p.tol = tol;
        p.train_sample = train_sample;
        p.sample_warm_start = sample_warm_start;
        auto lab = opt_strings(labels, "labels", in.view.rows);
        const int nthreads = threads.is_none() ? 0 : threads.cast<int>();
        Progress prog(progress);
        p.progress = prog.fn();
        auto s = std::make_unique<PySids>();
        s->s = without_gil(&prog, [&] {
          tessera::ScopedThreads scoped(nthreads);
          return tessera::build_semantic_ids(in.view, p, lab ? &*lab : nullptr);
        });
        s->s.model->params().progress = nullptr;
        s->model = py::cast(std::make_unique<PyRQ>(s->s.model));
        return s;
      },
      "x"_a, py::kw_only(), "levels"_a = 3, "codebook_size"_a = 256, "codebook_sizes"_a = py::none(),
      "balance"_a = true, "dedup"_a = "append", "seed"_a = 42, "n_init"_a = 3, "max_iter"_a = 100, "tol"_a = 1e-4,
      "size_min"_a = py::none(), "size_max"_a = py::none(), "train_sample"_a = 0, "sample_warm_start"_a = true,
      "zero_based"_a = false,
      "labels"_a = py::none(), "progress"_a = py::none(), "threads"_a = py::none(),
      "Train (balanced) RQ-KMeans on x: n × d float32 and give every item a unique semantic ID.\n\n"
      "levels × codebook_size codes, or codebook_sizes=[K_0, K_1, ...]. balance: size-constrained levels\n"
      "(bounds size_min/size_max, default max(1, n//K - 1), n//K + 1). dedup: 'append' (MiniOneRec),\n"
      "'append-all' (TIGER), 'reassign' or 'none'. sample_warm_start: as in kmeans(). zero_based: 0-based level tokens (default 1-based,\n"
      "as MiniOneRec's rqkmeans scripts). labels: n categories for purity metrics. threads: thread count for\n"
      "this call. Same seed → same codes at any thread count. Returns SemanticIds.");

  m.def(
      "encode_semantic_ids",
      [](const py::object& model, const py::object& x, const py::object& dedup, const py::object& zero_based,
         const py::object& labels, const py::object& threads) {
        py::object model_obj;
        tessera::Dedup d = tessera::Dedup::append;
        tessera::TokenFormat fmt;
        if (py::isinstance<PyRQ>(model)) {
          model_obj = model;
        } else {
          const std::string p = path_str(model);
          tessera::SidModel sm = without_gil(nullptr, [&] { return tessera::load_sid_model(p); });
          d = sm.dedup;
          fmt = sm.format;
          model_obj = py::cast(std::make_unique<PyRQ>(sm.model));
        }
        PyRQ& r = model_obj.cast<PyRQ&>();
        r.require_trained("encode_semantic_ids");
        if (!dedup.is_none()) d = parse_dedup(dedup.cast<std::string>());
        if (!zero_based.is_none()) fmt.zero_based = zero_based.cast<bool>();
        F32In in = check_dim(r, x, "x");
        auto lab = opt_strings(labels, "labels", in.view.rows);
        const int nthreads = threads.is_none() ? 0 : threads.cast<int>();
        auto s = std::make_unique<PySids>();
        s->s = read_locked(r, [&] {
          tessera::ScopedThreads scoped(nthreads);
          return tessera::encode_semantic_ids(r.q, in.view, d, fmt, lab ? &*lab : nullptr);
        });
        s->model = model_obj;
        return s;
      },
      "model"_a, "x"_a, py::kw_only(), "dedup"_a = py::none(), "zero_based"_a = py::none(), "labels"_a = py::none(),
      "threads"_a = py::none(),
      "Semantic IDs for new items x: n × d with a trained model (a ResidualQuantizer, or the path of a\n"
      "model.tsq, whose stored dedup and token format are the defaults): greedy residual codes resolved with\n"
      "dedup ('append' unless the model file says otherwise). Returns SemanticIds.");
}
