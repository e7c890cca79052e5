#include "index/fast_scan_kernel.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <utility>
#include <vector>

#include "core/simd.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)  // GCC and Clang: intrinsics in functions with a target attribute
#define TESSERA_FAST_SCAN_AVX2 1
#include <immintrin.h>
#endif

namespace tessera::detail {

// GCC's __builtin_shuffle (variable byte shuffles on vector types) has no Clang equivalent; Clang builds
// (the fuzzers) use the scalar kernel, which computes the same sums.
#if !defined(__clang__)
namespace {

typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));

// Σ over tables [t0, t1) of one block: the shuffled bytes are read as 8 uint16 lanes, so that the even
// vectors' entries (low bytes) and the odd vectors' (high bytes) add without a widening shuffle.
// Lane i of e_lo / o_lo: vectors 2i / 2i + 1; e_hi / o_hi: vectors 16 + 2i / 17 + 2i.
inline void accumulate(const uint8_t* blk, const uint8_t* lut, size_t t0, size_t t1, u16x8& e_lo, u16x8& o_lo,
                       u16x8& e_hi, u16x8& o_hi) {
  const u8x16 low_mask = {15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15};
  const u16x8 byte_mask = {255, 255, 255, 255, 255, 255, 255, 255};
  for (size_t t = t0; t < t1; ++t) {
    u8x16 c, l;
    std::memcpy(&c, blk + t * kFastScanGroupBytes, 16);
    std::memcpy(&l, lut + t * 16, 16);
    const u16x8 vl = (u16x8)__builtin_shuffle(l, u8x16(c & low_mask));
    const u16x8 vh = (u16x8)__builtin_shuffle(l, u8x16((c >> 4) & low_mask));
    e_lo += vl & byte_mask;
    o_lo += vl >> 8;
    e_hi += vh & byte_mask;
    o_hi += vh >> 8;
  }
}

}  // namespace

// Per block and table: two byte shuffles (low and high nibbles) added into uint16 lanes. The scaled tables
// (the norm's) go to their own accumulators, multiplied once per block.
TESSERA_CLONE_PER_ISA
void fast_scan_blocks_portable(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                      const uint8_t* lut, uint16_t* out) {
  const size_t nplain = nsq - nscaled;
  for (size_t b = 0; b < nblocks; ++b) {
    const uint8_t* blk = blocks + b * nsq * kFastScanGroupBytes;
    u16x8 e_lo = {}, o_lo = {}, e_hi = {}, o_hi = {};
    accumulate(blk, lut, 0, nplain, e_lo, o_lo, e_hi, o_hi);
    if (nscaled) {
      u16x8 se_lo = {}, so_lo = {}, se_hi = {}, so_hi = {};
      accumulate(blk, lut, nplain, nsq, se_lo, so_lo, se_hi, so_hi);
      e_lo += se_lo * scale;
      o_lo += so_lo * scale;
      e_hi += se_hi * scale;
      o_hi += so_hi * scale;
    }
    // Interleave even and odd lanes back into vector order.
    const u16x8 lo_mask = {0, 8, 1, 9, 2, 10, 3, 11}, hi_mask = {4, 12, 5, 13, 6, 14, 7, 15};
    const u16x8 r0 = __builtin_shuffle(e_lo, o_lo, lo_mask), r1 = __builtin_shuffle(e_lo, o_lo, hi_mask);
    const u16x8 r2 = __builtin_shuffle(e_hi, o_hi, lo_mask), r3 = __builtin_shuffle(e_hi, o_hi, hi_mask);
    uint16_t* o = out + b * kFastScanBlock;
    std::memcpy(o, &r0, 16);
    std::memcpy(o + 8, &r1, 16);
    std::memcpy(o + 16, &r2, 16);
    std::memcpy(o + 24, &r3, 16);
  }
}
#else
void fast_scan_blocks_portable(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                               const uint8_t* lut, uint16_t* out) {
  fast_scan_blocks_scalar(blocks, nblocks, nsq, nscaled, scale, lut, out);
}
#endif

