#include "tessera/core/threading.h"

#include <omp.h>

namespace tessera {

namespace {
int& default_threads() {
  static int n = omp_get_max_threads();
  return n;
}
}  // namespace

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  const int d = default_threads();
  omp_set_num_threads(n > 0 ? n : d);
}

}  // namespace tessera
