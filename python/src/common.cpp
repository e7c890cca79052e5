#include "common.h"

#include <cstring>
#include <memory>
#include <utility>

#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"

namespace tessera_py {

// ---------------------------------------------------------------------------------------------------
// Progress callbacks.

Progress::Progress(py::object fn) : fn_(std::move(fn)) {
  if (!fn_.is_none() && !PyCallable_Check(fn_.ptr()))
    throw py::type_error("progress must be a callable(stage: str, done: int, total: int, value: float) or None");
}

tessera::ProgressFn Progress::fn() {
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

void Progress::rethrow() {
  if (error_) throw *error_;
  throw std::runtime_error("progress callback aborted");
}

// ---------------------------------------------------------------------------------------------------
// Exceptions.

PyObject* g_error = nullptr;
PyObject* g_invalid = nullptr;
PyObject* g_format = nullptr;
PyObject* g_ioerror = nullptr;

void set_error(PyObject* type, const std::string& msg, const std::string& location) {
  // Messages may quote bytes from files: undecodable ones become U+FFFD rather than a UnicodeDecodeError.
  py::object text = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(msg.data(), py::ssize_t(msg.size()), "replace"));
  if (!text) return;
  py::object exc = py::reinterpret_steal<py::object>(PyObject_CallOneArg(type, text.ptr()));
  if (!exc) return;
  py::object where =
      py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(location.data(), py::ssize_t(location.size()), "replace"));
  if (!where || PyObject_SetAttrString(exc.ptr(), "location", where.ptr()) != 0) return;
  PyErr_SetObject(type, exc.ptr());
}

// Interrupts (see bind_core.cpp): the check tessera's loops call, and the error an Interrupted becomes.
namespace {
// The exception a signal handler raised in the last check that said "stop", on this thread. Touched
// only with the GIL held; a raw pointer so that nothing runs at thread exit.
thread_local py::error_already_set* t_interrupt = nullptr;

// Set the Python error for a tessera::Interrupted: what the signal handler raised, else KeyboardInterrupt.
void set_interrupted_error() {
  std::unique_ptr<py::error_already_set> e(std::exchange(t_interrupt, nullptr));
  if (e)
    e->restore();
  else
    PyErr_SetNone(PyExc_KeyboardInterrupt);
}

}  // namespace

bool python_interrupt_check() {
  // Daemon threads may still be working while the interpreter shuts down: taking the GIL then would
  // never return.
#if PY_VERSION_HEX >= 0x030D0000
  if (!Py_IsInitialized() || Py_IsFinalizing()) return false;
#else
  if (!Py_IsInitialized() || _Py_IsFinalizing()) return false;
#endif
  py::gil_scoped_acquire gil;  // this thread may hold it already (then a no-op) or not
  if (PyErr_CheckSignals() == 0) return false;
  delete std::exchange(t_interrupt, new py::error_already_set());  // takes the pending exception
  return true;
}

void translate_tessera_error(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const tessera::Interrupted&) {
    set_interrupted_error();
  } catch (const tessera::InvalidArgument& e) {
    set_error(g_invalid, e.what(), e.location());
  } catch (const tessera::FormatError& e) {
    set_error(g_format, e.what(), e.location());
  } catch (const tessera::IOError& e) {
    set_error(g_ioerror, e.what(), e.location());
  } catch (const tessera::Error& e) {
    set_error(g_error, e.what(), e.location());
  }
}

std::string location_str(const char* file, unsigned line) {
  // Relative to the checkout, as tessera's errors: the build maps the source root away (-fmacro-prefix-map).
  return std::string(file) + ":" + std::to_string(line);
}

void throw_error(PyObject* type, const std::string& msg, const char* file, unsigned line) {
  set_error(type, msg, location_str(file, line));
  throw py::error_already_set();
}

void throw_invalid(const std::string& msg, const char* file, unsigned line) {
  throw_error(g_invalid, msg, file, line);
}

// ---------------------------------------------------------------------------------------------------
// numpy conversion.

py::module_& numpy() {
  static py::module_ np = py::module_::import("numpy");
  return np;
}

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

}  // namespace

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

F32In as_f32(py::handle obj, const char* name, const char* shape_doc) {
  py::array a = as_numeric_array(obj, name, "iuf", 2, shape_doc);
  const bool ready = py::isinstance<py::array_t<float>>(a) && (a.flags() & py::array::c_style) &&
                     (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) && a.dtype().byteorder() != '>';
  if (!ready) a = numpy().attr("array")(a, "dtype"_a = "float32", "order"_a = "C", "copy"_a = true);
  F32In in{a, {static_cast<const float*>(a.data()), size_t(a.shape(0)), size_t(a.shape(1))}};
  return in;
}

I32In as_i32(py::handle obj, const char* name, const char* shape_doc) {
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

// ---------------------------------------------------------------------------------------------------
// Other arguments.

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

std::optional<size_t> opt_size(const py::object& o) {
  if (o.is_none()) return std::nullopt;
  const long long v = o.cast<long long>();
  if (v < 0) throw_invalid("size bounds must be non-negative, got " + std::to_string(v));
  return size_t(v);
}

std::string path_str(const py::object& p) { return py::str(py::module_::import("os").attr("fspath")(p)); }

py::object json_loads(const std::string& s) { return py::module_::import("json").attr("loads")(s); }


}  // namespace tessera_py