void fast_scan_blocks_scalar(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                             const uint8_t* lut, uint16_t* out) {
  const size_t nplain = nsq - nscaled;
  for (size_t b = 0; b < nblocks; ++b) {
    const uint8_t* blk = blocks + b * nsq * kFastScanGroupBytes;
    for (size_t v = 0; v < kFastScanBlock; ++v) {
      uint16_t plain = 0, scaled = 0;
      for (size_t t = 0; t < nsq; ++t) {
        const uint8_t byte = blk[t * kFastScanGroupBytes + (v & 15)];
        const uint8_t code = v < 16 ? (byte & 15) : (byte >> 4);
        if (t < nplain) plain = uint16_t(plain + lut[t * 16 + code]);
        else scaled = uint16_t(scaled + lut[t * 16 + code]);
      }
      out[b * kFastScanBlock + v] = uint16_t(plain + uint16_t(scaled * scale));
    }
  }
}

namespace {

// Append the keys of sums[0, nv) below the query's threshold (labels base + index).
inline void keep_below(const uint16_t* sums, size_t nv, uint64_t base, FastScanQuery& q) {
  for (size_t v = 0; v < nv; ++v)
    if (sums[v] < q.threshold) q.keys[q.n++] = fast_scan_key(sums[v], base + v);
}

// Blocks that fit one query's buffer, and every query's (each block adds at most 32 keys).
inline size_t q_room(const FastScanQuery& q, size_t cap) {
  return q.n + kFastScanBlock <= cap ? (cap - q.n) / kFastScanBlock : 0;
}

// Whether every query's buffer has room for one more block (32 keys).
inline bool fits(const FastScanQuery* qs, size_t nq, size_t cap) {
  bool ok = true;
  for (size_t i = 0; i < nq; ++i) ok &= qs[i].n + kFastScanBlock <= cap;
  return ok;
}

// Blocks that fit every query's buffer (each block adds at most 32 keys).
inline size_t room(const FastScanQuery* qs, size_t nq, size_t cap) {
  size_t r = SIZE_MAX;
  for (size_t i = 0; i < nq; ++i) r = std::min(r, q_room(qs[i], cap));
  return r;
}

}  // namespace

size_t fast_scan_collect_portable(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                                  FastScanQuery* qs, size_t nq, uint64_t base, size_t cap) {
  constexpr size_t kChunk = 8;
  uint16_t sums[kChunk * kFastScanBlock];
  size_t b = 0;
  while (b < nblocks) {
    const size_t nb = std::min({nblocks - b, kChunk, room(qs, nq, cap)});
    if (nb == 0) break;
    for (size_t i = 0; i < nq; ++i) {
      if (qs[i].threshold == 0) continue;  // no sum is below 0
      fast_scan_blocks_portable(blocks + b * nsq * kFastScanGroupBytes, nb, nsq, nscaled, scale, qs[i].lut, sums);
      keep_below(sums, nb * kFastScanBlock, base + b * kFastScanBlock, qs[i]);
    }
    b += nb;
  }
  return b;
}

