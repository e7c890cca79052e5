#include "tessera/core/interrupt.h"

#include <chrono>

namespace tessera {

namespace {
InterruptCheck g_check;
// Asking the front end can cost a lock (Python's GIL), so it is asked at most this often per thread.
constexpr auto kMinInterval = std::chrono::milliseconds(20);
thread_local std::chrono::steady_clock::time_point t_last_check{};
}  // namespace

void set_interrupt_check(InterruptCheck check) { g_check = std::move(check); }

void check_interrupt_now() {
  if (!g_check) return;
  t_last_check = std::chrono::steady_clock::now();
  if (g_check()) throw Interrupted();
}

void check_interrupt() {
  if (!g_check) return;
  if (std::chrono::steady_clock::now() - t_last_check < kMinInterval) return;
  check_interrupt_now();
}

}  // namespace tessera
