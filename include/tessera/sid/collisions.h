// Collision resolution for semantic IDs: make every item's token tuple unique (and the set prefix-free).
//   append      MiniOneRec's default: items whose full tuple is shared get one more token, their rank
//               1..m within the group in row order; unique items keep L tokens.
//   append_all  TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023):
//               every item gets one more token, the number of earlier rows with the same tuple (0, 1, …).
//   reassign    ours: colliding items move, at the last level, to the nearest codeword no other item of
//               their prefix uses, so IDs keep L tokens; what cannot move (a prefix with more than K_L
//               items) falls back to append.
//   none        keep collisions.
#pragma once
#include <string>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

enum class Dedup { append, append_all, reassign, none };

/// "append", "append-all", "reassign" or "none"; anything else is an InvalidArgument.
Dedup parse_dedup(const std::string& name);
const char* dedup_name(Dedup d);

struct CollisionStats {
  size_t unique_ids = 0;        ///< distinct tuples
  double collision_rate = 0;    ///< 1 − unique / n
  size_t largest_group = 0;     ///< most items sharing one tuple
  size_t colliding_items = 0;   ///< items whose tuple is shared
};

/// Statistics of the tuples formed by the non-negative entries of each row (−1 = no token).
CollisionStats collision_stats(MatrixView<const int32_t> ids);

/// Row order sorted by the first `depth` columns, ties by row (a stable grouping of equal prefixes).
std::vector<size_t> prefix_order(MatrixView<const int32_t> codes, size_t depth);

/// codes (n × L) → ids (n × (L+1)). all = false: append (suffix only on shared tuples, −1 elsewhere,
/// ranks 1..m); all = true: append-all (every row, 0..m−1).
CodeMatrix append_suffix(MatrixView<const int32_t> codes, bool all);

struct ReassignReport {
  size_t moved = 0;       ///< items given another last-level code
  size_t unresolved = 0;  ///< items still colliding (their prefix holds more than K_L items)
};

/// In-place `reassign` on codes (n × L): residual (n × d) is what enters the last level, last_codebook
/// its K_L × d codewords. In every prefix group, of the items sharing a code the one nearest to it keeps
/// it; the others take, in row order, the nearest codeword unused within the group.
ReassignReport reassign_last_level(MatrixView<int32_t> codes, MatrixView<const float> residual,
                                   MatrixView<const float> last_codebook);

}  // namespace tessera
