#include "progress_bar.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace tessera::cli {

ProgressFn progress_bar(bool quiet) {
  if (quiet) return {};
  const bool tty = isatty(2);
  auto start = std::chrono::steady_clock::now();
  return [tty, start, last = std::string()](const ProgressEvent& e) mutable {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int width = 24;
    const double frac = e.total ? double(e.done) / double(e.total) : 0.0;
    const int filled = int(frac * width + 0.5);
    std::string bar(filled, '#');
    bar.resize(width, '.');
    if (tty) {
      std::fprintf(stderr, "\r\033[K%7.1fs  %-34s [%s] %zu/%zu", secs, e.stage.c_str(), bar.c_str(), e.done, e.total);
      if (e.value) std::fprintf(stderr, "  %.6g", e.value);
      std::fflush(stderr);
    } else if (e.stage != last || (e.total && e.done == e.total)) {
      // Not a terminal (CI logs, pipes): one line per stage start and end, no redraws.
      std::fprintf(stderr, "%7.1fs  %s %zu/%zu\n", secs, e.stage.c_str(), e.done, e.total);
    }
    last = e.stage;
  };
}

}  // namespace tessera::cli