#if TESSERA_FAST_SCAN_AVX2
namespace {

#define TESSERA_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline

// Per query, the sums of one block in four accumulators of uint16 lanes: a = Σ shuffled bytes read as uint16
// (even byte + 256 · odd byte), b = Σ of them shifted right by 8 (odd byte), so that the even bytes' sum is
// a − 256 · b, everything modulo 2^16 like the sums themselves. Index 0: vectors 0–15 (low nibbles), 1:
// vectors 16–31 (high nibbles); per 128-bit lane, uint16 lane i holds vectors 2i (even) and 2i + 1 (odd),
// the two 128-bit lanes being partial sums over different tables.
struct Acc {
  __m256i a0, b0, a1, b1;
};

TESSERA_AVX2_INLINE void acc_zero(Acc& s) {
  s.a0 = s.b0 = s.a1 = s.b1 = _mm256_setzero_si256();
}

// Keep the accumulators in registers, added in table order: without this, compilers reassociate the
// unrolled sums into trees whose partial sums spill to the stack.
TESSERA_AVX2_INLINE void acc_pin(Acc& s) {
  __asm__("" : "+x"(s.a0), "+x"(s.b0), "+x"(s.a1), "+x"(s.b1));
}

// The first pair of tables: the accumulators start from its entries (no zeroing and adding to zero).
TESSERA_AVX2_INLINE void acc_set(Acc& s, __m256i table, __m256i lo, __m256i hi) {
  const __m256i r0 = _mm256_shuffle_epi8(table, lo), r1 = _mm256_shuffle_epi8(table, hi);
  s.a0 = r0;
  s.b0 = _mm256_srli_epi16(r0, 8);
  s.a1 = r1;
  s.b1 = _mm256_srli_epi16(r1, 8);
  acc_pin(s);
}

TESSERA_AVX2_INLINE void acc_add(Acc& s, __m256i table, __m256i lo, __m256i hi) {
  const __m256i r0 = _mm256_shuffle_epi8(table, lo), r1 = _mm256_shuffle_epi8(table, hi);
  s.a0 = _mm256_add_epi16(s.a0, r0);
  s.b0 = _mm256_add_epi16(s.b0, _mm256_srli_epi16(r0, 8));
  s.a1 = _mm256_add_epi16(s.a1, r1);
  s.b1 = _mm256_add_epi16(s.b1, _mm256_srli_epi16(r1, 8));
  acc_pin(s);
}

// Tables [t0, t0 + 2·npairs) (+ one more if odd) of one block for QB queries: one 256-bit shuffle per
// two tables (lane 0: table t, lane 1: table t + 1) and query, the code nibbles shared by the queries.
// NPAIRS ≥ 0 fixes the count at compile time (the loop unrolls), −1 takes npairs and odd. FRESH (NPAIRS ≥ 1
// only): the accumulators start from the first pair instead of being added to.
template <int QB, int NPAIRS, bool FRESH = false>
TESSERA_AVX2_INLINE void acc_tables(const uint8_t* blk, const uint8_t* const* luts, size_t t0, size_t npairs,
                                    bool odd, Acc* s) {
  static_assert(!FRESH || NPAIRS >= 1, "a fresh start needs a first pair");
  const __m256i low = _mm256_set1_epi8(15);
  const size_t np = NPAIRS >= 0 ? size_t(NPAIRS) : npairs;
#pragma GCC unroll 16
  for (size_t p = 0; p < np; ++p) {
    const size_t t = t0 + 2 * p;
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + t * kFastScanGroupBytes));
    const __m256i lo = _mm256_and_si256(c, low), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), low);
    for (int q = 0; q < QB; ++q) {
      const __m256i table = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(luts[q] + t * 16));
      if (FRESH && p == 0) acc_set(s[q], table, lo, hi);
      else acc_add(s[q], table, lo, hi);
    }
  }
  if (NPAIRS < 0 && odd) {  // the last table alone: lane 1 of codes and table zero adds nothing
    const size_t t = t0 + 2 * np;
    const __m256i c = _mm256_zextsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + t * kFastScanGroupBytes)));
    const __m256i lo = _mm256_and_si256(c, low), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), low);
    for (int q = 0; q < QB; ++q)
      acc_add(s[q], _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(luts[q] + t * 16))),
              lo, hi);
  }
}

// The even and odd sums, the two tables' lanes added: e (o) lane 0 holds vectors 0, 2, …, 14 (1, 3, …, 15),
// lane 1 vectors 16, 18, …, 30 (17, …, 31). The lanes of a and b are added first, then e = a − 256·b (the
// same sums modulo 2^16 as subtracting per lane).
TESSERA_AVX2_INLINE void acc_even_odd(const Acc& s, __m256i& e, __m256i& o) {
  const __m256i a = _mm256_add_epi16(_mm256_permute2x128_si256(s.a0, s.a1, 0x20), _mm256_permute2x128_si256(s.a0, s.a1, 0x31));
  o = _mm256_add_epi16(_mm256_permute2x128_si256(s.b0, s.b1, 0x20), _mm256_permute2x128_si256(s.b0, s.b1, 0x31));
  e = _mm256_sub_epi16(a, _mm256_slli_epi16(o, 8));
}

