// Attribute parsing of ONNX nodes, shared by the float evaluator and the lowering, so that
// both read an op the same way. Every error names the node.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/ml/model.hpp"

namespace veil::ml::detail {

[[noreturn]] inline void node_fail(const GraphNode& n, const std::string& what) {
  throw std::invalid_argument("node '" + n.name + "' (" + n.op_type + "): " + what);
}

inline std::int64_t attr_int(const GraphNode& n, const std::string& key, std::int64_t def) {
  auto it = n.attributes.find(key);
  if (it == n.attributes.end()) return def;
  if (it->second.type != Attribute::Type::kInt) node_fail(n, "attribute '" + key + "' is not an integer");
  return it->second.i;
}
inline double attr_float(const GraphNode& n, const std::string& key, double def) {
  auto it = n.attributes.find(key);
  if (it == n.attributes.end()) return def;
  if (it->second.type != Attribute::Type::kFloat) node_fail(n, "attribute '" + key + "' is not a float");
  return it->second.f;
}
inline std::vector<std::int64_t> attr_ints(const GraphNode& n, const std::string& key, std::vector<std::int64_t> def) {
  auto it = n.attributes.find(key);
  if (it == n.attributes.end()) return def;
  if (it->second.type != Attribute::Type::kInts) node_fail(n, "attribute '" + key + "' is not a list of integers");
  return it->second.ints;
}
inline std::string attr_string(const GraphNode& n, const std::string& key, std::string def) {
  auto it = n.attributes.find(key);
  if (it == n.attributes.end()) return def;
  if (it->second.type != Attribute::Type::kString) node_fail(n, "attribute '" + key + "' is not a string");
  return it->second.s;
}

// 2-D window of Conv, MaxPool and AveragePool over an NCHW input.
struct Window {
  std::int64_t kh = 1, kw = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t out_h = 0, out_w = 0;
  bool count_include_pad = false;
};

// kernel: {kh, kw} from the weights (Conv) or kernel_shape (pools).
inline Window window_of(const GraphNode& n, const circuit::Shape& x, std::int64_t kh, std::int64_t kw) {
  if (x.size() != 4) node_fail(n, "expects an NCHW input (rank 4), got " + circuit::shape_string(x));
  const std::string auto_pad = attr_string(n, "auto_pad", "NOTSET");
  Window w;
  w.kh = kh;
  w.kw = kw;
  const auto strides = attr_ints(n, "strides", {1, 1});
  const auto dil = attr_ints(n, "dilations", {1, 1});
  auto pads = attr_ints(n, "pads", {0, 0, 0, 0});
  if (strides.size() != 2 || dil.size() != 2 || pads.size() != 4) node_fail(n, "only 2-D windows are supported");
  w.stride_h = strides[0];
  w.stride_w = strides[1];
  w.dilation_h = dil[0];
  w.dilation_w = dil[1];
  if (w.stride_h < 1 || w.stride_w < 1 || w.dilation_h < 1 || w.dilation_w < 1 || kh < 1 || kw < 1)
    node_fail(n, "kernel, strides and dilations must be positive");
  const std::int64_t ekh = (kh - 1) * w.dilation_h + 1, ekw = (kw - 1) * w.dilation_w + 1;
  if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    const std::int64_t oh = (x[2] + w.stride_h - 1) / w.stride_h, ow = (x[3] + w.stride_w - 1) / w.stride_w;
    const std::int64_t ph = std::max<std::int64_t>(0, (oh - 1) * w.stride_h + ekh - x[2]);
    const std::int64_t pw = std::max<std::int64_t>(0, (ow - 1) * w.stride_w + ekw - x[3]);
    const bool upper = auto_pad == "SAME_UPPER";
    pads = {upper ? ph / 2 : ph - ph / 2, upper ? pw / 2 : pw - pw / 2, upper ? ph - ph / 2 : ph / 2, upper ? pw - pw / 2 : pw / 2};
  } else if (auto_pad != "NOTSET") {
    node_fail(n, "auto_pad '" + auto_pad + "' is not supported");
  }
  w.pad_top = pads[0];
  w.pad_left = pads[1];
  w.pad_bottom = pads[2];
  w.pad_right = pads[3];
  for (auto p : pads)
    if (p < 0) node_fail(n, "negative pads are not supported");
  if (attr_int(n, "ceil_mode", 0) != 0) node_fail(n, "ceil_mode = 1 is not supported");
  w.count_include_pad = attr_int(n, "count_include_pad", 0) != 0;
  w.out_h = (x[2] + w.pad_top + w.pad_bottom - ekh) / w.stride_h + 1;
  w.out_w = (x[3] + w.pad_left + w.pad_right - ekw) / w.stride_w + 1;
  if (w.out_h < 1 || w.out_w < 1) node_fail(n, "the window is larger than the padded input " + circuit::shape_string(x));
  return w;
}

