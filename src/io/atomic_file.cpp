#include "tessera/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "io/mapped_file.h"
#include "tessera/core/error.h"

namespace tessera {

namespace {

// Distinguishes concurrent writers in one process; the pid distinguishes processes.
std::atomic<unsigned long> g_tmp_counter{0};

std::string parent_dir(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// After a rename the new directory entry is durable only once the directory itself is synced.
// Best effort: some filesystems refuse fsync on a directory, and the data is already safe.
void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  TESSERA_CHECK_ARG(!path_.empty(), "output path is empty: expected a file name");
  tmp_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(g_tmp_counter++);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0)
    TESSERA_THROW_IO(path_ << ": cannot create the temporary file " << tmp_ << " to write it: "
                           << std::strerror(errno) << " (is the directory " << parent_dir(path_)
                           << " present and writable?)");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  TESSERA_CHECK_ARG(fd_ >= 0, path_ << ": write after commit");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    // Linux moves at most ~2 GiB per call; keep each call well below that.
    const ssize_t put = ::write(fd_, p, size < (size_t(1) << 30) ? size : (size_t(1) << 30));
    if (put < 0) {
      if (errno == EINTR) continue;
      TESSERA_THROW_IO(path_ << ": write failed: " << std::strerror(errno));
    }
    p += put;
    size -= size_t(put);
  }
}

void AtomicFile::commit() {
  TESSERA_CHECK_ARG(fd_ >= 0, path_ << ": commit called twice");
  const int fd = fd_;
  fd_ = -1;
  // fsync before rename: otherwise a power loss can leave the new name pointing at empty data.
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    TESSERA_THROW_IO(path_ << ": fsync failed: " << std::strerror(e));
  }
  if (::close(fd) != 0) TESSERA_THROW_IO(path_ << ": close failed: " << std::strerror(errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    TESSERA_THROW_IO(path_ << ": cannot rename the finished temporary file onto it: " << std::strerror(errno));
  committed_ = true;
  sync_dir(parent_dir(path_));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

std::string read_file(const std::string& path) {
  const auto f = io_detail::MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

}  // namespace tessera