// One block's sums per query as even (e[q]) and odd (o[q]) vectors (acc_even_odd's lanes). Template counts as
// in acc_tables: PLAIN pairs of plain tables then SCALED pairs of scaled ones (−1: the run-time counts nplain,
// nscaled, odd ones allowed).
template <int QB, int PLAIN, int SCALED>
TESSERA_AVX2_INLINE void block_even_odd(const uint8_t* blk, const uint8_t* const* luts, size_t nplain, size_t nscaled,
                                        __m256i scale, __m256i* e, __m256i* o) {
  Acc s[QB];
  if constexpr (PLAIN >= 1) {
    acc_tables<QB, PLAIN, true>(blk, luts, 0, nplain / 2, nplain % 2, s);
  } else {
    for (int q = 0; q < QB; ++q) acc_zero(s[q]);
    acc_tables<QB, PLAIN>(blk, luts, 0, nplain / 2, nplain % 2, s);
  }
  for (int q = 0; q < QB; ++q) acc_even_odd(s[q], e[q], o[q]);
  if (SCALED != 0 && (SCALED > 0 || nscaled)) {
    const size_t t0 = PLAIN >= 0 ? size_t(2 * PLAIN) : nplain;
    if constexpr (SCALED >= 1) {
      acc_tables<QB, SCALED, true>(blk, luts, t0, nscaled / 2, nscaled % 2, s);
    } else {
      for (int q = 0; q < QB; ++q) acc_zero(s[q]);
      acc_tables<QB, SCALED>(blk, luts, t0, nscaled / 2, nscaled % 2, s);
    }
    for (int q = 0; q < QB; ++q) {
      __m256i se, so;
      acc_even_odd(s[q], se, so);
      e[q] = _mm256_add_epi16(e[q], _mm256_mullo_epi16(se, scale));
      o[q] = _mm256_add_epi16(o[q], _mm256_mullo_epi16(so, scale));
    }
  }
}

// Even and odd sums back in vector order: v0 = vectors 0–15, v1 = vectors 16–31.
TESSERA_AVX2_INLINE void in_order(__m256i e, __m256i o, __m256i& v0, __m256i& v1) {
  const __m256i r0 = _mm256_unpacklo_epi16(e, o);  // vectors 0–7 | 16–23
  const __m256i r1 = _mm256_unpackhi_epi16(e, o);  // vectors 8–15 | 24–31
  v0 = _mm256_permute2x128_si256(r0, r1, 0x20);
  v1 = _mm256_permute2x128_si256(r0, r1, 0x31);
}

template <int PLAIN, int SCALED>
__attribute__((target("avx2"))) void blocks_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled,
                                                 uint16_t scale, const uint8_t* lut, uint16_t* out) {
  const __m256i vscale = _mm256_set1_epi16(int16_t(scale));
  const size_t block_bytes = nsq * kFastScanGroupBytes;
  for (size_t b = 0; b < nblocks; ++b) {
    __m256i e, o, v0, v1;
    block_even_odd<1, PLAIN, SCALED>(blocks + b * block_bytes, &lut, nsq - nscaled, nscaled, vscale, &e, &o);
    in_order(e, o, v0, v1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * kFastScanBlock), v0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * kFastScanBlock + 16), v1);
  }
}

