#include "tessera/quant/serialization.h"

#include <zlib.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "tessera/io/atomic_file.h"
#include "tessera/quant/residual_quantizer.h"

namespace tessera {

namespace {

constexpr char kMagic[8] = {'T', 'E', 'S', 'S', 'E', 'R', 'A', '\x1a'};
constexpr uint32_t kVersion = 1;
constexpr size_t kMaxHeader = size_t(1) << 24;

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);  // little-endian hosts only (x86-64, aarch64)
}

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

}  // namespace

std::string quantizer_bytes(const Quantizer& q, const std::string& metadata_json) {
  const auto* aq = dynamic_cast<const AdditiveQuantizer*>(&q);
  TESSERA_CHECK_ARG(aq && q.type_name() == "residual", "saving a '" << q.type_name() << "' codec is not supported");
  TESSERA_CHECK_ARG(aq->is_trained(), "cannot save an untrained model");
  nlohmann::json header;
  header["type"] = q.type_name();
  header["dim"] = q.dim();
  header["codebook_sizes"] = aq->codebook_sizes();
  try {
    header["metadata"] = nlohmann::json::parse(metadata_json.empty() ? "{}" : metadata_json);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_ARG("model metadata is not valid JSON: " << e.what());
  }
  const std::string h = header.dump();
  std::string out(kMagic, sizeof kMagic);
  put<uint32_t>(out, kVersion);
  put<uint64_t>(out, h.size());
  out += h;
  for (size_t m = 0; m < aq->num_codebooks(); ++m) {
    const auto c = aq->codebook(m);
    for (size_t i = 0; i < c.rows; ++i) out.append(reinterpret_cast<const char*>(c.row(i)), c.cols * sizeof(float));
  }
  put<uint32_t>(out, crc32_of(out.data(), out.size()));
  return out;
}

void save_quantizer(const Quantizer& q, const std::string& path, const std::string& metadata_json) {
  write_file_atomic(path, quantizer_bytes(q, metadata_json));
}

std::unique_ptr<Quantizer> parse_quantizer(const void* data, size_t size, std::string* metadata_json) {
  const auto* p = static_cast<const char*>(data);
  const size_t fixed = sizeof kMagic + 4 + 8;
  TESSERA_CHECK_FORMAT(size >= sizeof kMagic && std::memcmp(p, kMagic, sizeof kMagic) == 0,
                       "not a tessera model file (bad magic)");
  TESSERA_CHECK_FORMAT(size >= fixed + 4, "truncated model file: " << size << " bytes");
  uint32_t version;
  uint64_t hlen;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&hlen, p + 12, 8);
  TESSERA_CHECK_FORMAT(version == kVersion, "model file format version " << version << " is not supported (this "
                                                                         << "build reads version " << kVersion << ")");
  TESSERA_CHECK_FORMAT(hlen <= kMaxHeader && hlen <= size - fixed - 4,
                       "truncated model file: header of " << hlen << " bytes does not fit in " << size << " bytes");
  uint32_t stored_crc;
  std::memcpy(&stored_crc, p + size - 4, 4);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  TESSERA_CHECK_FORMAT(crc32_of(p, size - 4) == stored_crc, "model file is corrupted or truncated (checksum mismatch)");
#else
  (void)stored_crc;  // the fuzzer build skips the checksum so that mutations reach the parser behind it
#endif

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(p + fixed, p + fixed + hlen);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("model file header is not valid JSON: " << e.what());
  }
  std::string type;
  size_t d = 0;
  std::vector<size_t> sizes;
  try {
    type = header.at("type").get<std::string>();
    d = header.at("dim").get<size_t>();
    sizes = header.at("codebook_sizes").get<std::vector<size_t>>();
    if (metadata_json) *metadata_json = header.value("metadata", nlohmann::json::object()).dump();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("model file header is incomplete: " << e.what());
  }
  TESSERA_CHECK_FORMAT(type == "residual", "model type '" << type << "' is not supported by this build");
  TESSERA_CHECK_FORMAT(d >= 1 && d <= (size_t(1) << 20) && !sizes.empty() && sizes.size() <= 64,
                       "model header has implausible shapes: dim " << d << ", " << sizes.size() << " codebooks");
  size_t floats = 0;
  for (size_t k : sizes) {
    TESSERA_CHECK_FORMAT(k >= 1 && k <= (size_t(1) << 24), "model header has a codebook of size " << k);
    floats += k * d;
  }
  const size_t payload = size - fixed - hlen - 4;
  TESSERA_CHECK_FORMAT(payload == floats * sizeof(float), "model file payload is " << payload << " bytes, header "
                                                          << "promises " << floats * sizeof(float));
  auto q = std::make_unique<ResidualQuantizer>(d, sizes);
  std::vector<FloatMatrix> books;
  const char* at = p + fixed + hlen;
  for (size_t k : sizes) {
    FloatMatrix c(k, d);
    std::memcpy(c.data(), at, k * d * sizeof(float));
    at += k * d * sizeof(float);
    books.push_back(std::move(c));
  }
  try {
    q->set_codebooks(std::move(books));
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("model file holds invalid codebooks: " << e.what());
  }
  return q;
}

std::unique_ptr<Quantizer> load_quantizer(const std::string& path, std::string* metadata_json) {
  const std::string bytes = read_file(path);
  try {
    return parse_quantizer(bytes.data(), bytes.size(), metadata_json);
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what());
  }
}

}  // namespace tessera
