#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tessera/core/error.h"

namespace tessera::io_detail {

namespace {
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};
}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) TESSERA_THROW_IO(path << ": cannot open for reading: " << std::strerror(errno));
  FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) TESSERA_THROW_IO(path << ": cannot stat: " << std::strerror(errno));
  if (S_ISDIR(st.st_mode)) TESSERA_THROW_IO(path << ": is a directory, expected a file");

  std::shared_ptr<MappedFile> f(new MappedFile());
  if (S_ISREG(st.st_mode) && st.st_size > 0) {
    // Copy-on-write private mapping: the file is never modified, and a caller that edits the adopted
    // matrix in place gets private pages instead of a SIGSEGV on a read-only mapping.
    void* p = ::mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED) {
      f->data_ = static_cast<unsigned char*>(p);
      f->size_ = size_t(st.st_size);
      f->mapped_ = true;
      return f;
    }
  }
  // Not mappable (pipe, character device, procfs, empty file): read it.
  char chunk[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, chunk, sizeof chunk);
    if (got < 0) {
      if (errno == EINTR) continue;
      TESSERA_THROW_IO(path << ": read failed: " << std::strerror(errno));
    }
    if (got == 0) break;
    f->buffer_.append(chunk, size_t(got));
  }
  f->data_ = reinterpret_cast<unsigned char*>(f->buffer_.data());
  f->size_ = f->buffer_.size();
  return f;
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(data_, size_);
}

void MappedFile::advise_sequential() const {
  if (mapped_) ::madvise(data_, size_, MADV_SEQUENTIAL);
}

std::string plural(size_t n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

}  // namespace tessera::io_detail
