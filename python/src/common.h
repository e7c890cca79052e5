// What every binding file of tessera._tessera shares: numpy conversion, progress callbacks and the GIL,
// the Python exception objects, path and argument conversion. One binding file per library area
// (bind_core, bind_io, bind_cluster, bind_quant, bind_sid) adds its functions to the module.
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
// Every one has `location` ("src/cluster/kmeans.cpp:120": tessera::Error::location(), or the binding
// line that raised it; "" for instances made in Python); str(e) is the message alone.
// Wrong Python types raise TypeError; wrong ndim or array shapes raise tessera.InvalidArgument.
//
// Progress: a Python callable(stage: str, done: int, total: int, value: float), called with the GIL held.
// An exception it raises (KeyboardInterrupt included) stops the computation and propagates.
//
// Interrupts (bind_core.cpp): the library's interrupt check runs Python's signal handlers; tessera::Interrupted
// becomes the exception a handler raised (KeyboardInterrupt for Ctrl-C).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tessera/cluster/kmeans.h"
#include "tessera/core/matrix.h"
#include "tessera/core/progress.h"

namespace tessera_py {

namespace py = pybind11;
using namespace pybind11::literals;

// ---------------------------------------------------------------------------------------------------
// The parts of the module, in the order PYBIND11_MODULE adds them (a class must be registered before
// a later part's signatures name it).

void bind_core(py::module_& m);     // exceptions, threads
void bind_io(py::module_& m);       // readers and writers
void bind_cluster(py::module_& m);  // k-means, balanced assignment
void bind_quant(py::module_& m);    // ResidualQuantizer
void bind_lsq(py::module_& m);      // LocalSearchQuantizer
void bind_index(py::module_& m);    // IndexAdditiveQuantizer (after the quantizers it wraps)
void bind_rabitq(py::module_& m);   // IVFRaBitQ
void bind_rabitq_codec(py::module_& m);  // RaBitQuantizer
void bind_sid(py::module_& m);      // semantic IDs
void bind_distributed(py::module_& m);  // chunk kernels of tessera.distributed

// ---------------------------------------------------------------------------------------------------
// Progress callbacks and the GIL.

/// Thrown through the library when a progress callback raised; the Python exception is kept by Progress.
struct CallbackAbort : std::exception {
  const char* what() const noexcept override { return "progress callback raised"; }
};

/// Owns the Python callable (destroyed with the GIL held, on the binding's stack frame); the ProgressFn
/// handed to the library captures a raw pointer to it.
class Progress {
 public:
  explicit Progress(py::object fn);
  /// The callback for the library (empty when the callable is None).
  tessera::ProgressFn fn();
  /// Re-raise the callback's Python exception (after an abort).
  [[noreturn]] void rethrow();

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
// Exceptions.

/// The Python exception types (created by bind_core; the module and these pointers keep them alive).
extern PyObject* g_error;
extern PyObject* g_invalid;
extern PyObject* g_format;
extern PyObject* g_ioerror;

/// Set the Python error `type`(msg) with e.location = location ("src/cluster/kmeans.cpp:120", or "");
/// type is one of the g_* exception types. Never throws: if building the exception fails, that failure
/// is the error set instead.
void set_error(PyObject* type, const std::string& msg, const std::string& location);
/// The interrupt check for tessera::set_interrupt_check: runs Python's pending signal handlers (main thread)
/// and keeps the exception one raised for the translator.
bool python_interrupt_check();
/// pybind11's exception translator for tessera's errors: each to its g_* type, Interrupted to KeyboardInterrupt.
void translate_tessera_error(std::exception_ptr p);
/// "python/src/bind_io.cpp:42": a source location as tessera's errors name it (path below the project root).
std::string location_str(const char* file, unsigned line);
/// Raise `type`(msg) located at the caller. (__builtin_FILE / __builtin_LINE rather than std::source_location,
/// which Clang 14 cannot compile with libstdc++ 12.)
[[noreturn]] void throw_error(PyObject* type, const std::string& msg, const char* file = __builtin_FILE(),
                              unsigned line = __builtin_LINE());
/// Raise tessera.InvalidArgument(msg) located at the caller.
[[noreturn]] void throw_invalid(const std::string& msg, const char* file = __builtin_FILE(),
                                unsigned line = __builtin_LINE());

// ---------------------------------------------------------------------------------------------------
// numpy conversion.

/// The numpy module (imported once).
py::module_& numpy();

/// np.asarray(obj) checked for a dtype kind in `kinds` ("iuf", ...) and `ndim` dimensions; shape_doc names
/// the expected shape in messages.
py::array as_numeric_array(py::handle obj, const char* name, const char* kinds, int ndim, const char* shape_doc);

/// A float32 view of a 2-D array; zero-copy for aligned C-contiguous native float32.
struct F32In {
  py::array arr;  // keeps the data alive
  tessera::MatrixView<const float> view;
};
F32In as_f32(py::handle obj, const char* name, const char* shape_doc = "n × d float32");

/// An int32 view of a 2-D integer array; zero-copy for aligned C-contiguous native int32, otherwise a
/// range-checked copy.
struct I32In {
  py::array arr;
  tessera::MatrixView<const int32_t> view;
};
I32In as_i32(py::handle obj, const char* name, const char* shape_doc = "n × M int32");

inline void set_readonly(py::array& a) { a.attr("setflags")("write"_a = false); }

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

/// A 1-D numpy array owning the vector's buffer.
template <class T>
py::array vector_to_numpy(std::vector<T> v) {
  if (v.empty()) return py::array_t<T>(0);
  auto* holder = new std::vector<T>(std::move(v));
  py::capsule cap(holder, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({py::ssize_t(holder->size())}, {py::ssize_t(sizeof(T))}, holder->data(), cap);
}

// ---------------------------------------------------------------------------------------------------
// Other arguments.

/// str() of every item of a sequence (a single str or bytes is refused).
std::vector<std::string> as_strings(py::handle seq, const char* name);
/// as_strings() of n items, or nullopt for None.
std::optional<std::vector<std::string>> opt_strings(const py::object& seq, const char* name, size_t n);
/// A non-negative size, or nullopt for None.
std::optional<size_t> opt_size(const py::object& o);
/// os.fspath(p) as a str: str and os.PathLike both work.
std::string path_str(const py::object& p);
/// json.loads(s).
py::object json_loads(const std::string& s);
/// 'k-means++' (or 'kmeans++') / 'random'.

}  // namespace tessera_py
