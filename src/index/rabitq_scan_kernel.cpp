#include "index/rabitq_scan_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/simd.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace tessera::detail {

int rabitq_code_width(int bits) { return bits <= 2 ? 2 : bits <= 4 ? 4 : bits <= 8 ? 8 : 16; }

void rabitq_pack_code(const uint16_t* u, size_t d, int width, uint8_t* out) {
  std::memset(out, 0, rabitq_packed_bytes(d, width));
  switch (width) {
    case 2:
      for (size_t j = 0; j < d; ++j) out[(j / 32) * 8 + j % 8] |= uint8_t((u[j] & 3u) << (2 * ((j % 32) / 8)));
      break;
    case 4:
      for (size_t j = 0; j < d; ++j) {
        const size_t r = j % 32;
        out[(j / 32) * 16 + (r / 16) * 8 + r % 8] |= uint8_t((u[j] & 15u) << (4 * ((r / 8) % 2)));
      }
      break;
    case 8:
      for (size_t j = 0; j < d; ++j) out[j] = uint8_t(u[j]);
      break;
    default:
      std::memcpy(out, u, 2 * d);
      break;
  }
}

uint16_t rabitq_unpack_value(const uint8_t* packed, size_t j, int width) {
  const size_t g = j / 32, r = j % 32;
  switch (width) {
    case 2: return uint16_t((packed[g * 8 + r % 8] >> (2 * (r / 8))) & 3u);
    case 4: return uint16_t((packed[g * 16 + (r / 16) * 8 + r % 8] >> (4 * ((r / 8) % 2))) & 15u);
    case 8: return packed[j];
    default: {
      uint16_t v;
      std::memcpy(&v, packed + 2 * j, 2);
      return v;
    }
  }
}

namespace {

// ------------------------------------------------------------------------------------ scalar references
// The 8 lanes of a partial sum added as a tree: lanes l and l + 4, then l and l + 2, then 0 and 1.
inline float lanes_scalar(const float* t) {
  const float u0 = t[0] + t[4], u1 = t[1] + t[5], u2 = t[2] + t[6], u3 = t[3] + t[7];
  return (u0 + u2) + (u1 + u3);
}
// The four 8-lane partial sums of the vector code, one float at a time.
struct Partial {
  float a[4][8] = {};
  float total() const {
    float t[8];
    for (int l = 0; l < 8; ++l) t[l] = (a[0][l] + a[1][l]) + (a[2][l] + a[3][l]);
    return lanes_scalar(t);
  }
};

}  // namespace

float rabitq_code_dot_scalar(const uint8_t* packed, int width, const float* q, size_t dpad) {
  Partial p;
  for (size_t j = 0; j < dpad; ++j) {
    const size_t r = j % 32;
    p.a[r / 8][r % 8] += float(rabitq_unpack_value(packed, j, width)) * q[j];
  }
  return p.total();
}

float rabitq_dot_scalar(const float* a, const float* b, size_t d) {
  Partial p;
  const size_t whole = d / 32 * 32;
  for (size_t j = 0; j < whole; ++j) p.a[(j % 32) / 8][j % 8] += a[j] * b[j];
  float s = p.total();
  for (size_t j = whole; j < d; ++j) s += a[j] * b[j];
  return s;
}

float rabitq_l2sqr_scalar(const float* a, const float* b, size_t d) {
  Partial p;
  const size_t whole = d / 32 * 32;
  for (size_t j = 0; j < whole; ++j) {
    const float t = a[j] - b[j];
    p.a[(j % 32) / 8][j % 8] += t * t;
  }
  float s = p.total();
  for (size_t j = whole; j < d; ++j) {
    const float t = a[j] - b[j];
    s += t * t;
  }
  return s;
}

uint32_t rabitq_block_keys_scalar(const uint16_t* sums, const float* f, float inv_scale, float offset, float term,
                                  float dist, float rounding, bool l2, float thr, size_t n, float* key) {
  uint32_t mask = 0;
  for (size_t v = 0; v < 32; ++v) {
    const float ip = float(sums[v]) * inv_scale + offset;
    const float est = f[v] + term + f[32 + v] * ip;
    const float bound = f[64 + v] * dist + std::fabs(f[32 + v]) * rounding;
    key[v] = l2 ? est - bound : -(est + bound);
    if (v < n && key[v] < thr) mask |= uint32_t(1) << v;
  }
  return mask;
}

