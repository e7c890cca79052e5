// Progress reporting: the library calls a callback the front end owns (CLI: a bar on stderr;
// Python: a callable). The library itself never prints.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace tessera {

struct ProgressEvent {
  std::string stage;   ///< what is running, e.g. "level 2/3: k-means"
  size_t done = 0;     ///< units finished in this stage
  size_t total = 0;    ///< units in this stage (0 when unknown)
  double value = 0.0;  ///< a figure of merit for this step (objective, MSE), 0 if none
};

using ProgressFn = std::function<void(const ProgressEvent&)>;

inline void report(const ProgressFn& fn, std::string stage, size_t done, size_t total, double value = 0.0) {
  if (fn) fn(ProgressEvent{std::move(stage), done, total, value});
}

}  // namespace tessera
