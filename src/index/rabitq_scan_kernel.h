// Kernels of the IVF Extended-RaBitQ search (index_ivf_rabitq.cpp): the packed full codes and their dot
// product with the rotated float query (stage 2), the 1-bit bounds of a fast-scan block (stage 1), and float
// dot products / squared distances in a fixed order (centroid terms, re-ranking).
//
// Every function here computes the same bits on every instruction set: the vector code (GCC/Clang vector
// extensions, one clone per instruction set, TESSERA_CLONE_PER_ISA) adds its products in the order the
// scalar references (`*_scalar`) spell out, and the library is built with -ffp-contract=off (no fused
// multiply-adds in one clone and not in another). Tests compare the two bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tessera::detail {

/// Dimensions of the packed codes and of the padded query are rounded up to a multiple of this (zero codes,
/// zero query coordinates: they add exact zeros).
constexpr size_t kRabitqDimPad = 32;
inline size_t rabitq_padded_dim(size_t d) { return (d + kRabitqDimPad - 1) / kRabitqDimPad * kRabitqDimPad; }

/// Bits per coordinate of the packed full codes u ∈ [0, 2^B) for B bits: 2 (B ≤ 2), 4 (B ≤ 4), 8 (B ≤ 8),
/// 16 (B = 9).
int rabitq_code_width(int bits);
/// Bytes of one packed code: padded_dim · width / 8.
inline size_t rabitq_packed_bytes(size_t d, int width) { return rabitq_padded_dim(d) * size_t(width) / 8; }

/// Packs u (d values < 2^width) into `out` (rabitq_packed_bytes bytes; padding zero). Per group of 32
/// dimensions (4·width bytes):
///   width 2:  byte j (0..7) holds dimensions j, j + 8, j + 16, j + 24 in bits 0–1, 2–3, 4–5, 6–7;
///   width 4:  byte j (0..7) holds dimension j (low nibble) and j + 8 (high); byte 8 + j: 16 + j and 24 + j;
///   width 8:  byte j = dimension j;  width 16: uint16 j = dimension j.
/// So that 8 consecutive dimensions unpack with one shift and mask of 8 bytes.
void rabitq_pack_code(const uint16_t* u, size_t d, int width, uint8_t* out);
/// u_j of a packed code.
uint16_t rabitq_unpack_value(const uint8_t* packed, size_t j, int width);

/// Σ_j u_j·q_j over dpad (a multiple of 32) dimensions of a packed code and a float query, in this order:
/// four 8-lane partial sums A_0..A_3, A_g[l] += u·q of dimension 32t + 8g + l for t = 0, 1, …; then
/// T = (A_0 + A_1) + (A_2 + A_3) per lane, and T's lanes as a tree: u_l = T_l + T_{l+4} (l < 4), then
/// (u_0 + u_2) + (u_1 + u_3).
/// rabitq_code_dot runs AVX2 code when the CPU has it (rabitq_kernels_have_avx2), else the scalar reference.
float rabitq_code_dot(const uint8_t* packed, int width, const float* q, size_t dpad);
float rabitq_code_dot_scalar(const uint8_t* packed, int width, const float* q, size_t dpad);
bool rabitq_kernels_have_avx2();
/// The kernel rabitq_code_dot dispatches to for this width (saves the dispatch per call).
using RabitqCodeDot = float (*)(const uint8_t* packed, const float* q, size_t dpad);
RabitqCodeDot rabitq_code_dot_kernel(int width);

/// Σ_j a_j·b_j and Σ_j (a_j − b_j)² over d floats (any d): the same four 8-lane partial sums over whole
/// groups of 32 as rabitq_code_dot, then T's lanes as that tree, then the remaining d mod 32 terms one by one.
float rabitq_dot(const float* a, const float* b, size_t d);
float rabitq_l2sqr(const float* a, const float* b, size_t d);
float rabitq_dot_scalar(const float* a, const float* b, size_t d);
float rabitq_l2sqr_scalar(const float* a, const float* b, size_t d);
/// Σ_j a_j over d floats, the same order (products replaced by a_j).
float rabitq_sum(const float* a, size_t d);

