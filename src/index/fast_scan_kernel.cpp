#include "index/fast_scan_kernel.h"

#include <cstring>

#include "core/simd.h"

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
void fast_scan_blocks(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
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
void fast_scan_blocks(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
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

}  // namespace tessera::detail
