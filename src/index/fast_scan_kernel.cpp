#include "index/fast_scan_kernel.h"

#include <cstring>

#include "core/simd.h"

namespace tessera::detail {

namespace {

typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));

}  // namespace

// Per block and table: two byte shuffles (low and high nibbles), widened to uint16 and added. The scaled
// tables (the norm's) go to their own accumulators, multiplied once per block.
TESSERA_CLONE_PER_ISA
void fast_scan_blocks(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                      const uint8_t* lut, uint16_t* out) {
  const size_t nplain = nsq - nscaled;
  const u8x16 low_mask = {15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15};
  for (size_t b = 0; b < nblocks; ++b) {
    const uint8_t* blk = blocks + b * nsq * kFastScanGroupBytes;
    u16x16 lo = {}, hi = {}, slo = {}, shi = {};
    for (size_t t = 0; t < nsq; ++t) {
      u8x16 c, l;
      std::memcpy(&c, blk + t * kFastScanGroupBytes, 16);
      std::memcpy(&l, lut + t * 16, 16);
      const u8x16 vl = __builtin_shuffle(l, u8x16(c & low_mask));
      const u8x16 vh = __builtin_shuffle(l, u8x16(c >> 4));
      if (t < nplain) {
        lo += __builtin_convertvector(vl, u16x16);
        hi += __builtin_convertvector(vh, u16x16);
      } else {
        slo += __builtin_convertvector(vl, u16x16);
        shi += __builtin_convertvector(vh, u16x16);
      }
    }
    if (nscaled) {
      lo += slo * scale;
      hi += shi * scale;
    }
    std::memcpy(out + b * kFastScanBlock, &lo, sizeof lo);
    std::memcpy(out + b * kFastScanBlock + 16, &hi, sizeof hi);
  }
}

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
