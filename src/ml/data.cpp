// CSV and .npy loaders. Every failure names the source, and for CSV the line and column.
#include "veil/ml/data.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

namespace veil::ml {

Matrix Matrix::first_columns(std::size_t count) const {
  if (count > cols) throw std::invalid_argument("first_columns: " + std::to_string(count) + " > " + std::to_string(cols));
  Matrix m(rows, count);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < count; ++c) m.at(r, c) = at(r, c);
  if (column_names.size() == cols) m.column_names.assign(column_names.begin(), column_names.begin() + count);
  return m;
}

std::vector<double> Matrix::column(std::size_t c) const {
  if (c >= cols) throw std::invalid_argument("column: " + std::to_string(c) + " >= " + std::to_string(cols));
  std::vector<double> v(rows);
  for (std::size_t r = 0; r < rows; ++r) v[r] = at(r, c);
  return v;
}

Matrix Matrix::first_rows(std::size_t count) const {
  Matrix m(std::min(count, rows), cols);
  std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(m.rows * cols), m.data.begin());
  m.column_names = column_names;
  m.sample_shape = sample_shape;
  return m;
}

std::vector<std::uint8_t> read_file_bytes(const std::string& path, std::uintmax_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw DataError(path + ": cannot read: " + ec.message());
  if (size > max_bytes)
    throw DataError(path + ": " + std::to_string(size) + " bytes, more than the limit of " + std::to_string(max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) throw DataError(path + ": short read");
  return bytes;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

bool is_missing(std::string_view s) {
  return s.empty() || s == "nan" || s == "NaN" || s == "NAN" || s == "NA" || s == "-nan";
}

// Parses a whole field as a double; false when it is not a number.
bool parse_double(std::string_view s, double& out) {
  if (is_missing(s)) {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const auto* end = s.data() + s.size();
  const auto r = std::from_chars(s.data(), end, out);
  if (r.ec != std::errc() || r.ptr != end) {
    if (s == "inf" || s == "Infinity") { out = std::numeric_limits<double>::infinity(); return true; }
    if (s == "-inf" || s == "-Infinity") { out = -std::numeric_limits<double>::infinity(); return true; }
    return false;
  }
  return true;
}

std::vector<std::string_view> split_fields(std::string_view line, char delim) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= line.size(); ++i) {
    if (i < line.size() && line[i] == '"') quoted = !quoted;
    if (i == line.size() || (line[i] == delim && !quoted)) {
      fields.push_back(trim(line.substr(start, i - start)));
      start = i + 1;
    }
  }
  return fields;
}

}  // namespace

Matrix parse_csv(std::string_view text, const std::string& source, const CsvOptions& options) {
  Matrix m;
  std::size_t line_no = 0;
  bool first = true;
  std::size_t pos = 0;
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
      static_cast<unsigned char>(text[2]) == 0xBF)
    pos = 3;  // UTF-8 byte order mark
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (trim(line).empty()) continue;
    const auto fields = split_fields(line, options.delimiter);
    if (first) {
      first = false;
      bool header = false;
      for (auto f : fields) {
        double v;
        if (!parse_double(f, v)) header = true;
      }
      m.cols = fields.size();
      if (header) {
        for (auto f : fields) m.column_names.emplace_back(f);
        continue;
      }
    }
    if (fields.size() != m.cols)
      throw DataError(source + ": line " + std::to_string(line_no) + ": " + std::to_string(fields.size()) +
                      " fields, expected " + std::to_string(m.cols) + " (as on the first row)");
    for (std::size_t c = 0; c < fields.size(); ++c) {
      double v;
      if (!parse_double(fields[c], v))
        throw DataError(source + ": line " + std::to_string(line_no) + ", column " + std::to_string(c + 1) +
                        (c < m.column_names.size() ? " ('" + m.column_names[c] + "')" : std::string{}) + ": '" +
                        std::string(fields[c].substr(0, 40)) + "' is not a number");
      m.data.push_back(v);
    }
    ++m.rows;
  }
  if (m.cols == 0) throw DataError(source + ": no data");
  return m;
}

Matrix load_csv(const std::string& path, const CsvOptions& options) {
  const auto bytes = read_file_bytes(path);
  return parse_csv(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path, options);
}

namespace {

// Reads the value of `key` in the header dictionary: the text up to the next ',' or '}' at
// the same nesting depth (a tuple for 'shape').
std::string header_value(const std::string& header, const std::string& key, const std::string& source) {
  const std::string k1 = "'" + key + "'";
  auto p = header.find(k1);
  if (p == std::string::npos) throw DataError(source + ": .npy header has no '" + key + "'");
  p = header.find(':', p + k1.size());
  if (p == std::string::npos) throw DataError(source + ": .npy header: no value for '" + key + "'");
  ++p;
  int depth = 0;
  std::size_t end = p;
  for (; end < header.size(); ++end) {
    const char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  std::string v = header.substr(p, end - p);
  const auto b = v.find_first_not_of(" \t");
  const auto e = v.find_last_not_of(" \t");
  return b == std::string::npos ? std::string{} : v.substr(b, e - b + 1);
}

}  // namespace

Matrix parse_npy(std::span<const std::uint8_t> bytes, const std::string& source) {
  static const std::uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0) throw DataError(source + ": not a .npy file (bad magic)");
  const unsigned major = bytes[6];
  std::size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = bytes[8] | (std::size_t{bytes[9]} << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw DataError(source + ": truncated .npy header");
    header_len = bytes[8] | (std::size_t{bytes[9]} << 8) | (std::size_t{bytes[10]} << 16) | (std::size_t{bytes[11]} << 24);
    offset = 12;
  } else {
    throw DataError(source + ": .npy format version " + std::to_string(major) + " is not supported (1, 2 or 3)");
  }
  if (header_len > bytes.size() - offset) throw DataError(source + ": .npy header length exceeds the file");
  const std::string header(reinterpret_cast<const char*>(bytes.data() + offset), header_len);
  offset += header_len;

