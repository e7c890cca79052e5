#include "tessera/io/npz.h"

#include <zip.h>

#include <algorithm>
#include <memory>
#include <set>

#include "io/mapped_file.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/npy.h"

namespace tessera {

namespace {

struct ZipDiscard {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFclose {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
struct ZipErrorGuard {
  zip_error_t e;
  ZipErrorGuard() { zip_error_init(&e); }
  ~ZipErrorGuard() { zip_error_fini(&e); }
  const char* str() { return zip_error_strerror(&e); }
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Decompress one member. The declared size is only a hint for the first allocation (a forged header
// must not make us reserve gigabytes); the bytes actually produced must then match it.
std::string read_member(zip_t* za, zip_uint64_t index, const zip_stat_t& st, const std::string& what) {
  std::unique_ptr<zip_file_t, ZipFclose> zf(zip_fopen_index(za, index, 0));
  if (!zf) TESSERA_THROW_FORMAT(what << ": cannot open the member: " << zip_strerror(za));
  const bool sized = st.valid & ZIP_STAT_SIZE;
  std::string buf(sized ? std::min<zip_uint64_t>(st.size, zip_uint64_t(1) << 24) : 0, '\0');
  size_t used = 0;
  for (;;) {
    if (used == buf.size()) buf.resize(std::max<size_t>(buf.size() * 2, 1 << 16));
    const zip_int64_t got = zip_fread(zf.get(), buf.data() + used, buf.size() - used);
    if (got < 0) TESSERA_THROW_FORMAT(what << ": corrupted member: " << zip_file_strerror(zf.get()));
    if (got == 0) break;
    used += size_t(got);
  }
  buf.resize(used);
  if (sized && used != st.size)
    TESSERA_THROW_FORMAT(what << ": corrupted member: the directory says " << st.size << " bytes, it holds " << used);
  return buf;
}

std::vector<std::pair<std::string, FloatMatrix>> read_archive(const void* data, size_t size, const std::string& src) {
  TESSERA_CHECK_FORMAT(size > 0, src << ": empty file: expected a .npz (zip) archive");
  ZipErrorGuard err;
  zip_source_t* source = zip_source_buffer_create(data, size, 0, &err.e);
  if (!source) TESSERA_THROW_IO(src << ": cannot set up reading: " << err.str());
  std::unique_ptr<zip_t, ZipDiscard> za(zip_open_from_source(source, ZIP_RDONLY, &err.e));
  if (!za) {
    zip_source_free(source);
    TESSERA_THROW_FORMAT(src << ": not a valid .npz (zip) archive: " << err.str());
  }
  const zip_int64_t n = zip_get_num_entries(za.get(), 0);
  TESSERA_CHECK_FORMAT(n >= 0, src << ": cannot list the archive: " << zip_strerror(za.get()));
  std::vector<std::pair<std::string, FloatMatrix>> out;
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(za.get(), zip_uint64_t(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME))
      TESSERA_THROW_FORMAT(src << ": corrupted entry " << i << ": " << zip_strerror(za.get()));
    const std::string name = st.name;
    const std::string what = src + "[" + name + "]";
    if (!ends_with(name, ".npy"))
      TESSERA_THROW_FORMAT(what << ": not a .npy member: a .npz holds only .npy arrays, as np.savez writes");
    // numpy writes stored or deflated members; refusing the rest also keeps bzip2/xz bombs out.
    if ((st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE)
      TESSERA_THROW_FORMAT(what << ": unsupported compression method " << st.comp_method
                                << ": expected stored or deflated, as np.savez / np.savez_compressed write");
    const std::string bytes = read_member(za.get(), zip_uint64_t(i), st, what);
    out.emplace_back(name.substr(0, name.size() - 4), parse_npy_f32(bytes.data(), bytes.size(), what));
  }
  return out;
}

// Entries get a fixed timestamp so that the same arrays always produce the same bytes.
constexpr time_t kEntryTime = 946684800;  // 2000-01-01T00:00:00Z

}  // namespace

std::vector<std::pair<std::string, FloatMatrix>> read_npz_f32(const std::string& path) {
  const auto f = io_detail::MappedFile::open(path);
  return read_archive(f->data(), f->size(), path);
}

std::vector<std::pair<std::string, FloatMatrix>> read_npz_f32_from_memory(const void* data, size_t size) {
  return read_archive(data, size, "npz image");
}

void write_npz(const std::string& path, const std::vector<std::pair<std::string, MatrixView<const float>>>& arrays,
               bool compress) {
  std::set<std::string> seen;
  for (const auto& [name, x] : arrays) {
    TESSERA_CHECK_ARG(!name.empty(), path << ": an array name is empty: every .npz member needs a name");
    TESSERA_CHECK_ARG(seen.insert(name).second, path << ": the array name '" << name << "' is used twice");
  }
  if (arrays.empty()) {
    // libzip writes nothing for an archive without entries; a valid empty zip is just its end record.
    write_file_atomic(path, std::string("PK\x05\x06", 4) + std::string(18, '\0'));
    return;
  }
  // Build the archive in memory, then write it through AtomicFile like every other output.
  ZipErrorGuard err;
  zip_source_t* mem = zip_source_buffer_create(nullptr, 0, 0, &err.e);
  if (!mem) TESSERA_THROW_IO(path << ": cannot create the archive in memory: " << err.str());
  std::unique_ptr<zip_source_t, decltype(&zip_source_free)> mem_ref(mem, &zip_source_free);
  zip_source_keep(mem);  // one reference for the archive, one for reading the result back
  std::unique_ptr<zip_t, ZipDiscard> za(zip_open_from_source(mem, ZIP_TRUNCATE, &err.e));
  if (!za) {
    zip_source_free(mem);
    TESSERA_THROW_IO(path << ": cannot create the archive in memory: " << err.str());
  }
  std::vector<std::string> blobs;  // must outlive zip_close, which reads them
  blobs.reserve(arrays.size());
  for (const auto& [name, x] : arrays) {
    blobs.push_back(npy_bytes(x));
    zip_source_t* member = zip_source_buffer(za.get(), blobs.back().data(), blobs.back().size(), 0);
    if (!member) TESSERA_THROW_IO(path << ": cannot add '" << name << "': " << zip_strerror(za.get()));
    const zip_int64_t idx = zip_file_add(za.get(), (name + ".npy").c_str(), member, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
      zip_source_free(member);
      TESSERA_THROW_IO(path << ": cannot add '" << name << "': " << zip_strerror(za.get()));
    }
    if (zip_set_file_compression(za.get(), zip_uint64_t(idx), compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) != 0 ||
        zip_file_set_mtime(za.get(), zip_uint64_t(idx), kEntryTime, 0) != 0)
      TESSERA_THROW_IO(path << ": cannot set up '" << name << "': " << zip_strerror(za.get()));
  }
  if (zip_close(za.get()) != 0) TESSERA_THROW_IO(path << ": cannot build the archive: " << zip_strerror(za.get()));
  za.release();  // zip_close freed it

  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_source_stat(mem, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) || zip_source_open(mem) != 0)
    TESSERA_THROW_IO(path << ": cannot read the archive back from memory: "
                          << zip_error_strerror(zip_source_error(mem)));
  std::string bytes(st.size, '\0');
  const zip_int64_t got = zip_source_read(mem, bytes.data(), st.size);
  zip_source_close(mem);
  if (got < 0 || zip_uint64_t(got) != st.size)
    TESSERA_THROW_IO(path << ": cannot read the archive back from memory: "
                          << zip_error_strerror(zip_source_error(mem)));
  write_file_atomic(path, bytes);
}

}  // namespace tessera
