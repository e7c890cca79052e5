// The 4-bit fast-scan kernel: 16-entry uint8 lookup tables summed into uint16 for blocks of 32 codes.
// Block layout (nsq tables, each code a 4-bit index): nsq groups of 16 bytes; in group t, byte j holds
// code t of the block's vector j in its low nibble and of vector j + 16 in its high nibble. One byte shuffle
// of table t by the 16 low (high) nibbles then gives table t's entry for vectors 0–15 (16–31); a 256-bit
// shuffle does two consecutive groups (two tables) at once, each 128-bit lane with its own table.
//
// Variants: the scalar reference; a portable one (GCC vector extensions, one clone per instruction set;
// Clang builds use the scalar reference there); an AVX2 one (intrinsics, two tables per 256-bit shuffle)
// chosen at run time when the CPU has AVX2. All return the same sums bit for bit (tests call each one).
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
/// lut: nsq × 16; out: nblocks × 32. Dispatches to the widest variant the CPU runs.
void fast_scan_blocks(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                      const uint8_t* lut, uint16_t* out);
/// The same, one table lookup at a time (the reference every variant must equal bit for bit).
void fast_scan_blocks_scalar(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                             const uint8_t* lut, uint16_t* out);
/// The portable variant (vector extensions, cloned per instruction set; the scalar one under Clang).
void fast_scan_blocks_portable(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                               const uint8_t* lut, uint16_t* out);
/// Whether this CPU (and OS) runs the AVX2 variants.
bool fast_scan_has_avx2();
/// The AVX2 variant; only call it when fast_scan_has_avx2().
void fast_scan_blocks_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                           const uint8_t* lut, uint16_t* out);

/// A candidate of the scan as one integer: (sum << 48) | label, so that integer order is the order by
/// (sum, label) the top-k keeps.
constexpr unsigned kFastScanKeyShift = 48;
inline uint64_t fast_scan_key(uint16_t sum, uint64_t label) { return (uint64_t(sum) << kFastScanKeyShift) | label; }
inline uint16_t fast_scan_key_sum(uint64_t key) { return uint16_t(key >> kFastScanKeyShift); }
inline uint64_t fast_scan_key_label(uint64_t key) { return key & ((uint64_t(1) << kFastScanKeyShift) - 1); }

/// One query of a scan that collects candidates: its tables, its threshold, and its key buffer.
struct FastScanQuery {
  const uint8_t* lut;   ///< nsq × 16
  uint32_t threshold;   ///< keys are collected for sums below it (≤ 65536; 65536 keeps every sum)
  uint64_t* keys;       ///< cap slots (the same cap for every query of a scan)
  size_t n;             ///< keys held
};
/// Queries one pass over the codes serves at most (the codes' nibbles are split once for all of them; with
/// more, AVX2's 16 registers no longer hold the accumulators).
constexpr size_t kFastScanMaxQueries = 3;

/// Scan blocks in order for nq (1..kFastScanMaxQueries) queries and append to each query's keys[n…] the key
/// of every vector whose sum (as fast_scan_blocks computes it with that query's lut) is below its threshold;
/// vector v of block b has label base + 32·b + v (< 2^48). Stops before a block once some query has fewer
/// than 32 free slots (n + 32 > cap), and returns the number of blocks scanned (nblocks unless it stopped).
/// Keys are appended in label order. Dispatches like fast_scan_blocks.
size_t fast_scan_collect(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                         FastScanQuery* qs, size_t nq, uint64_t base, size_t cap);
/// The same on fast_scan_blocks_portable's sums (the fallback), and on the AVX2 kernel (AVX2 CPUs only).
size_t fast_scan_collect_portable(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                                  FastScanQuery* qs, size_t nq, uint64_t base, size_t cap);
size_t fast_scan_collect_avx2(const uint8_t* blocks, size_t nblocks, size_t nsq, size_t nscaled, uint16_t scale,
                              FastScanQuery* qs, size_t nq, uint64_t base, size_t cap);

/// Exact float sums of additive-quantizer codes for re-scoring: sums[j] = Σ_{m < M} lut[m·16 + c_m] for the
/// code of label fast_scan_key_label(keys[j]) (codes + label·code_size; c_m its nibble m, low nibble first),
/// added in float one m after another from 0 (the flat index's order). lut: M × 16. Every variant returns the
/// same floats bit for bit; the dispatched one picks AVX2 when the CPU has it.
void fast_scan_code_sums(const uint8_t* codes, size_t code_size, size_t M, const uint64_t* keys, size_t n,
                         const float* lut, float* sums);
void fast_scan_code_sums_scalar(const uint8_t* codes, size_t code_size, size_t M, const uint64_t* keys, size_t n,
                                const float* lut, float* sums);
/// AVX2 CPUs only (fast_scan_has_avx2()).
void fast_scan_code_sums_avx2(const uint8_t* codes, size_t code_size, size_t M, const uint64_t* keys, size_t n,
                              const float* lut, float* sums);

/// Quantise nsq × 16 float tables to uint8 with one scale for all and a per-table offset (its minimum): entry
/// j of table t becomes round((x − min_t) · scale), scale = 255 / (widest table's span) (1 if all are flat),
/// rounded to nearest, ties to even, clamped to [0, 255]. The last nscaled tables count weight times in the
/// sums, so their offsets do too: bias = Σ_t w_t · min_t. mag (optional): Σ_t w_t · max |entry|, the size of
/// the float sums (for rounding margins). tables: nsq × 16; lut8: nsq × 16. The SSE2 variant (x86-64) and
/// the scalar reference return the same bytes and floats bit for bit; the dispatched one is the SSE2 one where
/// it exists.
void fast_scan_quantize_tables(const float* tables, size_t nsq, size_t nscaled, float weight, uint8_t* lut8,
                               float* scale, float* bias, float* mag = nullptr);
void fast_scan_quantize_tables_scalar(const float* tables, size_t nsq, size_t nscaled, float weight, uint8_t* lut8,
                                      float* scale, float* bias, float* mag = nullptr);

}  // namespace tessera::detail
