// MiniOneRec's index.json: {"<key>": ["<a_14>", "<b_201>", "<c_8>"], ...}, laid out as Python's
// json.dump(obj, f, indent=2) writes it (so files diff cleanly against MiniOneRec's), ASCII-only.
#pragma once
#include <string>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera {

struct TokenFormat {
  /// Level tokens are code + 1 (MiniOneRec's rqkmeans scripts) unless zero_based (RQ-VAE scripts).
  bool zero_based = false;
};

/// ids: n × width (−1 = no token). Columns < levels are level codes (shifted by the format); later
/// columns are collision suffixes, written as they are. keys: n item ids, or nullptr for "0".."n−1".
std::string index_json(MatrixView<const int32_t> ids, size_t levels, TokenFormat fmt,
                       const std::vector<std::string>* keys = nullptr);

/// Throws InvalidArgument naming the first id given twice (JSON object keys must be unique).
void check_unique_keys(const std::vector<std::string>& keys);

/// JSON string literal for s (quotes included), escaping as Python's json.dumps with ensure_ascii.
std::string json_quote(const std::string& s);

}  // namespace tessera