// ------------------------------------------------------------------------------------ vector code
namespace {

typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

#define TESSERA_RBQ_INLINE inline __attribute__((always_inline))

TESSERA_RBQ_INLINE float lanes_total(const f8& a0, const f8& a1, const f8& a2, const f8& a3) {
  const f8 t = (a0 + a1) + (a2 + a3);
  const float u0 = t[0] + t[4], u1 = t[1] + t[5], u2 = t[2] + t[6], u3 = t[3] + t[7];
  return (u0 + u2) + (u1 + u3);
}

// Op 0: Σ a·b, 1: Σ (a − b)², 2: Σ a.
template <int Op>
TESSERA_RBQ_INLINE float float_sum(const float* a, const float* b, size_t d) {
  f8 acc[4] = {};
  const size_t whole = d / 32 * 32;
  for (size_t j = 0; j < whole; j += 32) {
    for (int g = 0; g < 4; ++g) {
      f8 x, y;
      std::memcpy(&x, a + j + 8 * g, 32);
      if constexpr (Op == 2) {
        acc[g] += x;
      } else {
        std::memcpy(&y, b + j + 8 * g, 32);
        if constexpr (Op == 0) {
          acc[g] += x * y;
        } else {
          const f8 t = x - y;
          acc[g] += t * t;
        }
      }
    }
  }
  float s = lanes_total(acc[0], acc[1], acc[2], acc[3]);
  for (size_t j = whole; j < d; ++j) {
    if constexpr (Op == 0) s += a[j] * b[j];
    else if constexpr (Op == 1) {
      const float t = a[j] - b[j];
      s += t * t;
    } else s += a[j];
  }
  return s;
}

TESSERA_CLONE_PER_ISA float dot_v(const float* a, const float* b, size_t d) { return float_sum<0>(a, b, d); }
TESSERA_CLONE_PER_ISA float l2sqr_v(const float* a, const float* b, size_t d) { return float_sum<1>(a, b, d); }
TESSERA_CLONE_PER_ISA float sum_v(const float* a, size_t d) { return float_sum<2>(a, nullptr, d); }

// Coarse ranking: a group of G queries against one panel of 16 centroids (d × 16 floats, column c = centroid c),
// G × 2 eight-lane sums, each (query, centroid) product added in the order j = 0, 1, …, d − 1; then the keys.
template <int G>
inline __attribute__((always_inline)) void rank_group(const float* q, size_t ldq, const float* panel, size_t d,
                                                      const float* norms, bool l2, float* keys, size_t ldk,
                                                      size_t width) {
  f8 acc[G][2];
  for (int g = 0; g < G; ++g) acc[g][0] = acc[g][1] = f8{};
  for (size_t j = 0; j < d; ++j) {
    f8 c0, c1;
    std::memcpy(&c0, panel + 16 * j, 32);
    std::memcpy(&c1, panel + 16 * j + 8, 32);
    for (int g = 0; g < G; ++g) {
      const float v = q[size_t(g) * ldq + j];
      acc[g][0] += c0 * v;
      acc[g][1] += c1 * v;
    }
  }
  f8 n0, n1;
  std::memcpy(&n0, norms, 32);
  std::memcpy(&n1, norms + 8, 32);
  for (int g = 0; g < G; ++g) {
    float out[16];
    const f8 k0 = l2 ? n0 - 2.0f * acc[g][0] : -acc[g][0], k1 = l2 ? n1 - 2.0f * acc[g][1] : -acc[g][1];
    std::memcpy(out, &k0, 32);
    std::memcpy(out + 8, &k1, 32);
    std::memcpy(keys + size_t(g) * ldk, out, width * sizeof(float));
  }
}

TESSERA_CLONE_PER_ISA void rank_centroids_v(const float* q, size_t ldq, size_t m, const float* panels, size_t nlist,
                                            size_t d, const float* norms, bool l2, float* keys, size_t ldk) {
  const size_t npanels = (nlist + 15) / 16;
  // Panels in runs of about 96 KB (kept in L2 while every query of the batch passes over them).
  const size_t run = std::max<size_t>(1, (96 * 1024) / (d * 16 * sizeof(float)));
  for (size_t p0 = 0; p0 < npanels; p0 += run) {
    const size_t p1 = std::min(npanels, p0 + run);
    for (size_t i = 0; i < m; i += 4) {
      const size_t g = std::min<size_t>(4, m - i);
      for (size_t p = p0; p < p1; ++p) {
        const float* panel = panels + p * d * 16;
        const size_t width = std::min<size_t>(16, nlist - 16 * p);
        float* k = keys + i * ldk + 16 * p;
        const float* qi = q + i * ldq;
        switch (g) {
          case 4: rank_group<4>(qi, ldq, panel, d, norms + 16 * p, l2, k, ldk, width); break;
          case 3: rank_group<3>(qi, ldq, panel, d, norms + 16 * p, l2, k, ldk, width); break;
          case 2: rank_group<2>(qi, ldq, panel, d, norms + 16 * p, l2, k, ldk, width); break;
          default: rank_group<1>(qi, ldq, panel, d, norms + 16 * p, l2, k, ldk, width); break;
        }
      }
    }
  }
}

TESSERA_CLONE_PER_ISA size_t next_below_v(const float* k, size_t n, float thr) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f8 a, b;
    std::memcpy(&a, k + i, 32);
    std::memcpy(&b, k + i + 8, 32);
    const i8 m = (a < thr) | (b < thr);
    const i8 m2 = m | __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3);
    const i8 m4 = m2 | __builtin_shufflevector(m2, m2, 2, 3, 0, 1, 6, 7, 4, 5);
    if ((m4[0] | m4[1]) != 0) break;
  }
  for (; i < n; ++i)
    if (k[i] < thr) return i;
  return n;
}

}  // namespace