// Scan blocks for QB queries at once (the codes are loaded and split into nibbles once for all of them).
template <int QB, int PLAIN, int SCALED>
__attribute__((target("avx2"))) size_t collect_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled,
                                                    uint16_t scale, FastScanQuery* qs, uint64_t base, size_t cap) {
  const __m256i vscale = _mm256_set1_epi16(int16_t(scale));
  const uint8_t* luts[QB];
  __m256i below[QB];  // sum ≤ threshold − 1 (a threshold of 0 keeps nothing: its flag below)
  bool none[QB];
  for (int q = 0; q < QB; ++q) {
    luts[q] = qs[q].lut;
    none[q] = qs[q].threshold == 0;
    below[q] = _mm256_set1_epi16(int16_t(uint16_t(std::min<uint32_t>(qs[q].threshold, 65536) - 1)));
  }
  const size_t block_bytes = nsq * kFastScanGroupBytes;
  if (!fits(qs, QB, cap)) return 0;
  size_t b = 0;
  while (b < nblocks) {
    __m256i e[QB], o[QB];
    block_even_odd<QB, PLAIN, SCALED>(blocks + b * block_bytes, luts, nsq - nscaled, nscaled, vscale, e, o);
    bool added = false;
    // Unrolled: otherwise GCC keeps the loop and passes e[q], o[q] through the stack (≈ 8 % of the scan).
#pragma GCC unroll 3
    for (int q = 0; q < QB; ++q) {
      // Any sum ≤ threshold − 1 (the order of the vectors does not matter yet).
      const __m256i m = _mm256_min_epu16(e[q], o[q]);
      const __m256i k = _mm256_cmpeq_epi16(_mm256_min_epu16(m, below[q]), m);
      if (_mm256_testz_si256(k, k) || none[q]) continue;
      __m256i v0, v1;
      in_order(e[q], o[q], v0, v1);
      const __m256i k0 = _mm256_cmpeq_epi16(_mm256_min_epu16(v0, below[q]), v0);
      const __m256i k1 = _mm256_cmpeq_epi16(_mm256_min_epu16(v1, below[q]), v1);
      // One bit per vector: packs interleaves the lanes (0–7, 16–23 | 8–15, 24–31), the permute restores order.
      uint32_t mask = uint32_t(_mm256_movemask_epi8(_mm256_permute4x64_epi64(_mm256_packs_epi16(k0, k1), 0xD8)));
      alignas(32) uint16_t sums[kFastScanBlock];
      _mm256_store_si256(reinterpret_cast<__m256i*>(sums), v0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(sums + 16), v1);
      const uint64_t label0 = base + b * kFastScanBlock;
      uint64_t* out = qs[q].keys + qs[q].n;  // a local pointer: stores through keys could alias n
      for (; mask; mask &= mask - 1) {
        const unsigned j = unsigned(__builtin_ctz(mask));
        *out++ = fast_scan_key(sums[j], label0 + j);
      }
      qs[q].n = size_t(out - qs[q].keys);
      added = true;
    }
    ++b;
    if (added && !fits(qs, QB, cap)) break;
  }
  return b;
}

// The instantiations: plain tables in 1..16 pairs with 0 or 2 scaled tables (the L2 norm's), else the
// run-time loop.
constexpr int kMaxPairs = 16;

template <int QB>
using CollectFn = size_t (*)(const uint8_t*, size_t, size_t, size_t, uint16_t, FastScanQuery*, uint64_t, size_t);
using BlocksFn = void (*)(const uint8_t*, size_t, size_t, size_t, uint16_t, const uint8_t*, uint16_t*);

template <int QB, int... P>
constexpr std::array<std::array<CollectFn<QB>, 2>, sizeof...(P)> collect_table(std::integer_sequence<int, P...>) {
  return {{{{&collect_avx2<QB, P + 1, 0>, &collect_avx2<QB, P + 1, 1>}}...}};
}

template <int... P>
constexpr std::array<std::array<BlocksFn, 2>, sizeof...(P)> blocks_table(std::integer_sequence<int, P...>) {
  return {{{{&blocks_avx2<P + 1, 0>, &blocks_avx2<P + 1, 1>}}...}};
}

template <int QB>
size_t collect_dispatch(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                        FastScanQuery* qs, uint64_t base, size_t cap) {
  static constexpr auto table = collect_table<QB>(std::make_integer_sequence<int, kMaxPairs>());
  const size_t nplain = nsq - nscaled;
  if (nplain % 2 == 0 && nplain >= 2 && nplain <= 2 * kMaxPairs && (nscaled == 0 || nscaled == 2))
    return table[nplain / 2 - 1][nscaled / 2](blocks, nblocks, nsq, nscaled, scale, qs, base, cap);
  return collect_avx2<QB, -1, -1>(blocks, nblocks, nsq, nscaled, scale, qs, base, cap);
}

}  // namespace

void fast_scan_blocks_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                           const uint8_t* lut, uint16_t* out) {
  static constexpr auto table = blocks_table(std::make_integer_sequence<int, kMaxPairs>());
  const size_t nplain = nsq - nscaled;
  if (nplain % 2 == 0 && nplain >= 2 && nplain <= 2 * kMaxPairs && (nscaled == 0 || nscaled == 2))
    table[nplain / 2 - 1][nscaled / 2](blocks, nblocks, nsq, nscaled, scale, lut, out);
  else
    blocks_avx2<-1, -1>(blocks, nblocks, nsq, nscaled, scale, lut, out);
}

size_t fast_scan_collect_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                              FastScanQuery* qs, size_t nq, uint64_t base, size_t cap) {
  static_assert(kFastScanMaxQueries == 3, "one instantiation per group size");
  switch (nq) {
    case 1: return collect_dispatch<1>(blocks, nblocks, nsq, nscaled, scale, qs, base, cap);
    case 2: return collect_dispatch<2>(blocks, nblocks, nsq, nscaled, scale, qs, base, cap);
    default: return collect_dispatch<3>(blocks, nblocks, nsq, nscaled, scale, qs, base, cap);
  }
}


