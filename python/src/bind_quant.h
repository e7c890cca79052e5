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

/// The model, a reader/writer lock (heavy calls run without the GIL, so another Python thread may use
/// the same model meanwhile) and Python-side state.
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

/// as_f32(x) checked to have the model's dimension.
F32In check_dim(const PyRQ& r, py::handle x, const char* name);

}  // namespace tessera_py
