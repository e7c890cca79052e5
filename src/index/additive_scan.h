// The scan both additive-quantizer indexes (flat and IVF) share: one query's lookup table against packed
// codes in the codec's layout, into a bounded top-k with a total order. Internal to src/index.
#pragma once
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/keep_smallest.h"
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

// How the scan reads code indices; every way gives the same index, so the sums are the same.
enum class CodeRead : uint8_t {
  bytes,    // every nbits = 8: code m is byte m
  nibbles,  // every nbits = 4: code m is the low (m even) or high (m odd) half of byte m / 2
  words,    // anything else (nbits ≤ 24): one unaligned 32-bit little-endian load, shift and mask per index
  generic,  // big-endian hosts: read_code
};

// Where code index m sits in a packed code and where its table starts in the LUT.
struct CodeField {
  size_t offset = 0;  // first LUT entry of codebook m
  uint32_t byte = 0, shift = 0, mask = 0;  // index m = (32 bits from byte `byte`) >> shift & mask
};

// What the scan needs of the codec, flattened once per search.
struct ScanLayout {
  std::vector<CodeField> fields;
  std::vector<size_t> nbits;
  CodeRead read = CodeRead::bytes;
  size_t word_reach = 0;  // bytes a code's word loads touch from its start (may pass code_size)
};

// The layout of code indices of the given widths, packed LSB first from bit 0, with the tables at offsets.
inline ScanLayout make_scan_layout(const std::vector<size_t>& nbits, const std::vector<size_t>& offsets) {
  ScanLayout L;
  L.nbits = nbits;
  const bool all8 = std::all_of(nbits.begin(), nbits.end(), [](size_t b) { return b == 8; });
  const bool all4 = std::all_of(nbits.begin(), nbits.end(), [](size_t b) { return b == 4; });
  L.read = all8 ? CodeRead::bytes
           : all4 ? CodeRead::nibbles
           : std::endian::native == std::endian::little ? CodeRead::words
                                                         : CodeRead::generic;
  size_t bit = 0;
  for (size_t m = 0; m < nbits.size(); bit += nbits[m], ++m) {
    CodeField f;
    f.offset = offsets[m];
    f.byte = uint32_t(bit >> 3);
    f.shift = uint32_t(bit & 7);                    // shift + nbits ≤ 31: the index lies in the 32 bits
    f.mask = uint32_t((uint64_t(1) << nbits[m]) - 1);
    L.fields.push_back(f);
    L.word_reach = std::max<size_t>(L.word_reach, f.byte + 4);
  }
  if (L.read == CodeRead::bytes) L.word_reach = 0;                               // byte loads only
  if (L.read == CodeRead::nibbles) L.word_reach = (nbits.size() + 15) / 16 * 8;  // a 64-bit load per 16 indices
  return L;
}

// Σ_m LUT[offset_m + code_m], summed in float for m = 0..M−1 as the codec's compute_1_distance_LUT does, so
// the index's distances equal the codec's bit for bit. The reference reader: one code, read_code per index.
inline float lut_sum(const ScanLayout& L, const uint8_t* code, const float* LUT) {
  float s = 0;
  size_t bit = 0;
  for (size_t m = 0; m < L.fields.size(); ++m) {
    s += LUT[L.fields[m].offset + read_code(code, bit, L.nbits[m])];
    bit += L.nbits[m];
  }
  return s;
}

template <CodeRead R>
inline uint32_t code_index(const uint8_t* code, const CodeField& f, size_t m) {
  if constexpr (R == CodeRead::bytes) {
    return code[m];
  } else if constexpr (R == CodeRead::nibbles) {
    return uint32_t(code[m >> 1] >> ((m & 1) * 4)) & 15;  // LSB first: even m in the low half
  } else {
    uint32_t w;
    std::memcpy(&w, code + f.byte, sizeof w);  // little-endian only (CodeRead::words is not chosen otherwise)
    return (w >> f.shift) & f.mask;
  }
}

// out[j] = lut_sum of code j of n (stride cs), each summed in the same order as lut_sum. Eight codes at a time:
// their chains of dependent float adds are independent, so they overlap instead of waiting on each other.
template <CodeRead R>
void lut_sums_kernel(const ScanLayout& L, const uint8_t* codes, size_t cs, size_t n, const float* LUT, float* out) {
  const size_t M = L.fields.size();
  const CodeField* F = L.fields.data();
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const uint8_t* c = codes + j * cs;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t m = 0; m < M; ++m) {
      const float* T = LUT + F[m].offset;
      s0 += T[code_index<R>(c, F[m], m)];
      s1 += T[code_index<R>(c + cs, F[m], m)];
      s2 += T[code_index<R>(c + 2 * cs, F[m], m)];
      s3 += T[code_index<R>(c + 3 * cs, F[m], m)];
      s4 += T[code_index<R>(c + 4 * cs, F[m], m)];
      s5 += T[code_index<R>(c + 5 * cs, F[m], m)];
      s6 += T[code_index<R>(c + 6 * cs, F[m], m)];
      s7 += T[code_index<R>(c + 7 * cs, F[m], m)];
    }
    out[j] = s0;
    out[j + 1] = s1;
    out[j + 2] = s2;
    out[j + 3] = s3;
    out[j + 4] = s4;
    out[j + 5] = s5;
    out[j + 6] = s6;
    out[j + 7] = s7;
  }
  for (; j < n; ++j) {
    const uint8_t* c = codes + j * cs;
    float s = 0;
    for (size_t m = 0; m < M; ++m) s += LUT[F[m].offset + code_index<R>(c, F[m], m)];
    out[j] = s;
  }
}