// ------------------------------------------------------------------------------------ AVX2 (intrinsics)
// GCC's vector extensions turn byte → float conversions into scalar code; these kernels use the AVX2
// widening loads instead (separate multiplies and adds, as the scalar references: the same bits).
#if defined(__x86_64__) && defined(__GNUC__)
#define TESSERA_RBQ_AVX2 1
namespace {

#define TESSERA_RBQ_AVX2_FN __attribute__((target("avx2"))) inline

// lanes_scalar's tree: (l, l + 4), then (l, l + 2), then (0, 1).
TESSERA_RBQ_AVX2_FN float lanes_avx2(__m256 t) {
  const __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));  // u_l = t_l + t_{l+4}
  const __m128 w = _mm_add_ps(u, _mm_movehl_ps(u, u));                                // w_0 = u_0 + u_2, w_1 = u_1 + u_3
  return _mm_cvtss_f32(_mm_add_ss(w, _mm_shuffle_ps(w, w, 1)));
}

template <int W>
TESSERA_RBQ_AVX2_FN float code_dot_avx2(const uint8_t* packed, const float* q, size_t dpad) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t j = 0; j < dpad; j += 32) {
    __m256i u0, u1, u2, u3;
    if constexpr (W == 2) {
      const __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + j / 4)));
      const __m256i m = _mm256_set1_epi32(3);
      u0 = _mm256_and_si256(x, m);
      u1 = _mm256_and_si256(_mm256_srli_epi32(x, 2), m);
      u2 = _mm256_and_si256(_mm256_srli_epi32(x, 4), m);
      u3 = _mm256_srli_epi32(x, 6);
    } else if constexpr (W == 4) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + j / 2));
      const __m128i m = _mm_set1_epi8(15);
      const __m128i lo = _mm_and_si128(x, m), hi = _mm_and_si128(_mm_srli_epi16(x, 4), m);
      u0 = _mm256_cvtepu8_epi32(lo);
      u1 = _mm256_cvtepu8_epi32(hi);
      u2 = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
      u3 = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
    } else if constexpr (W == 8) {
      u0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + j)));
      u1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + j + 8)));
      u2 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + j + 16)));
      u3 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + j + 24)));
    } else {
      u0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + 2 * j)));
      u1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + 2 * j + 16)));
      u2 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + 2 * j + 32)));
      u3 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + 2 * j + 48)));
    }
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_cvtepi32_ps(u0), _mm256_loadu_ps(q + j)));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_cvtepi32_ps(u1), _mm256_loadu_ps(q + j + 8)));
    a2 = _mm256_add_ps(a2, _mm256_mul_ps(_mm256_cvtepi32_ps(u2), _mm256_loadu_ps(q + j + 16)));
    a3 = _mm256_add_ps(a3, _mm256_mul_ps(_mm256_cvtepi32_ps(u3), _mm256_loadu_ps(q + j + 24)));
  }
  return lanes_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

