// Exceptions, interrupts and threads.
//
// Interrupts: long library loops call tessera::check_interrupt() on the thread that started the work (at
// most every 20 ms). The check installed here takes the GIL and runs Python's pending signal handlers
// (PyErr_CheckSignals: on the main thread only, elsewhere it does nothing). When a handler raised —
// KeyboardInterrupt from the default SIGINT handler, or whatever a user's handler raises — the exception
// is kept for this thread and the library unwinds with tessera::Interrupted, which the translator turns
// back into the kept exception (KeyboardInterrupt if there is none).
#include <memory>
#include <utility>

#include "common.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/runtime.h"
#include "tessera/core/threading.h"

namespace tessera_py {

namespace {

PyObject* make_exception(py::module_& m, const char* name, py::tuple bases, const char* doc) {
  const std::string qual = std::string("tessera.") + name;
  // Instances get their own `location`; the class attribute is the default for those raised from Python.
  py::dict attrs("location"_a = "");
  PyObject* t = PyErr_NewExceptionWithDoc(qual.c_str(), doc, bases.ptr(), attrs.ptr());
  if (!t) throw py::error_already_set();
  m.add_object(name, py::handle(t));  // the module keeps a reference; so do we (never released)
  return t;
}

}  // namespace

void bind_core(py::module_& m) {
  // --- exceptions ------------------------------------------------------------------------------------
  g_error = make_exception(m, "Error", py::make_tuple(py::handle(PyExc_Exception)),
                           "Base of every error tessera raises.");
  g_invalid = make_exception(m, "InvalidArgument", py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError)),
                             "An unusable argument: wrong shape, NaN/Inf, N < K, infeasible bounds, ...");
  g_format = make_exception(m, "FormatError", py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError)),
                            "A file is truncated, corrupted, foreign or of an unsupported layout.");
  g_ioerror = make_exception(m, "IOError", py::make_tuple(py::handle(g_error), py::handle(PyExc_OSError)),
                             "The operating system refused to open, read, write or rename a file.");
  py::register_exception_translator(&translate_tessera_error);

  // --- interrupts ------------------------------------------------------------------------------------
  tessera::set_interrupt_check(&python_interrupt_check);

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
  m.def(
      "build_info",
      [] {
        return py::dict("version"_a = TESSERA_VERSION, "blas"_a = tessera::blas_kernels(),
                        "simd"_a = tessera::simd_unit(), "threads"_a = tessera::num_threads());
      },
      "What this process computes with: version, BLAS kernels, vector unit of tessera's kernels, threads.");
}

}  // namespace tessera_py
