#include "tessera/sid/metrics.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "tessera/core/rng.h"

namespace tessera {

std::vector<LevelMetrics> code_usage(MatrixView<const int32_t> codes, const std::vector<size_t>& codebook_sizes) {
  TESSERA_CHECK_ARG(codes.cols == codebook_sizes.size(),
                    codes.cols << " code columns but " << codebook_sizes.size() << " codebook sizes");
  std::vector<LevelMetrics> out(codes.cols);
  for (size_t l = 0; l < codes.cols; ++l) {
    const size_t K = codebook_sizes[l];
    std::vector<size_t> count(K, 0);
    for (size_t i = 0; i < codes.rows; ++i) {
      const int32_t c = codes(i, l);
      TESSERA_CHECK_ARG(c >= 0 && (size_t)c < K, "code " << c << " at row " << i << " is outside [0, " << K << ")");
      ++count[c];
    }
    LevelMetrics& m = out[l];
    m.level = l;
    m.codebook_size = K;
    m.min_cluster_size = *std::min_element(count.begin(), count.end());
    m.max_cluster_size = *std::max_element(count.begin(), count.end());
    double h = 0;
    for (size_t c : count) {
      if (!c) continue;
      ++m.unique_codes;
      const double p = double(c) / double(codes.rows);
      h -= p * std::log2(p);
    }
    m.utilisation = double(m.unique_codes) / double(K);
    m.entropy_bits = h;
    m.perplexity = std::exp2(h);
  }
  return out;
}

double prefix_purity(MatrixView<const int32_t> codes, size_t depth, const std::vector<int32_t>& labels) {
  TESSERA_CHECK_ARG(labels.size() == codes.rows, codes.rows << " items but " << labels.size() << " labels");
  if (codes.rows == 0) return 0;
  const auto order = prefix_order(codes, depth);
  size_t majority_total = 0;
  std::unordered_map<int32_t, size_t> tally;
  for (size_t g = 0; g < order.size();) {
    size_t e = g;
    tally.clear();
    size_t best = 0;
    while (e < order.size() && std::equal(codes.row(order[g]), codes.row(order[g]) + depth, codes.row(order[e]))) {
      best = std::max(best, ++tally[labels[order[e]]]);
      ++e;
    }
    majority_total += best;
    g = e;
  }
  return double(majority_total) / double(codes.rows);
}

void add_purity(std::vector<LevelMetrics>& levels, MatrixView<const int32_t> codes,
                const std::vector<std::string>& labels, uint64_t seed, int trials) {
  TESSERA_CHECK_ARG(labels.size() == codes.rows, codes.rows << " items but " << labels.size() << " labels");
  std::unordered_map<std::string, int32_t> index;
  std::vector<int32_t> lab(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) lab[i] = index.emplace(labels[i], (int32_t)index.size()).first->second;
  for (size_t l = 0; l < levels.size(); ++l) {
    levels[l].purity = prefix_purity(codes, l + 1, lab);
    double chance = 0;
    std::vector<int32_t> shuffled = lab;
    Rng rng(derive_seed(seed, l));
    for (int t = 0; t < trials; ++t) {
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      chance += prefix_purity(codes, l + 1, shuffled);
    }
    levels[l].purity_chance = chance / trials;
  }
}

std::string SidMetrics::to_json() const {
  nlohmann::ordered_json j;
  j["n_items"] = n_items;
  j["dim"] = dim;
  j["levels_count"] = codebook_sizes.size();
  j["codebook_sizes"] = codebook_sizes;
  j["balance"] = balance;
  j["dedup"] = dedup;
  j["seconds_total"] = seconds_total;
  j["mse_before"] = mse_before;
  j["mse"] = mse;
  if (recon_mse) j["recon_mse"] = *recon_mse;
  j["collision_rate"] = before.collision_rate;
  j["unique_ids_before"] = before.unique_ids;
  j["largest_collision_group"] = before.largest_group;
  j["colliding_items"] = before.colliding_items;
  j["final_collisions"] = final_collisions;
  j["max_id_length"] = max_id_length;
  if (peak_rss_bytes > 0) j["peak_rss_bytes"] = peak_rss_bytes;
  if (dedup == "reassign") {
    j["reassigned_items"] = reassigned_items;
    j["mse_after_resolution"] = mse_after_resolution;
    j["mse_increase_from_resolution"] = mse_after_resolution - mse;
  }
  auto& lv = j["levels"] = nlohmann::ordered_json::array();
  for (const auto& m : levels) {
    nlohmann::ordered_json e;
    e["level"] = m.level;
    e["codebook_size"] = m.codebook_size;
    e["unique_codes"] = m.unique_codes;
    e["utilisation"] = m.utilisation;
    e["min_cluster_size"] = m.min_cluster_size;
    e["max_cluster_size"] = m.max_cluster_size;
    e["entropy_bits"] = m.entropy_bits;
    e["perplexity"] = m.perplexity;
    e["mse_before"] = m.mse_before;
    e["mse_after"] = m.mse_after;
    e["seconds"] = m.seconds;
    if (m.iterations) {
      e["iterations"] = *m.iterations;
      e["warm_start_rows"] = m.warm_start_rows;
    }
    if (balance == "exact") {
      e["size_min"] = m.size_lo;
      e["size_max"] = m.size_hi;
    }
    if (m.purity) {
      e["purity"] = *m.purity;
      e["purity_chance"] = *m.purity_chance;
    }
    lv.push_back(std::move(e));
  }
  return j.dump(2);
}

}  // namespace tessera
