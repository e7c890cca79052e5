#include "quant/rq_beam_search.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/blas.h"
#include "core/parallel.h"
#include "core/row_scan.h"
#include "core/simd.h"
#include "tessera/core/distances.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"

namespace tessera::detail {

namespace {

// Beam entries (rows of the GEMM) per block: the row chunk gemm_abt splits a product into, so that with
// beam 1 every GEMM call has the shape nearest_centroids gives it, and the greedy codes match bit for bit.
constexpr size_t kBlockRows = 512;
// Cap of one thread's distance buffer (floats) for very large codebooks.
constexpr size_t kMaxDistanceFloats = size_t(1) << 22;
// Blocks run in one parallel region between two interrupt checks.
constexpr size_t kBlocksPerCheck = 32;

struct Candidate {
  float error;      // ‖x − reconstruction‖² of the extended encoding
  uint32_t parent;  // rank of the partial encoding it extends
  int32_t code;     // codeword of the current level
};

// One thread's buffers: the partial encodings of a block (vectors × entries), their residuals and errors.
struct Workspace {
  std::vector<float> res, res_next;       // rows × d
  std::vector<float> err, err_next;       // rows: ‖residual‖²
  std::vector<int32_t> pre, pre_next;     // rows × M: codes of the levels done
  std::vector<float> dist;                // rows × K_max: −2⟨residual, codeword⟩
  std::vector<Candidate> top;             // beam
};

double sqr_norm(const float* v, size_t d) {
  double s = 0;
  for (size_t j = 0; j < d; ++j) s += double(v[j]) * v[j];
  return s;
}

// Keep the `keep` smallest of the candidates of one vector: entries × K errors err[e] + dist[e][k] + cn[k],
// scanned in candidate order with a sorted list (a strict < keeps the lower index on equal errors).
// Returns how many were kept (min(keep, entries × K)).
TESSERA_CLONE_PER_ISA size_t select_best(const float* err, const float* dist, size_t entries, const float* cn,
                                         size_t K, size_t keep, Candidate* top) {
  size_t cnt = 0;
  for (size_t e = 0; e < entries; ++e) {
    const float base = err[e];
    const float* row = dist + e * K;
    for (size_t k = 0; k < K; ++k) {
      const float v = base + (row[k] + cn[k]);
      if (cnt == keep && !(v < top[cnt - 1].error)) continue;
      size_t pos = cnt < keep ? cnt++ : cnt - 1;
      for (; pos > 0 && v < top[pos - 1].error; --pos) top[pos] = top[pos - 1];
      top[pos] = {v, uint32_t(e), int32_t(k)};
    }
  }
  return cnt;
}

// Greedy step (beam 1): the nearest codeword for each row, as nearest_centroids scans it.
TESSERA_CLONE_PER_ISA void nearest_rows(const float* dist, size_t rows, const float* cn, size_t K, int32_t* out) {
  for (size_t i = 0; i < rows; ++i) out[i] = best_of(dist + i * K, cn, K).best;
}

// Encode vectors [v0, v0 + nv) of x.
void encode_block(MatrixView<const float> x, const std::vector<MatrixView<const float>>& books,
                  const std::vector<std::vector<float>>& cnorms, size_t beam, size_t v0, size_t nv, int32_t* codes,
                  Workspace& w) {
  const size_t d = x.cols, M = books.size();
  for (size_t i = 0; i < nv; ++i) {
    std::memcpy(w.res.data() + i * d, x.row(v0 + i), d * sizeof(float));
    if (beam > 1) w.err[i] = float(sqr_norm(x.row(v0 + i), d));
  }
  size_t entries = 1;  // partial encodings per vector
  std::vector<int32_t> nearest(beam == 1 ? nv : 0);
  for (size_t m = 0; m < M; ++m) {
    const MatrixView<const float> C = books[m];
    const size_t K = C.rows, rows = nv * entries;
    const float* cn = cnorms[m].data();
    const bool last = m + 1 == M;
    gemm_abt(rows, K, d, -2.0f, w.res.data(), d, C.data, C.stride, 0.0f, w.dist.data(), K);
    if (beam == 1) {
      // The residual after the level is what the greedy encoder subtracts: r − c, in float.
      nearest_rows(w.dist.data(), nv, cn, K, nearest.data());
      for (size_t i = 0; i < nv; ++i) {
        const int32_t k = nearest[i];
        codes[(v0 + i) * M + m] = k;
        if (last) continue;
        float* r = w.res.data() + i * d;
        const float* c = C.row(k);
        for (size_t j = 0; j < d; ++j) r[j] -= c[j];
      }
      continue;
    }
    const size_t next = std::min(beam, entries * K);
    for (size_t i = 0; i < nv; ++i) {
      const size_t base = i * entries;
      const size_t kept = select_best(w.err.data() + base, w.dist.data() + base * K, entries, cn, K, next,
                                      w.top.data());
      if (last) {
        // The best complete encoding: its parent's codes and this level's codeword.
        const Candidate& b = w.top[0];
        std::memcpy(codes + (v0 + i) * M, w.pre.data() + (base + b.parent) * M, m * sizeof(int32_t));
        codes[(v0 + i) * M + m] = b.code;
        continue;
      }
      for (size_t t = 0; t < kept; ++t) {
        const Candidate& c = w.top[t];
        const size_t from = base + c.parent, to = i * next + t;
        const float* r = w.res.data() + from * d;
        const float* cw = C.row(c.code);
        float* out = w.res_next.data() + to * d;
        for (size_t j = 0; j < d; ++j) out[j] = r[j] - cw[j];
        // The exact norm of the new residual, not the error from the expansion, so rounding does not
        // accumulate over the levels.
        w.err_next[to] = float(sqr_norm(out, d));
        std::memcpy(w.pre_next.data() + to * M, w.pre.data() + from * M, m * sizeof(int32_t));
        w.pre_next[to * M + m] = c.code;
      }
    }
    std::swap(w.res, w.res_next);
    std::swap(w.err, w.err_next);
    std::swap(w.pre, w.pre_next);
    entries = next;
  }
}

}  // namespace

void rq_beam_encode(MatrixView<const float> x, const std::vector<MatrixView<const float>>& books, size_t beam,
                    int32_t* codes) {
  TESSERA_CHECK_ARG(beam >= 1, "the beam size must be at least 1, got " << beam);
  const size_t n = x.rows, d = x.cols, M = books.size();
  if (n == 0 || M == 0) return;
  size_t K_max = 0;
  std::vector<std::vector<float>> cnorms(M);
  for (size_t m = 0; m < M; ++m) {
    TESSERA_CHECK_ARG(books[m].cols == d && books[m].rows > 0,
                      "codebook " << m << " is " << books[m].rows << " × " << books[m].cols << ", expected K × " << d);
    K_max = std::max(K_max, books[m].rows);
    cnorms[m].resize(books[m].rows);
    row_norms_sqr(books[m], cnorms[m].data());
  }
  // Rows per block: kBlockRows, fewer for very large codebooks, at least one vector's beam.
  const size_t target = std::clamp<size_t>(kMaxDistanceFloats / K_max, 1, kBlockRows);
  const size_t nv = std::max<size_t>(1, target / beam);
  const size_t rows = nv * beam;
  TESSERA_CHECK_ARG(rows <= (size_t(1) << 28) / std::max<size_t>(K_max, d),
                    "a beam of " << beam << " over codebooks of " << K_max << " codewords in " << d
                                 << " dimensions needs more than 1 GiB of buffers per thread");
  const size_t blocks = (n + nv - 1) / nv;
  for (size_t g = 0; g < blocks; g += kBlocksPerCheck) {
    check_interrupt();
    const size_t g_end = std::min(blocks, g + kBlocksPerCheck);
    ExceptionCatcher catcher;
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      Workspace w;
      bool ready = false;
      catcher.run([&] {
        w.res.resize(rows * d);
        w.dist.resize(rows * K_max);
        if (beam > 1) {
          w.res_next.resize(rows * d);
          w.err.resize(rows);
          w.err_next.resize(rows);
          w.pre.resize(rows * M);
          w.pre_next.resize(rows * M);
          w.top.resize(beam);
        }
        ready = true;
      });
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t b = (ptrdiff_t)g; b < (ptrdiff_t)g_end; ++b) {
        if (!ready) continue;  // allocation failed: the catcher holds why
        const size_t v0 = size_t(b) * nv;
        catcher.run([&] { encode_block(x, books, cnorms, beam, v0, std::min(nv, n - v0), codes, w); });
      }
    }
    catcher.rethrow();
  }
}

}  // namespace tessera::detail
