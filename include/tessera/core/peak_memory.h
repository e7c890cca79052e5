// The process's peak resident memory, for the metrics of long runs (metrics.json's peak_rss_bytes).
#pragma once
#include <cstddef>

namespace tessera {

/// Peak resident set size of this process so far, in bytes (getrusage's ru_maxrss; 0 where unknown).
size_t peak_rss_bytes();

}  // namespace tessera
