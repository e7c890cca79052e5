#include "tessera/index/index_io.h"

#include <zlib.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "tessera/io/atomic_file.h"
#include "tessera/quant/serialization.h"

namespace tessera {

namespace {

constexpr char kMagic[8] = {'T', 'E', 'S', 'S', 'E', 'R', 'A', '\x1a'};
constexpr uint32_t kContainerVersion = 2;  // the model-file container with a JSON header (serialization.cpp)
constexpr int kIndexVersion = 1;           // the layout after the header, for this index type
constexpr const char* kType = "index_additive_flat";
constexpr size_t kMaxHeader = size_t(1) << 24;

uint32_t crc32_of(const void* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (size) {
    const uInt chunk = (uInt)std::min<size_t>(size, 1u << 30);
    crc = crc32(crc, p, chunk);
    p += chunk;
    size -= chunk;
  }
  return (uint32_t)crc;
}

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);  // little-endian hosts only, as model files
}

}  // namespace

std::string index_bytes(const IndexAdditiveQuantizer& index, const std::string& metadata_json) {
  const std::string codec = quantizer_bytes(index.quantizer());
  TESSERA_CHECK_ARG(index.quantizer().code_size() == index.code_size(),
                    "the index's quantizer changed after the index was built: its codes cannot be saved with it");
  nlohmann::json header;
  header["type"] = kType;
  header["index_version"] = kIndexVersion;
  header["metric"] = metric_name(index.metric_type());
  header["ntotal"] = index.ntotal();
  header["code_size"] = index.code_size();
  header["codec_bytes"] = codec.size();
  try {
    header["metadata"] = nlohmann::json::parse(metadata_json.empty() ? "{}" : metadata_json);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_ARG("index metadata is not valid JSON: " << e.what());
  }
  const std::string h = header.dump();
  std::string out(kMagic, sizeof kMagic);
  out.reserve(out.size() + 12 + h.size() + codec.size() + index.codes().size() + 4);
  put<uint32_t>(out, kContainerVersion);
  put<uint64_t>(out, h.size());
  out += h;
  out += codec;
  out.append(reinterpret_cast<const char*>(index.codes().data()), index.codes().size());
  put<uint32_t>(out, crc32_of(out.data(), out.size()));
  return out;
}

void write_index(const IndexAdditiveQuantizer& index, const std::string& path, const std::string& metadata_json) {
  write_file_atomic(path, index_bytes(index, metadata_json));
}

IndexAdditiveQuantizer parse_index(const void* data, size_t size, std::string* metadata_json) {
  const auto* p = static_cast<const char*>(data);
  const size_t fixed = sizeof kMagic + 4 + 8;
  TESSERA_CHECK_FORMAT(size >= sizeof kMagic && std::memcmp(p, kMagic, sizeof kMagic) == 0,
                       "not a tessera index file (bad magic)");
  TESSERA_CHECK_FORMAT(size >= fixed + 4, "truncated index file: " << size << " bytes");
  uint32_t version;
  uint64_t hlen;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&hlen, p + 12, 8);
  TESSERA_CHECK_FORMAT(hlen <= kMaxHeader && hlen <= size - fixed - 4,
                       "truncated index file: header of " << hlen << " bytes does not fit in " << size << " bytes");
  uint32_t stored_crc;
  std::memcpy(&stored_crc, p + size - 4, 4);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  TESSERA_CHECK_FORMAT(crc32_of(p, size - 4) == stored_crc, "index file is corrupted or truncated (checksum mismatch)");
#else
  (void)stored_crc;
#endif
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(p + fixed, p + fixed + hlen);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("index file header is not valid JSON: " << e.what());
  }
  std::string type, metric;
  size_t ntotal = 0, code_size = 0, codec_bytes = 0;
  int index_version = 0;
  try {
    type = header.at("type").get<std::string>();
    if (type != kType)
      TESSERA_THROW_FORMAT("this is a model file of a '" << type << "' quantizer, not an index: load it as a model "
                                                         "(load_quantizer) and build an index from it");
    TESSERA_CHECK_FORMAT(version == kContainerVersion, "index file container version " << version
                                                                                         << " is not supported (expected "
                                                                                         << kContainerVersion << ")");
    index_version = header.at("index_version").get<int>();
    TESSERA_CHECK_FORMAT(index_version == kIndexVersion, "index format version " << index_version
                                                                                 << " is not supported (this build reads "
                                                                                 << kIndexVersion << ")");
    metric = header.at("metric").get<std::string>();
    ntotal = header.at("ntotal").get<size_t>();
    code_size = header.at("code_size").get<size_t>();
    codec_bytes = header.at("codec_bytes").get<size_t>();
    if (metadata_json) *metadata_json = header.value("metadata", nlohmann::json::object()).dump();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("index file header is incomplete: " << e.what());
  }
  MetricType m;
  try {
    m = parse_metric(metric);
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("index file header: " << e.what());
  }
  const size_t payload = size - fixed - hlen - 4;
  TESSERA_CHECK_FORMAT(codec_bytes <= payload && code_size >= 1 && ntotal <= (payload - codec_bytes) / code_size &&
                           payload == codec_bytes + ntotal * code_size,
                       "index file payload is " << payload << " bytes, header promises a " << codec_bytes
                                                << "-byte model and " << ntotal << " codes of " << code_size
                                                << " bytes");
  const char* at = p + fixed + hlen;
  std::unique_ptr<Quantizer> q;
  try {
    q = parse_quantizer(at, codec_bytes);
  } catch (const FormatError& e) {
    TESSERA_THROW_FORMAT("index file holds an invalid model: " << e.what());
  }
  std::shared_ptr<AdditiveQuantizer> aq(dynamic_cast<AdditiveQuantizer*>(q.get()));
  TESSERA_CHECK_FORMAT(aq, "index file holds a '" << q->type_name() << "' model, not an additive quantizer");
  q.release();
  TESSERA_CHECK_FORMAT(aq->code_size() == code_size, "index file stores " << code_size << "-byte codes but its model's "
                                                                             "codes have " << aq->code_size()
                                                                             << " bytes");
  try {
    IndexAdditiveQuantizer index(std::move(aq), m);
    index.add_codes(ntotal, reinterpret_cast<const uint8_t*>(at + codec_bytes));
    return index;
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("index file holds invalid codes: " << e.what());
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
