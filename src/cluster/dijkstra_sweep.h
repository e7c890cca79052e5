// The inner loop of the dense Dijkstra in the balanced assignment (balanced_ssp.cpp): one settled cluster
// relaxes its arcs to every other cluster and the next node to settle is found in the same sweep.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tessera::detail {

struct Nearest {
  double key;     ///< smallest tentative distance among the open nodes (+inf: none reachable)
  int32_t index;  ///< its node, lowest index on ties (-1 when key is +inf)
};

/// Relaxes the arcs u → v of the cluster graph for v < k: reduced cost max(0, move[v] + price[v] − pu)
/// (move: row u of the cheapest-mover table, floats; +inf where no item can move), so for every open v
/// key[v] = min(key[v], du + that), recording pred[v] = u and arc[v] = move[v] where it fell. Settled
/// nodes hold NaN in key and are left alone. Returns the open node with the smallest key.
/// Vectorised for the widest unit the CPU has (chosen at load time); the same result on every unit.
Nearest relax_and_find_nearest(const float* move, const double* price, double pu, double du, int32_t u, size_t k,
                               double* key, int32_t* pred, double* arc);

/// The open node (key not NaN) with the smallest key, lowest index on ties.
Nearest find_nearest(const double* key, size_t k);

}  // namespace tessera::detail
