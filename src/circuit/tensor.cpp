#include "veil/circuit/tensor.hpp"

#include <stdexcept>

namespace veil::circuit {

std::int64_t element_count(const Shape& shape, const std::string& what) {
  if (shape.size() > kMaxRank)
    throw std::invalid_argument(what + ": rank " + std::to_string(shape.size()) + " exceeds the maximum " +
                                std::to_string(kMaxRank));
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 1)
      throw std::invalid_argument(what + ": dimension " + std::to_string(d) + " in " + shape_string(shape) +
                                  " (every dimension must be >= 1)");
    if (n > kMaxTensorElements / d)
      throw std::invalid_argument(what + ": " + shape_string(shape) + " has more than " +
                                  std::to_string(kMaxTensorElements) + " elements");
    n *= d;
  }
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::vector<std::int64_t> strides_of(const Shape& shape) {
  std::vector<std::int64_t> strides(shape.size(), 1);
  for (std::size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  return strides;
}

Tensor::Tensor(Shape s, std::vector<std::int64_t> d) : shape(std::move(s)), data(std::move(d)) {
  const std::int64_t n = element_count(shape, "tensor");
  if (static_cast<std::int64_t>(data.size()) != n)
    throw std::invalid_argument("tensor: shape " + shape_string(shape) + " needs " + std::to_string(n) +
                                " values, got " + std::to_string(data.size()));
}

Tensor Tensor::filled(Shape s, std::int64_t v) {
  const std::int64_t n = element_count(s, "tensor");
  return Tensor(std::move(s), std::vector<std::int64_t>(static_cast<std::size_t>(n), v));
}

}  // namespace veil::circuit
