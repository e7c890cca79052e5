#include "tessera/sid/index_json.h"

#include <string_view>
#include <unordered_map>

#include <cstdint>

namespace tessera {

namespace {

void append_escape_u(std::string& out, uint32_t u) {
  static const char* hex = "0123456789abcdef";
  out += "\\u";
  for (int s = 12; s >= 0; s -= 4) out += hex[(u >> s) & 0xF];
}

}  // namespace

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20) append_escape_u(out, c);
          else out += char(c);
      }
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence; invalid bytes become U+FFFD.
    uint32_t cp = 0xFFFD;
    size_t len = 1;
    if ((c >> 5) == 0x6 && i + 1 < s.size()) cp = c & 0x1F, len = 2;
    else if ((c >> 4) == 0xE && i + 2 < s.size()) cp = c & 0x0F, len = 3;
    else if ((c >> 3) == 0x1E && i + 3 < s.size()) cp = c & 0x07, len = 4;
    bool ok = len > 1;
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = (unsigned char)s[i + k];
      if ((cc >> 6) != 0x2) ok = false;
      else cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) cp = 0xFFFD, len = 1;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      append_escape_u(out, 0xD800 + (cp >> 10));
      append_escape_u(out, 0xDC00 + (cp & 0x3FF));
    } else {
      append_escape_u(out, cp);
    }
    i += len;
  }
  return out + "\"";
}

void check_unique_keys(const std::vector<std::string>& keys) {
  std::unordered_map<std::string_view, size_t> first;
  first.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto [at, fresh] = first.emplace(keys[i], i);
    TESSERA_CHECK_ARG(fresh, "item id \"" << keys[i] << "\" is given twice (lines " << at->second + 1 << " and " << i + 1
                                          << "): index.json keys must be unique");
  }
}

std::string index_json(MatrixView<const int32_t> ids, size_t levels, TokenFormat fmt,
                       const std::vector<std::string>* keys) {
  TESSERA_CHECK_ARG(!keys || keys->size() == ids.rows,
                    ids.rows << " items but " << keys->size() << " ids were given");
  if (keys) check_unique_keys(*keys);
  TESSERA_CHECK_ARG(ids.cols <= 26, "at most 26 tokens per ID (letters a..z), got " << ids.cols);
  std::string out;
  out.reserve(ids.rows * (16 + 14 * ids.cols));
  out += "{";
  for (size_t i = 0; i < ids.rows; ++i) {
    out += i ? ",\n  " : "\n  ";
    out += keys ? json_quote((*keys)[i]) : "\"" + std::to_string(i) + "\"";
    out += ": [";
    bool first = true;
    for (size_t j = 0; j < ids.cols; ++j) {
      const int32_t v = ids(i, j);
      if (v < 0) continue;
      const long long shown = j < levels && !fmt.zero_based ? (long long)v + 1 : (long long)v;
      out += first ? "\n    \"<" : ",\n    \"<";
      out += char('a' + j);
      out += '_';
      out += std::to_string(shown);
      out += ">\"";
      first = false;
    }
    out += first ? "]" : "\n  ]";
  }
  out += ids.rows ? "\n}" : "}";
  return out;
}

}  // namespace tessera