// Eight candidates per vector: each 4-bit code looks up its 16-entry float table as two 8-entry halves
// (vpermps on the low 3 bits), the half chosen by bit 3 (moved to the sign bit for vblendvps); the sums are
// the scalar ones, each lane adding its entries in the same order.
static TESSERA_AVX2_INLINE void code_sum_step(__m256& sum, const __m256i idx, const __m256i sel, const float* tab) {
  const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab), idx);
  const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab + 8), idx);
  sum = _mm256_add_ps(sum, _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(sel)));
}

__attribute__((target("avx2"))) static void code_sums_avx2_impl(const uint8_t* codes, size_t code_size, size_t M,
                                                   const uint64_t* keys, size_t n, const float* lut, float* sums) {
  constexpr size_t kR = 8;
  const size_t nw = (M + 7) / 8;
  for (size_t j0 = 0; j0 < n; j0 += kR) {
    const size_t nr = std::min(kR, n - j0);
    const uint8_t* code[kR];
    for (size_t r = 0; r < kR; ++r)
      code[r] = codes + size_t(fast_scan_key_label(keys[j0 + std::min(r, nr - 1)])) * code_size;
    __m256 sum = _mm256_setzero_ps();
    for (size_t w = 0; w < nw; ++w) {
      const size_t ns = std::min<size_t>(8, M - 8 * w), nbytes = (ns + 1) / 2;
      uint32_t word[kR];
      for (size_t r = 0; r < kR; ++r) {
        word[r] = 0;
        if (nbytes == 4) std::memcpy(&word[r], code[r] + 4 * w, 4);
        else
          for (size_t b = 0; b < nbytes; ++b) word[r] |= uint32_t(code[r][4 * w + b]) << (8 * b);
      }
      const __m256i wv = _mm256_setr_epi32(int(word[0]), int(word[1]), int(word[2]), int(word[3]), int(word[4]),
                                           int(word[5]), int(word[6]), int(word[7]));
      const float* lw = lut + w * 8 * 16;
      if (ns == 8) {
        code_sum_step(sum, wv, _mm256_slli_epi32(wv, 28), lw);
        code_sum_step(sum, _mm256_srli_epi32(wv, 4), _mm256_slli_epi32(wv, 24), lw + 16);
        code_sum_step(sum, _mm256_srli_epi32(wv, 8), _mm256_slli_epi32(wv, 20), lw + 32);
        code_sum_step(sum, _mm256_srli_epi32(wv, 12), _mm256_slli_epi32(wv, 16), lw + 48);
        code_sum_step(sum, _mm256_srli_epi32(wv, 16), _mm256_slli_epi32(wv, 12), lw + 64);
        code_sum_step(sum, _mm256_srli_epi32(wv, 20), _mm256_slli_epi32(wv, 8), lw + 80);
        code_sum_step(sum, _mm256_srli_epi32(wv, 24), _mm256_slli_epi32(wv, 4), lw + 96);
        code_sum_step(sum, _mm256_srli_epi32(wv, 28), wv, lw + 112);
      } else {
        for (size_t s = 0; s < ns; ++s) {
          const __m128i cnt_r = _mm_cvtsi32_si128(int(4 * s)), cnt_l = _mm_cvtsi32_si128(int(28 - 4 * s));
          code_sum_step(sum, _mm256_srl_epi32(wv, cnt_r), _mm256_sll_epi32(wv, cnt_l), lw + s * 16);
        }
      }
    }
    alignas(32) float out[kR];
    _mm256_store_ps(out, sum);
    for (size_t r = 0; r < nr; ++r) sums[j0 + r] = out[r];
  }
}

void fast_scan_code_sums_avx2(const uint8_t* codes, size_t code_size, size_t M, const uint64_t* keys, size_t n,
                              const float* lut, float* sums) {
  code_sums_avx2_impl(codes, code_size, M, keys, n, lut, sums);
}

