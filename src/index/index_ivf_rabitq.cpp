#include "tessera/index/index_ivf_rabitq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <utility>

#include "core/simd.h"
#include "index/fast_scan_kernel.h"
#include "io/checked_container.h"
#include "tessera/cluster/kmeans.h"
#include "tessera/core/distances.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"
#include "tessera/io/atomic_file.h"
#include "tessera/quant/rabitq_codes.h"

namespace tessera {

namespace {

constexpr const char* kType = "index_ivf_rabitq";
constexpr uint32_t kContainerVersion = 2;
constexpr int kIndexVersion = 1;
constexpr size_t kMaxHeader = size_t(1) << 24;
constexpr size_t kFixed = sizeof detail::kFileMagic + 4 + 8;
constexpr size_t kTrainRowsPerList = 256;  // faiss's max_points_per_centroid
constexpr int kCoarseIterations = 20;

// Σ_j values[j]·q[j] in 16 interleaved partial sums added in a fixed order: the same bits on every vector unit.
// The partial sums are held as two 8-lane vectors (one AVX2 register each): a 16-lane vector would live on the
// stack on AVX2 and stall every iteration on store forwarding.
TESSERA_CLONE_PER_ISA float dot_values(const uint16_t* values, const float* q, size_t d) {
  typedef float f8 __attribute__((vector_size(32)));
  typedef uint16_t u8 __attribute__((vector_size(16)));
  f8 lo = {}, hi = {};
  size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    u8 va, vb;
    f8 wa, wb;
    std::memcpy(&va, values + j, sizeof va);
    std::memcpy(&vb, values + j + 8, sizeof vb);
    std::memcpy(&wa, q + j, sizeof wa);
    std::memcpy(&wb, q + j + 8, sizeof wb);
    lo += __builtin_convertvector(va, f8) * wa;
    hi += __builtin_convertvector(vb, f8) * wb;
  }
  float tail = 0;
  for (; j < d; ++j) tail += float(values[j]) * q[j];
  float s = 0;
  for (int l = 0; l < 8; ++l) s += lo[l];
  for (int l = 0; l < 8; ++l) s += hi[l];
  return s + tail;
}

// Better result first: smaller L2 distance or larger inner product, then lower label (a total order).
struct Ranked {
  float value;
  int64_t label;
};

}  // namespace

IndexIVFRaBitQ::IndexIVFRaBitQ(size_t d, size_t nlist, RabitqParams params)
    : d_(d), nlist_(nlist), codec_(d, params), lists_(nlist) {
  TESSERA_CHECK_ARG(nlist >= 1, "nlist must be at least 1");
}

void IndexIVFRaBitQ::check_can_add() const {
  TESSERA_CHECK_ARG(ntotal_ == 0, "the index already holds " << ntotal_ << " vectors: its lists cannot change now");
}

void IndexIVFRaBitQ::train(MatrixView<const float> x) {
  check_can_add();
  TESSERA_CHECK_ARG(x.cols == d_, "dimension mismatch: training data has " << x.cols << " columns, the index " << d_);
  TESSERA_CHECK_ARG(x.rows >= nlist_, "training needs at least nlist = " << nlist_ << " vectors, got " << x.rows);
  check_finite(x, "training data");
  codec_.train(x);  // the rotation (and the data's mean, the one list's centroid when nlist = 1)
  centroids_ = FloatMatrix(nlist_, d_);
  if (nlist_ == 1) {
    std::copy(codec_.centroid().begin(), codec_.centroid().end(), centroids_.data());
  } else {
    KMeansParams p;
    p.k = nlist_;
    p.n_init = 1;
    p.max_iter = kCoarseIterations;
    p.max_train_points = kTrainRowsPerList * nlist_ < x.rows ? kTrainRowsPerList * nlist_ : 0;
    centroids_ = kmeans(x, p).centroids;
  }
  trained_ = true;
}

