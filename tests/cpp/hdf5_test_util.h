// Writing HDF5 files in tests with libhdf5 itself (tessera only reads them).
#pragma once
#ifdef TESSERA_WITH_HDF5
#include <hdf5.h>

#include <vector>

namespace tessera_test {

template <class T>
inline void write_dataset(hid_t file, const char* name, hid_t type, size_t rows, size_t cols, const std::vector<T>& values) {
  const hsize_t dims[2] = {rows, cols};
  const hid_t space = H5Screate_simple(2, dims, nullptr);
  const hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  H5Dclose(ds);
  H5Sclose(space);
}

inline void write_string_attribute(hid_t file, const char* name, const char* value) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);  // as h5py writes a Python str
  H5Tset_cset(type, H5T_CSET_UTF8);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t attr = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, type, &value);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

}  // namespace tessera_test
#endif
