// A whole input file in memory for the readers: memory-mapped when it is a regular file (so a float32
// .npy can be adopted without a copy), read into a buffer otherwise (pipes, /proc files).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace tessera::io_detail {

class MappedFile {
 public:
  /// Throws IOError naming `path` and the OS reason if it cannot be opened or read.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  /// Writable only in the copy-on-write sense: changes stay private to this process, never reach the file.
  unsigned char* data() { return data_; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  bool mapped() const { return mapped_; }
  /// Tell the kernel the pages will be read once, front to back (copying readers).
  void advise_sequential() const;

 private:
  MappedFile() = default;
  unsigned char* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::string buffer_;  // holds the bytes when the file could not be mapped
};

/// "1 byte", "2 bytes": messages give exact counts, which users can compare with ls -l.
std::string plural(size_t n, const char* what);

}  // namespace tessera::io_detail
