// Thread count for tessera's parallel loops (OpenMP stays private to the build).
#pragma once

namespace tessera {

/// Threads that tessera's parallel regions started from the calling OS thread use: a ScopedThreads
/// count in force on this thread, else the process-wide count, else all cores.
int num_threads();
/// Set the process-wide thread count (every OS thread sees it); n <= 0 restores the default (all cores).
/// Results do not depend on it.
void set_num_threads(int n);

/// A thread count for work started from this OS thread while the object lives (n <= 0: no override),
/// e.g. a per-call `threads=` argument; other threads keep theirs.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int previous_;
};

}  // namespace tessera