void IndexIVFRaBitQ::set_centroids(MatrixView<const float> c) {
  check_can_add();
  TESSERA_CHECK_ARG(c.rows == nlist_ && c.cols == d_, "centroids must be nlist × d = " << nlist_ << " × " << d_
                                                                                    << ", got " << c.rows << " × "
                                                                                    << c.cols);
  check_finite(c, "centroids");
  codec_.train(c);  // the rotation; the codec's own centroid is not used by the lists
  centroids_ = FloatMatrix(nlist_, d_);
  for (size_t l = 0; l < nlist_; ++l) std::copy(c.row(l), c.row(l) + d_, centroids_.row(l));
  trained_ = true;
}

void IndexIVFRaBitQ::append(List& list, const uint8_t* codes, size_t n, const int64_t* ids) {
  const size_t cs = codec_.code_size(), bits = size_t(codec_.params().bits), sign_bytes = (d_ + 7) / 8;
  list.codes.insert(list.codes.end(), codes, codes + n * cs);
  list.ids.insert(list.ids.end(), ids, ids + n);
  // The scan's copy: each coordinate's B-bit integer, top bit (sign plane) above the ex bits.
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* code = codes + i * cs;
    for (size_t j = 0; j < d_; ++j) {
      uint32_t ex = 0;
      for (size_t b = 0; b + 1 < bits; ++b) {
        const size_t bit = j * (bits - 1) + b;
        ex |= uint32_t((code[sign_bytes + (bit >> 3)] >> (bit & 7)) & 1) << b;
      }
      list.values.push_back(uint16_t((((code[j >> 3] >> (j & 7)) & 1u) << (bits - 1)) | ex));
    }
  }
}

// Nibble t of vector i holds the top bits of dimensions 4t … 4t + 3 (bit b = dimension 4t + b).
void IndexIVFRaBitQ::rebuild_blocks(List& list) const {
  const size_t n = list.ids.size(), nsq = (d_ + 3) / 4, nblocks = (n + detail::kFastScanBlock - 1) / detail::kFastScanBlock;
  const size_t cs = codec_.code_size();
  list.blocks.assign(nblocks * nsq * detail::kFastScanGroupBytes, 0);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* code = list.codes.data() + i * cs;
    uint8_t* block = list.blocks.data() + (i / detail::kFastScanBlock) * nsq * detail::kFastScanGroupBytes;
    const size_t v = i % detail::kFastScanBlock;
    for (size_t t = 0; t < nsq; ++t) {
      uint8_t nibble = 0;
      for (size_t b = 0; b < 4 && 4 * t + b < d_; ++b) nibble |= uint8_t(((code[(4 * t + b) >> 3] >> ((4 * t + b) & 7)) & 1) << b);
      block[t * detail::kFastScanGroupBytes + (v & 15)] |= uint8_t(v < 16 ? nibble : nibble << 4);
    }
  }
}

namespace {

// The query's 4-bit tables for the top-bit scan: table t, entry j = Σ of q'_{4t+b} over the set bits b of j,
// quantised to uint8 with one shared scale and per-table offsets: ⟨top bits, q'⟩ ≈ sum / scale + offset, off
// by at most `rounding` (half a step per table).
struct TopBitTables {
  std::vector<uint8_t> lut;
  float scale = 1, offset = 0, rounding = 0;
};

TopBitTables top_bit_tables(const float* q, size_t d) {
  const size_t nsq = (d + 3) / 4;
  std::vector<float> f(nsq * 16);
  std::vector<float> lo(nsq);
  float widest = 0;
  for (size_t t = 0; t < nsq; ++t) {
    float* e = f.data() + t * 16;
    e[0] = 0;
    for (unsigned j = 1; j < 16; ++j) {
      const unsigned b = unsigned(__builtin_ctz(j));
      e[j] = e[j & (j - 1)] + (4 * t + b < d ? q[4 * t + b] : 0.0f);
    }
    lo[t] = *std::min_element(e, e + 16);
    widest = std::max(widest, *std::max_element(e, e + 16) - lo[t]);
  }
  TopBitTables out;
  out.scale = widest > 0 ? 255.0f / widest : 1.0f;
  out.lut.resize(nsq * 16);
  double offset = 0;
  for (size_t t = 0; t < nsq; ++t) {
    offset += lo[t];
    for (size_t j = 0; j < 16; ++j)
      out.lut[t * 16 + j] = uint8_t(std::min(255.0f, std::nearbyint((f[t * 16 + j] - lo[t]) * out.scale)));
  }
  out.offset = float(offset);
  out.rounding = float(0.5 * double(nsq) / out.scale) * 1.0001f;
  return out;
}

}  // namespace

