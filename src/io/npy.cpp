#include "tessera/io/npy.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "io/mapped_file.h"
#include "io/npy_detail.h"
#include "tessera/io/atomic_file.h"

namespace tessera {

static_assert(std::endian::native == std::endian::little,
              "the .npy reader maps '<' data directly: a big-endian host needs byte swapping first");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kMaxDims = 64;  // numpy's NPY_MAXDIMS (2.x)

// ---- header dictionary --------------------------------------------------------------------------

#define NPY_HEADER_FAIL(msg) TESSERA_THROW_FORMAT(src_ << ": corrupted .npy header: " << msg)

// The header is a Python dict literal written by numpy's repr(); this reads exactly that subset.
class HeaderParser {
 public:
  HeaderParser(const char* p, const char* end, const std::string& src) : start_(p), p_(p), end_(end), src_(src) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (eat('}')) break;
      const std::string key = string_literal();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (have_descr) NPY_HEADER_FAIL("the key 'descr' appears twice");
        if (peek() == '[')
          NPY_HEADER_FAIL("structured dtype (a list of fields) is not supported: "
                          "expected a plain numeric dtype such as '<f4'");
        h.descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_order) NPY_HEADER_FAIL("the key 'fortran_order' appears twice");
        h.fortran_order = boolean();
        have_order = true;
      } else if (key == "shape") {
        if (have_shape) NPY_HEADER_FAIL("the key 'shape' appears twice");
        h.shape = shape();
        have_shape = true;
      } else {
        NPY_HEADER_FAIL("unexpected key '" << key << "': expected only 'descr', 'fortran_order' and 'shape'");
      }
      skip_ws();
      if (eat(',')) continue;
      skip_ws();
      expect('}');
      break;
    }
    skip_ws();
    if (p_ != end_) NPY_HEADER_FAIL("unexpected text after the closing '}'");
    if (!have_descr || !have_order || !have_shape)
      NPY_HEADER_FAIL("the header dictionary lacks "
                      << (!have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'")
                      << ": expected 'descr', 'fortran_order' and 'shape'");
    return h;
  }

 private:
  int peek() const { return p_ < end_ ? static_cast<unsigned char>(*p_) : -1; }
  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool eat(char c) {
    if (peek() != static_cast<unsigned char>(c)) return false;
    ++p_;
    return true;
  }
  void expect(char c) {
    if (!eat(c)) NPY_HEADER_FAIL("expected '" << c << "' at offset " << offset());
  }
  size_t offset() const { return size_t(p_ - start_); }  // within the header text
  std::string string_literal() {
    const int q = peek();
    if (q != '\'' && q != '"') NPY_HEADER_FAIL("expected a quoted string");
    const char* start = ++p_;
    while (p_ < end_ && *p_ != q) {
      if (*p_ == '\\') NPY_HEADER_FAIL("escape sequences in header strings are not supported");
      ++p_;
    }
    if (p_ == end_) NPY_HEADER_FAIL("unterminated string");
    return std::string(start, p_++);
  }
  bool boolean() {
    if (match_word("True")) return true;
    if (match_word("False")) return false;
    NPY_HEADER_FAIL("'fortran_order' must be True or False");
  }
  bool match_word(const char* w) {
    const size_t n = std::strlen(w);
    if (size_t(end_ - p_) < n || std::memcmp(p_, w, n) != 0) return false;
    p_ += n;
    return true;
  }
  std::vector<size_t> shape() {
    std::vector<size_t> dims;
    expect('(');
    for (;;) {
      skip_ws();
      if (eat(')')) break;
      if (peek() < '0' || peek() > '9') NPY_HEADER_FAIL("'shape' must be a tuple of non-negative integers");
      size_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (__builtin_mul_overflow(v, size_t(10), &v) || __builtin_add_overflow(v, size_t(*p_ - '0'), &v))
          NPY_HEADER_FAIL("a dimension in 'shape' overflows 64 bits");
        ++p_;
      }
      eat('L');  // Python 2 long literals, as old numpy wrote them
      if (dims.size() == kMaxDims) NPY_HEADER_FAIL("'shape' has more than " << kMaxDims << " dimensions");
      dims.push_back(v);
      skip_ws();
      if (eat(',')) continue;
      skip_ws();
      expect(')');
      break;
    }
    return dims;
  }