inline Window pool_window(const GraphNode& n, const circuit::Shape& x) {
  const auto k = attr_ints(n, "kernel_shape", {});
  if (k.size() != 2) node_fail(n, "kernel_shape must have 2 entries");
  if (attr_int(n, "storage_order", 0) != 0) node_fail(n, "storage_order = 1 is not supported");
  return window_of(n, x, k[0], k[1]);
}

// Reshape's target: 0 copies the input dimension (unless allowzero), -1 is inferred.
inline circuit::Shape reshape_target(const GraphNode& n, const circuit::Shape& x, const std::vector<double>& spec) {
  const bool allowzero = attr_int(n, "allowzero", 0) != 0;
  circuit::Shape out;
  std::int64_t known = 1, infer = -1;
  const std::int64_t total = circuit::element_count(x);
  for (std::size_t i = 0; i < spec.size(); ++i) {
    std::int64_t d = static_cast<std::int64_t>(spec[i]);
    if (d == 0 && !allowzero) {
      if (i >= x.size()) node_fail(n, "0 in the shape refers to a missing input dimension");
      d = x[i];
    }
    if (d == -1) {
      if (infer >= 0) node_fail(n, "more than one -1 in the shape");
      infer = static_cast<std::int64_t>(i);
      out.push_back(1);
      continue;
    }
    if (d < 0) node_fail(n, "negative dimension in the shape");
    out.push_back(d);
    known *= d;
  }
  if (infer >= 0) {
    if (known == 0 || total % known != 0) node_fail(n, "cannot infer -1 for " + circuit::shape_string(x));
    out[static_cast<std::size_t>(infer)] = total / known;
  }
  if (circuit::element_count(out) != total)
    node_fail(n, "cannot reshape " + circuit::shape_string(x) + " to " + circuit::shape_string(out));
  return out;
}

// Pad's amounts ([begin..., end...], one per axis) and constant value, from attributes
// (opset < 11) or inputs.
struct PadSpec {
  std::vector<std::int64_t> pads;
  double value = 0;
};
// REQUIRES: `values` holds the constant inputs (initializers). Throws std::invalid_argument.
PadSpec pad_spec(const GraphNode& n, const std::map<std::string, FloatTensor>& values, std::int64_t opset, std::size_t rank);

// QuantizeLinear / DequantizeLinear (opsets 10 to 18): q = saturate(round_half_even(x / scale)
// + zero_point), x = (q - zero_point) * scale. The scale is a scalar (per tensor) or, from
// opset 13, a 1-D tensor along `axis` (default 1); the zero point, optional (uint8 0), has the
// scale's shape and gives QuantizeLinear's saturation range by its type.
struct QuantParams {
  std::vector<double> scale;       // per element of the operand
  std::vector<double> zero_point;  // per element of the operand
  std::int64_t q_min = 0, q_max = 255;
  bool per_tensor = true;
};
// One value through QuantizeLinear (a code in [q_min, q_max]; NaN gives the zero point) and
// DequantizeLinear: the evaluator's tensors and the lowering's lookups compute them alike.
inline double quantize_value(double x, double scale, double zero_point, std::int64_t q_min, std::int64_t q_max) {
  const double q = std::nearbyint(x / scale) + zero_point;
  return std::isnan(q) ? zero_point : std::clamp(q, static_cast<double>(q_min), static_cast<double>(q_max));
}
inline double dequantize_value(double code, double scale, double zero_point) { return (code - zero_point) * scale; }