__attribute__((target("avx2"))) float code_dot_2_avx2(const uint8_t* p, const float* q, size_t n) { return code_dot_avx2<2>(p, q, n); }
__attribute__((target("avx2"))) float code_dot_4_avx2(const uint8_t* p, const float* q, size_t n) { return code_dot_avx2<4>(p, q, n); }
__attribute__((target("avx2"))) float code_dot_8_avx2(const uint8_t* p, const float* q, size_t n) { return code_dot_avx2<8>(p, q, n); }
__attribute__((target("avx2"))) float code_dot_16_avx2(const uint8_t* p, const float* q, size_t n) { return code_dot_avx2<16>(p, q, n); }

__attribute__((target("avx2"))) uint32_t block_keys_avx2(const uint16_t* sums, const float* f, float inv_scale,
                                                         float offset, float term, float dist, float rounding, bool l2,
                                                         float thr, size_t n, float* key) {
  const __m256 vinv = _mm256_set1_ps(inv_scale), voff = _mm256_set1_ps(offset), vterm = _mm256_set1_ps(term);
  const __m256 vdist = _mm256_set1_ps(dist), vround = _mm256_set1_ps(rounding), vthr = _mm256_set1_ps(thr);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(int32_t(0x80000000u)));
  uint32_t mask = 0;
  for (size_t g = 0; g < 4; ++g) {
    const __m256i s = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sums + 8 * g)));
    const __m256 add = _mm256_loadu_ps(f + 8 * g), rescale = _mm256_loadu_ps(f + 32 + 8 * g);
    const __m256 err = _mm256_loadu_ps(f + 64 + 8 * g);
    const __m256 ip = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), vinv), voff);
    const __m256 est = _mm256_add_ps(_mm256_add_ps(add, vterm), _mm256_mul_ps(rescale, ip));
    const __m256 bound = _mm256_add_ps(_mm256_mul_ps(err, vdist), _mm256_mul_ps(_mm256_and_ps(rescale, abs_mask), vround));
    const __m256 k = l2 ? _mm256_sub_ps(est, bound) : _mm256_xor_ps(_mm256_add_ps(est, bound), sign);
    _mm256_storeu_ps(key + 8 * g, k);
    mask |= uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(k, vthr, _CMP_LT_OQ))) << (8 * g);
  }
  return n >= 32 ? mask : mask & ((uint32_t(1) << n) - 1);
}


__attribute__((target("avx2"))) void top_bit_lut_avx2(const float* q, size_t d, float scale, const float* lo,
                                                      uint8_t* lut) {
  const __m256 m0a = _mm256_setr_ps(0, 1, 0, 1, 0, 1, 0, 1), m1a = _mm256_setr_ps(0, 0, 1, 1, 0, 0, 1, 1);
  const __m256 m2a = _mm256_setr_ps(0, 0, 0, 0, 1, 1, 1, 1), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 vscale = _mm256_set1_ps(scale), half = _mm256_set1_ps(0.5f);
  const __m256i cap = _mm256_set1_epi32(255);
  const size_t nsq = (d + 3) / 4;
  for (size_t t = 0; t < nsq; ++t) {
    float c[4];
    for (size_t b = 0; b < 4; ++b) c[b] = 4 * t + b < d ? q[4 * t + b] : 0.0f;
    const __m256 c0 = _mm256_set1_ps(c[0]), c1 = _mm256_set1_ps(c[1]), c2 = _mm256_set1_ps(c[2]);
    const __m256 c3 = _mm256_set1_ps(c[3]), vlo = _mm256_set1_ps(lo[t]);
    __m256i r[2];
    for (int h = 0; h < 2; ++h) {  // entries 0–7 (bit 3 clear), 8–15 (set)
      __m256 e = _mm256_add_ps(_mm256_mul_ps(c0, m0a), _mm256_mul_ps(c1, m1a));
      e = _mm256_add_ps(e, _mm256_mul_ps(c2, m2a));
      e = _mm256_add_ps(e, _mm256_mul_ps(c3, h ? one : zero));
      e = _mm256_max_ps(_mm256_sub_ps(e, vlo), zero);
      r[h] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(e, vscale), half)), cap);
    }
    // int32 → uint8: packs keeps 128-bit lanes, so entries come out as 0–3 8–11 4–7 12–15.
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(r[0], r[1]), 0xD8);  // 0–7, 8–15 as int16
    const __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lut + 16 * t), b);
  }
}

