// HDF5 input (ann-benchmarks layout): files written here with libhdf5 itself, read back through tessera.
#include <gtest/gtest.h>

#include <cstring>

#include "hdf5_test_util.h"
#include "io_test_util.h"
#include "tessera/core/error.h"
#include "tessera/io/hdf5.h"
#include "tessera/io/vectors.h"

using namespace tessera;
using namespace tessera_test;

TEST(Hdf5Path, SplitsTheDatasetSuffix) {
  EXPECT_TRUE(is_hdf5_path("a/sift-128-euclidean.hdf5"));
  EXPECT_TRUE(is_hdf5_path("x.H5:test"));
  EXPECT_FALSE(is_hdf5_path("x.hdf5.npy"));
  EXPECT_FALSE(is_hdf5_path("x.fvecs"));
  EXPECT_EQ(split_hdf5_path("d/x.hdf5", "train"), std::make_pair(std::string("d/x.hdf5"), std::string("train")));
  EXPECT_EQ(split_hdf5_path("d/x.hdf5:test", "train"), std::make_pair(std::string("d/x.hdf5"), std::string("test")));
  EXPECT_EQ(split_hdf5_path("c:/x.h5", "train"), std::make_pair(std::string("c:/x.h5"), std::string("train")));
}

#ifdef TESSERA_WITH_HDF5
namespace {

// An ann-benchmarks-shaped file: train 20 × 5 float32, test 3 × 5 float64, neighbors 3 × 4 int32.
void write_ann_file(const std::string& path) {
  using tessera_test::write_dataset;
  using tessera_test::write_string_attribute;
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  std::vector<float> train(100);
  for (size_t i = 0; i < train.size(); ++i) train[i] = float(i) * 0.25f - 3.0f;
  std::vector<double> test(15);
  for (size_t i = 0; i < test.size(); ++i) test[i] = double(i) / 3.0;
  std::vector<int32_t> nn(12);
  for (size_t i = 0; i < nn.size(); ++i) nn[i] = int32_t(19 - i);
  write_dataset(f, "train", H5T_NATIVE_FLOAT, 20, 5, train);
  write_dataset(f, "test", H5T_NATIVE_DOUBLE, 3, 5, test);
  write_dataset(f, "neighbors", H5T_NATIVE_INT32, 3, 4, nn);
  write_string_attribute(f, "distance", "euclidean");
  H5Fclose(f);
}

}  // namespace

TEST(Hdf5Read, AnnBenchmarksLayout) {
  ScratchDir dir;
  const std::string path = dir / "toy-5-euclidean.hdf5";
  write_ann_file(path);
  const FloatMatrix train = read_vectors(path);
  ASSERT_EQ(train.rows(), 20u);
  ASSERT_EQ(train.cols(), 5u);
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(train.data()[i], float(i) * 0.25f - 3.0f);
  const FloatMatrix test = read_vectors(path + ":test");  // float64 converted
  ASSERT_EQ(test.rows(), 3u);
  for (size_t i = 0; i < 15; ++i) EXPECT_EQ(test.data()[i], float(double(i) / 3.0));
  const CodeMatrix nn = read_hdf5_i32(path, "neighbors");
  ASSERT_EQ(nn.rows(), 3u);
  ASSERT_EQ(nn.cols(), 4u);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(nn.data()[i], int32_t(19 - i));
  EXPECT_EQ(hdf5_datasets(path), (std::vector<std::string>{"neighbors", "test", "train"}));
  EXPECT_EQ(hdf5_root_attribute(path, "distance"), "euclidean");
  EXPECT_EQ(hdf5_root_attribute(path, "no_such"), "");
}

TEST(Hdf5Read, BadInputIsAClearError) {
  ScratchDir dir;
  const std::string path = dir / "toy.hdf5";
  write_ann_file(path);
  try {
    read_vectors(path + ":queries");
    FAIL() << "a missing dataset was read";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("neighbors, test, train"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_hdf5_i32(path, "train"), InvalidArgument);  // floats are not ids
  EXPECT_THROW(read_vectors(dir / "missing.hdf5"), Error);
  // Foreign bytes and truncated files.
  spit(dir / "foreign.hdf5", std::string("\x93NUMPY not hdf5 at all", 22));
  EXPECT_THROW(read_vectors(dir / "foreign.hdf5"), FormatError);
  const std::string whole = slurp(path);
  for (size_t cut : {size_t(8), whole.size() / 3, whole.size() - 40}) {
    SCOPED_TRACE(cut);
    spit(dir / "cut.hdf5", whole.substr(0, cut));
    EXPECT_THROW(read_vectors(dir / "cut.hdf5"), Error);
  }
}
#else
TEST(Hdf5Read, UnavailableIsAClearError) {
  EXPECT_FALSE(hdf5_available());
  EXPECT_THROW(read_vectors("x.hdf5"), InvalidArgument);
}
#endif
