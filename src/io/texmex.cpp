#include "tessera/io/texmex.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "io/mapped_file.h"
#include "tessera/io/atomic_file.h"

namespace tessera {

namespace {

// Real texmex sets have d ≤ a few thousand; a larger first word means a foreign or corrupted file.
constexpr int64_t kMaxDim = int64_t(1) << 20;

const char* ext_of(char kind) { return kind == 'f' ? ".fvecs" : kind == 'i' ? ".ivecs" : ".bvecs"; }
size_t value_size(char kind) { return kind == 'b' ? 1 : 4; }

int32_t load_i32(const unsigned char* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct Shape {
  size_t rows, cols;
};

// Checks the first row's dimension and the file size; the other rows' dimensions are checked while decoding.
Shape check_layout(const unsigned char* data, size_t size, char kind, const std::string& src) {
  TESSERA_CHECK_FORMAT(size > 0, src << ": empty file: expected " << ext_of(kind) << " vectors");
  TESSERA_CHECK_FORMAT(size >= 4, src << ": truncated: " << io_detail::plural(size, "byte")
                                      << ", too short for the first row's dimension");
  const int32_t d = load_i32(data);
  if (d <= 0 || d >= kMaxDim)
    TESSERA_THROW_FORMAT(src << ": the first row's dimension is " << d << ": expected 0 < d < " << kMaxDim
                             << " (is this really a little-endian " << ext_of(kind) << " file?)");
  const size_t row_bytes = 4 + size_t(d) * value_size(kind);
  if (size % row_bytes != 0)
    TESSERA_THROW_FORMAT(src << ": size " << size << " bytes is not a multiple of the row size 4 + " << d << " × "
                             << value_size(kind) << " = " << row_bytes << " (truncated, or rows of different "
                             << "dimensions; " << size / row_bytes << " whole rows fit)");
  return {size / row_bytes, size_t(d)};
}

// One pass over the file: each row's dimension is checked and its payload copied or widened into place.
// The output size is bounded by the file size, so allocating before the last row is checked is safe.
template <class Out>
Matrix<Out> decode(const unsigned char* data, size_t size, char kind, const std::string& src) {
  const Shape s = check_layout(data, size, kind, src);
  const size_t row_bytes = 4 + s.cols * value_size(kind);
  Matrix<Out> m(s.rows, s.cols);
  for (size_t i = 0; i < s.rows; ++i) {
    const int32_t di = load_i32(data + i * row_bytes);
    if (size_t(di) != s.cols || di < 0)
      TESSERA_THROW_FORMAT(src << ": row " << i << " has dimension " << di << " but row 0 has " << s.cols
                               << ": every row of a " << ext_of(kind) << " file must have the same dimension");
    const unsigned char* in = data + i * row_bytes + 4;
    Out* out = m.row(i);
    if (kind == 'b') {
      for (size_t j = 0; j < s.cols; ++j) out[j] = Out(in[j]);
    } else if (kind == 'f' || std::is_same_v<Out, int32_t>) {
      std::memcpy(out, in, s.cols * 4);  // same representation
    } else {
      for (size_t j = 0; j < s.cols; ++j) out[j] = Out(load_i32(in + 4 * j));
    }
  }
  return m;
}

template <class Out>
Matrix<Out> read(const std::string& path, char kind) {
  const auto f = io_detail::MappedFile::open(path);
  f->advise_sequential();
  return decode<Out>(f->data(), f->size(), kind, path);
}

template <class T>
void write(const std::string& path, MatrixView<const T> x, char kind) {
  TESSERA_CHECK_ARG(x.cols > 0 && int64_t(x.cols) < kMaxDim,
                    path << ": cannot write " << x.rows << " × " << x.cols << " as " << ext_of(kind)
                         << ": expected 0 < d < " << kMaxDim);
  const int32_t d = int32_t(x.cols);
  const size_t row_bytes = 4 + x.cols * sizeof(T);
  // Rows are staged into ~1 MiB blocks so the write count stays small for short rows.
  const size_t rows_per_block = std::max<size_t>(1, (size_t(1) << 20) / row_bytes);
  std::vector<unsigned char> block(rows_per_block * row_bytes);
  AtomicFile f(path);
  for (size_t begin = 0; begin < x.rows; begin += rows_per_block) {
    const size_t n = std::min(rows_per_block, x.rows - begin);
    for (size_t i = 0; i < n; ++i) {
      unsigned char* out = block.data() + i * row_bytes;
      std::memcpy(out, &d, 4);
      std::memcpy(out + 4, x.row(begin + i), x.cols * sizeof(T));
    }
    f.write(block.data(), n * row_bytes);
  }
  f.commit();
}

}  // namespace

FloatMatrix read_fvecs(const std::string& path) { return read<float>(path, 'f'); }
FloatMatrix read_bvecs(const std::string& path) { return read<float>(path, 'b'); }
CodeMatrix read_ivecs(const std::string& path) { return read<int32_t>(path, 'i'); }

FloatMatrix parse_texmex(const void* data, size_t size, char kind) {
  TESSERA_CHECK_ARG(kind == 'f' || kind == 'i' || kind == 'b',
                    "texmex kind '" << kind << "': expected 'f' (fvecs), 'i' (ivecs) or 'b' (bvecs)");
  return decode<float>(static_cast<const unsigned char*>(data), size, kind,
                       std::string(ext_of(kind) + 1) + " image");
}

void write_fvecs(const std::string& path, MatrixView<const float> x) { write(path, x, 'f'); }
void write_ivecs(const std::string& path, MatrixView<const int32_t> x) { write(path, x, 'i'); }
void write_bvecs(const std::string& path, MatrixView<const uint8_t> x) { write(path, x, 'b'); }

}  // namespace tessera
