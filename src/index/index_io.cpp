#include "tessera/index/index_io.h"

#include <zlib.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "io/checked_container.h"
#include "tessera/io/atomic_file.h"
#include "tessera/quant/serialization.h"

namespace tessera {

namespace {

using detail::crc32_of;
using detail::put;

constexpr const char (&kMagic)[8] = detail::kFileMagic;
constexpr uint32_t kContainerVersion = 2;  // the model-file container with a JSON header (serialization.cpp)
constexpr int kIndexVersion = 1;           // the layout after the header, for this index type
constexpr const char* kType = "index_additive_flat";
constexpr const char* kFastScanType = "index_additive_fast_scan";
constexpr const char* kIvfType = "index_ivf_additive";
constexpr size_t kMaxHeader = size_t(1) << 24;

}  // namespace

namespace {

// The container both index types share: header fields common to them, the codec's model file, the codes.
// `extra`: bytes of the index type's own after the codes (header field "extra_bytes" when not empty).
std::string container_bytes(nlohmann::json header, const AdditiveQuantizer& aq, MetricType metric, size_t ntotal,
                            size_t code_size, const std::vector<uint8_t>& codes, const std::string& metadata_json,
                            const std::string& extra = {}) {
  const std::string codec = quantizer_bytes(aq);
  TESSERA_CHECK_ARG(aq.code_size() == code_size,
                    "the index's quantizer changed after the index was built: its codes cannot be saved with it");
  header["index_version"] = kIndexVersion;
  header["metric"] = metric_name(metric);
  header["ntotal"] = ntotal;
  header["code_size"] = code_size;
  header["codec_bytes"] = codec.size();
  if (!extra.empty()) header["extra_bytes"] = extra.size();
  try {
    header["metadata"] = nlohmann::json::parse(metadata_json.empty() ? "{}" : metadata_json);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_ARG("index metadata is not valid JSON: " << e.what());
  }
  const std::string h = header.dump();
  std::string out(kMagic, sizeof kMagic);
  out.reserve(out.size() + 12 + h.size() + codec.size() + codes.size() + 4);
  put<uint32_t>(out, kContainerVersion);
  put<uint64_t>(out, h.size());
  out += h;
  out += codec;
  out.append(reinterpret_cast<const char*>(codes.data()), codes.size());
  out += extra;
  put<uint32_t>(out, crc32_of(out.data(), out.size()));
  return out;
}

struct Container {
  nlohmann::json header;
  std::shared_ptr<AdditiveQuantizer> aq;
  MetricType metric = MetricType::L2;
  size_t ntotal = 0;
  const uint8_t* codes = nullptr;
  const char* extra = nullptr;  // the type's own bytes after the codes
  size_t extra_size = 0;
};

constexpr size_t kFixed = sizeof kMagic + 4 + 8;

// Magic, sizes, checksum and JSON header of an index file (any type).
nlohmann::json parse_header(const char* p, size_t size, uint32_t* version) {
  TESSERA_CHECK_FORMAT(size >= sizeof kMagic && std::memcmp(p, kMagic, sizeof kMagic) == 0,
                       "not a tessera index file (bad magic)");
  TESSERA_CHECK_FORMAT(size >= kFixed + 4, "truncated index file: " << size << " bytes");
  uint64_t hlen;
  std::memcpy(version, p + 8, 4);
  std::memcpy(&hlen, p + 12, 8);
  TESSERA_CHECK_FORMAT(hlen <= kMaxHeader && hlen <= size - kFixed - 4,
                       "truncated index file: header of " << hlen << " bytes does not fit in " << size << " bytes");
  uint32_t stored_crc;
  std::memcpy(&stored_crc, p + size - 4, 4);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  TESSERA_CHECK_FORMAT(crc32_of(p, size - 4) == stored_crc, "index file is corrupted or truncated (checksum mismatch)");
#else
  (void)stored_crc;
#endif
  try {
    return nlohmann::json::parse(p + kFixed, p + kFixed + hlen);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("index file header is not valid JSON: " << e.what());
  }
}

Container parse_container(const void* data, size_t size, const char* expected_type, std::string* metadata_json) {
  const auto* p = static_cast<const char*>(data);
  uint32_t version = 0;
  Container c;
  c.header = parse_header(p, size, &version);
  uint64_t stored_hlen;
  std::memcpy(&stored_hlen, p + 12, 8);
  std::string type, metric;
  size_t code_size = 0, codec_bytes = 0, extra_bytes = 0;
  int index_version = 0;
  try {
    type = c.header.at("type").get<std::string>();
    if (type != expected_type) {
      if (type == kType || type == kFastScanType || type == kIvfType)
        TESSERA_THROW_FORMAT("this is a" << (type == kType ? " flat" : type == kIvfType ? "n IVF" : " fast-scan")
                                         << " index file ('" << type << "'), not a '" << expected_type << "' one");
      TESSERA_THROW_FORMAT("this is a model file of a '" << type << "' quantizer, not an index: load it as a model "
                                                         "(load_quantizer) and build an index from it");
    }
    TESSERA_CHECK_FORMAT(version == kContainerVersion, "index file container version " << version
                                                                                         << " is not supported (expected "
                                                                                         << kContainerVersion << ")");
    index_version = c.header.at("index_version").get<int>();
    TESSERA_CHECK_FORMAT(index_version == kIndexVersion, "index format version " << index_version
                                                                                 << " is not supported (this build reads "
                                                                                 << kIndexVersion << ")");
    metric = c.header.at("metric").get<std::string>();
    c.ntotal = c.header.at("ntotal").get<size_t>();
    code_size = c.header.at("code_size").get<size_t>();
    codec_bytes = c.header.at("codec_bytes").get<size_t>();
    extra_bytes = c.header.value("extra_bytes", size_t(0));
    if (metadata_json) *metadata_json = c.header.value("metadata", nlohmann::json::object()).dump();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("index file header is incomplete: " << e.what());
  }
  try {
    c.metric = parse_metric(metric);
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("index file header: " << e.what());
  }
  const size_t payload = size - kFixed - stored_hlen - 4;
  TESSERA_CHECK_FORMAT(codec_bytes <= payload && extra_bytes <= payload - codec_bytes && code_size >= 1 &&
                           c.ntotal <= (payload - codec_bytes - extra_bytes) / code_size &&
                           payload == codec_bytes + c.ntotal * code_size + extra_bytes,
                       "index file payload is " << payload << " bytes, header promises a " << codec_bytes
                                                << "-byte model, " << c.ntotal << " codes of " << code_size
                                                << " bytes and " << extra_bytes << " more");
  const char* at = p + kFixed + stored_hlen;
  std::unique_ptr<Quantizer> q;
  try {
    q = parse_quantizer(at, codec_bytes);
  } catch (const FormatError& e) {
    TESSERA_THROW_FORMAT("index file holds an invalid model: " << e.what());
  }
  c.aq.reset(dynamic_cast<AdditiveQuantizer*>(q.get()));
  TESSERA_CHECK_FORMAT(c.aq, "index file holds a '" << q->type_name() << "' model, not an additive quantizer");
  q.release();
  TESSERA_CHECK_FORMAT(c.aq->code_size() == code_size, "index file stores " << code_size << "-byte codes but its "
                                                                               "model's codes have "
                                                                            << c.aq->code_size() << " bytes");
  c.codes = reinterpret_cast<const uint8_t*>(at + codec_bytes);
  c.extra = at + codec_bytes + c.ntotal * code_size;
  c.extra_size = extra_bytes;
  return c;
}

}  // namespace

std::string index_bytes(const IndexAdditiveQuantizer& index, const std::string& metadata_json) {
  nlohmann::json header;
  header["type"] = kType;
  return container_bytes(std::move(header), index.quantizer(), index.metric_type(), index.ntotal(), index.code_size(),
                         index.codes(), metadata_json);
}

void write_index(const IndexAdditiveQuantizer& index, const std::string& path, const std::string& metadata_json) {
  write_file_atomic(path, index_bytes(index, metadata_json));
}

IndexAdditiveQuantizer parse_index(const void* data, size_t size, std::string* metadata_json) {
  Container c = parse_container(data, size, kType, metadata_json);
  try {
    IndexAdditiveQuantizer index(std::move(c.aq), c.metric);
    index.add_codes(c.ntotal, c.codes);
    return index;
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("index file holds invalid codes: " << e.what());
  }
}

std::string index_bytes(const IndexAdditiveQuantizerFastScan& index, const std::string& metadata_json) {
  nlohmann::json header;
  header["type"] = kFastScanType;
  header["bbs"] = index.bbs();
  header["norm_scale"] = index.norm_scale();
  header["rerank_factor"] = index.rerank_factor();
  return container_bytes(std::move(header), index.quantizer(), index.metric_type(), index.ntotal(), index.code_size(),
                         index.codes(), metadata_json);
}

void write_index(const IndexAdditiveQuantizerFastScan& index, const std::string& path,
                 const std::string& metadata_json) {
  write_file_atomic(path, index_bytes(index, metadata_json));
}

IndexAdditiveQuantizerFastScan parse_index_fast_scan(const void* data, size_t size, std::string* metadata_json) {
  Container c = parse_container(data, size, kFastScanType, metadata_json);
  size_t bbs = 0, rerank = 0;
  int norm_scale = 0;
  try {
    bbs = c.header.at("bbs").get<size_t>();
    norm_scale = c.header.at("norm_scale").get<int>();
    rerank = c.header.at("rerank_factor").get<size_t>();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("fast-scan index file header is incomplete: " << e.what());
  }
  try {
    IndexAdditiveQuantizerFastScan index(std::move(c.aq), c.metric, bbs);
    if (norm_scale != 0) index.set_norm_scale(norm_scale);  // 0: saved empty, estimated at the next add
    index.set_rerank_factor(rerank);
    index.add_codes(c.ntotal, c.codes);
    return index;
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("fast-scan index file is invalid: " << e.what());
  }
}

IndexAdditiveQuantizerFastScan read_index_fast_scan(const std::string& path, std::string* metadata_json) {
  const std::string bytes = read_file(path);
  try {
    return parse_index_fast_scan(bytes.data(), bytes.size(), metadata_json);
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what(), e.location());
  }
}

