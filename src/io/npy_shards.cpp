#include "tessera/io/npy_shards.h"

#include <glob.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/mapped_file.h"
#include "io/npy_detail.h"
#include "tessera/core/error.h"

namespace tessera {

namespace fs = std::filesystem;

struct NpyShards::Shard {
  std::shared_ptr<io_detail::MappedFile> file;
  io_detail::NpyFloatLayout layout;
  const unsigned char* row_ptr(size_t r) const {
    return file->data() + layout.data_offset + r * layout.cols * layout.elem_size;
  }
  bool direct() const {  // float32 rows usable in place
    return layout.kind == 'f' && layout.elem_size == 4 && layout.data_offset % alignof(float) == 0;
  }
};

bool is_shard_pattern(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return true;
  return path.find_first_of("*?[") != std::string::npos && !fs::exists(path, ec);
}

NpyShards NpyShards::open(const std::string& path) {
  std::vector<std::string> paths;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.path().extension() == ".npy" && e.is_regular_file(ec)) paths.push_back(e.path().string());
    if (ec) TESSERA_THROW_IO(path << ": cannot list the directory: " << ec.message());
    TESSERA_CHECK_ARG(!paths.empty(), path << ": the directory holds no .npy shards");
  } else if (is_shard_pattern(path)) {
    glob_t g{};
    const int rc = ::glob(path.c_str(), 0, nullptr, &g);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i)
      if (!fs::is_directory(g.gl_pathv[i], ec)) paths.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    TESSERA_CHECK_ARG(!paths.empty(), path << ": the pattern matches no file");
  } else {
    paths.push_back(path);
  }
  std::sort(paths.begin(), paths.end());
  return open(paths);
}

NpyShards NpyShards::open(const std::vector<std::string>& paths) {
  TESSERA_CHECK_ARG(!paths.empty(), "no shards given");
  NpyShards s;
  s.offsets_.push_back(0);
  for (const std::string& p : paths) {
    auto sh = std::make_shared<Shard>();
    sh->file = io_detail::MappedFile::open(p);
    sh->layout = io_detail::npy_float_layout(sh->file->data(), sh->file->size(), p);
    const auto& l = sh->layout;
    TESSERA_CHECK_ARG(l.rows > 0 && l.cols > 0, "shard " << p << " is empty (" << l.rows << " × " << l.cols
                                                         << "): every shard must hold at least one row");
    if (s.shards_.empty()) {
      s.cols_ = l.cols;
      s.dtype_ = l.dtype;
    } else {
      TESSERA_CHECK_ARG(l.cols == s.cols_, "shard " << p << " has " << l.cols << " columns, the first shard "
                                                    << s.names_[0] << " has " << s.cols_
                                                    << ": all shards must have the same width");
      TESSERA_CHECK_ARG(l.dtype == s.dtype_, "shard " << p << " holds " << l.dtype << ", the first shard "
                                                      << s.names_[0] << " holds " << s.dtype_
                                                      << ": all shards must have the same dtype");
    }
    s.offsets_.push_back(s.offsets_.back() + l.rows);
    s.names_.push_back(p);
    s.shards_.push_back(std::move(sh));
  }
  return s;
}

size_t NpyShards::shard_of(size_t row) const {
  return size_t(std::upper_bound(offsets_.begin(), offsets_.end(), row) - offsets_.begin()) - 1;
}

MatrixView<const float> NpyShards::read(size_t begin, size_t end, FloatMatrix& buffer) const {
  TESSERA_CHECK_ARG(begin <= end && end <= rows(), "rows [" << begin << ", " << end << ") are outside [0, " << rows()
                                                            << ")");
  if (begin < end) {
    const size_t k = shard_of(begin);
    const Shard& sh = *shards_[k];
    if (end <= offsets_[k + 1] && sh.direct())
      return {reinterpret_cast<const float*>(sh.row_ptr(begin - offsets_[k])), end - begin, cols_};
  }
  if (buffer.rows() != end - begin || buffer.cols() != cols_) buffer = FloatMatrix(end - begin, cols_);
  read_into(begin, end, buffer.data());
  return buffer.view();
}

void NpyShards::read_into(size_t begin, size_t end, float* out) const {
  TESSERA_CHECK_ARG(begin <= end && end <= rows(), "rows [" << begin << ", " << end << ") are outside [0, " << rows()
                                                            << ")");
  for (size_t r = begin; r < end;) {
    const size_t k = shard_of(r);
    const Shard& sh = *shards_[k];
    const size_t stop = std::min(end, offsets_[k + 1]);
    io_detail::npy_to_float(sh.row_ptr(r - offsets_[k]), (stop - r) * cols_, sh.layout.kind, sh.layout.elem_size,
                            out + (r - begin) * cols_);
    r = stop;
  }
}

void NpyShards::gather(const std::vector<size_t>& rows, float* out) const {
  for (size_t i = 0; i < rows.size(); ++i) read_into(rows[i], rows[i] + 1, out + i * cols_);
}

void NpyShards::release(size_t begin, size_t end) const {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  for (size_t r = begin; r < end && r < rows();) {
    const size_t k = shard_of(r);
    const Shard& sh = *shards_[k];
    const size_t stop = std::min(end, offsets_[k + 1]);
    if (sh.file->mapped()) {
      // Whole pages inside the rows only: a page shared with rows still to come stays.
      const uintptr_t a = reinterpret_cast<uintptr_t>(sh.row_ptr(r - offsets_[k]));
      const uintptr_t b = reinterpret_cast<uintptr_t>(sh.row_ptr(stop - offsets_[k]));
      const uintptr_t a_up = (a + page - 1) / page * page, b_down = b / page * page;
      if (b_down > a_up) ::madvise(reinterpret_cast<void*>(a_up), b_down - a_up, MADV_DONTNEED);
    }
    r = stop;
  }
}

FloatMatrix NpyShards::read_all() const {
  if (shards_.size() == 1 && shards_[0]->direct()) {
    const auto& sh = shards_[0];
    return FloatMatrix::adopt(std::const_pointer_cast<Shard>(sh), reinterpret_cast<float*>(const_cast<unsigned char*>(sh->row_ptr(0))), rows(), cols_);
  }
  FloatMatrix m(rows(), cols_);
  read_into(0, rows(), m.data());
  return m;
}

std::string NpyShards::where(size_t row) const {
  const size_t k = shard_of(row);
  return names_[k] + " row " + std::to_string(row - offsets_[k]);
}

void NpyShards::check_finite(size_t begin, MatrixView<const float> x) const {
  try {
    tessera::check_finite(x, "input");
  } catch (const InvalidArgument&) {
    for (size_t i = 0; i < x.rows; ++i)
      for (size_t j = 0; j < x.cols; ++j)
        if (!std::isfinite(x(i, j)))
          TESSERA_THROW_ARG("shard " << where(begin + i) << " (row " << begin + i << " of the input) has a non-finite "
                                     << "value (" << x(i, j) << ") at column " << j
                                     << ": every value must be a finite number");
    throw;
  }
}

}  // namespace tessera