#undef NPY_HEADER_FAIL

  const char* start_;
  const char* p_;
  const char* end_;
  const std::string& src_;
};

NpyHeader parse_header(const unsigned char* data, size_t size, const std::string& src) {
  if (size < kMagicLen || std::memcmp(data, kMagic, kMagicLen) != 0)
    TESSERA_THROW_FORMAT(src << ": not a .npy file: expected it to start with the magic \\x93NUMPY");
  TESSERA_CHECK_FORMAT(size >= 10, src << ": truncated .npy header: " << io_detail::plural(size, "byte")
                                       << ", the fixed part alone is 10");
  const unsigned major = data[6], minor = data[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    TESSERA_THROW_FORMAT(src << ": unsupported .npy format version " << major << "." << minor
                             << ": expected 1.0, 2.0 or 3.0");
  size_t prefix, hlen;
  if (major == 1) {
    prefix = 10;
    hlen = size_t(data[8]) | size_t(data[9]) << 8;
  } else {
    prefix = 12;
    TESSERA_CHECK_FORMAT(size >= prefix, src << ": truncated .npy header: " << io_detail::plural(size, "byte"));
    hlen = size_t(data[8]) | size_t(data[9]) << 8 | size_t(data[10]) << 16 | size_t(data[11]) << 24;
  }
  TESSERA_CHECK_FORMAT(hlen <= size - prefix, src << ": truncated .npy header: it declares " << hlen
                                                  << " bytes of header text, the file has " << size - prefix);
  const char* text = reinterpret_cast<const char*>(data + prefix);
  NpyHeader h = HeaderParser(text, text + hlen, src).parse();
  h.data_offset = prefix + hlen;
  return h;
}

// ---- dtypes ------------------------------------------------------------------------------------

struct Dtype {
  char kind;    // 'f', 'i' or 'u'
  size_t size;  // bytes per element
};

std::string dtype_name(Dtype t) {
  if (t.kind == 'f') return t.size == 2 ? "float16" : t.size == 4 ? "float32" : "float64";
  return std::string(t.kind == 'i' ? "int" : "uint") + std::to_string(8 * t.size);
}

// Accepts numpy's dtype.str forms: byte-order mark, kind letter, item size ("<f4", "|u1").
Dtype parse_descr(const std::string& descr, bool want_float, const std::string& src) {
  const char* supported = want_float ? "float16/32/64 ('<f2', '<f4', '<f8') or uint8/int8 ('|u1', '|i1')"
                                     : "integers ('<i4', '<i8', '<i2', '|i1', '|u1', '<u2', '<u4', '<u8')";
  const char order = descr.empty() ? '\0' : descr[0];
  const bool has_order = order == '<' || order == '>' || order == '=' || order == '|';
  const std::string body = has_order ? descr.substr(1) : descr;
  if (!body.empty() && body[0] == 'O')
    TESSERA_THROW_FORMAT(src << ": dtype '" << descr << "' is an object array (Python objects, saved with pickle)"
                             << ", which cannot be read: save a numeric array, e.g. np.asarray(x, dtype=np.float32)");
  Dtype t{'\0', 0};
  if (body.size() == 2 && (body[0] == 'f' || body[0] == 'i' || body[0] == 'u') && body[1] >= '1' && body[1] <= '8') {
    t = {body[0], size_t(body[1] - '0')};
  }
  const bool is_float = t.kind == 'f' && (t.size == 2 || t.size == 4 || t.size == 8);
  const bool is_int = (t.kind == 'i' || t.kind == 'u') && (t.size == 1 || t.size == 2 || t.size == 4 || t.size == 8);
  const bool ok = want_float ? is_float || (is_int && t.size == 1) : is_int;
  if (!ok) TESSERA_THROW_FORMAT(src << ": unsupported dtype '" << descr << "': expected " << supported);
  // '=' is native (little-endian here); numpy writes '|' for one-byte types and reads it as native otherwise.
  if (order == '>' && t.size > 1)
    TESSERA_THROW_FORMAT(src << ": big-endian data ('" << descr << "') is not supported: convert it in numpy with "
                             << "x.astype(x.dtype.newbyteorder('<'))");
  return t;
}

// ---- shape and size checks ---------------------------------------------------------------------

struct Layout {
  size_t rows, cols;
  Dtype dtype;
  size_t data_bytes;
};

Layout check_layout(const NpyHeader& h, size_t file_size, bool want_float, const std::string& src) {
  const Dtype t = parse_descr(h.descr, want_float, src);
  if (h.shape.size() != 2) {
    std::string shape = "(";
    for (size_t i = 0; i < h.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(h.shape[i]);
    shape += h.shape.size() == 1 ? ",)" : ")";
    TESSERA_THROW_FORMAT(src << ": expected a 2-D array (n × d), got " << h.shape.size() << "-D with shape " << shape
                             << (h.shape.size() == 1 ? ": a 1-D array is not accepted; reshape it to (n, 1) or (1, d)"
                                                     : ""));
  }
  const size_t rows = h.shape[0], cols = h.shape[1];
  // Fortran order stores columns contiguously; for a single row or column the bytes are the same as C order.
  if (h.fortran_order && rows > 1 && cols > 1)
    TESSERA_THROW_FORMAT(src << ": the array is in Fortran (column-major) order; only C order is read: "
                             << "save np.ascontiguousarray(x) instead");
  size_t count, bytes;
  if (__builtin_mul_overflow(rows, cols, &count) || __builtin_mul_overflow(count, t.size, &bytes))
    TESSERA_THROW_FORMAT(src << ": shape " << rows << " × " << cols << " " << dtype_name(t) << " overflows 64 bits");
  const size_t have = file_size - h.data_offset;
  if (have < bytes)
    TESSERA_THROW_FORMAT(src << ": truncated: header says " << rows << " × " << cols << " " << dtype_name(t) << " ("
                             << bytes << " bytes of data), file has " << have << " after the " << h.data_offset
                             << "-byte header");
  if (have > bytes)
    TESSERA_THROW_FORMAT(src << ": " << have - bytes << " unexpected bytes after the data: header says " << rows
                             << " × " << cols << " " << dtype_name(t) << " (" << bytes << " bytes of data)");
  return {rows, cols, t, bytes};
}

// ---- element conversion ------------------------------------------------------------------------

// IEEE binary16 → binary32, exact for every value: normals rebias the exponent, subnormals are
// mant·2⁻²⁴ (exact in float32), and inf/nan keep their payload.
float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    const float mag = float(mant) * 0x1p-24f;
    return sign ? -mag : mag;
  }
  const uint32_t bits = exp == 31 ? sign | 0x7f800000u | mant << 13 : sign | (exp + 112) << 23 | mant << 13;
  return std::bit_cast<float>(bits);
}

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void to_float(const unsigned char* src, size_t count, Dtype t, float* dst) {
  if (count == 0) return;  // dst may be null
  switch (t.kind * 16 + int(t.size)) {
    case 'f' * 16 + 2: for (size_t i = 0; i < count; ++i) dst[i] = half_to_float(load<uint16_t>(src + 2 * i)); break;
    case 'f' * 16 + 4: std::memcpy(dst, src, count * 4); break;
    case 'f' * 16 + 8: for (size_t i = 0; i < count; ++i) dst[i] = float(load<double>(src + 8 * i)); break;
    case 'u' * 16 + 1: for (size_t i = 0; i < count; ++i) dst[i] = float(src[i]); break;
    case 'i' * 16 + 1: for (size_t i = 0; i < count; ++i) dst[i] = float(int8_t(src[i])); break;
    default: TESSERA_THROW_ARG("internal: no float conversion for " << dtype_name(t));
  }
}