// Two tables per 256-bit shuffle (lane 0: table 2p, lane 1: table 2p + 1). The shuffled bytes are added as
// uint16 lanes (even vector in the low byte, odd vector in the high byte: a = Σe + 256·Σo mod 2^16) and,
// shifted, as the odd vectors' sums alone (b = Σo); then Σe = a − 256·b, exact while Σe < 65536.
__attribute__((target("avx2"))) void fast_scan_avx2(const uint8_t* blocks, size_t nblocks, size_t npairs,
                                                    const uint8_t* lut, uint16_t* out) {
  const __m256i m = _mm256_set1_epi8(15);
  for (size_t blk = 0; blk < nblocks; ++blk) {
    const uint8_t* codes = blocks + blk * npairs * 32;
    __m256i a_lo = _mm256_setzero_si256(), b_lo = a_lo, a_hi = a_lo, b_hi = a_lo;
#define TESSERA_RBQ_SCAN_PAIR(P)                                                                          \
  {                                                                                                       \
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * (P)));            \
    const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + 32 * (P)));              \
    const __m256i rl = _mm256_shuffle_epi8(l, _mm256_and_si256(c, m));                                   \
    const __m256i rh = _mm256_shuffle_epi8(l, _mm256_and_si256(_mm256_srli_epi16(c, 4), m));             \
    a_lo = _mm256_add_epi16(a_lo, rl);                                                                    \
    b_lo = _mm256_add_epi16(b_lo, _mm256_srli_epi16(rl, 8));                                              \
    a_hi = _mm256_add_epi16(a_hi, rh);                                                                    \
    b_hi = _mm256_add_epi16(b_hi, _mm256_srli_epi16(rh, 8));                                              \
  }
    size_t p = 0;
    for (; p + 2 <= npairs; p += 2) {
      TESSERA_RBQ_SCAN_PAIR(p)
      TESSERA_RBQ_SCAN_PAIR(p + 1)
    }
    if (p < npairs) TESSERA_RBQ_SCAN_PAIR(p)
#undef TESSERA_RBQ_SCAN_PAIR
    const __m256i e_lo = _mm256_sub_epi16(a_lo, _mm256_slli_epi16(b_lo, 8));
    const __m256i e_hi = _mm256_sub_epi16(a_hi, _mm256_slli_epi16(b_hi, 8));
    const __m128i el = _mm_add_epi16(_mm256_castsi256_si128(e_lo), _mm256_extracti128_si256(e_lo, 1));
    const __m128i ol = _mm_add_epi16(_mm256_castsi256_si128(b_lo), _mm256_extracti128_si256(b_lo, 1));
    const __m128i eh = _mm_add_epi16(_mm256_castsi256_si128(e_hi), _mm256_extracti128_si256(e_hi, 1));
    const __m128i oh = _mm_add_epi16(_mm256_castsi256_si128(b_hi), _mm256_extracti128_si256(b_hi, 1));
    uint16_t* o = out + blk * 32;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm_unpacklo_epi16(el, ol));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 8), _mm_unpackhi_epi16(el, ol));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), _mm_unpacklo_epi16(eh, oh));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 24), _mm_unpackhi_epi16(eh, oh));
  }
}

const bool kHasAvx2 = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") != 0;
}();

}  // namespace
#endif

float rabitq_code_dot(const uint8_t* packed, int width, const float* q, size_t dpad) {
#ifdef TESSERA_RBQ_AVX2
  if (kHasAvx2) {
    switch (width) {
      case 2: return code_dot_2_avx2(packed, q, dpad);
      case 4: return code_dot_4_avx2(packed, q, dpad);
      case 8: return code_dot_8_avx2(packed, q, dpad);
      default: return code_dot_16_avx2(packed, q, dpad);
    }
  }
#endif
  return rabitq_code_dot_scalar(packed, width, q, dpad);
}

RabitqCodeDot rabitq_code_dot_kernel(int width) {
#ifdef TESSERA_RBQ_AVX2
  if (kHasAvx2) return width == 2 ? code_dot_2_avx2 : width == 4 ? code_dot_4_avx2 : width == 8 ? code_dot_8_avx2 : code_dot_16_avx2;
#endif
  switch (width) {
    case 2: return [](const uint8_t* p, const float* q, size_t n) { return rabitq_code_dot_scalar(p, 2, q, n); };
    case 4: return [](const uint8_t* p, const float* q, size_t n) { return rabitq_code_dot_scalar(p, 4, q, n); };
    case 8: return [](const uint8_t* p, const float* q, size_t n) { return rabitq_code_dot_scalar(p, 8, q, n); };
    default: return [](const uint8_t* p, const float* q, size_t n) { return rabitq_code_dot_scalar(p, 16, q, n); };
  }
}