bool fast_scan_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#else
bool fast_scan_has_avx2() { return false; }
void fast_scan_blocks_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                           const uint8_t* lut, uint16_t* out) {
  fast_scan_blocks_portable(blocks, nblocks, nsq, nscaled, scale, lut, out);
}
size_t fast_scan_collect_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                              FastScanQuery* qs, size_t nq, uint64_t base, size_t cap) {
  return fast_scan_collect_portable(blocks, nblocks, nsq, nscaled, scale, qs, nq, base, cap);
}
void fast_scan_code_sums_avx2(const uint8_t* codes, size_t code_size, size_t M, const uint64_t* keys, size_t n,
                              const float* lut, float* sums) {
  fast_scan_code_sums_scalar(codes, code_size, M, keys, n, lut, sums);
}
#endif

// Eight candidates at a time, so that their sums' chains of additions overlap.
#if defined(__GNUC__) && !defined(__clang__)
// Scalar adds: GCC's SLP vectoriser would pack the eight sums into vectors at the cost of inserting each
// looked-up entry (twice the instructions).
__attribute__((optimize("no-tree-slp-vectorize")))
#endif
void fast_scan_code_sums_scalar(const uint8_t* codes, size_t code_size, size_t M, const uint64_t* keys, size_t n,
                                const float* lut, float* sums) {
  constexpr size_t kR = 8;
  const auto nibble = [](const uint8_t* code, size_t t) { return (code[t >> 1] >> ((t & 1) * 4)) & 15; };
  for (size_t j0 = 0; j0 < n; j0 += kR) {
    const size_t nr = std::min(kR, n - j0);
    const uint8_t* code[kR];
    float sum[kR];
    for (size_t r = 0; r < kR; ++r) {
      code[r] = codes + size_t(fast_scan_key_label(keys[j0 + std::min(r, nr - 1)])) * code_size;
      sum[r] = 0;
    }
    for (size_t m = 0; m < M; ++m)
      for (size_t r = 0; r < kR; ++r) sum[r] += lut[m * 16 + nibble(code[r], m)];
    for (size_t r = 0; r < nr; ++r) sums[j0 + r] = sum[r];
  }
}

namespace {

// Quantisation of the tables: per table its minimum and maximum, then its 16 bytes. Minimum and maximum in
// four lanes (lane i: entries i, i + 4, i + 8, i + 12), the lanes combined as min(min(l0, l1), min(l2, l3)):
// the same floats in either variant (min and max are exact; the order only matters for ±0, kept alike).
// Rounding: x + 2^23 − 2^23 for 0 ≤ x < 2^23 rounds to nearest, ties to even, without a call.
struct QuantizeScalar {
  static void min_max(const float* tab, float& lo, float& hi) {
    float l[4], h[4];
    for (size_t i = 0; i < 4; ++i) l[i] = h[i] = tab[i];
    for (size_t j = 4; j < 16; j += 4)
      for (size_t i = 0; i < 4; ++i) {
        l[i] = tab[j + i] < l[i] ? tab[j + i] : l[i];
        h[i] = tab[j + i] > h[i] ? tab[j + i] : h[i];
      }
    lo = std::min(std::min(l[0], l[1]), std::min(l[2], l[3]));
    hi = std::max(std::max(h[0], h[1]), std::max(h[2], h[3]));
  }
  static void bytes(const float* tab, float lo, float a, uint8_t* out) {
    for (size_t j = 0; j < 16; ++j) {
      const float v = ((tab[j] - lo) * a + 8388608.0f) - 8388608.0f;  // in [2^23, 2^23 + 256): rounded
      out[j] = uint8_t(int32_t(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v));
    }
  }
};

#if defined(__SSE2__)
// x86-64's baseline: no run-time dispatch. minps(x, y) is x < y ? x : y and maxps(x, y) x > y ? x : y, the
// scalar comparisons; the clamps' max(v, 0) turns −0 into +0, which converts to the same byte.
struct QuantizeSse2 {
  static void min_max(const float* tab, float& lo, float& hi) {
    __m128 l = _mm_loadu_ps(tab), h = l;
    for (size_t j = 4; j < 16; j += 4) {
      const __m128 t = _mm_loadu_ps(tab + j);
      l = _mm_min_ps(t, l);
      h = _mm_max_ps(t, h);
    }
    alignas(16) float lv[4], hv[4];
    _mm_store_ps(lv, l);
    _mm_store_ps(hv, h);
    lo = std::min(std::min(lv[0], lv[1]), std::min(lv[2], lv[3]));
    hi = std::max(std::max(hv[0], hv[1]), std::max(hv[2], hv[3]));
  }
  static void bytes(const float* tab, float lo, float a, uint8_t* out) {
    const __m128 vlo = _mm_set1_ps(lo), va = _mm_set1_ps(a), magic = _mm_set1_ps(8388608.0f);
    const __m128 zero = _mm_setzero_ps(), top = _mm_set1_ps(255.0f);
    __m128i w[4];
    for (size_t j = 0; j < 4; ++j) {
      __m128 v = _mm_sub_ps(_mm_add_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(tab + 4 * j), vlo), va), magic), magic);
      v = _mm_min_ps(_mm_max_ps(v, zero), top);
      w[j] = _mm_cvttps_epi32(v);
    }
    const __m128i b = _mm_packus_epi16(_mm_packs_epi32(w[0], w[1]), _mm_packs_epi32(w[2], w[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), b);
  }
};
#endif