void IndexIVFRaBitQ::add(MatrixView<const float> x) {
  TESSERA_CHECK_ARG(trained_, "the index is not trained: call train or set_centroids first");
  TESSERA_CHECK_ARG(x.cols == d_, "dimension mismatch: vectors have " << x.cols << " columns, the index " << d_);
  check_finite(x, "vectors to add");
  if (x.rows == 0) return;
  std::vector<int32_t> assign(x.rows);
  nearest_centroids(x, centroids_.view(), assign.data(), nullptr, nullptr);
  std::vector<std::vector<size_t>> members(nlist_);
  for (size_t i = 0; i < x.rows; ++i) members[assign[i]].push_back(i);
  const size_t cs = codec_.code_size();
  for (size_t l = 0; l < nlist_; ++l) {
    if (members[l].empty()) continue;
    check_interrupt();
    FloatMatrix rows(members[l].size(), d_);
    std::vector<int64_t> ids(members[l].size());
    for (size_t t = 0; t < members[l].size(); ++t) {
      std::copy(x.row(members[l][t]), x.row(members[l][t]) + d_, rows.row(t));
      ids[t] = int64_t(ntotal_ + members[l][t]);
    }
    std::vector<uint8_t> codes(rows.rows() * cs);
    codec_.encode_with_centroid(rows.view(), centroids_.row(l), codes.data());
    append(lists_[l], codes.data(), rows.rows(), ids.data());
    rebuild_blocks(lists_[l]);
  }
  ntotal_ += x.rows;
}

