// Numeric data for the ml layer: calibration and test rows loaded from CSV or NumPy .npy
// files, as a dense row-major matrix of doubles.
//
// Files are untrusted input: every loader validates what it reads and throws DataError
// with a message naming the file and, for CSV, the line and column of the first bad field.
// Empty fields and "nan"/"NaN"/"NA" read as NaN (a missing value; XGBoost models route it by
// their default directions, other models refuse it when quantizing).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "veil/error.hpp"

namespace veil::ml {

class DataError : public veil::InputError {
 public:
  using veil::InputError::InputError;
};

// rows x cols, row-major.
struct Matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<double> data;
  std::vector<std::string> column_names;  // from a CSV header; empty otherwise
  // One row's shape when it has more than one dimension (an .npy image batch (N, C, H, W)
  // gives {C, H, W}; cols is their product); empty otherwise.
  std::vector<std::size_t> sample_shape;

  Matrix() = default;
  Matrix(std::size_t r, std::size_t c) : rows(r), cols(c), data(r * c, 0.0) {}
  double& at(std::size_t r, std::size_t c) { return data[r * cols + c]; }
  double at(std::size_t r, std::size_t c) const { return data[r * cols + c]; }
  std::span<const double> row(std::size_t r) const { return {data.data() + r * cols, cols}; }
  std::span<double> row(std::size_t r) { return {data.data() + r * cols, cols}; }
  // The first `count` columns of every row (REQUIRES: count <= cols).
  Matrix first_columns(std::size_t count) const;
  // One column as a vector (REQUIRES: c < cols).
  std::vector<double> column(std::size_t c) const;
  // The first `count` rows (all of them when count >= rows).
  Matrix first_rows(std::size_t count) const;
};

// Largest file a loader reads (calibration sets are small; this bounds memory).
inline constexpr std::uintmax_t kMaxDataFileBytes = std::uintmax_t{1} << 30;

struct CsvOptions {
  char delimiter = ',';
  // A header row is detected automatically: the first row is a header when one of its
  // fields is neither a number nor a missing-value marker.
};

// Parses CSV text. `source` names the text in error messages (a file path).
// Throws DataError naming source, line and column on a non-numeric field or a row whose
// field count differs from the first row's.
Matrix parse_csv(std::string_view text, const std::string& source = "<csv>", const CsvOptions& options = {});
Matrix load_csv(const std::string& path, const CsvOptions& options = {});

// Parses a NumPy .npy file (format versions 1, 2 and 3): little- or big-endian float64,
// float32, int64, int32, int16, int8, uint8..uint64 and bool; C or Fortran order; rank 1
// (one column) to 8 (the first dimension is rows, the others flatten row-major into one row
// and stay in sample_shape). Throws DataError naming the file and what is wrong.
Matrix parse_npy(std::span<const std::uint8_t> bytes, const std::string& source = "<npy>");
Matrix load_npy(const std::string& path);

// load_npy for a ".npy" path, load_csv otherwise.
Matrix load_matrix(const std::string& path);

// Reads a whole file, refusing files larger than max_bytes. Throws DataError.
std::vector<std::uint8_t> read_file_bytes(const std::string& path, std::uintmax_t max_bytes = kMaxDataFileBytes);

}  // namespace veil::ml
