// Atomic output: bytes go to a temporary file beside the target, which is fsync'ed and renamed over
// the target only when complete, so a crash or an error never leaves a half-written result.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace tessera {

class AtomicFile {
 public:
  /// Opens `path + ".tmp.<pid>.<n>"` for writing; throws IOError naming the path if it cannot.
  explicit AtomicFile(std::string path);
  ~AtomicFile();  ///< removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view s) { write(s.data(), s.size()); }
  /// Flush, fsync and rename onto the target path.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Write `bytes` to `path` atomically.
void write_file_atomic(const std::string& path, std::string_view bytes);

/// Read a whole file; throws IOError if it cannot be read.
std::string read_file(const std::string& path);

}  // namespace tessera