// `zero_point`: null when the node has none. Throws std::invalid_argument naming the node for
// a scale that is not positive and finite, a zero point outside its type or of another shape
// than the scale, an axis out of range or a per-axis scale whose length is not the axis'.
QuantParams quant_params(const GraphNode& n, const circuit::Shape& x, const FloatTensor& scale, const FloatTensor* zero_point);

// The ops of a network graph, in one registry: the importer accepts exactly these (besides
// Constant and Identity, which it folds, and a final Softmax, which it hands to the client),
// the float evaluator computes each by its entry, and the lowering handles each family (a
// switch over OpFamily, which the compiler checks is complete).
enum class OpFamily {
  kUnivariate,         // y = f(x) per element (unary_ops.hpp): one lookup
  kElementwise,        // Add, Sub, Mul, Div: by constants, of two encrypted tensors, or univariate
  kMatmul,             // Gemm, MatMul by constant weights
  kConv,               // Conv by constant weights
  kBatchNormalization, // an affine map per channel
  kMaxPool,
  kAveragePool,        // AveragePool, GlobalAveragePool
  kReshape,            // Flatten, Reshape, Squeeze, Unsqueeze: the same elements in order
  kPad,
  kTranspose,
  kConcat,
  kReduce,             // ReduceSum, ReduceMean
};

struct OpArgs;  // a node's inputs while it is evaluated (float_eval.cpp)
struct NetworkOp {
  std::string name;
  OpFamily family;
  FloatTensor (*evaluate)(const OpArgs&);
};
// The registry entry of an ONNX op type, or null when the op is not supported.
const NetworkOp* find_network_op(const std::string& op_type);
// Every op type of the registry, sorted.
const std::vector<std::string>& network_op_names();

// Evaluates one node on `values` (initializers and computed tensors by name) and stores its
// output there. Throws std::invalid_argument naming the node. The network evaluator and the
// importer's constant folding share it.
void evaluate_node(const Network& net, const GraphNode& n, std::map<std::string, FloatTensor>& values);

// Shape ops, read the same way by the evaluator and the lowering. `values` holds the constant
// inputs (initializers); axes come from an attribute (older opsets) or a constant input.
// Output shape of Flatten, Reshape, Squeeze or Unsqueeze on x.
circuit::Shape reshaped_shape(const GraphNode& n, const circuit::Shape& x, const std::map<std::string, FloatTensor>& values);
// Transpose's permutation (default: the reversed axes), checked.
std::vector<std::int64_t> transpose_perm(const GraphNode& n, std::size_t rank);
// Concat's axis, normalised to [0, rank).
std::int64_t concat_axis(const GraphNode& n, std::size_t rank);
// ReduceSum / ReduceMean: the reduced axes (ascending, normalised; empty = none, the identity)
// and whether they stay as size-1 dimensions.
struct ReduceSpec {
  std::vector<std::int64_t> axes;
  bool keepdims = true;
};
ReduceSpec reduce_spec(const GraphNode& n, const circuit::Shape& x, const std::map<std::string, FloatTensor>& values);

// Float reference ops, shared with the lowering (offsets through convolutions and pools).
FloatTensor conv_float(const GraphNode& n, const FloatTensor& x, const FloatTensor& w, const FloatTensor* bias);
FloatTensor pool_float(const GraphNode& n, const FloatTensor& x, bool is_max);

}  // namespace veil::ml::detail
