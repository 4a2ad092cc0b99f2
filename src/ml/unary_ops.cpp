// The univariate elementwise ops (unary_ops.hpp), ONNX's definitions.
#include "unary_ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "network_ops.hpp"

namespace veil::ml::detail {
namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double elu(double x, double alpha) { return x >= 0 ? x : alpha * std::expm1(x); }

using Maker = std::function<UnaryFunction(const GraphNode&)>;

const std::map<std::string, Maker>& makers() {
  static const std::map<std::string, Maker> m = {
      {"Relu", [](const GraphNode&) { return UnaryFunction{[](double x) { return x > 0 ? x : 0.0; }, true}; }},
      {"Sigmoid", [](const GraphNode&) { return UnaryFunction{sigmoid, true}; }},
      {"Tanh", [](const GraphNode&) { return UnaryFunction{[](double x) { return std::tanh(x); }, true}; }},
      {"LeakyRelu",
       [](const GraphNode& n) {
         const double a = attr_float(n, "alpha", 0.01);
         return UnaryFunction{[a](double x) { return x >= 0 ? x : a * x; }, a >= 0};
       }},
      {"Elu",
       [](const GraphNode& n) {
         const double a = attr_float(n, "alpha", 1.0);
         return UnaryFunction{[a](double x) { return elu(x, a); }, a >= 0};
       }},
      {"Selu",
       [](const GraphNode& n) {
         const double a = attr_float(n, "alpha", 1.67326319217681884765625);
         const double g = attr_float(n, "gamma", 1.05070102214813232421875);
         return UnaryFunction{[a, g](double x) { return g * elu(x, a); }, a >= 0 && g >= 0};
       }},
      {"Softplus",
       [](const GraphNode&) {
         // log(1 + e^x) without overflow: x + log1p(e^-x) for large x.
         return UnaryFunction{[](double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }, true};
       }},
      {"Softsign", [](const GraphNode&) { return UnaryFunction{[](double x) { return x / (1.0 + std::abs(x)); }, true}; }},
      {"HardSigmoid",
       [](const GraphNode& n) {
         const double a = attr_float(n, "alpha", 0.2), b = attr_float(n, "beta", 0.5);
         return UnaryFunction{[a, b](double x) { return std::clamp(a * x + b, 0.0, 1.0); }, a >= 0};
       }},
      {"HardSwish",
       [](const GraphNode&) {
         return UnaryFunction{[](double x) { return x * std::clamp(x / 6.0 + 0.5, 0.0, 1.0); }, false};
       }},
      {"Erf", [](const GraphNode&) { return UnaryFunction{[](double x) { return std::erf(x); }, true}; }},
      {"Exp", [](const GraphNode&) { return UnaryFunction{[](double x) { return std::exp(x); }, true}; }},
      {"Abs", [](const GraphNode&) { return UnaryFunction{[](double x) { return std::abs(x); }, false}; }},
      {"Neg", [](const GraphNode&) { return UnaryFunction{[](double x) { return -x; }, false}; }},
      {"Log", [](const GraphNode&) { return UnaryFunction{[](double x) { return std::log(x); }, true}; }},
      {"Sqrt", [](const GraphNode&) { return UnaryFunction{[](double x) { return std::sqrt(x); }, true}; }},
      {"Reciprocal", [](const GraphNode&) { return UnaryFunction{[](double x) { return 1.0 / x; }, false}; }},
  };
  return m;
}

}  // namespace

const std::vector<std::string>& unary_op_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [name, make] : makers()) v.push_back(name);
    v.push_back("Clip");
    v.push_back("Pow");
    v.push_back("QuantizeLinear");
    v.push_back("DequantizeLinear");
    std::sort(v.begin(), v.end());
    return v;
  }();
  return names;
}

std::optional<UnaryFunction> unary_op(const GraphNode& n,
                                      const std::function<const FloatTensor*(const std::string&)>& constant) {
  if (n.op_type == "Clip") {
    // Opset 6-10: min and max attributes; from 11: optional constant inputs 1 and 2.
    double lo = attr_float(n, "min", -std::numeric_limits<double>::infinity());
    double hi = attr_float(n, "max", std::numeric_limits<double>::infinity());
    for (std::size_t i = 1; i <= 2; ++i) {
      if (n.inputs.size() <= i || n.inputs[i].empty()) continue;
      const FloatTensor* t = constant(n.inputs[i]);
      if (t == nullptr || t->data.size() != 1) node_fail(n, (i == 1 ? "min" : "max") + std::string(" must be a constant scalar"));
      (i == 1 ? lo : hi) = t->data[0];
    }
    if (std::isnan(lo) || std::isnan(hi) || lo > hi) node_fail(n, "bounds must be numbers with min <= max");
    return UnaryFunction{[lo, hi](double x) { return std::clamp(x, lo, hi); }, true};
  }
  if (n.op_type == "Pow") {
    // x ^ c by a constant scalar exponent (x * x as torch writes a square goes through Mul).
    const FloatTensor* e = n.inputs.size() > 1 && !n.inputs[1].empty() ? constant(n.inputs[1]) : nullptr;
    if (e == nullptr || e->data.size() != 1) node_fail(n, "the exponent must be a constant scalar");
    const double c = e->data[0];
    if (!std::isfinite(c)) node_fail(n, "the exponent is not finite");
    return UnaryFunction{[c](double x) { return std::pow(x, c); }, false};
  }
  if (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") {
    // Quantization-aware training's fake quantization, on a value computed from the input:
    // per tensor only (a per-axis scale is one function per channel; weights, which are
    // constants, are folded at import whatever their axis).
    const auto param = [&](std::size_t i) -> const FloatTensor* {
      if (n.inputs.size() <= i || n.inputs[i].empty()) return nullptr;
      const FloatTensor* t = constant(n.inputs[i]);
      if (t == nullptr) node_fail(n, std::string(i == 1 ? "the scale" : "the zero point") + " must be a constant");
      return t;
    };
    const FloatTensor* scale = param(1);
    if (scale == nullptr) node_fail(n, "missing input 1 (the scale)");
    if (scale->data.size() != 1)
      node_fail(n, "per-axis quantization of a value computed from the input is not supported (only of constant weights)");
    const QuantParams p = quant_params(n, {1}, *scale, param(2));
    const double s = p.scale[0], z = p.zero_point[0];
    if (n.op_type == "DequantizeLinear") return UnaryFunction{[s, z](double x) { return dequantize_value(x, s, z); }, true};
    return UnaryFunction{[s, z, lo = p.q_min, hi = p.q_max](double x) { return quantize_value(x, s, z, lo, hi); }, true};
  }
  const auto it = makers().find(n.op_type);
  if (it == makers().end()) return std::nullopt;
  return it->second(n);
}

}  // namespace veil::ml::detail
