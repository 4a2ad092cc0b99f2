// CSV and .npy loaders: values, header detection, missing values, and errors that name the
// file, line and column.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "veil/ml/data.hpp"

namespace veil::ml {
namespace {

TEST(Csv, ParsesHeaderValuesAndMissing) {
  const Matrix m = parse_csv("a,b,c\n1,2.5,-3e2\n4,,nan\n", "t.csv");
  ASSERT_EQ(m.rows, 2u);
  ASSERT_EQ(m.cols, 3u);
  EXPECT_EQ(m.column_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_DOUBLE_EQ(m.at(0, 2), -300.0);
  EXPECT_TRUE(std::isnan(m.at(1, 1)));
  EXPECT_TRUE(std::isnan(m.at(1, 2)));
}

TEST(Csv, WithoutHeaderAllRowsAreData) {
  const Matrix m = parse_csv("1,2\r\n3,4\r\n\n", "t.csv");
  EXPECT_EQ(m.rows, 2u);
  EXPECT_TRUE(m.column_names.empty());
  EXPECT_DOUBLE_EQ(m.at(1, 0), 3.0);
}

TEST(Csv, BadFieldNamesFileLineAndColumn) {
  try {
    parse_csv("x,y\n1,2\n3,abc\n", "data.csv");
    FAIL() << "no error";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("data.csv"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("column 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'y'"), std::string::npos) << msg;
  }
}

TEST(Csv, RaggedRowIsRefused) {
  EXPECT_THROW(parse_csv("1,2\n3\n", "r.csv"), DataError);
}

TEST(Csv, MissingFileIsAnError) {
  EXPECT_THROW(load_csv("/nonexistent/file.csv"), DataError);
}

std::vector<std::uint8_t> npy(const std::string& descr, bool fortran, const std::string& shape, const void* data,
                              std::size_t bytes) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::vector<std::uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.push_back(static_cast<std::uint8_t>(header.size() & 0xff));
  out.push_back(static_cast<std::uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  const auto* p = static_cast<const std::uint8_t*>(data);
  out.insert(out.end(), p, p + bytes);
  return out;
}

TEST(Npy, ReadsFloat64COrder) {
  const double v[6] = {1, 2, 3, 4, 5, 6};
  const Matrix m = parse_npy(npy("<f8", false, "(2, 3)", v, sizeof v));
  ASSERT_EQ(m.rows, 2u);
  ASSERT_EQ(m.cols, 3u);
  EXPECT_DOUBLE_EQ(m.at(1, 0), 4.0);
}

TEST(Npy, ReadsFloat32FortranOrder) {
  const float v[6] = {1, 2, 3, 4, 5, 6};  // columns first
  const Matrix m = parse_npy(npy("<f4", true, "(2, 3)", v, sizeof v));
  EXPECT_DOUBLE_EQ(m.at(0, 1), 3.0);
  EXPECT_DOUBLE_EQ(m.at(1, 0), 2.0);
}

TEST(Npy, ReadsInt64Vector) {
  const std::int64_t v[3] = {-1, 0, 7};
  const Matrix m = parse_npy(npy("<i8", false, "(3,)", v, sizeof v));
  ASSERT_EQ(m.rows, 3u);
  ASSERT_EQ(m.cols, 1u);
  EXPECT_DOUBLE_EQ(m.at(0, 0), -1.0);
}

TEST(Npy, ImageBatchesFlattenEachSampleRowMajorInEitherOrder) {
  // Shape (n, c, h, w) = (2, 2, 1, 3), element value 100 n + 10 c + w, written once in C
  // order and once in Fortran order.
  double c_order[12], f_order[12];
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 2; ++c)
      for (int w = 0; w < 3; ++w) {
        const double v = 100 * n + 10 * c + w;
        c_order[(n * 2 + c) * 3 + w] = v;
        f_order[n + 2 * (c + 2 * (0 + 1 * w))] = v;  // first index fastest; the size-1 axis adds nothing
      }
  for (const auto& [data, fortran] : {std::pair{c_order, false}, std::pair{f_order, true}}) {
    const Matrix m = parse_npy(npy("<f8", fortran, "(2, 2, 1, 3)", data, sizeof c_order));
    ASSERT_EQ(m.rows, 2u);
    ASSERT_EQ(m.cols, 6u);
    EXPECT_EQ(m.sample_shape, (std::vector<std::size_t>{2, 1, 3}));
    EXPECT_DOUBLE_EQ(m.at(1, 4), 111.0) << (fortran ? "fortran" : "C");  // n = 1, c = 1, w = 1
    EXPECT_DOUBLE_EQ(m.at(0, 2), 2.0);
  }
  const double v[1] = {0};
  EXPECT_THROW(parse_npy(npy("<f8", false, "()", v, sizeof v), "x.npy"), DataError);
  EXPECT_THROW(parse_npy(npy("<f8", false, "(1, 1, 1, 1, 1, 1, 1, 1, 1)", v, sizeof v), "x.npy"), DataError);
}

TEST(Npy, TruncatedDataAndBadMagicAreRefused) {
  const double v[6] = {1, 2, 3, 4, 5, 6};
  auto bytes = npy("<f8", false, "(2, 3)", v, sizeof v);
  bytes.resize(bytes.size() - 8);
  EXPECT_THROW(parse_npy(bytes, "x.npy"), DataError);
  bytes[0] = 0;
  EXPECT_THROW(parse_npy(bytes, "x.npy"), DataError);
  // A shape that claims more than the file holds is refused before allocating.
  auto huge = npy("<f8", false, "(100000000000, 100000000000)", v, sizeof v);
  EXPECT_THROW(parse_npy(huge, "x.npy"), DataError);
  auto object = npy("|O", false, "(1,)", v, 8);
  EXPECT_THROW(parse_npy(object, "x.npy"), DataError);
}

TEST(LoadMatrix, DispatchesOnExtension) {
  const auto dir = std::filesystem::temp_directory_path();
  const double v[2] = {1.5, 2.5};
  const auto bytes = npy("<f8", false, "(2,)", v, sizeof v);
  const auto npy_path = (dir / "veil_ml_data_test.npy").string();
  std::ofstream(npy_path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  EXPECT_DOUBLE_EQ(load_matrix(npy_path).at(1, 0), 2.5);
  const auto csv_path = (dir / "veil_ml_data_test.csv").string();
  std::ofstream(csv_path) << "f\n1.5\n";
  EXPECT_DOUBLE_EQ(load_matrix(csv_path).at(0, 0), 1.5);
  std::filesystem::remove(npy_path);
  std::filesystem::remove(csv_path);
}

}  // namespace
}  // namespace veil::ml