void rabitq_top_bit_lut(const float* q, size_t d, float scale, const float* lo, uint8_t* lut, bool use_simd) {
#ifdef TESSERA_RBQ_AVX2
  if (use_simd && kHasAvx2) return top_bit_lut_avx2(q, d, scale, lo, lut);
#endif
  const size_t nsq = (d + 3) / 4;
  for (size_t t = 0; t < nsq; ++t) {
    float c[4];
    for (size_t b = 0; b < 4; ++b) c[b] = 4 * t + b < d ? q[4 * t + b] : 0.0f;
    for (unsigned j = 0; j < 16; ++j) {
      float e = c[0] * float(j & 1) + c[1] * float((j >> 1) & 1);
      e = e + c[2] * float((j >> 2) & 1);
      e = e + c[3] * float((j >> 3) & 1);
      e = std::max(e - lo[t], 0.0f);
      lut[16 * t + j] = uint8_t(std::min(255, int(e * scale + 0.5f)));
    }
  }
}

void rabitq_fast_scan_scalar(const uint8_t* blocks, size_t nblocks, size_t npairs, const uint8_t* lut,
                             uint16_t* out) {
  for (size_t blk = 0; blk < nblocks; ++blk) {
    const uint8_t* codes = blocks + blk * npairs * 32;
    for (size_t v = 0; v < 32; ++v) {
      uint16_t s = 0;
      for (size_t t = 0; t < 2 * npairs; ++t) {
        const uint8_t byte = codes[16 * t + v % 16];
        s = uint16_t(s + lut[16 * t + (v < 16 ? byte & 15 : byte >> 4)]);
      }
      out[blk * 32 + v] = s;
    }
  }
}

void rabitq_fast_scan(const uint8_t* blocks, size_t nblocks, size_t npairs, const uint8_t* lut, uint16_t* out,
                      bool use_simd) {
#ifdef TESSERA_RBQ_AVX2
  if (use_simd && kHasAvx2) return fast_scan_avx2(blocks, nblocks, npairs, lut, out);
#endif
  rabitq_fast_scan_scalar(blocks, nblocks, npairs, lut, out);
}

bool rabitq_kernels_have_avx2() {
#ifdef TESSERA_RBQ_AVX2
  return kHasAvx2;
#else
  return false;
#endif
}

float rabitq_dot(const float* a, const float* b, size_t d) { return dot_v(a, b, d); }
float rabitq_l2sqr(const float* a, const float* b, size_t d) { return l2sqr_v(a, b, d); }
float rabitq_sum(const float* a, size_t d) { return sum_v(a, d); }

uint32_t rabitq_block_keys(const uint16_t* sums, const float* f, float inv_scale, float offset, float term, float dist,
                           float rounding, bool l2, float thr, size_t n, float* key) {
#ifdef TESSERA_RBQ_AVX2
  if (kHasAvx2) return block_keys_avx2(sums, f, inv_scale, offset, term, dist, rounding, l2, thr, n, key);
#endif
  return rabitq_block_keys_scalar(sums, f, inv_scale, offset, term, dist, rounding, l2, thr, n, key);
}

void rabitq_pack_centroid_panels(const float* c, size_t nlist, size_t d, float* panels) {
  const size_t npanels = (nlist + 15) / 16;
  std::memset(panels, 0, npanels * d * 16 * sizeof(float));
  for (size_t l = 0; l < nlist; ++l)
    for (size_t j = 0; j < d; ++j) panels[(l / 16) * d * 16 + 16 * j + l % 16] = c[l * d + j];
}

void rabitq_rank_centroids(const float* q, size_t ldq, size_t m, const float* panels, size_t nlist, size_t d,
                           const float* norms, bool l2, float* keys, size_t ldk) {
  rank_centroids_v(q, ldq, m, panels, nlist, d, norms, l2, keys, ldk);
}

void rabitq_rank_centroids_scalar(const float* q, size_t ldq, size_t m, const float* panels, size_t nlist, size_t d,
                                  const float* norms, bool l2, float* keys, size_t ldk) {
  for (size_t i = 0; i < m; ++i)
    for (size_t l = 0; l < nlist; ++l) {
      const float* panel = panels + (l / 16) * d * 16 + l % 16;
      float s = 0;
      for (size_t j = 0; j < d; ++j) s += panel[16 * j] * q[i * ldq + j];
      keys[i * ldk + l] = l2 ? norms[l] - 2.0f * s : -s;
    }
}

size_t rabitq_next_below(const float* k, size_t n, float thr) { return next_below_v(k, n, thr); }

}  // namespace tessera::detail
