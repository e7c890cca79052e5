#include "tessera/cluster/kmeans1d.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tessera/core/error.h"

namespace tessera {

namespace {

// Prefix sums of the sorted, centred values: cost(i, j) is the inertia of the run [i, j).
struct RunCost {
  std::vector<double> s1, s2;
  double operator()(size_t i, size_t j) const {
    const double a = s1[j] - s1[i];
    const double c = (s2[j] - s2[i]) - a * a / double(j - i);
    return c > 0 ? c : 0;  // cancellation may leave a tiny negative
  }
};

// Fill cur[j] = min_{i} prev[i] + cost(i, j) for j in [jlo, jhi], i in [ilo, ihi] ∩ [c − 1, j − 1]
// (c: clusters used, 1-based), using that the best i does not decrease with j.
void fill_layer(size_t c, size_t jlo, size_t jhi, size_t ilo, size_t ihi, const std::vector<double>& prev,
                std::vector<double>& cur, std::vector<uint32_t>& arg, const RunCost& cost) {
  while (jlo <= jhi) {
    const size_t j = jlo + (jhi - jlo) / 2;
    const size_t lo = std::max(ilo, c - 1), hi = std::min(ihi, j - 1);
    double best = std::numeric_limits<double>::infinity();
    size_t bi = lo;
    for (size_t i = lo; i <= hi; ++i) {
      const double v = prev[i] + cost(i, j);
      if (v < best) best = v, bi = i;
    }
    cur[j] = best;
    arg[j] = (uint32_t)bi;
    // Left half recursively, right half by looping (bounded recursion depth: log n).
    if (j > jlo) fill_layer(c, jlo, j - 1, ilo, bi, prev, cur, arg, cost);
    jlo = j + 1;
    ilo = bi;
  }
}

}  // namespace

KMeans1DResult kmeans1d(size_t n, const float* x, size_t k) {
  TESSERA_CHECK_ARG(k >= 1 && k <= n, "1-D k-means needs 1 ≤ k ≤ n; got k = " << k << " for n = " << n << " values");
  TESSERA_CHECK_ARG(n < (size_t(1) << 32), "1-D k-means takes at most 2^32 − 1 values, got " << n);
  std::vector<float> v(x, x + n);
  for (size_t i = 0; i < n; ++i)
    TESSERA_CHECK_ARG(std::isfinite(v[i]), "1-D k-means input " << i << " is not finite (" << v[i] << ")");
  std::sort(v.begin(), v.end());
  // Centre before squaring so the prefix sums keep the precision the run costs need.
  double mean = 0;
  for (float t : v) mean += t;
  mean /= double(n);
  RunCost cost;
  cost.s1.assign(n + 1, 0.0);
  cost.s2.assign(n + 1, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const double t = double(v[i]) - mean;
    cost.s1[i + 1] = cost.s1[i] + t;
    cost.s2[i + 1] = cost.s2[i] + t * t;
  }
  // prev[j]: least inertia of v[0, j) in c − 1 clusters; arg[c][j]: where the last of c clusters starts.
  std::vector<double> prev(n + 1, std::numeric_limits<double>::infinity()), cur(prev);
  std::vector<std::vector<uint32_t>> arg(k, std::vector<uint32_t>(n + 1, 0));
  for (size_t j = 1; j <= n; ++j) prev[j] = cost(0, j);
  for (size_t c = 2; c <= k; ++c) {
    std::fill(cur.begin(), cur.end(), std::numeric_limits<double>::infinity());
    fill_layer(c, c, n, c - 1, n - 1, prev, cur, arg[c - 1], cost);
    std::swap(prev, cur);
  }
  KMeans1DResult r;
  r.centroids.resize(k);
  r.sizes.resize(k);
  size_t end = n;
  for (size_t c = k; c-- > 0;) {
    const size_t start = c == 0 ? 0 : arg[c][end];
    double s = 0;
    for (size_t i = start; i < end; ++i) s += v[i];
    r.centroids[c] = s / double(end - start);
    r.sizes[c] = end - start;
    for (size_t i = start; i < end; ++i) r.inertia += (v[i] - r.centroids[c]) * (v[i] - r.centroids[c]);
    end = start;
  }
  return r;
}

}  // namespace tessera
