#include "tessera/quant/serialization.h"

#include <zlib.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "io/checked_container.h"
#include "tessera/io/atomic_file.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/residual_quantizer.h"

namespace tessera {

namespace {

using detail::crc32_of;
using detail::put;

constexpr const char (&kMagic)[8] = detail::kFileMagic;
// Version 2 adds the search type and norm encoder; a model with ST_decompress is still written as version 1
// (the old format; older builds ignore header keys they do not know, such as "params"), so older builds keep
// reading what they can use.
constexpr uint32_t kVersion = 2;
constexpr uint32_t kOldestVersion = 1;
constexpr size_t kMaxHeader = size_t(1) << 24;

// The codec types model files hold, by type name. A new additive codec adds one row: how to build an
// untrained instance from the header (its "params" object holds what the codec chose to store) and how
// to write those params. Codebooks, search type and norm encoder are stored for every type alike.
struct AdditiveType {
  const char* name;
  std::unique_ptr<AdditiveQuantizer> (*make)(size_t d, const std::vector<size_t>& sizes, const nlohmann::json& params);
  nlohmann::json (*params)(const AdditiveQuantizer& q);  // nullptr: nothing beyond the codebooks
};

// The residual quantizer stores its encode() beam; files from before it existed load with the default.
std::unique_ptr<AdditiveQuantizer> make_residual(size_t d, const std::vector<size_t>& sizes, const nlohmann::json& j) {
  ResidualQuantizerParams p;
  try {
    p.max_beam_size = j.value("max_beam_size", p.max_beam_size);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("model file has malformed residual-quantizer parameters: " << e.what());
  }
  TESSERA_CHECK_FORMAT(p.max_beam_size >= 1, "model file has max_beam_size " << p.max_beam_size << ", expected ≥ 1");
  return std::make_unique<ResidualQuantizer>(d, sizes, p);
}

nlohmann::json residual_params(const AdditiveQuantizer& q) {
  return {{"max_beam_size", dynamic_cast<const ResidualQuantizer&>(q).params().max_beam_size}};
}

// LSQ stores its parameters, so that a loaded model encodes as the saved one did.
std::unique_ptr<AdditiveQuantizer> make_lsq(size_t d, const std::vector<size_t>& sizes, const nlohmann::json& j) {
  const size_t K = sizes.at(0);
  size_t nbits = 0;
  while ((size_t(1) << nbits) < K) ++nbits;
  for (size_t k : sizes)
    TESSERA_CHECK_FORMAT(k == K && (size_t(1) << nbits) == K, "an LSQ model needs equal power-of-two codebook "
                                                              "sizes, the header has " << k << " and " << K);
  LocalSearchQuantizerParams p;
  try {
    p.train_iters = j.value("train_iters", p.train_iters);
    p.encode_ils_iters = j.value("encode_ils_iters", p.encode_ils_iters);
    p.train_ils_iters = j.value("train_ils_iters", p.train_ils_iters);
    p.icm_iters = j.value("icm_iters", p.icm_iters);
    p.p = j.value("p", p.p);
    p.lambd = j.value("lambd", p.lambd);
    p.chunk_size = j.value("chunk_size", p.chunk_size);
    p.random_seed = j.value("random_seed", p.random_seed);
    p.nperts = j.value("nperts", p.nperts);
    p.update_codebooks_with_double = j.value("update_codebooks_with_double", p.update_codebooks_with_double);
    p.init = parse_lsq_init(j.value("init", lsq_init_name(p.init)));
    p.annealing = parse_lsq_annealing(j.value("annealing", lsq_annealing_name(p.annealing)));
    p.final_refit = j.value("final_refit", p.final_refit);
    p.encode_greedy_init = j.value("encode_greedy_init", p.encode_greedy_init);
    p.codebook_cg_tol = j.value("codebook_cg_tol", p.codebook_cg_tol);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("model file has malformed LSQ parameters: " << e.what());
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("model file has malformed LSQ parameters: " << e.what());
  }
  return std::make_unique<LocalSearchQuantizer>(d, sizes.size(), nbits, p);
}

nlohmann::json lsq_params(const AdditiveQuantizer& q) {
  const auto& p = dynamic_cast<const LocalSearchQuantizer&>(q).params();
  return {{"train_iters", p.train_iters}, {"encode_ils_iters", p.encode_ils_iters},
          {"train_ils_iters", p.train_ils_iters}, {"icm_iters", p.icm_iters}, {"p", p.p}, {"lambd", p.lambd},
          {"chunk_size", p.chunk_size}, {"random_seed", p.random_seed}, {"nperts", p.nperts},
          {"update_codebooks_with_double", p.update_codebooks_with_double}, {"init", lsq_init_name(p.init)},
          {"annealing", lsq_annealing_name(p.annealing)}, {"final_refit", p.final_refit},
          {"encode_greedy_init", p.encode_greedy_init}, {"codebook_cg_tol", p.codebook_cg_tol}};
}

const AdditiveType kAdditiveTypes[] = {
    {"residual", make_residual, residual_params},
    {"lsq", make_lsq, lsq_params},
};

const AdditiveType* find_type(const std::string& name) {
  for (const auto& t : kAdditiveTypes)
    if (name == t.name) return &t;
  return nullptr;
}

std::string known_types() {
  std::string s;
  for (const auto& t : kAdditiveTypes) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

}  // namespace

std::string quantizer_bytes(const Quantizer& q, const std::string& metadata_json) {
  const auto* aq = dynamic_cast<const AdditiveQuantizer*>(&q);
  const AdditiveType* type = find_type(q.type_name());
  TESSERA_CHECK_ARG(aq && type, "saving a '" << q.type_name() << "' codec is not supported (model files hold: "
                                             << known_types() << ")");
  TESSERA_CHECK_ARG(aq->is_trained(), "cannot save an untrained model");
  nlohmann::json header;
  header["type"] = q.type_name();
  header["dim"] = q.dim();
  header["codebook_sizes"] = aq->codebook_sizes();
  if (type->params) header["params"] = type->params(*aq);
  // Search type and norm encoder: a loaded model packs and searches exactly as the saved one. Floats go
  // through JSON as doubles (exact); the tables follow the codebooks in the payload.
  const NormEncoder& ne = aq->norm_encoder();
  const bool v2 = aq->search_type() != SearchType::ST_decompress;
  if (v2) {
    header["search_type"] = search_type_name(aq->search_type());
    header["norm"] = {{"trained", ne.is_trained()}, {"min", double(ne.norm_min())}, {"max", double(ne.norm_max())},
                      {"table", ne.tabs().empty() ? ne.table().size() : 0}, {"tabs", ne.tabs().size()}};
  }
  try {
    header["metadata"] = nlohmann::json::parse(metadata_json.empty() ? "{}" : metadata_json);
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_ARG("model metadata is not valid JSON: " << e.what());
  }
  const std::string h = header.dump();
  std::string out(kMagic, sizeof kMagic);
  put<uint32_t>(out, v2 ? kVersion : kOldestVersion);
  put<uint64_t>(out, h.size());
  out += h;
  const auto c = aq->codebooks_flat();
  for (size_t i = 0; i < c.rows; ++i) out.append(reinterpret_cast<const char*>(c.row(i)), c.cols * sizeof(float));
  if (v2) {
    if (ne.tabs().empty()) out.append(reinterpret_cast<const char*>(ne.table().data()), ne.table().size() * sizeof(float));
    out.append(reinterpret_cast<const char*>(ne.tabs().data()), ne.tabs().size() * sizeof(float));
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
  TESSERA_CHECK_FORMAT(version >= kOldestVersion && version <= kVersion,
                       "model file format version " << version << " is not supported (this build reads versions "
                                                    << kOldestVersion << " to " << kVersion << ")");
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
  std::string type, st_name = "ST_decompress";
  size_t d = 0, table_n = 0, tabs_n = 0;
  std::vector<size_t> sizes;
  bool norm_trained = false;
  double norm_min = 0, norm_max = 0;
  nlohmann::json params = nlohmann::json::object();
  try {
    type = header.at("type").get<std::string>();
    d = header.at("dim").get<size_t>();
    sizes = header.at("codebook_sizes").get<std::vector<size_t>>();
    if (header.contains("params")) params = header.at("params");
    // Files without these keys predate search types: ST_decompress, no norm encoder.
    if (version >= 2 && header.contains("search_type")) st_name = header.at("search_type").get<std::string>();
    if (version >= 2 && header.contains("norm")) {
      const auto& nj = header.at("norm");
      norm_trained = nj.at("trained").get<bool>();
      norm_min = nj.at("min").get<double>();
      norm_max = nj.at("max").get<double>();
      table_n = nj.at("table").get<size_t>();
      tabs_n = nj.at("tabs").get<size_t>();
    }
    if (metadata_json) *metadata_json = header.value("metadata", nlohmann::json::object()).dump();
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("model file header is incomplete: " << e.what());
  }
  const AdditiveType* kind = find_type(type);
  TESSERA_CHECK_FORMAT(kind, "model type '" << type << "' is not supported by this build (it reads: " << known_types()
                                            << ")");
  SearchType st;
  try {
    st = parse_search_type(st_name);
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("model file header: " << e.what());
  }
  TESSERA_CHECK_FORMAT(d >= 1 && d <= (size_t(1) << 20) && !sizes.empty() && sizes.size() <= 64,
                       "model header has implausible shapes: dim " << d << ", " << sizes.size() << " codebooks");
  TESSERA_CHECK_FORMAT(table_n <= 256 && tabs_n <= 32, "model header has implausible norm tables: " << table_n
                                                                                              << " and " << tabs_n);
  size_t floats = 0;
  for (size_t k : sizes) {
    TESSERA_CHECK_FORMAT(k >= 1 && k <= (size_t(1) << 24), "model header has a codebook of size " << k);
    floats += k * d;
  }
  const size_t payload = size - fixed - hlen - 4;
  TESSERA_CHECK_FORMAT(payload == (floats + table_n + tabs_n) * sizeof(float),
                       "model file payload is " << payload << " bytes, header promises "
                                                << (floats + table_n + tabs_n) * sizeof(float));
  const char* at = p + fixed + hlen;
  auto read_floats = [&](size_t count) {
    std::vector<float> v(count);
    if (count) std::memcpy(v.data(), at, count * sizeof(float));
    at += count * sizeof(float);
    return v;
  };
  std::unique_ptr<AdditiveQuantizer> q;
  try {
    q = kind->make(d, sizes, params);
    const std::vector<float> books = read_floats(floats);
    q->set_codebooks(MatrixView<const float>(books.data(), floats / d, d));
    std::vector<float> table = read_floats(table_n), tabs = read_floats(tabs_n);
    q->restore_norm_encoder(NormEncoder::restore(st, norm_trained, float(norm_min), float(norm_max), std::move(table),
                                                 std::move(tabs)));
  } catch (const InvalidArgument& e) {
    TESSERA_THROW_FORMAT("model file holds an invalid model: " << e.what());
  } catch (const nlohmann::json::exception& e) {
    TESSERA_THROW_FORMAT("model file header has invalid parameters: " << e.what());
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