// The same for every nbits = 4: one 64-bit load per code for each 16 indices, which are then shifted out of it
// (a byte load per index was slower). A load may reach past the code (word_reach). Four codes at a time: eight
// measured no faster here.
inline void lut_sums_nibbles(const ScanLayout& L, const uint8_t* codes, size_t cs, size_t n, const float* LUT,
                             float* out) {
  constexpr size_t B = 4, G = 16;
  constexpr uint64_t mask = 15;
  const size_t M = L.fields.size();
  const CodeField* F = L.fields.data();
  auto load = [](const uint8_t* p) {
    uint64_t w;
    std::memcpy(&w, p, sizeof w);
    return w;
  };
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const uint8_t* c = codes + j * cs;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t m0 = 0; m0 < M; m0 += G) {
      const size_t at = m0 * B / 8, m1 = std::min(M, m0 + G);
      uint64_t w0 = load(c + at), w1 = load(c + cs + at), w2 = load(c + 2 * cs + at), w3 = load(c + 3 * cs + at);
      for (size_t m = m0; m < m1; ++m, w0 >>= B, w1 >>= B, w2 >>= B, w3 >>= B) {
        const float* T = LUT + F[m].offset;
        s0 += T[w0 & mask];
        s1 += T[w1 & mask];
        s2 += T[w2 & mask];
        s3 += T[w3 & mask];
      }
    }
    out[j] = s0;
    out[j + 1] = s1;
    out[j + 2] = s2;
    out[j + 3] = s3;
  }
  lut_sums_kernel<CodeRead::nibbles>(L, codes + j * cs, cs, n - j, LUT, out + j);
}

// out[i − i0] = lut_sum of code i for i in [i0, i1), codes holding n codes of cs bytes. The word loads (nibbles,
// words) stay inside those n · cs bytes: the last codes, whose loads would not, use a reader that does.
inline void lut_sums(const ScanLayout& L, const uint8_t* codes, size_t cs, size_t n, size_t i0, size_t i1,
                     const float* LUT, float* out) {
  const uint8_t* c = codes + i0 * cs;
  // Code i's loads end at i · cs + word_reach ≤ n · cs for i < safe.
  const size_t safe = n * cs >= L.word_reach ? (n * cs - L.word_reach) / cs + 1 : 0;
  const size_t mid = std::clamp(safe, i0, i1);
  switch (L.read) {
    case CodeRead::bytes:  // byte loads stay inside the code; 64-bit loads measured no faster here
      lut_sums_kernel<CodeRead::bytes>(L, c, cs, i1 - i0, LUT, out);
      return;
    case CodeRead::nibbles:
      lut_sums_nibbles(L, c, cs, mid - i0, LUT, out);
      lut_sums_kernel<CodeRead::nibbles>(L, codes + mid * cs, cs, i1 - mid, LUT, out + (mid - i0));
      return;
    case CodeRead::words:
      lut_sums_kernel<CodeRead::words>(L, c, cs, mid - i0, LUT, out);
      for (size_t i = mid; i < i1; ++i) out[i - i0] = lut_sum(L, codes + i * cs, LUT);
      return;
    case CodeRead::generic:
      for (size_t i = i0; i < i1; ++i) out[i - i0] = lut_sum(L, codes + i * cs, LUT);
      return;
  }
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
  constexpr size_t kChunk = 64;  // sums of a chunk first, then the heap: the sum loop stays branch-free
  float sums[kChunk];
  for (size_t c0 = i0; c0 < i1; c0 += kChunk) {
    const size_t c1 = std::min(i1, c0 + kChunk);
    lut_sums(S.layout, S.codes, S.code_size, S.n, c0, c1, lut, sums);
    const uint8_t* code = S.codes + c0 * S.code_size;
    for (size_t i = c0; i < c1; ++i, code += S.code_size) {
      const float s = sums[i - c0];
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
      keep_smallest(heap, kept, cand, better);
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
  std::vector<size_t> nbits;
  for (size_t m = 0; m < aq.num_codebooks(); ++m) nbits.push_back(aq.nbits(m));
  S.layout = make_scan_layout(nbits, std::vector<size_t>(aq.codebook_offsets().begin(), aq.codebook_offsets().end() - 1));
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