template <class T>
void ints_to_i32(const unsigned char* src, size_t count, size_t cols, int32_t* dst, const char* type,
                 const std::string& src_name) {
  for (size_t i = 0; i < count; ++i) {
    const T v = load<T>(src + sizeof(T) * i);
    if (!std::in_range<int32_t>(v))
      TESSERA_THROW_FORMAT(src_name << ": value " << +v << " at row " << i / cols << ", column " << i % cols
                                    << " does not fit in int32 (the " << type << " data must lie in ["
                                    << std::numeric_limits<int32_t>::min() << ", "
                                    << std::numeric_limits<int32_t>::max() << "])");
    dst[i] = int32_t(v);
  }
}

void to_i32(const unsigned char* src, size_t count, size_t cols, Dtype t, int32_t* dst, const std::string& name) {
  if (count == 0) return;  // dst may be null
  const std::string type = dtype_name(t);
  switch (t.kind * 16 + int(t.size)) {
    case 'i' * 16 + 1: ints_to_i32<int8_t>(src, count, cols, dst, type.c_str(), name); break;
    case 'u' * 16 + 1: ints_to_i32<uint8_t>(src, count, cols, dst, type.c_str(), name); break;
    case 'i' * 16 + 2: ints_to_i32<int16_t>(src, count, cols, dst, type.c_str(), name); break;
    case 'u' * 16 + 2: ints_to_i32<uint16_t>(src, count, cols, dst, type.c_str(), name); break;
    case 'i' * 16 + 4: std::memcpy(dst, src, count * 4); break;
    case 'u' * 16 + 4: ints_to_i32<uint32_t>(src, count, cols, dst, type.c_str(), name); break;
    case 'i' * 16 + 8: ints_to_i32<int64_t>(src, count, cols, dst, type.c_str(), name); break;
    case 'u' * 16 + 8: ints_to_i32<uint64_t>(src, count, cols, dst, type.c_str(), name); break;
    default: TESSERA_THROW_ARG("internal: no int32 conversion for " << type);
  }
}