void IndexIVFRaBitQ::search(MatrixView<const float> q, size_t k, size_t nprobe, float* distances, int64_t* labels,
                            bool single_stage) const {
  TESSERA_CHECK_ARG(trained_, "the index is not trained: call train or set_centroids first");
  TESSERA_CHECK_ARG(q.cols == d_, "dimension mismatch: queries have " << q.cols << " columns, the index " << d_);
  TESSERA_CHECK_ARG(k >= 1, "search: k must be at least 1");
  TESSERA_CHECK_ARG(nprobe >= 1, "search: nprobe must be at least 1");
  check_finite(q, "queries");
  nprobe = std::min(nprobe, nlist_);
  const bool l2 = metric_type() == MetricType::L2;
  const int bits = codec_.params().bits;
  const float cb = -float((1 << bits) - 1) / 2.0f;
  const size_t cs = codec_.code_size(), nsq = (d_ + 3) / 4;
  // Byte offsets in a packed code of the 1-bit factors (add, rescale, error) and of the full code's.
  const size_t top_factors = (d_ + 7) / 8 + (d_ * size_t(bits - 1) + 7) / 8 + 4;
  const size_t full_factors = top_factors + (bits > 1 ? 12 : 0);
  // The uint16 sums of the top-bit scan hold 255 per table: beyond 257 tables (d > 1028) they could wrap.
  const bool two_stage = !single_stage && nsq <= 257;
  auto better = [l2](const Ranked& a, const Ranked& b) {
    if (a.value != b.value) return l2 ? a.value < b.value : a.value > b.value;
    return a.label < b.label;
  };
  std::vector<double> cnorm(nlist_);
  for (size_t l = 0; l < nlist_; ++l) {
    double s = 0;
    for (size_t j = 0; j < d_; ++j) s += double(centroids_(l, j)) * centroids_(l, j);
    cnorm[l] = s;
  }
  std::exception_ptr error;
  // Blocks of queries, so that Ctrl-C is noticed between them (never inside a parallel region).
  constexpr size_t kQueriesPerBlock = 64;
  for (size_t b0 = 0; b0 < q.rows && !error; b0 += kQueriesPerBlock) {
    check_interrupt();
    const size_t b1 = std::min(q.rows, b0 + kQueriesPerBlock);
#pragma omp parallel num_threads(::tessera::num_threads())
    {
      std::vector<std::pair<double, size_t>> order(nlist_);
      std::vector<uint16_t> sums;
#pragma omp for schedule(dynamic, 1)
      for (ptrdiff_t qi = ptrdiff_t(b0); qi < ptrdiff_t(b1); ++qi) {
        try {
          const float* qv = q.row(size_t(qi));
          RaBitQuantizer::Query query = codec_.prepare_query(qv);
          const TopBitTables tables = two_stage ? top_bit_tables(query.rotated.data(), d_) : TopBitTables{};
          double qn = 0;
          for (size_t j = 0; j < d_; ++j) qn += double(qv[j]) * qv[j];
          for (size_t l = 0; l < nlist_; ++l) {
            double dot = 0;
            for (size_t j = 0; j < d_; ++j) dot += double(qv[j]) * centroids_(l, j);
            order[l] = {l2 ? qn - 2 * dot + cnorm[l] : -dot, l};
          }
          std::partial_sort(order.begin(), order.begin() + nprobe, order.end());
          std::priority_queue<Ranked, std::vector<Ranked>, decltype(better)> heap(better);  // worst on top
          auto full_estimate = [&](const List& list, size_t i, float term, float shift) {
            float add, rescale;
            std::memcpy(&add, list.codes.data() + i * cs + full_factors, 4);
            std::memcpy(&rescale, list.codes.data() + i * cs + full_factors + 4, 4);
            const float ip = dot_values(list.values.data() + i * d_, query.rotated.data(), d_) + shift;
            const float v = add + term + rescale * ip;
            const Ranked r{l2 ? std::max(0.0f, v) : v, list.ids[i]};
            if (heap.size() < k) heap.push(r);
            else if (better(r, heap.top())) heap.pop(), heap.push(r);
          };
          for (size_t p = 0; p < nprobe; ++p) {
            const size_t l = order[p].second;
            const List& list = lists_[l];
            const size_t n = list.ids.size();
            if (n == 0) continue;
            codec_.set_centroid(query, qv, centroids_.row(l));
            const float term = query.centroid_term, shift = cb * query.sum;
            if (!two_stage) {
              for (size_t i = 0; i < n; ++i) full_estimate(list, i, term, shift);
              continue;
            }
            // Stage 1: ⟨top bits, q'⟩ for the whole list by the fast-scan kernel; the 1-bit estimate and its
            // bound decide which vectors the full code is read for.
            const size_t nblocks = (n + detail::kFastScanBlock - 1) / detail::kFastScanBlock;
            sums.resize(nblocks * detail::kFastScanBlock);
            detail::fast_scan_blocks(list.blocks.data(), nblocks, nsq, 0, 1, tables.lut.data(), sums.data());
            const float half_sum = 0.5f * query.sum;
            for (size_t i = 0; i < n; ++i) {
              const uint8_t* f = list.codes.data() + i * cs + top_factors;
              float add, rescale, err;
              std::memcpy(&add, f, 4);
              std::memcpy(&rescale, f + 4, 4);
              std::memcpy(&err, f + 8, 4);
              const float ip = float(sums[i]) / tables.scale + tables.offset - half_sum;
              const float est = add + term + rescale * ip;
              const float bound = err * query.distance_to_centroid + std::abs(rescale) * tables.rounding;
              if (heap.size() == k && !(l2 ? est - bound < heap.top().value : est + bound > heap.top().value)) continue;
              full_estimate(list, i, term, shift);
            }
          }
          float* D = distances + size_t(qi) * k;
          int64_t* I = labels + size_t(qi) * k;
          const size_t found = heap.size();
          for (size_t t = found; t < k; ++t)
            D[t] = l2 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity(), I[t] = -1;
          for (size_t t = found; t-- > 0;) D[t] = heap.top().value, I[t] = heap.top().label, heap.pop();
        } catch (...) {
#pragma omp critical
          if (!error) error = std::current_exception();
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// ---------------------------------------------------------------------------------------------- files
std::string IndexIVFRaBitQ::bytes() const {
  TESSERA_CHECK_ARG(trained_, "an untrained index cannot be saved: train it (or set_centroids) first");
  const RabitqParams& p = codec_.params();
  nlohmann::json h;
  h["type"] = kType;
  h["index_version"] = kIndexVersion;
  h["dim"] = d_;
  h["nlist"] = nlist_;
  h["bits"] = p.bits;
  h["metric"] = metric_name(p.metric);
  h["rotation"] = rotation_kind_name(p.rotation);
  h["fast_quantization"] = p.fast_quantization;
  h["epsilon0"] = p.epsilon0;
  h["seed"] = p.seed;
  h["ntotal"] = ntotal_;
  h["code_size"] = codec_.code_size();
  std::vector<size_t> sizes(nlist_);
  for (size_t l = 0; l < nlist_; ++l) sizes[l] = lists_[l].ids.size();
  h["list_sizes"] = sizes;
  const std::string header = h.dump();
  std::string out(detail::kFileMagic, sizeof detail::kFileMagic);
  detail::put<uint32_t>(out, kContainerVersion);
  detail::put<uint64_t>(out, header.size());
  out += header;
  auto floats = [&out](const float* v, size_t n) { out.append(reinterpret_cast<const char*>(v), n * sizeof(float)); };
  floats(codec_.rotation().parameters().data(), codec_.rotation().parameters().size());
  floats(codec_.centroid().data(), d_);
  floats(centroids_.data(), nlist_ * d_);
  for (const List& list : lists_) {
    out.append(reinterpret_cast<const char*>(list.ids.data()), list.ids.size() * sizeof(int64_t));
    out.append(reinterpret_cast<const char*>(list.codes.data()), list.codes.size());
  }
  detail::put<uint32_t>(out, detail::crc32_of(out.data(), out.size()));
  return out;
}

void IndexIVFRaBitQ::save(const std::string& path) const {
  const std::string b = bytes();
  AtomicFile f(path);
  f.write(b);
  f.commit();
}

IndexIVFRaBitQ IndexIVFRaBitQ::parse(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  TESSERA_CHECK_FORMAT(size >= sizeof detail::kFileMagic &&
                           std::memcmp(p, detail::kFileMagic, sizeof detail::kFileMagic) == 0,
                       "not a tessera index file (bad magic)");
  TESSERA_CHECK_FORMAT(size >= kFixed + 4, "truncated index file: " << size << " bytes");
  uint32_t version, stored_crc;
  uint64_t hlen;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&hlen, p + 12, 8);
  TESSERA_CHECK_FORMAT(hlen <= kMaxHeader && hlen <= size - kFixed - 4,
                       "truncated index file: header of " << hlen << " bytes does not fit in " << size << " bytes");
  std::memcpy(&stored_crc, p + size - 4, 4);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  TESSERA_CHECK_FORMAT(detail::crc32_of(p, size - 4) == stored_crc,
                       "index file is corrupted or truncated (checksum mismatch)");
#else
  (void)stored_crc;
#endif
  size_t d = 0, nlist = 0, ntotal = 0, code_size = 0;
  std::vector<size_t> sizes;
  RabitqParams params;
  try {
    const auto h = nlohmann::json::parse(p + kFixed, p + kFixed + hlen);
    const std::string type = h.at("type").get<std::string>();
    TESSERA_CHECK_FORMAT(type == kType, "this is a '" << type << "' file, not an IVF RaBitQ index ('" << kType << "')");
    TESSERA_CHECK_FORMAT(version == kContainerVersion && h.at("index_version").get<int>() == kIndexVersion,
                         "IVF RaBitQ index format version " << h.at("index_version") << " is not supported");
    d = h.at("dim").get<size_t>();
    nlist = h.at("nlist").get<size_t>();
    params.bits = h.at("bits").get<int>();
    params.metric = parse_metric(h.at("metric").get<std::string>());
    params.rotation = parse_rotation_kind(h.at("rotation").get<std::string>());
    params.fast_quantization = h.at("fast_quantization").get<bool>();
    params.epsilon0 = h.at("epsilon0").get<double>();
    params.seed = h.at("seed").get<uint64_t>();
    ntotal = h.at("ntotal").get<size_t>();
    code_size = h.at("code_size").get<size_t>();
    sizes = h.at("list_sizes").get<std::vector<size_t>>();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index header is incomplete or invalid: " << e.what());
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index header: " << e.what());
  }
  TESSERA_CHECK_FORMAT(d >= 1 && d <= (size_t(1) << 20) && nlist >= 1 && nlist <= (size_t(1) << 24) &&
                           sizes.size() == nlist,
                       "IVF RaBitQ index header has implausible sizes (d " << d << ", nlist " << nlist << ")");
  TESSERA_CHECK_FORMAT(params.bits >= 1 && params.bits <= rabitq::kMaxBits,
                       "IVF RaBitQ index header: bits " << params.bits << " outside 1.." << rabitq::kMaxBits);
  // Sizes against the payload before anything is allocated.
  const size_t levels = params.bits > 1 ? 2 : 1;
  const size_t expected_code = (d + 7) / 8 + (d * size_t(params.bits - 1) + 7) / 8 + 4 * (1 + 3 * levels);
  TESSERA_CHECK_FORMAT(code_size == expected_code, "IVF RaBitQ index header: code size " << code_size
                                                                                         << " does not fit d and bits");
  const size_t nparams = params.rotation == RotationKind::dense ? d * d : 3 * d;
  const size_t payload = size - kFixed - hlen - 4;
  const size_t floats = nparams + d + nlist * d;
  TESSERA_CHECK_FORMAT(floats <= payload / 4 && ntotal <= (payload - floats * 4) / (8 + code_size) &&
                           payload == floats * 4 + ntotal * (8 + code_size),
                       "IVF RaBitQ index payload is " << payload << " bytes, not what the header promises");
  size_t sum = 0;
  for (size_t s : sizes) {
    TESSERA_CHECK_FORMAT(s <= ntotal, "IVF RaBitQ index header: a list of " << s << " vectors in an index of " << ntotal);
    sum += s;
  }
  TESSERA_CHECK_FORMAT(sum == ntotal, "IVF RaBitQ index header: list sizes add up to " << sum << ", not " << ntotal);
  std::optional<IndexIVFRaBitQ> index;
  try {
    index.emplace(d, nlist, params);
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index header: " << e.what());
  }
  const char* at = p + kFixed + hlen;
  auto read_floats = [&at](size_t n) {
    std::vector<float> v(n);
    std::memcpy(v.data(), at, n * 4);
    at += n * 4;
    return v;
  };
  std::vector<float> rotation = read_floats(nparams), mean = read_floats(d), centroids = read_floats(nlist * d);
  for (float v : mean) TESSERA_CHECK_FORMAT(std::isfinite(v), "IVF RaBitQ index: the codec's centroid is not finite");
  for (float v : centroids) TESSERA_CHECK_FORMAT(std::isfinite(v), "IVF RaBitQ index: a coarse centroid is not finite");
  try {
    index->codec_.restore(RandomRotation::from_parameters(d, params.rotation, std::move(rotation)), std::move(mean));
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("IVF RaBitQ index: " << e.what());
  }
  index->centroids_ = FloatMatrix(nlist, d);
  std::copy(centroids.begin(), centroids.end(), index->centroids_.data());
  index->trained_ = true;
  for (size_t l = 0; l < nlist; ++l) {
    std::vector<int64_t> ids(sizes[l]);
    std::memcpy(ids.data(), at, sizes[l] * 8);
    at += sizes[l] * 8;
    for (int64_t id : ids)
      TESSERA_CHECK_FORMAT(id >= 0 && size_t(id) < ntotal, "IVF RaBitQ index: label " << id << " out of range");
    index->append(index->lists_[l], reinterpret_cast<const uint8_t*>(at), sizes[l], ids.data());
    index->rebuild_blocks(index->lists_[l]);
    at += sizes[l] * code_size;
  }
  index->ntotal_ = ntotal;
  return std::move(*index);
}

IndexIVFRaBitQ IndexIVFRaBitQ::load(const std::string& path) {
  const std::string data = read_file(path);
  return parse(data.data(), data.size());
}

}  // namespace tessera
