// Thread count for tessera's parallel loops (OpenMP stays private to the build).
#pragma once

namespace tessera {

/// Threads used by tessera's parallel regions (defaults to the OpenMP default, i.e. all cores).
int num_threads();
/// Set the thread count; n <= 0 restores the default. Results do not depend on it.
void set_num_threads(int n);

}  // namespace tessera
