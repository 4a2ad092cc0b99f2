// Shapes and clear integer tensors: the values of the clear executor, the constants of a
// circuit (weights, biases) and what the client encrypts and decrypts.
//
// Tensors are dense, row-major, int64. A shape of rank 0 is a scalar (one element).
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace veil::circuit {

using Shape = std::vector<std::int64_t>;

// Largest number of elements of one tensor (and of one constant) a circuit may hold: a
// circuit file is untrusted input, and every element of an encrypted tensor is a ciphertext
// of k*N+1 words.
inline constexpr std::int64_t kMaxTensorElements = std::int64_t{1} << 24;
// Largest rank of a tensor.
inline constexpr std::size_t kMaxRank = 8;

// Product of the dimensions. Throws std::invalid_argument when a dimension is negative, the
// rank exceeds kMaxRank or the product exceeds kMaxTensorElements ("what" names the caller).
std::int64_t element_count(const Shape& shape, const std::string& what = "shape");
// "[2, 3, 4]".
std::string shape_string(const Shape& shape);
// Row-major strides (in elements) of a shape.
std::vector<std::int64_t> strides_of(const Shape& shape);

struct Tensor {
  Shape shape;
  std::vector<std::int64_t> data;

  Tensor() : data(1, 0) {}  // a scalar 0
  // REQUIRES: data.size() == element_count(shape); throws std::invalid_argument otherwise.
  Tensor(Shape s, std::vector<std::int64_t> d);
  static Tensor scalar(std::int64_t v) { return Tensor({}, {v}); }
  static Tensor vector(std::vector<std::int64_t> v) {
    Shape s{static_cast<std::int64_t>(v.size())};
    return Tensor(std::move(s), std::move(v));
  }
  static Tensor filled(Shape s, std::int64_t v);

  std::int64_t size() const { return static_cast<std::int64_t>(data.size()); }
  friend bool operator==(const Tensor&, const Tensor&) = default;
};

}  // namespace veil::circuit