  std::string descr = header_value(header, "descr", source);
  if (descr.size() < 4 || (descr.front() != '\'' && descr.front() != '"'))
    throw DataError(source + ": .npy dtype " + descr + " is not a simple type");
  descr = descr.substr(1, descr.size() - 2);
  const char order = descr[0];
  const char kind = descr[1];
  std::size_t item = 0;
  {
    const auto r = std::from_chars(descr.data() + 2, descr.data() + descr.size(), item);
    if (r.ec != std::errc() || r.ptr != descr.data() + descr.size())
      throw DataError(source + ": .npy dtype '" + descr + "' is not understood");
  }
  const bool big = order == '>';
  const bool ok_kind = (kind == 'f' && (item == 4 || item == 8)) || ((kind == 'i' || kind == 'u') && (item == 1 || item == 2 || item == 4 || item == 8)) ||
                       (kind == 'b' && item == 1);
  if (!ok_kind || (order != '<' && order != '>' && order != '|' && order != '='))
    throw DataError(source + ": .npy dtype '" + descr + "' is not supported (float32/64, (u)int8..64, bool)");
  const std::string fortran = header_value(header, "fortran_order", source);
  const bool fortran_order = fortran == "True";
  std::string shape_text = header_value(header, "shape", source);
  std::vector<std::size_t> shape;
  {
    std::size_t i = 0;
    while (i < shape_text.size()) {
      if (std::isdigit(static_cast<unsigned char>(shape_text[i]))) {
        std::size_t v = 0;
        const auto r = std::from_chars(shape_text.data() + i, shape_text.data() + shape_text.size(), v);
        if (r.ec != std::errc()) throw DataError(source + ": .npy shape " + shape_text + " is not understood");
        shape.push_back(v);
        i = static_cast<std::size_t>(r.ptr - shape_text.data());
      } else {
        ++i;
      }
    }
  }
  // Rank 1 is one column; higher ranks keep the first dimension as rows and flatten the others
  // (row-major) into one sample, e.g. (N, C, H, W) images.
  if (shape.empty() || shape.size() > 8)
    throw DataError(source + ": .npy array of rank " + std::to_string(shape.size()) + ", expected 1 to 8");
  const std::size_t rows = shape[0];
  std::size_t cols = 1;
  for (std::size_t d = 1; d < shape.size(); ++d) {
    if (shape[d] != 0 && cols > (bytes.size() / item) / shape[d])
      throw DataError(source + ": .npy shape " + shape_text + " needs more data than the file holds");
    cols *= shape[d];
  }
  if (cols != 0 && rows > (bytes.size() / item) / cols)
    throw DataError(source + ": .npy shape " + shape_text + " needs more data than the file holds");
  const std::size_t count = rows * cols;
  if (count * item > bytes.size() - offset)
    throw DataError(source + ": .npy data truncated: " + std::to_string(count * item) + " bytes expected, " +
                    std::to_string(bytes.size() - offset) + " present");
  Matrix m(rows, cols);
  if (shape.size() > 2) m.sample_shape.assign(shape.begin() + 1, shape.end());
  // Fortran order: the first index varies fastest; c_stride[d] places index d in C order.
  std::vector<std::size_t> c_stride(shape.size(), 1);
  for (std::size_t d = shape.size() - 1; d > 0; --d) c_stride[d - 1] = c_stride[d] * shape[d];
  const std::uint8_t* p = bytes.data() + offset;
  const bool swap = big != (std::endian::native == std::endian::big) && item > 1;
  for (std::size_t e = 0; e < count; ++e) {
    std::uint8_t buf[8];
    std::memcpy(buf, p + e * item, item);
    if (swap) std::reverse(buf, buf + item);
    double v = 0;
    if (kind == 'f' && item == 8) { double d; std::memcpy(&d, buf, 8); v = d; }
    else if (kind == 'f') { float f; std::memcpy(&f, buf, 4); v = f; }
    else if (kind == 'b') v = buf[0] != 0 ? 1.0 : 0.0;
    else if (kind == 'i') {
      if (item == 1) { std::int8_t x; std::memcpy(&x, buf, 1); v = x; }
      else if (item == 2) { std::int16_t x; std::memcpy(&x, buf, 2); v = x; }
      else if (item == 4) { std::int32_t x; std::memcpy(&x, buf, 4); v = x; }
      else { std::int64_t x; std::memcpy(&x, buf, 8); v = static_cast<double>(x); }
    } else {
      if (item == 1) v = buf[0];
      else if (item == 2) { std::uint16_t x; std::memcpy(&x, buf, 2); v = x; }
      else if (item == 4) { std::uint32_t x; std::memcpy(&x, buf, 4); v = x; }
      else { std::uint64_t x; std::memcpy(&x, buf, 8); v = static_cast<double>(x); }
    }
    if (fortran_order) {
      std::size_t rest = e, at = 0;
      for (std::size_t d = 0; d < shape.size(); ++d) {
        at += (rest % shape[d]) * c_stride[d];
        rest /= shape[d];
      }
      m.data[at] = v;
    } else {
      m.data[e] = v;
    }
  }
  return m;
}

Matrix load_npy(const std::string& path) {
  const auto bytes = read_file_bytes(path);
  return parse_npy(bytes, path);
}

Matrix load_matrix(const std::string& path) {
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0) return load_npy(path);
  return load_csv(path);
}

}  // namespace veil::ml
