#include "tessera/core/threading.h"

#include <omp.h>

#include <atomic>

namespace tessera {

namespace {
// OpenMP's per-thread ICV (omp_set_num_threads) would only reach regions started from the thread that
// set it, so the counts live here and every parallel region asks num_threads().
std::atomic<int> g_process_threads{0};  // 0: the default
thread_local int t_override = 0;         // 0: none

int default_threads() {
  static const int n = omp_get_max_threads();
  return n;
}
}  // namespace

int num_threads() {
  if (t_override > 0) return t_override;
  const int n = g_process_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_threads();
}

void set_num_threads(int n) { g_process_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

ScopedThreads::ScopedThreads(int n) : previous_(t_override) {
  if (n > 0) t_override = n;
}
ScopedThreads::~ScopedThreads() { t_override = previous_; }

}  // namespace tessera