// IVF: the codes list by list; after them the centroids (nlist × d float32), the list sizes (nlist × u64)
// and the labels (ntotal × i64, list by list).
std::string index_bytes(const IndexIVFAdditiveQuantizer& index, const std::string& metadata_json) {
  TESSERA_CHECK_ARG(index.is_trained(), "an untrained IVF index cannot be saved: train it first");
  nlohmann::json header;
  header["type"] = kIvfType;
  header["nlist"] = index.nlist();
  std::vector<uint8_t> codes;
  codes.reserve(index.ntotal() * index.code_size());
  std::string extra(reinterpret_cast<const char*>(index.centroids().data()), index.centroids().size() * sizeof(float));
  for (size_t l = 0; l < index.nlist(); ++l) {
    codes.insert(codes.end(), index.list_codes(l).begin(), index.list_codes(l).end());
    put<uint64_t>(extra, index.list_size(l));
  }
  for (size_t l = 0; l < index.nlist(); ++l)
    extra.append(reinterpret_cast<const char*>(index.list_ids(l).data()), index.list_size(l) * sizeof(int64_t));
  return container_bytes(std::move(header), index.quantizer(), index.metric_type(), index.ntotal(), index.code_size(),
                         codes, metadata_json, extra);
}

void write_index(const IndexIVFAdditiveQuantizer& index, const std::string& path, const std::string& metadata_json) {
  write_file_atomic(path, index_bytes(index, metadata_json));
}