/// The top-bit scan's uint8 tables of a rotated query q (d floats): table t (coordinates c_b = q[4t + b], 0
/// past d) holds in entry j (bit b of j = coordinate b in the subset)
///   min(255, ⌊max(e_j − lo[t], 0)·scale + ½⌋),  e_j = ((c_0·j_0 + c_1·j_1) + c_2·j_2) + c_3·j_3
/// (lo[t]: the table's smallest subset sum, scale: 255 / the widest table's range). lut: ⌈d/4⌉ × 16 bytes.
/// AVX2 when the CPU has it and use_simd, else the scalar loop (the same bytes).
void rabitq_top_bit_lut(const float* q, size_t d, float scale, const float* lo, uint8_t* lut, bool use_simd = true);

/// Stage 1's scan: blocks of 32 vectors, each 2·npairs tables of 16 bytes; in table t, byte j holds the 4-bit
/// code t of vector j (low nibble) and of vector j + 16 (high nibble). out[32·b + v] = Σ_t lut[16t + code_t(v)]
/// (uint16; callers keep 255·2·npairs ≤ 65535). lut: 2·npairs × 16. AVX2 (two tables per byte shuffle) when the
/// CPU has it and use_simd, else the scalar reference (the same sums).
void rabitq_fast_scan(const uint8_t* blocks, size_t nblocks, size_t npairs, const uint8_t* lut, uint16_t* out,
                      bool use_simd = true);
void rabitq_fast_scan_scalar(const uint8_t* blocks, size_t nblocks, size_t npairs, const uint8_t* lut,
                             uint16_t* out);

/// Stage 1 of one fast-scan block (32 vectors): from the uint16 sums of the top-bit scan and the block's
/// 1-bit factors (f: add[32], rescale[32], error[32]),
///   ip = sum·inv_scale + offset,  est = add + term + rescale·ip,  bound = error·dist + |rescale|·rounding
/// and key[v] = est − bound (L2: the lower end) or −(est + bound) (inner product: the upper end, negated), so
/// that a smaller key is the better end for both metrics. Returns the mask of the vectors v < n whose key is
/// below thr (bit v). AVX2 when the CPU has it, else the scalar reference.
uint32_t rabitq_block_keys(const uint16_t* sums, const float* f, float inv_scale, float offset, float term, float dist,
                           float rounding, bool l2, float thr, size_t n, float* key);
uint32_t rabitq_block_keys_scalar(const uint16_t* sums, const float* f, float inv_scale, float offset, float term,
                                  float dist, float rounding, bool l2, float thr, size_t n, float* key);

/// The coarse centroids in panels of 16 for rabitq_rank_centroids: panel p holds centroids 16p … 16p + 15 as
/// d × 16 floats (dimension j of centroid 16p + c at 16j + c), zero past nlist. c: nlist × d; panels:
/// ⌈nlist/16⌉·16·d floats.
void rabitq_pack_centroid_panels(const float* c, size_t nlist, size_t d, float* panels);
/// The coarse ranking keys of m queries (q: m × d, row stride ldq) against the panelled centroids:
/// keys[i·ldk + l] = norms[l] − 2·⟨q_i, c_l⟩ (l2) or −⟨q_i, c_l⟩, each product summed in one float over
/// j = 0, 1, …, d − 1 in order (separate multiplies and adds). norms: ⌈nlist/16⌉·16 floats (zero padded).
/// One clone per instruction set, the same bits as the scalar reference.
void rabitq_rank_centroids(const float* q, size_t ldq, size_t m, const float* panels, size_t nlist, size_t d,
                           const float* norms, bool l2, float* keys, size_t ldk);
void rabitq_rank_centroids_scalar(const float* q, size_t ldq, size_t m, const float* panels, size_t nlist, size_t d,
                                  const float* norms, bool l2, float* keys, size_t ldk);

/// The first i in [0, n) with k[i] < thr (NaN: never), or n. Sixteen keys per comparison step.
size_t rabitq_next_below(const float* k, size_t n, float thr);

}  // namespace tessera::detail
