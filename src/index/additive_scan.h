// The scan both additive-quantizer indexes (flat and IVF) share: one query's lookup table against packed
// codes in the codec's layout, into a bounded top-k with a total order. Internal to src/index.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/quant/additive_quantizer.h"

namespace tessera::detail {

// Code m of a packed code: nbits bits from bit position `bit`, least significant first (the codec's layout).
inline uint32_t read_code(const uint8_t* code, size_t bit, size_t nbits) {
  const uint8_t* p = code + (bit >> 3);
  const size_t shift = bit & 7, nbytes = (shift + nbits + 7) >> 3;  // ≤ 4 bytes for nbits ≤ 24
  uint64_t v = 0;
  for (size_t b = 0; b < nbytes; ++b) v |= uint64_t(p[b]) << (8 * b);
  return uint32_t((v >> shift) & ((uint64_t(1) << nbits) - 1));
}

// What the scan needs of the codec, flattened once per search.
struct ScanLayout {
  std::vector<size_t> offsets, nbits;
  bool bytes = true;  // every code index is one byte: read them directly
};

// Σ_m LUT[offset_m + code_m], summed in float for m = 0..M−1 as the codec's compute_1_distance_LUT does, so
// the index's distances equal the codec's bit for bit.
inline float lut_sum(const ScanLayout& L, const uint8_t* code, const float* LUT) {
  const size_t M = L.offsets.size();
  float s = 0;
  if (L.bytes) {
    for (size_t m = 0; m < M; ++m) s += LUT[L.offsets[m] + code[m]];
  } else {
    size_t bit = 0;
    for (size_t m = 0; m < M; ++m) {
      s += LUT[L.offsets[m] + read_code(code, bit, L.nbits[m])];
      bit += L.nbits[m];
    }
  }
  return s;
}

// A bounded top-k of (distance, label): the heap's front is the worst kept entry. "Better" is the lower
// distance (L2) or the higher one (inner product), then the lower label, so equal distances are resolved
// the same way whatever order codes are scanned in.
template <bool IP>
struct Better {
  bool operator()(const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) const {
    if (a.first != b.first) return IP ? a.first > b.first : a.first < b.first;
    return a.second < b.second;
  }
};

// What one query's scan reads: the stored codes and, for L2, how each code's norm term is found.
struct ScanInput {
  const AdditiveQuantizer* aq = nullptr;
  ScanLayout layout;
  SearchType st = SearchType::ST_decompress;
  const uint8_t* codes = nullptr;
  const int64_t* ids = nullptr;  // labels of the codes (nullptr: a code's label is its position)
  size_t n = 0, code_size = 0;
  const float* norms = nullptr;  // cached norm terms (ST_decompress, ST_norm_from_LUT)
  // Stored norms without a call per code: a byte-aligned float32, or a table of every code of ≤ 8 bits
  // (each entry the codec's own decode_norm, so the values are the same).
  size_t norm_bit = 0, norm_nbits = 0;
  bool norm_float_aligned = false;
  std::vector<float> norm_table;
};

inline float stored_norm(const ScanInput& S, const uint8_t* code) {
  if (S.norm_float_aligned) {
    float v;
    std::memcpy(&v, code + S.norm_bit / 8, sizeof v);
    return v;
  }
  if (!S.norm_table.empty()) return S.norm_table[read_code(code, S.norm_bit, S.norm_nbits)];
  return S.aq->decode_norm_from_packed(code);
}

using Heap = std::vector<std::pair<float, int64_t>>;

// Offer codes [i0, i1) to heap, which keeps the best `kept` of everything offered (its front: the worst kept).
// L2: bias + the codec's LUT distance (bias = ‖q‖² for a flat index); inner product: ΣLUT + bias. The order
// (distance, then label) is total, so the kept set does not depend on how codes were split between heaps.
template <bool IP>
void scan(const ScanInput& S, const float* lut, float bias, size_t i0, size_t i1, size_t kept, Heap& heap) {
  const Better<IP> better;
  const uint8_t* code = S.codes + i0 * S.code_size;
  for (size_t i = i0; i < i1; ++i, code += S.code_size) {
    const float s = lut_sum(S.layout, code, lut);
    float dist;
    if constexpr (IP) {
      dist = s + bias;
    } else {
      switch (S.st) {
        case SearchType::ST_LUT_nonorm: dist = -s; break;
        case SearchType::ST_decompress:
        case SearchType::ST_norm_from_LUT: dist = S.norms[i] - 2 * s; break;
        default: dist = stored_norm(S, code) - 2 * s;
      }
      dist += bias;
    }
    const std::pair<float, int64_t> cand(dist, S.ids ? S.ids[i] : int64_t(i));
    if (heap.size() < kept) {
      heap.push_back(cand);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(cand, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = cand;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
}

// Write the best k of heap (sorted, best first; −1 / worst past its size) to dq, lq. heap is reordered.
template <bool IP>
void emit(Heap& heap, size_t k, float worst, float* dq, int64_t* lq) {
  std::sort(heap.begin(), heap.end(), Better<IP>());
  for (size_t j = 0; j < k; ++j) {
    dq[j] = j < heap.size() ? heap[j].first : worst;
    lq[j] = j < heap.size() ? heap[j].second : -1;
  }
}

// The codec's layout and norm decoding, flattened once per search (codes, ids, n and norms are the caller's).
inline ScanInput make_scan_input(const AdditiveQuantizer& aq, bool inner_product) {
  ScanInput S;
  S.aq = &aq;
  S.st = aq.search_type();
  S.code_size = aq.code_size();
  S.layout.offsets.assign(aq.codebook_offsets().begin(), aq.codebook_offsets().end() - 1);
  for (size_t m = 0; m < aq.num_codebooks(); ++m) {
    S.layout.nbits.push_back(aq.nbits(m));
    S.layout.bytes = S.layout.bytes && aq.nbits(m) == 8;
  }
  if (!inner_product && search_type_stores_norm(S.st)) {
    S.norm_bit = aq.index_bits();
    S.norm_nbits = aq.norm_bits();
    if (S.st == SearchType::ST_norm_float) {
      S.norm_float_aligned = S.norm_bit % 8 == 0;
    } else if (S.norm_nbits <= 8) {
      for (uint64_t c = 0; c < (uint64_t(1) << S.norm_nbits); ++c) S.norm_table.push_back(aq.decode_norm(c));
    }
  }
  return S;
}

// Every code index of n packed codes must name a codeword (K_m need not be a power of two): an index past
// K_m would read beyond the lookup tables. InvalidArgument naming the first bad code.
inline void check_code_indices(const AdditiveQuantizer& aq, size_t n, const uint8_t* codes) {
  const size_t M = aq.num_codebooks(), cs = aq.code_size();
  for (size_t i = 0; i < n; ++i)
    for (size_t m = 0, bit = 0; m < M; bit += aq.nbits(m), ++m) {
      const uint32_t c = read_code(codes + i * cs, bit, aq.nbits(m));
      TESSERA_CHECK_ARG(c < aq.codebook_sizes()[m], "code " << i << " has index " << c << " in codebook " << m
                                                            << ", which has " << aq.codebook_sizes()[m] << " codewords");
    }
}

}  // namespace tessera::detail
