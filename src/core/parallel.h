// Private helpers for OpenMP regions: exceptions must never escape a parallel region, so the first one
// is captured and rethrown after the region ends.
#pragma once
#include <exception>
#include <mutex>

namespace tessera::detail {

class ExceptionCatcher {
 public:
  template <class F>
  void run(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!first_) first_ = std::current_exception();
    }
  }
  void rethrow() {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mu_;
  std::exception_ptr first_;
};

}  // namespace tessera::detail