template <class Q>
void quantize_tables(const float* tables, size_t nsq, size_t nscaled, float weight, uint8_t* lut8, float* scale,
                     float* bias, float* mag) {
  constexpr size_t kMaxStack = 64;
  float lo_stack[kMaxStack];
  std::vector<float> lo_heap(nsq > kMaxStack ? nsq : 0);
  float* lo = nsq > kMaxStack ? lo_heap.data() : lo_stack;
  float max_span = 0, b = 0, m = 0;
  for (size_t t = 0; t < nsq; ++t) {
    float hi;
    Q::min_max(tables + t * 16, lo[t], hi);
    max_span = std::max(max_span, hi - lo[t]);
    const float w = t < nsq - nscaled ? 1.0f : weight;
    b += t < nsq - nscaled ? lo[t] : weight * lo[t];
    m += w * std::max(std::abs(lo[t]), std::abs(hi));
  }
  const float a = max_span > 0 ? 255.0f / max_span : 1.0f;
  for (size_t t = 0; t < nsq; ++t) Q::bytes(tables + t * 16, lo[t], a, lut8 + t * 16);
  *scale = a;
  *bias = b;
  if (mag) *mag = m;
}

}  // namespace

void fast_scan_quantize_tables_scalar(const float* tables, size_t nsq, size_t nscaled, float weight, uint8_t* lut8,
                                      float* scale, float* bias, float* mag) {
  quantize_tables<QuantizeScalar>(tables, nsq, nscaled, weight, lut8, scale, bias, mag);
}

void fast_scan_quantize_tables(const float* tables, size_t nsq, size_t nscaled, float weight, uint8_t* lut8,
                               float* scale, float* bias, float* mag) {
#if defined(__SSE2__)
  quantize_tables<QuantizeSse2>(tables, nsq, nscaled, weight, lut8, scale, bias, mag);
#else
  quantize_tables<QuantizeScalar>(tables, nsq, nscaled, weight, lut8, scale, bias, mag);
#endif
}

void fast_scan_code_sums(const uint8_t* codes, size_t code_size, size_t M, const uint64_t* keys, size_t n,
                         const float* lut, float* sums) {
  if (fast_scan_has_avx2()) fast_scan_code_sums_avx2(codes, code_size, M, keys, n, lut, sums);
  else fast_scan_code_sums_scalar(codes, code_size, M, keys, n, lut, sums);
}

void fast_scan_blocks(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                      const uint8_t* lut, uint16_t* out) {
  if (fast_scan_has_avx2()) fast_scan_blocks_avx2(blocks, nblocks, nsq, nscaled, scale, lut, out);
  else fast_scan_blocks_portable(blocks, nblocks, nsq, nscaled, scale, lut, out);
}

size_t fast_scan_collect(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                         FastScanQuery* qs, size_t nq, uint64_t base, size_t cap) {
  return fast_scan_has_avx2() ? fast_scan_collect_avx2(blocks, nblocks, nsq, nscaled, scale, qs, nq, base, cap)
                              : fast_scan_collect_portable(blocks, nblocks, nsq, nscaled, scale, qs, nq, base, cap);
}

}  // namespace tessera::detail
