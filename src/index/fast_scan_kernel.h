// The 4-bit fast-scan kernel: 16-entry uint8 lookup tables summed into uint16 for blocks of 32 codes.
// Block layout (nsq tables, each code a 4-bit index): nsq groups of 16 bytes; in group t, byte j holds
// code t of the block's vector j in its low nibble and of vector j + 16 in its high nibble. One byte shuffle
// of table t by the 16 low (high) nibbles then gives table t's entry for vectors 0–15 (16–31).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tessera::detail {

/// Vectors per block and bytes of one table's group in a block.
constexpr size_t kFastScanBlock = 32;
constexpr size_t kFastScanGroupBytes = 16;

/// Sums for nblocks consecutive blocks (each nsq × 16 bytes, the layout above):
///   out[b·32 + v] = Σ_{t < nsq − nscaled} lut[t·16 + c_t(v)] + scale · Σ_{t ≥ nsq − nscaled} lut[t·16 + c_t(v)]
/// in uint16 arithmetic (wrapping: callers keep 255·(nsq − nscaled + scale·nscaled) ≤ 65535).
/// lut: nsq × 16; out: nblocks × 32. The vector-extension kernel, one clone per instruction set.
void fast_scan_blocks(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                      const uint8_t* lut, uint16_t* out);
/// The same, one table lookup at a time (the reference the kernel must equal bit for bit).
void fast_scan_blocks_scalar(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                             const uint8_t* lut, uint16_t* out);

}  // namespace tessera::detail
