// Index files: the model-file container of src/quant/serialization.cpp (same magic, version field, JSON header
// and trailing CRC-32), holding an index instead of a bare codec:
//   bytes 0..7   magic "TESSERA\x1a"
//   u32          container version (2)
//   u64          header length h
//   h bytes      JSON header: {"type": "index_additive_flat", "index_version": 1, "metric": "l2" | "ip",
//                "ntotal": n, "code_size": c, "codec_bytes": b, "metadata": {...}}
//   b bytes      the codec's own model file (quantizer_bytes: magic, version, header, codebooks, norm
//                tables, CRC), so a codec read back is exactly the saved one
//   n × c bytes  the packed codes, in the codec's layout
//   u32          CRC-32 (zlib) of every byte before it
// The fast-scan index (IndexAdditiveQuantizerFastScan) uses the same layout with the header type
// "index_additive_fast_scan" and three more fields, "bbs", "norm_scale" and "rerank_factor"; its codes are
// stored in the codec's layout too (the blocked layout is rebuilt on reading). Each reader refuses the
// other's type, naming it; index_file_type tells them apart.
// load_quantizer refuses an index file (unknown model type) and read_index a bare model file, each saying
// what the file holds. A truncated, corrupted or foreign file is a FormatError.
#pragma once
#include <string>

#include "tessera/index/index_additive_quantizer.h"
#include "tessera/index/index_additive_quantizer_fast_scan.h"
#include "tessera/index/index_ivf_additive_quantizer.h"

namespace tessera {

/// The bytes write_index writes. metadata_json: a JSON object stored alongside.
std::string index_bytes(const IndexAdditiveQuantizer& index, const std::string& metadata_json = "{}");
/// Write the index to path atomically (a temporary file renamed over the target).
void write_index(const IndexAdditiveQuantizer& index, const std::string& path, const std::string& metadata_json = "{}");

/// Read an index file; the index owns the codec read with it. metadata_json (optional) receives the metadata.
IndexAdditiveQuantizer read_index(const std::string& path, std::string* metadata_json = nullptr);
/// The same from an in-memory image.
IndexAdditiveQuantizer parse_index(const void* data, size_t size, std::string* metadata_json = nullptr);

/// The same for the fast-scan index.
std::string index_bytes(const IndexAdditiveQuantizerFastScan& index, const std::string& metadata_json = "{}");
void write_index(const IndexAdditiveQuantizerFastScan& index, const std::string& path,
                 const std::string& metadata_json = "{}");
IndexAdditiveQuantizerFastScan read_index_fast_scan(const std::string& path, std::string* metadata_json = nullptr);
IndexAdditiveQuantizerFastScan parse_index_fast_scan(const void* data, size_t size,
                                                     std::string* metadata_json = nullptr);

/// The same for the IVF index (header type "index_ivf_additive", field "nlist"; after the codes, list by list,
/// come "extra_bytes": the centroids, nlist × float32 d; the list sizes, nlist × u64; the labels, ntotal × i64).
std::string index_bytes(const IndexIVFAdditiveQuantizer& index, const std::string& metadata_json = "{}");
void write_index(const IndexIVFAdditiveQuantizer& index, const std::string& path, const std::string& metadata_json = "{}");
IndexIVFAdditiveQuantizer read_index_ivf(const std::string& path, std::string* metadata_json = nullptr);
IndexIVFAdditiveQuantizer parse_index_ivf(const void* data, size_t size, std::string* metadata_json = nullptr);

/// The header type of an index file ("index_additive_flat", "index_additive_fast_scan", "index_ivf_additive"; a model file's
/// type otherwise). FormatError if the file is not a valid container.
std::string index_file_type(const std::string& path);

}  // namespace tessera