template <class Out>
Matrix<Out> decode(const unsigned char* data, size_t size, const std::string& src) {
  constexpr bool want_float = std::is_same_v<Out, float>;
  const NpyHeader h = parse_header(data, size, src);
  const Layout l = check_layout(h, size, want_float, src);
  Matrix<Out> m(l.rows, l.cols);
  if constexpr (want_float)
    to_float(data + h.data_offset, m.size(), l.dtype, m.data());
  else
    to_i32(data + h.data_offset, m.size(), l.cols, l.dtype, m.data(), src);
  return m;
}

// ---- writing -----------------------------------------------------------------------------------

// Byte-for-byte what numpy's np.save writes for a 2-D C-order array (format 1.0): the dict from sorted
// keys, room for the first axis to grow to 21 digits, then spaces and '\n' up to a 64-byte boundary.
std::string npy_header(const char* descr, size_t rows, size_t cols) {
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" +
                     std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const size_t digits = std::to_string(rows).size();
  dict.append(digits < 21 ? 21 - digits : 0, ' ');
  const size_t hlen = dict.size() + 1;
  const size_t padlen = 64 - (kMagicLen + 2 + 2 + hlen) % 64;
  const size_t total = hlen + padlen;  // < 65536 for any 2-D shape
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  out += char(total & 0xff);
  out += char(total >> 8);
  out += dict;
  out.append(padlen, ' ');
  out += '\n';
  return out;
}

template <class T>
const char* descr_of() {
  if constexpr (std::is_same_v<T, float>) return "<f4";
  else if constexpr (std::is_same_v<T, int32_t>) return "<i4";
  else if constexpr (std::is_same_v<T, uint8_t>) return "|u1";
  else return "<i8";
}

template <class T>
std::string to_npy_bytes(MatrixView<const T> x) {
  std::string out = npy_header(descr_of<T>(), x.rows, x.cols);
  const size_t header = out.size();
  if (x.rows == 0 || x.cols == 0) return out;
  out.resize(header + x.rows * x.cols * sizeof(T));
  for (size_t i = 0; i < x.rows; ++i)
    std::memcpy(out.data() + header + i * x.cols * sizeof(T), x.row(i), x.cols * sizeof(T));
  return out;
}

