// Model files (.tsq): a versioned, checked binary container for trained codecs.
//   bytes 0..7   magic "TESSERA\x1a"
//   u32          format version (1, or 2 when the search type is not ST_decompress)
//   u64          header length h
//   h bytes      JSON header: {"type": "...", "dim": d, "codebook_sizes": [...], "metadata": {...},
//                version 2 adds "search_type": "ST_...", "norm": {"trained", "min", "max", "table", "tabs"},
//                and a codec may add "params": {...}}
//   payload      float32 little-endian: the codebooks (total_codebook_size × d, faiss's layout), then
//                (version 2) the norm table (cqint centres, "table" floats) and the 2x4 scalars ("tabs")
//   u32          CRC-32 (zlib) of every byte before it
// A truncated, corrupted or foreign file is a FormatError; never a crash or a silent wrong answer.
#pragma once
#include <memory>
#include <string>

#include "tessera/quant/quantizer.h"

namespace tessera {

/// Write q to path atomically. metadata_json: a JSON object stored alongside (front ends' settings).
void save_quantizer(const Quantizer& q, const std::string& path, const std::string& metadata_json = "{}");

/// Read a model file; metadata_json (optional) receives the stored metadata object.
std::unique_ptr<Quantizer> load_quantizer(const std::string& path, std::string* metadata_json = nullptr);
/// The same from an in-memory image (fuzzing, tests).
std::unique_ptr<Quantizer> parse_quantizer(const void* data, size_t size, std::string* metadata_json = nullptr);
/// The bytes save_quantizer writes.
std::string quantizer_bytes(const Quantizer& q, const std::string& metadata_json = "{}");

}  // namespace tessera
