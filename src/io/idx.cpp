#include "tessera/io/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>

#include "io/mapped_file.h"

namespace tessera {

namespace {

const char* idx_type_name(unsigned t) {
  switch (t) {
    case 0x08: return "uint8";
    case 0x09: return "int8";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
  }
}

FloatMatrix decode(const unsigned char* data, size_t size, const std::string& src) {
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b)
    TESSERA_THROW_FORMAT(src << ": gzip-compressed data: expected the decompressed idx bytes (read_idx on the file "
                             << "decompresses)");
  if (size < 4 || data[0] != 0 || data[1] != 0)
    TESSERA_THROW_FORMAT(src << ": not an MNIST idx file: expected it to start with 00 00 <type> <number of dims>");
  const unsigned type = data[2], ndim = data[3];
  if (type != 0x08)
    TESSERA_THROW_FORMAT(src << ": idx data type 0x" << std::hex << type << std::dec << " (" << idx_type_name(type)
                             << ") is not supported: expected 0x08 (unsigned bytes, as MNIST images)");
  TESSERA_CHECK_FORMAT(ndim >= 1, src << ": the idx header declares 0 dimensions: expected at least 1");
  const size_t header = 4 + 4 * size_t(ndim);
  TESSERA_CHECK_FORMAT(size >= header, src << ": truncated: the idx header declares " << ndim << " dimensions ("
                                           << header << " bytes of header), the file has " << size << " bytes");
  // Big-endian uint32 dimensions: n, then the ones flattened into each row.
  auto dim = [&](unsigned k) {
    const unsigned char* p = data + 4 + 4 * k;
    return size_t(p[0]) << 24 | size_t(p[1]) << 16 | size_t(p[2]) << 8 | size_t(p[3]);
  };
  const size_t rows = dim(0);
  size_t cols = 1, total;
  for (unsigned k = 1; k < ndim; ++k)
    if (__builtin_mul_overflow(cols, dim(k), &cols))
      TESSERA_THROW_FORMAT(src << ": the idx dimensions overflow 64 bits");
  if (__builtin_mul_overflow(rows, cols, &total)) TESSERA_THROW_FORMAT(src << ": the idx dimensions overflow 64 bits");
  const size_t have = size - header;
  if (have < total)
    TESSERA_THROW_FORMAT(src << ": truncated: header says " << rows << " × " << cols << " uint8 (" << total
                             << " bytes of data), file has " << have);
  if (have > total)
    TESSERA_THROW_FORMAT(src << ": " << have - total << " unexpected bytes after the data: header says " << rows
                             << " × " << cols << " uint8 (" << total << " bytes of data)");
  FloatMatrix m(rows, cols);
  const unsigned char* in = data + header;
  float* out = m.data();
  for (size_t i = 0; i < total; ++i) out[i] = float(in[i]);
  return m;
}

// The number of bytes a well-formed idx file with this (decompressed) prefix has in all, or 0 while the
// prefix is too short to tell or the header is not one decode() accepts (it then reports why).
size_t idx_expected_size(const unsigned char* data, size_t size) {
  if (size < 4 || data[0] != 0 || data[1] != 0 || data[3] == 0) return 0;
  const size_t header = 4 + 4 * size_t(data[3]);
  if (size < header) return 0;
  size_t total = 1;
  for (size_t k = 0; k < data[3]; ++k) {
    const unsigned char* p = data + 4 + 4 * k;
    const size_t d = size_t(p[0]) << 24 | size_t(p[1]) << 16 | size_t(p[2]) << 8 | size_t(p[3]);
    if (__builtin_mul_overflow(total, d, &total)) return 0;
  }
  size_t all;
  return __builtin_add_overflow(header, total, &all) ? 0 : all;
}

// Decompresses a gzipped idx file, stopping at the size its header declares: a small file that
// inflates to far more (a gzip bomb, or data appended by mistake) costs no more memory than a
// well-formed one, and is refused.
std::string gunzip_idx(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (!gz) TESSERA_THROW_IO(path << ": cannot open for reading");
  struct Closer {
    gzFile gz;
    ~Closer() {
      if (gz) gzclose_r(gz);
    }
  } closer{gz};
  gzbuffer(gz, 1 << 17);
  std::string out(size_t(1) << 12, '\0');
  size_t used = 0, limit = SIZE_MAX;
  bool stopped_early = false;
  for (;;) {
    if (used == limit) {
      stopped_early = true;
      break;
    }
    if (used == out.size()) out.resize(std::min(out.size() * 2, limit));
    const unsigned want = unsigned(std::min({out.size() - used, limit - used, size_t(1) << 30}));
    const int got = gzread(gz, out.data() + used, want);
    if (got < 0) {
      int code;
      const char* msg = gzerror(gz, &code);
      TESSERA_THROW_FORMAT(path << ": corrupted gzip data: " << msg);
    }
    if (got == 0) break;
    used += size_t(got);
    if (limit == SIZE_MAX) {
      const size_t expected = idx_expected_size(reinterpret_cast<const unsigned char*>(out.data()), used);
      if (expected != 0 && expected < SIZE_MAX) limit = std::max(used, expected + 1);
      else if (used >= 4 + 4 * 255) limit = used;  // no valid header by now: decode() will say why
    }
  }
  out.resize(used);
  if (stopped_early && idx_expected_size(reinterpret_cast<const unsigned char*>(out.data()), used) != 0)
    TESSERA_THROW_FORMAT(path << ": the decompressed data runs past the "
                              << idx_expected_size(reinterpret_cast<const unsigned char*>(out.data()), used)
                              << " bytes its idx header declares");
  closer.gz = nullptr;
  // gzclose_r reports a stream that stopped mid-way (a truncated download) as Z_BUF_ERROR.
  const int rc = gzclose_r(gz);
  if (!stopped_early) {
    if (rc == Z_BUF_ERROR) TESSERA_THROW_FORMAT(path << ": truncated gzip data: the compressed stream ends early");
    if (rc != Z_OK) TESSERA_THROW_FORMAT(path << ": corrupted gzip data (zlib error " << rc << ")");
  }
  return out;
}

}  // namespace

FloatMatrix read_idx(const std::string& path) {
  const auto f = io_detail::MappedFile::open(path);
  if (f->size() >= 2 && f->data()[0] == 0x1f && f->data()[1] == 0x8b) {
    const std::string raw = gunzip_idx(path);
    return decode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size(), path + " (decompressed)");
  }
  f->advise_sequential();
  return decode(f->data(), f->size(), path);
}

FloatMatrix parse_idx(const void* data, size_t size) {
  return decode(static_cast<const unsigned char*>(data), size, "idx image");
}

}  // namespace tessera
