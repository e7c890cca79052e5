#include "tessera/io/hdf5.h"

#include <algorithm>
#include <cctype>
#include <mutex>

#include "tessera/core/error.h"

#ifdef TESSERA_WITH_HDF5
#include <hdf5.h>
#endif

namespace tessera {

bool is_hdf5_path(const std::string& path) {
  std::string p = path;
  std::transform(p.begin(), p.end(), p.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const char* ext : {".hdf5", ".h5"}) {
    const size_t at = p.rfind(ext);
    if (at == std::string::npos) continue;
    const size_t end = at + std::string(ext).size();
    if (end == p.size() || p[end] == ':') return true;
  }
  return false;
}

std::pair<std::string, std::string> split_hdf5_path(const std::string& path, const std::string& default_dataset) {
  const size_t colon = path.rfind(':');
  if (colon != std::string::npos && colon + 1 < path.size() && is_hdf5_path(path.substr(0, colon)) &&
      path.find('/', colon) == std::string::npos)
    return {path.substr(0, colon), path.substr(colon + 1)};
  return {path, default_dataset};
}

#ifndef TESSERA_WITH_HDF5

bool hdf5_available() { return false; }

namespace {
[[noreturn]] void unavailable(const std::string& path) {
  TESSERA_THROW_ARG(path << ": this tessera was built without HDF5 (install libhdf5-dev and rebuild)");
}
}  // namespace

FloatMatrix read_hdf5_f32(const std::string& path, const std::string&) { unavailable(path); }
CodeMatrix read_hdf5_i32(const std::string& path, const std::string&) { unavailable(path); }
std::vector<std::string> hdf5_datasets(const std::string& path) { unavailable(path); }
std::string hdf5_root_attribute(const std::string& path, const std::string&) { unavailable(path); }

#else

bool hdf5_available() { return true; }

namespace {

// Debian's libhdf5 is built without its thread-safety option: one caller at a time.
std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

// Closes an HDF5 handle on scope exit.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

Handle open_file(const std::string& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors become exceptions here, not prints on stderr
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) TESSERA_THROW_IO(path << ": cannot open");
  std::fclose(f);
  TESSERA_CHECK_FORMAT(H5Fis_hdf5(path.c_str()) > 0, path << ": not an HDF5 file");
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  TESSERA_CHECK_FORMAT(file.ok(), path << ": not a readable HDF5 file (truncated or damaged?)");
  return file;
}

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

std::vector<std::string> list_datasets(hid_t file) {
  std::vector<std::string> names;
  H5Literate(file, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_name, &names);
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "none" : s;
}

// A 2-D (or 1-D: n × 1) dataset converted to mem_type; `integer` demands an integer element type.
template <class T>
Matrix<T> read_2d(const std::string& path, const std::string& name, hid_t mem_type, bool integer) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const Handle file = open_file(path);
  TESSERA_CHECK_ARG(H5Lexists(file.get(), name.c_str(), H5P_DEFAULT) > 0,
                    path << " has no dataset '" << name << "' (it has: " << joined(list_datasets(file.get())) << ")");
  const Handle ds(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  TESSERA_CHECK_FORMAT(ds.ok(), path << ": '" << name << "' is not a readable dataset");
  const Handle space(H5Dget_space(ds.get()), H5Sclose);
  const Handle type(H5Dget_type(ds.get()), H5Tclose);
  TESSERA_CHECK_FORMAT(space.ok() && type.ok(), path << ": '" << name << "' has no readable shape or type");
  const H5T_class_t cls = H5Tget_class(type.get());
  TESSERA_CHECK_ARG(cls == H5T_INTEGER || (!integer && cls == H5T_FLOAT),
                    path << ": dataset '" << name << "' holds " << (cls == H5T_FLOAT ? "floats" : "non-numbers")
                         << ", expected " << (integer ? "integers" : "numbers"));
  const int ndims = H5Sget_simple_extent_ndims(space.get());
  TESSERA_CHECK_ARG(ndims == 2 || ndims == 1,
                    path << ": dataset '" << name << "' has " << ndims << " dimensions, expected a 2-D (n × d) array");
  hsize_t dims[2] = {0, 1};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  constexpr hsize_t kMaxElements = hsize_t(1) << 40;
  TESSERA_CHECK_ARG(dims[1] == 0 || dims[0] <= kMaxElements / dims[1],
                    path << ": dataset '" << name << "' is too large (" << dims[0] << " × " << dims[1] << ")");
  Matrix<T> m(static_cast<size_t>(dims[0]), static_cast<size_t>(dims[1]));
  if (m.size() > 0)
    TESSERA_CHECK_FORMAT(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data()) >= 0,
                         path << ": dataset '" << name << "' could not be read (truncated or damaged file?)");
  return m;
}

}  // namespace

FloatMatrix read_hdf5_f32(const std::string& path, const std::string& dataset) {
  return read_2d<float>(path, dataset, H5T_NATIVE_FLOAT, false);
}

CodeMatrix read_hdf5_i32(const std::string& path, const std::string& dataset) {
  return read_2d<int32_t>(path, dataset, H5T_NATIVE_INT32, true);
}

std::vector<std::string> hdf5_datasets(const std::string& path) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const Handle file = open_file(path);
  return list_datasets(file.get());
}

std::string hdf5_root_attribute(const std::string& path, const std::string& name) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const Handle file = open_file(path);
  if (H5Aexists(file.get(), name.c_str()) <= 0) return "";
  const Handle attr(H5Aopen(file.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  const Handle type(attr.ok() ? H5Aget_type(attr.get()) : -1, H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING) return "";
  const Handle mem(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), H5Tclose);
  if (!mem.ok()) return "";
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;  // h5py writes Python str attributes as variable-length strings
    if (H5Aread(attr.get(), mem.get(), &s) < 0 || !s) return "";
    std::string out(s);
    H5free_memory(s);
    return out;
  }
  std::string out(H5Tget_size(type.get()), '\0');
  if (H5Aread(attr.get(), mem.get(), out.data()) < 0) return "";
  out.resize(std::min(out.size(), out.find('\0')));
  return out;
}

#endif

}  // namespace tessera
