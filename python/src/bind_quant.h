// The Python-side ResidualQuantizer (bind_quant.cpp), shared with the semantic-ID bindings (bind_sid.cpp),
// whose results hold one.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>

#include "common.h"
#include "tessera/quant/residual_quantizer.h"

namespace tessera_py {

/// A model, a reader/writer lock (heavy calls run without the GIL, so another Python thread may use
/// the same model meanwhile) and Python-side state. One wrapper type per codec class (PyRQ below); the
/// additive-quantizer base methods (bind_additive.h) work on any of them.
template <class Q>
struct PyModel {
  using Model = Q;
  std::shared_ptr<Q> q;
  std::shared_mutex mu;
  std::atomic<std::thread::id> writer{};
  py::object progress = py::none();
  py::object last_fit_report = py::none();
  py::object metadata = py::none();

  explicit PyModel(std::shared_ptr<Q> m) : q(std::move(m)) {}

  void check_reentry() const {
    if (writer.load() == std::this_thread::get_id())
      throw std::runtime_error("this " + q->type_name() + " quantizer is being modified by the call that invoked this "
                               "progress callback; it cannot be used until that call returns");
  }
  void require_trained(const char* what) const {
    if (!q->is_trained()) throw_invalid(std::string(what) + " needs a trained model: call fit() or train() first");
  }
};

using PyRQ = PyModel<tessera::ResidualQuantizer>;

/// Run f() without the GIL under the model's exclusive lock.
template <class Q, class F>
auto write_locked(PyModel<Q>& r, Progress* progress, F&& f) -> decltype(f()) {
  r.check_reentry();
  return without_gil(progress, [&]() -> decltype(f()) {
    std::unique_lock lock(r.mu);
    r.writer = std::this_thread::get_id();
    struct Clear {
      PyModel<Q>& r;
      ~Clear() { r.writer = std::thread::id{}; }
    } clear{r};
    return f();
  });
}

/// Run f() without the GIL under the model's shared lock.
template <class Q, class F>
auto read_locked(PyModel<Q>& r, F&& f) -> decltype(f()) {
  r.check_reentry();
  return without_gil(nullptr, [&]() -> decltype(f()) {
    std::shared_lock lock(r.mu);
    return f();
  });
}

/// as_f32(x) checked to have the model's dimension d.
F32In check_dim(size_t d, py::handle x, const char* name);
template <class Q>
F32In check_dim(const PyModel<Q>& r, py::handle x, const char* name) {
  return check_dim(r.q->dim(), x, name);
}

}  // namespace tessera_py