template <class T>
void write_npy_impl(const std::string& path, MatrixView<const T> x) {
  AtomicFile f(path);
  f.write(npy_header(descr_of<T>(), x.rows, x.cols));
  if (x.rows == 0 || x.cols == 0) {
    // header only
  } else if (x.contiguous()) {
    f.write(x.data, x.rows * x.cols * sizeof(T));
  } else {
    for (size_t i = 0; i < x.rows; ++i) f.write(x.row(i), x.cols * sizeof(T));
  }
  f.commit();
}

const std::string kMemoryName = "npy image";

}  // namespace

namespace io_detail {

NpyFloatLayout npy_float_layout(const unsigned char* data, size_t size, const std::string& src) {
  const NpyHeader h = parse_header(data, size, src);
  const Layout l = check_layout(h, size, true, src);
  return {l.rows, l.cols, h.data_offset, l.dtype.kind, l.dtype.size, dtype_name(l.dtype)};
}

void npy_to_float(const unsigned char* src, size_t count, char kind, size_t elem_size, float* dst) {
  to_float(src, count, Dtype{kind, elem_size}, dst);
}

std::string npy_header_bytes(const char* descr, size_t rows, size_t cols) { return npy_header(descr, rows, cols); }

}  // namespace io_detail

NpyHeader parse_npy_header(const void* data, size_t size) {
  return parse_header(static_cast<const unsigned char*>(data), size, kMemoryName);
}

FloatMatrix read_npy_f32(const std::string& path) {
  auto f = io_detail::MappedFile::open(path);
  const NpyHeader h = parse_header(f->data(), f->size(), path);
  const Layout l = check_layout(h, f->size(), true, path);
  if (l.dtype.kind == 'f' && l.dtype.size == 4 && h.data_offset % alignof(float) == 0 && l.data_bytes > 0) {
    // The common case costs nothing: the matrix points into the mapping and keeps it alive.
    auto* p = reinterpret_cast<float*>(f->data() + h.data_offset);
    return FloatMatrix::adopt(std::move(f), p, l.rows, l.cols);
  }
  f->advise_sequential();
  FloatMatrix m(l.rows, l.cols);
  to_float(f->data() + h.data_offset, m.size(), l.dtype, m.data());
  return m;
}

CodeMatrix read_npy_i32(const std::string& path) {
  const auto f = io_detail::MappedFile::open(path);
  f->advise_sequential();
  return decode<int32_t>(f->data(), f->size(), path);
}

FloatMatrix parse_npy_f32(const void* data, size_t size) { return parse_npy_f32(data, size, kMemoryName); }
CodeMatrix parse_npy_i32(const void* data, size_t size) { return parse_npy_i32(data, size, kMemoryName); }

FloatMatrix parse_npy_f32(const void* data, size_t size, const std::string& source) {
  return decode<float>(static_cast<const unsigned char*>(data), size, source);
}
CodeMatrix parse_npy_i32(const void* data, size_t size, const std::string& source) {
  return decode<int32_t>(static_cast<const unsigned char*>(data), size, source);
}

std::string npy_bytes(MatrixView<const float> x) { return to_npy_bytes(x); }
std::string npy_bytes(MatrixView<const int32_t> x) { return to_npy_bytes(x); }
std::string npy_bytes(MatrixView<const int64_t> x) { return to_npy_bytes(x); }
std::string npy_bytes(MatrixView<const uint8_t> x) { return to_npy_bytes(x); }

void write_npy(const std::string& path, MatrixView<const float> x) { write_npy_impl(path, x); }
void write_npy(const std::string& path, MatrixView<const int32_t> x) { write_npy_impl(path, x); }
void write_npy(const std::string& path, MatrixView<const int64_t> x) { write_npy_impl(path, x); }
void write_npy(const std::string& path, MatrixView<const uint8_t> x) { write_npy_impl(path, x); }

}  // namespace tessera