IndexIVFAdditiveQuantizer parse_index_ivf(const void* data, size_t size, std::string* metadata_json) {
  Container c = parse_container(data, size, kIvfType, metadata_json);
  size_t nlist = 0;
  try {
    nlist = c.header.at("nlist").get<size_t>();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("IVF index file header is incomplete: " << e.what());
  }
  const size_t d = c.aq->dim();
  TESSERA_CHECK_FORMAT(nlist >= 1 && nlist <= c.extra_size / 8 &&
                           c.extra_size == nlist * d * sizeof(float) + nlist * 8 + c.ntotal * 8,
                       "IVF index file: " << c.extra_size << " bytes of lists do not fit nlist = " << nlist
                                          << ", d = " << d << ", ntotal = " << c.ntotal);
  FloatMatrix centroids(nlist, d);
  std::memcpy(centroids.data(), c.extra, nlist * d * sizeof(float));
  std::vector<uint64_t> sizes(nlist);
  std::memcpy(sizes.data(), c.extra + nlist * d * sizeof(float), nlist * 8);
  uint64_t sum = 0;
  for (uint64_t s : sizes) {
    TESSERA_CHECK_FORMAT(s <= c.ntotal - sum, "IVF index file: list sizes add up to more than ntotal = " << c.ntotal);
    sum += s;
  }
  TESSERA_CHECK_FORMAT(sum == c.ntotal, "IVF index file: list sizes add up to " << sum << ", ntotal is " << c.ntotal);
  std::vector<int64_t> ids(c.ntotal);
  std::memcpy(ids.data(), c.extra + nlist * d * sizeof(float) + nlist * 8, c.ntotal * 8);
  std::vector<int32_t> list_nos;
  list_nos.reserve(c.ntotal);
  for (size_t l = 0; l < nlist; ++l) list_nos.insert(list_nos.end(), sizes[l], int32_t(l));
  try {
    IndexIVFAdditiveQuantizer index(std::move(c.aq), nlist, c.metric);
    index.set_centroids(centroids.view());
    index.add_preassigned(ids.size(), c.codes, list_nos.data(), ids.data());
    return index;
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("IVF index file is invalid: " << e.what());
  }
}

IndexIVFAdditiveQuantizer read_index_ivf(const std::string& path, std::string* metadata_json) {
  const std::string bytes = read_file(path);
  try {
    return parse_index_ivf(bytes.data(), bytes.size(), metadata_json);
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what(), e.location());
  }
}

std::string index_file_type(const std::string& path) {
  const std::string bytes = read_file(path);
  try {
    uint32_t version = 0;
    const nlohmann::json header = parse_header(bytes.data(), bytes.size(), &version);
    try {
      return header.at("type").get<std::string>();
    } catch (const nlohmann::json::exception& e) {
      TESSERA_THROW_FORMAT("index file header is incomplete: " << e.what());
    }
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what(), e.location());
  }
}

IndexAdditiveQuantizer read_index(const std::string& path, std::string* metadata_json) {
  const std::string bytes = read_file(path);
  try {
    return parse_index(bytes.data(), bytes.size(), metadata_json);
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what(), e.location());
  }
}

}  // namespace tessera
