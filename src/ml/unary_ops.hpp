// The univariate elementwise ops of a network: y = f(x) per element, f set by the node's
// attributes (and, for Clip from opset 11, by its constant bounds). One table serves the
// importer (which ops it accepts), the float evaluator (f itself) and the lowering (one
// lookup per element computing f, fused with requantization).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "veil/ml/model.hpp"

namespace veil::ml::detail {

struct UnaryFunction {
  std::function<double(double)> f;
  // f(max(a, b)) = max(f(a), f(b)): the lowering may run f after a max pool instead.
  bool non_decreasing = false;
};

// The ops of this family, for the importer's list of supported ops.
const std::vector<std::string>& unary_op_names();

// The function node `n` computes, or nullopt when it is not one of the family. `constant`
// gives an initializer's value by name (null when the name is not a constant). Throws
// std::invalid_argument naming the node for bad attributes (Clip with bounds that are not
// constants, a non-finite bound).
std::optional<UnaryFunction> unary_op(const GraphNode& n,
                                      const std::function<const FloatTensor*(const std::string&)>& constant);

}  // namespace veil::ml::detail
