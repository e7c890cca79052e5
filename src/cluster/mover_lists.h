// The k × k table of cheapest movers that both balanced-assignment engines run their shortest paths on
// (cluster_graph.h): entry (a, b) holds min over members i of a of c(i, b) − c(i, a) and the item attaining
// it. Behind every entry sits a short sorted list of the next cheapest movers, so that when the cheapest
// leaves a the next one is at hand; the engine refills an entry from a's members only once its whole list
// has left. Keys order by (value, item), so the table does not depend on the order members are offered in.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace tessera::detail {

struct Mover {
  float value;
  int32_t item;
};
inline bool before(Mover x, Mover y) { return x.value < y.value || (x.value == y.value && x.item < y.item); }

class MoverLists {
 public:
  static constexpr float kNone = std::numeric_limits<float>::infinity();

  /// List depth for n items in k clusters: lists pay where refills are dear (large clusters), and the
  /// table stays within kBudget movers.
  static size_t depth_for(size_t n, size_t k) {
    return std::clamp<size_t>(n / k / kMembersPerSlot, 1, std::clamp<size_t>(kBudget / (k * k), 1, kMaxDepth));
  }

  /// Every entry empty, with no member outside its list.
  void reset(size_t k, size_t depth) {
    k_ = k, depth_ = depth;
    move_.assign(k * k, kNone);
    who_.assign(k * k, -1);
    list_.assign(k * k * depth, Mover{kNone, -1});
    len_.assign(k * k, 0);
    floor_.assign(k * k, Mover{kNone, -1});
    floor_value_.assign(k * k, kNone);
  }
  /// Row a empty (before it is built again from a's members).
  void clear_row(size_t a) {
    const size_t row = a * k_;
    std::fill(&move_[row], &move_[row] + k_, kNone);
    std::fill(&who_[row], &who_[row] + k_, -1);
    std::fill(&len_[row], &len_[row] + k_, 0);
    std::fill(&floor_[row], &floor_[row] + k_, Mover{kNone, -1});
    std::fill(&floor_value_[row], &floor_value_[row] + k_, kNone);
  }

  /// Item m.item of a, as a mover to b with key m (entry e = a·k + b).
  void offer(size_t e, Mover m) {
    if (m.value <= floor_value_[e] && before(m, floor_[e])) insert(e, m);
  }
  /// Adds key m to the list of entry e; requires m before the entry's floor.
  void insert(size_t e, Mover m) {
    Mover* l = &list_[e * depth_];
    size_t n = len_[e];
    if (n == depth_) {  // full: the last key (or m itself) falls out and becomes the floor
      if (!before(m, l[n - 1])) {
        set_floor(e, m);
        return;
      }
      set_floor(e, l[--n]);
    }
    size_t at = n;
    for (; at > 0 && before(m, l[at - 1]); --at) l[at] = l[at - 1];
    l[at] = m;
    len_[e] = (uint8_t)(n + 1);
    if (at == 0) move_[e] = m.value, who_[e] = m.item;
  }
  /// A single mover as the entry's whole list, the floor at the mover itself (nothing outside is cheaper).
  void set_single(size_t e, Mover m) {
    list_[e * depth_] = m;
    len_[e] = 1;
    move_[e] = m.value, who_[e] = m.item;
    set_floor(e, m);
  }

  /// Item m.item, whose key in entry e is m, left the entry's cluster. Returns true when the list ran dry
  /// while other members may still move along the entry: the caller must refill it (clear_row + offers,
  /// or clear_entry + offers).
  bool remove(size_t e, Mover m) {
    const size_t n = len_[e];
    Mover* l = &list_[e * depth_];
    if (n == 0 || before(l[n - 1], m)) return false;
    size_t at = 0;
    while (at < n && l[at].item != m.item) ++at;
    if (at == n) return false;
    for (; at + 1 < n; ++at) l[at] = l[at + 1];
    len_[e] = (uint8_t)(n - 1);
    if (n > 1) {
      move_[e] = l[0].value, who_[e] = l[0].item;
      return false;
    }
    move_[e] = kNone, who_[e] = -1;
    return floor_value_[e] < kNone;
  }
  /// Entry e empty (before it is refilled from its cluster's members).
  void clear_entry(size_t e) {
    len_[e] = 0;
    set_floor(e, Mover{kNone, -1});
    move_[e] = kNone, who_[e] = -1;
  }

  size_t depth() const { return depth_; }
  const float* move() const { return move_.data(); }
  const int32_t* who() const { return who_.data(); }
  /// Row a's floor values: every member outside entry (a, b)'s list has a key of at least floor[b].
  const float* floor_values(size_t a) const { return &floor_value_[a * k_]; }
  /// Row a's cheapest values and items, writable for a plain-minimum build (then publish_minima).
  float* move_row(size_t a) { return &move_[a * k_]; }
  int32_t* who_row(size_t a) { return &who_[a * k_]; }
  /// After move_row / who_row of row a were filled with plain minima: each becomes its entry's single mover.
  void publish_minima(size_t a) {
    for (size_t b = 0; b < k_; ++b) {
      const size_t e = a * k_ + b;
      if (who_[e] >= 0) set_single(e, Mover{move_[e], who_[e]});
    }
  }

 private:
  void set_floor(size_t e, Mover m) {
    floor_[e] = m;
    floor_value_[e] = m.value;
  }
  // 2²³ movers (64 MiB): at K = 256 a list of 64. Deeper lists pay at scale: a restricted solve on 2.4M rows took
  // 9.0 s with lists of 16, 5.1 s with 64 and 4.9 s with 128 (a refill rescans the whole cluster's members).
  static constexpr size_t kBudget = size_t(1) << 23, kMaxDepth = 64, kMembersPerSlot = 64;

  size_t k_ = 0, depth_ = 1;
  std::vector<float> move_, floor_value_;
  std::vector<int32_t> who_;
  std::vector<Mover> list_, floor_;
  std::vector<uint8_t> len_;
};

}  // namespace tessera::detail
